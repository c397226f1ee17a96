import { describe, expect, it } from 'vitest';
import { LongDoubleSums } from '../../src/source/sum.js';

const rSum = (xs: number[]): number => {
  const s = new LongDoubleSums();
  s.push(xs[0]!);
  for (const x of xs.slice(1)) s.add(0, x);
  return s.value(0);
};

describe("R's long-double sum()", () => {
  it('matches values printed by R 4.2 (sprintf("%.17g", sum(...)))', () => {
    expect(rSum([0.1, 0.2])).toBe(0.30000000000000004); // a tie that rounds up in both
    expect(rSum([0.1, 0.2, 0.3])).toBe(0.59999999999999998); // a double left fold gives 0.6000000000000001
    expect(rSum([19.99, 0.01, 0.7, 0.1])).toBe(20.799999999999997);
    expect(rSum([0.1, 0.2, -0.3])).toBe(2.7755575615628914e-17);
  });

  it('rounds intermediate sums to 64 bits, unlike an exact sum', () => {
    // 2^63 + 1 is exact in 64 bits; adding 0.5 needs 65 bits and the tie goes to the even 2^63 + 2 (R: 2).
    expect(rSum([2 ** 63, 1, 0.5, -(2 ** 63)])).toBe(2);
    expect(rSum([2 ** 63, 3, 0.5, -(2 ** 63)])).toBe(4);
  });

  it('keeps exact small sums exact', () => {
    expect(rSum([1, 2, 3])).toBe(6);
    expect(rSum([-5, 5])).toBe(0);
  });
});
