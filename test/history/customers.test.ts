import { describe, expect, it } from 'vitest';
import {
  decodeKept,
  encodeKept,
  keptFrom,
  movementCounts,
  scoredFrom,
  type Scored,
} from '../../src/history/customers.js';
import {
  KeyBuckets,
  keyRoom,
  PARTS,
  roomFor,
  sortedKeysOf,
  sortKeys,
  sortParts,
} from '../../src/history/key-order.js';
import { addSketch, layoutFor, sketchOf } from '../../src/history/sketch.js';
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

function scoring(customers: Map<string, number>, names: string[], date: string): Scored {
  return scoredFrom(
    date,
    TextColumn.from([...customers.keys()]),
    Uint16Array.from(customers.values()),
    names,
  )!;
}

/** The movement as a join of two maps by customer id: the oracle, independent of keys and tables. */
function joined(before: Map<string, number>, after: Map<string, number>, from: string[], to: string[]) {
  const moved = from.map(() => to.map(() => 0));
  const arrived = to.map(() => 0);
  const left = from.map(() => 0);
  for (const [id, s] of after) {
    const was = before.get(id);
    if (was === undefined) arrived[s]!++;
    else moved[was]![s]!++;
  }
  for (const [id, s] of before) if (!after.has(id)) left[s]!++;
  return { moved, arrived, left };
}

/** Two scorings of one customer base: `arrive` and `leave` are shares of it; segments drift. */
function twoScorings(n: number, arrive: number, leave: number, seed = 7) {
  const next = random(seed);
  const before = new Map<string, number>();
  const after = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const id = `c${i}-${Math.floor(next() * 1e6)}`;
    const s = Math.floor(next() * 11);
    before.set(id, s);
    if (next() >= leave) after.set(id, next() < 0.2 ? Math.floor(next() * 11) : s);
  }
  for (let i = 0; i < n * arrive; i++) after.set(`new${i}`, Math.floor(next() * 11));
  return { before, after };
}

/** Splits stored bytes at arbitrary points, as chunks of any size would. */
function rechunk(chunks: Buffer[], at: number[]): Buffer[] {
  const all = Buffer.concat(chunks);
  const cuts = [0, ...at.filter((a) => a < all.length), all.length];
  return cuts.slice(1).map((end, i) => all.subarray(cuts[i]!, end));
}

const NAMES = Array.from({ length: 11 }, (_, i) => `S${i}`);

