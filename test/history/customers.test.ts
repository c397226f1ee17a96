import { describe, expect, it } from 'vitest';
import {
  customerSegmentsFrom,
  decodeCustomers,
  encodeCustomers,
  movementCounts,
} from '../../src/history/customers.js';
import { TextColumn } from '../../src/source/text.js';

/** A deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function scoring(ids: string[], segments: number[], names: string[], date: string) {
  return customerSegmentsFrom(date, TextColumn.from(ids), Uint16Array.from(segments), names)!;
}

describe('per-customer segments and the movement between two scorings', () => {
  it('counts each cell as a join of the two scorings by customer id does', () => {
    const next = random(7);
    const names = ['A', 'B', 'C', 'D', 'E'];
    const before = new Map<string, number>();
    const after = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const id = `c${Math.floor(next() * 1e9)}`;
      if (next() < 0.9) before.set(id, Math.floor(next() * 5));
      if (next() < 0.85) after.set(id, Math.floor(next() * 3));
    }
    // The later scoring names its segments in another order, and has fewer.
    const laterNames = ['C', 'A', 'B'];
    const previous = scoring([...before.keys()], [...before.values()], names, '2026-01-01');
    const current = scoring([...after.keys()], [...after.values()], laterNames, '2026-02-01');
    const counts = movementCounts(previous, current);

    const moved = names.map(() => laterNames.map(() => 0));
    const arrived = laterNames.map(() => 0);
    const left = names.map(() => 0);
    for (const [id, s] of after) {
      const was = before.get(id);
      if (was === undefined) arrived[s]!++;
      else moved[was]![s]!++;
    }
    for (const [id, s] of before) if (!after.has(id)) left[s]!++;
    expect(counts).toEqual({ moved, arrived, left });
  });

  it('sorts by key and reads back what it stored, in chunks', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => `customer-${i}`);
    const c = scoring(
      ids,
      ids.map((_, i) => i % 31),
      Array.from({ length: 32 }, (_, i) => `S${i}`),
      '2026-01-01',
    );
    for (let i = 1; i < ids.length; i++) {
      const order = c.high[i - 1]! - c.high[i]! || c.low[i - 1]! - c.low[i]!;
      expect(order).toBeLessThan(0);
    }
    const back = decodeCustomers(c.date, c.names, [encodeCustomers(c, 0, 1234), encodeCustomers(c, 1234)]);
    expect(back).toEqual(c);
    expect(encodeCustomers(c).length).toBe(ids.length * 9);
  });

  it('keeps no per-customer segments for more than 32 segments (movement is then not counted)', () => {
    const names = Array.from({ length: 33 }, (_, i) => `S${i}`);
    expect(
      customerSegmentsFrom('2026-01-01', TextColumn.from(['a']), Uint16Array.from([32]), names),
    ).toBeUndefined();
  });
});
