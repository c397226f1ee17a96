import { describe, expect, it } from 'vitest';
import { quantileBreaks, quantileScores, quantileType7, selectRank } from '../../src/score/quantile.js';

describe('R type-7 quantile', () => {
  it('interpolates like quantile(x, type = 7)', () => {
    // quantile(1:10, c(.2,.4,.6,.8)) in R: 2.8 4.6 6.4 8.2
    const x = Float64Array.from({ length: 10 }, (_, i) => i + 1);
    expect([0.2, 0.4, 0.6000000000000001, 0.8].map((p) => quantileType7(x, p))).toEqual([2.8, 4.6, 6.4, 8.2]);
  });

  it('adds 1 to each interior break, as the rfm package does', () => {
    expect(quantileBreaks([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).toEqual([3.8, 5.6, 7.4, 9.2]);
  });

  it('selects the order statistics a full sort gives, for samples of every size and many ties', () => {
    let seed = 1;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const samples = [
      [],
      [5],
      [2, 1],
      Array.from({ length: 1000 }, (_, i) => i),
      Array.from({ length: 1000 }, (_, i) => 1000 - i),
      Array.from({ length: 997 }, () => 7),
      ...Array.from({ length: 200 }, (_, t) =>
        Array.from({ length: 1 + Math.floor(random() * 3000) }, () =>
          t % 2 ? Math.floor(random() * 5) : Math.round(random() * 1e6) / 100,
        ),
      ),
    ];
    for (const values of samples) {
      const sorted = Float64Array.from(values).sort();
      const probs = [1, 2, 3, 4].map((i) => i * (1 / 5));
      expect(quantileBreaks(values)).toEqual(probs.map((p) => quantileType7(sorted, p) + 1));
      if (values.length === 0) continue;
      const k = Math.floor(random() * values.length);
      const a = Float64Array.from(values);
      expect(selectRank(a, k, 0, a.length - 1)).toBe(sorted[k]);
      expect(a.subarray(0, k).every((v) => v <= a[k]!) && a.subarray(k).every((v) => v >= a[k]!)).toBe(true);
    }
  });
});

describe('quantile scores', () => {
  it('gives a value just above a quantile the lower score (breaks are quantile + 1)', () => {
    // The 20 % quantile of these 9 values is 0.4 * 254 + 0.6 * 255.5 = 254.9: the break is 255.9,
    // so 255.5, above the quantile, still scores 1.
    const m = [100, 254, 255.5, 300, 400, 500, 600, 700, 800];
    const { scores, breaks } = quantileScores(m, true);
    expect(breaks[0]).toBeCloseTo(255.9, 10);
    expect(Array.from(scores)).toEqual([1, 1, 1, 2, 3, 4, 4, 5, 5]);
  });

  it('keeps ties together and leaves bins empty', () => {
    const f = [1, 1, 1, 1, 1, 1, 1, 2, 3, 9];
    const { scores } = quantileScores(f, true);
    // breaks: 2, 2, 2, 3.4 — every 1 scores 1, 2 jumps to 4, 3 and 9 score 5.
    expect(Array.from(scores)).toEqual([1, 1, 1, 1, 1, 1, 1, 4, 4, 5]);
    expect(new Set(scores).has(2)).toBe(false);
  });

  it('reverses recency: the fewest days score 5', () => {
    const { scores } = quantileScores([0, 10, 20, 30, 40, 50, 60, 70, 80, 90], false);
    expect(scores[0]).toBe(5);
    expect(scores[9]).toBe(1);
  });

  it('scores a single customer and identical customers as bin 1 (R: all below the first break)', () => {
    expect(Array.from(quantileScores([42], true).scores)).toEqual([1]);
    expect(Array.from(quantileScores([7, 7, 7], true).scores)).toEqual([1, 1, 1]);
    expect(Array.from(quantileScores([7, 7, 7], false).scores)).toEqual([5, 5, 5]);
  });
});