describe('per-customer segments kept by the latest snapshot, and the movement from them', () => {
  it('counts every cell as a join by customer id does, from what was stored and read back', () => {
    const { before, after } = twoScorings(50_000, 0.02, 0.01);
    const previous = scoring(before, NAMES, '2026-01-01');
    const kept = keptFrom(previous, 0.05);
    const read = decodeKept('2026-01-01', NAMES, rechunk(encodeKept(kept), [5, 777, 30_000]));
    const counts = movementCounts(read, scoring(after, NAMES, '2026-01-02'));
    expect(counts && { moved: counts.moved, arrived: counts.arrived, left: counts.left }).toEqual(
      joined(before, after, NAMES, NAMES),
    );
  });

  it('keeps about 1.4 bytes per customer at the default capacity, none of them a key', () => {
    const { before } = twoScorings(200_000, 0, 0);
    const bytes = encodeKept(keptFrom(scoring(before, NAMES, '2026-01-01'), 0.05)).reduce(
      (a, c) => a + c.length,
      0,
    );
    expect(bytes / 200_000).toBeLessThan(1.5);
  });

  it('counts exactly between two scorings in memory (a backfill), whatever arrived or left', () => {
    const { before, after } = twoScorings(20_000, 0.5, 0.3, 3);
    // The later scoring names its segments in another order, and has fewer.
    const laterNames = ['S2', 'S0', 'S1'];
    const later = new Map([...after].map(([id, s]) => [id, s % 3]));
    const counts = movementCounts(
      scoring(before, NAMES, '2026-01-01'),
      scoring(later, laterNames, '2026-02-01'),
    );
    expect(counts && { moved: counts.moved, arrived: counts.arrived, left: counts.left }).toEqual(
      joined(before, later, NAMES, laterNames),
    );
  });

  it('counts from a scoring in memory to a kept later one (a backfill before the latest)', () => {
    const { before, after } = twoScorings(30_000, 0.03, 0.01, 5);
    const later = keptFrom(scoring(after, NAMES, '2026-03-01'), 0.05);
    const counts = movementCounts(scoring(before, NAMES, '2026-02-01'), later);
    expect(counts && { moved: counts.moved, arrived: counts.arrived, left: counts.left }).toEqual(
      joined(before, after, NAMES, NAMES),
    );
  });

  it('says it cannot count when more customers arrived than the kept sketch can list', () => {
    const { before, after } = twoScorings(20_000, 0.2, 0, 9);
    const kept = keptFrom(scoring(before, NAMES, '2026-01-01'), 0.05);
    expect(movementCounts(kept, scoring(after, NAMES, '2026-01-02'))).toBeUndefined();
    // A larger capacity counts the same step.
    const roomy = keptFrom(scoring(before, NAMES, '2026-01-01'), 0.3);
    const counts = movementCounts(roomy, scoring(after, NAMES, '2026-01-02'));
    expect(counts?.arrived).toEqual(joined(before, after, NAMES, NAMES).arrived);
  });

  it('gives up to 20 customers of each cell as examples, each of them in that cell', () => {
    const before = new Map<string, number>();
    const after = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      before.set(`k${i}`, i % 2);
      after.set(`k${i}`, i % 3 === 0 ? 1 : i % 2);
    }
    for (let i = 0; i < 12; i++) after.set(`n${i}`, 0);
    const ids = [...after.keys()];
    const counts = movementCounts(
      keptFrom(scoring(before, ['A', 'B'], '2026-01-01'), 0.05),
      scoring(after, ['A', 'B'], '2026-01-02'),
      { examples: 20 },
    )!;
    const members = (from: number | 'new', to: number) =>
      ids.filter(
        (id) => after.get(id) === to && (from === 'new' ? !before.has(id) : before.get(id) === from),
      );
    for (const [from, row] of [
      [0, 0],
      [1, 1],
      ['new', 2],
    ] as const)
      for (const to of [0, 1]) {
        const picked = counts.examples![row]![to]!.map((i) => ids[i]!);
        const cell = members(from, to);
        expect(new Set(picked).size).toBe(Math.min(20, cell.length));
        expect(picked.every((id) => cell.includes(id))).toBe(true);
      }
  });

  it('sorts keys by high half then low half, for any number of keys, ties and duplicates included', () => {
    for (const n of [0, 1, 2, 3, 10, 1000, 65_537]) {
      const next = random(n + 1);
      // Few distinct high halves in the small cases, so that ties on the high half are sorted by the low.
      const spread = n < 2000 ? 8 : 2 ** 32;
      const high = Uint32Array.from({ length: n }, () => Math.floor(next() * spread) * (2 ** 32 / spread));
      const low = Uint32Array.from({ length: n }, () => Math.floor(next() * 4));
      const { high: h, low: l, order } = sortKeys(high, low);
      const expected = Array.from({ length: n }, (_, i) => (BigInt(high[i]!) << 32n) | BigInt(low[i]!)).sort(
        (a, b) => (a < b ? -1 : a > b ? 1 : 0),
      );
      expect(Array.from({ length: n }, (_, i) => (BigInt(h[i]!) << 32n) | BigInt(l[i]!))).toEqual(expected);
      expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      for (let i = 0; i < n; i++) expect([high[order[i]!], low[order[i]!]]).toEqual([h[i], l[i]]);
    }
  });

  it('sorts keys settled while they come (merged as they grow) as it sorts them all at the end, stable on ties', () => {
    const next = random(7);
    const n = 200_000;
    // Few distinct keys per part in the first half (ties, and equal keys), random ones after.
    const high = Uint32Array.from({ length: n }, (_, i) =>
      i < n / 2 ? (Math.floor(next() * 16) * 0x11111111) >>> 0 : Math.floor(next() * 2 ** 32),
    );
    const low = Uint32Array.from({ length: n }, (_, i) => (i < n / 2 ? Math.floor(next() * 3) : i));
    const keyed = Array.from({ length: n }, (_, i) => ({
      key: (BigInt(high[i]!) << 32n) | BigInt(low[i]!),
      i,
    }));
    const segment = Uint8Array.from({ length: n }, () => Math.floor(next() * 11));
    // By key, then by index: the order in which equal keys were added.
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.i - b.i));
    for (const [share, least, batch] of [
      [0.125, 1024, 65_536],
      [0, 1, 997],
      [0.5, 16, 10_000],
    ] as const) {
      const buckets = new KeyBuckets(n / 4);
      for (let from = 0; from < n; from += batch) {
        const to = Math.min(n, from + batch);
        buckets.add(high, low, from, to, from);
        buckets.settle(share, least);
      }
      // In two halves, as the keys' thread and the main thread sort them, with each key's segment.
      const out = sortedKeysOf(n);
      const into = new Uint8Array(n);
      sortParts(buckets.parts(0, PARTS / 2), out, { from: segment, into });
      sortParts(buckets.parts(PARTS / 2, PARTS), out, { from: segment, into });
      expect(Array.from(out.order)).toEqual(keyed.map((k) => k.i));
      expect(Array.from(into)).toEqual(keyed.map((k) => segment[k.i]));
      expect(
        Array.from({ length: n }, (_, k) => (BigInt(out.high[k]!) << 32n) | BigInt(out.low[k]!)),
      ).toEqual(keyed.map((k) => k.key));
    }
  });

  it('adds the sketches of two halves of the keys up to the sketch of all of them', () => {
    const next = random(11);
    const n = 30_000;
    const high = Uint32Array.from({ length: n }, () => Math.floor(next() * 2 ** 32));
    const low = Uint32Array.from({ length: n }, () => Math.floor(next() * 2 ** 32));
    // A small sketch for so many keys: about 400 to a cell, so that counts wrap past 127.
    const layout = layoutFor(64);
    const whole = sketchOf(layout, high, low);
    const parts = addSketch(
      sketchOf(layout, high.subarray(0, 12_345), low.subarray(0, 12_345)),
      sketchOf(layout, high.subarray(12_345), low.subarray(12_345)),
    );
    expect(parts).toEqual(whole);
    expect(whole.count.some((c) => c < 0)).toBe(true);
  });

  it('gives the first n places of a room made beforehand, or fresh ones when it is too small', () => {
    const room = keyRoom(100);
    const fits = roomFor(60, room);
    expect(
      [fits.sorted.high, fits.sorted.low, fits.sorted.order, fits.segments, fits.given].map((a) => a.length),
    ).toEqual([60, 60, 60, 60, 60]);
    expect(fits.sorted.high.buffer).toBe(room.sorted.high.buffer);
    expect(fits.given.buffer).toBe(room.given.buffer);
    const fresh = roomFor(101, room);
    expect([fresh.sorted.order, fresh.segments, fresh.given].map((a) => a.length)).toEqual([101, 101, 101]);
    expect(fresh.sorted.high.buffer).not.toBe(room.sorted.high.buffer);
    expect(roomFor(5, undefined).segments.length).toBe(5);
  });

  it('counts customers who share a key (two ids, one 64-bit key) as one pair each', () => {
    // Keys as MurmurHash3 would give them, made up: 5 is held by two customers before and after, 9 by
    // two before and one after, 12 by one before and two after.
    const made = (keys: number[], segments: number[], date: string): Scored => {
      const { high, low, order } = sortKeys(
        Uint32Array.from(keys, (k) => k * 0x01000193),
        Uint32Array.from(keys),
      );
      return {
        date,
        names: NAMES,
        high,
        low,
        segments: Uint8Array.from(order, (i) => segments[i]!),
        source: order,
      };
    };
    const before = made([1, 5, 5, 9, 9, 12], [0, 1, 1, 2, 2, 3], '2026-01-01');
    const after = made([1, 5, 5, 9, 12, 12, 20], [0, 1, 1, 2, 3, 3, 4], '2026-01-02');
    const expected = {
      moved: NAMES.map((_, o) => NAMES.map((_, l) => (o === l ? ([1, 2, 1, 1, 0][o] ?? 0) : 0))),
      arrived: NAMES.map((_, l) => (l === 3 || l === 4 ? 1 : 0)),
      left: NAMES.map((_, o) => (o === 2 ? 1 : 0)),
    };
    for (const previous of [before, keptFrom(before, 0.5)]) {
      const counts = movementCounts(previous, after);
      expect(counts && { moved: counts.moved, arrived: counts.arrived, left: counts.left }).toEqual(expected);
    }
  });

  it('reads back every segment it stored, for any number of segments and customers', () => {
    for (const [segments, customers] of [
      [2, 1],
      [11, 999],
      [11, 1000],
      [20, 777],
      [200, 301],
    ] as const) {
      const names = Array.from({ length: segments }, (_, i) => `S${i}`);
      const next = random(segments * customers);
      const scores = new Map(
        Array.from({ length: customers }, (_, i) => [`c${i}`, Math.floor(next() * segments)] as const),
      );
      const kept = keptFrom(scoring(scores, names, '2026-01-01'), 0.05);
      // Split at odd places too: what is read back lies across chunks.
      const read = decodeKept('2026-01-01', names, rechunk(encodeKept(kept), [1, 6, 57, 300]));
      expect(Array.from(read.segments)).toEqual(Array.from(kept.segments));
      expect(read.sketch).toEqual(kept.sketch);
    }
  });

  it('keeps no per-customer segments for more than 256 segments (movement is then not counted)', () => {
    const names = Array.from({ length: 257 }, (_, i) => `S${i}`);
    expect(scoredFrom('2026-01-01', TextColumn.from(['a']), Uint16Array.from([256]), names)).toBeUndefined();
  });
});
