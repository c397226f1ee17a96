/**
 * 64-bit customer keys (two 32-bit halves, hash outputs) in key order: the order per-customer history
 * keeps segments in, so that a scoring's keys, less those that arrived and plus those that left, give
 * back the previous scoring's order without keeping any key.
 */

import type { TextColumn } from '../source/text.js';
import { keyHalves } from '../record/keys.js';

/** Keys sorted, with each one's index in the input (`order`). */
export interface SortedKeys {
  high: Uint32Array;
  low: Uint32Array;
  order: Uint32Array;
}

/** Parts the keys are gathered in, by the top 8 bits of their high half. */
export const PARTS = 256;
const TOP = PARTS;
const PASS_BITS = 12;
const PASS = 1 << PASS_BITS;

/** Some of a KeyBuckets' parts, as another thread sorts them (the memory is shared). */
export interface BucketParts {
  high: Uint32Array[];
  low: Uint32Array[];
  index: Uint32Array[];
  fill: number[];
  /** Where the first part's keys go in the output. */
  at: number;
}

/**
 * Keys gathered into 256 parts by the top 8 bits of the high half as they come, then sorted part by
 * part: two 12-bit counting passes within each part (small enough to stay in cache), then by the low
 * half where high halves tie (rare). Keys can be added while a source is still read, and the parts are
 * in shared memory, so that two threads can sort half of them each.
 */
export class KeyBuckets {
  private readonly high: Uint32Array[] = [];
  private readonly low: Uint32Array[] = [];
  private readonly index: Uint32Array[] = [];
  private readonly fill = new Uint32Array(TOP);
  private added = 0;

  /** `expected`: about how many keys will come (parts grow past it, at the cost of a copy). */
  constructor(expected: number) {
    const room = Math.max(16, Math.ceil((expected / TOP) * 1.1));
    for (let b = 0; b < TOP; b++) {
      this.high.push(shared(room));
      this.low.push(shared(room));
      this.index.push(shared(room));
    }
  }

  get size(): number {
    return this.added;
  }

  /** Adds keys [from, to) of these arrays; the k-th has index `first + k - from`. */
  add(high: Uint32Array, low: Uint32Array, from: number, to: number, first: number): void {
    const fill = this.fill;
    for (let k = from; k < to; k++) {
      const h = high[k]!;
      const b = h >>> 24;
      const at = fill[b]!;
      if (at === this.high[b]!.length) this.grow(b);
      this.high[b]![at] = h;
      this.low[b]![at] = low[k]!;
      this.index[b]![at] = first + k - from;
      fill[b] = at + 1;
    }
    this.added += to - from;
  }

  private grow(b: number): void {
    for (const parts of [this.high, this.low, this.index]) {
      const bigger = shared(parts[b]!.length * 2);
      bigger.set(parts[b]!);
      parts[b] = bigger;
    }
  }

  /** Parts [first, end), with where their keys go in the output. */
  parts(first: number, end: number): BucketParts {
    let at = 0;
    for (let b = 0; b < first; b++) at += this.fill[b]!;
    return {
      high: this.high.slice(first, end),
      low: this.low.slice(first, end),
      index: this.index.slice(first, end),
      fill: Array.from(this.fill.subarray(first, end)),
      at,
    };
  }

  /** Every key added, sorted, with its index (`order`), in shared memory. */
  sorted(): SortedKeys {
    const out = sortedKeysOf(this.added);
    sortParts(this.parts(0, TOP), out);
    return out;
  }
}

function shared(length: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(4 * length));
}

/** Room for n sorted keys, in shared memory. */
export function sortedKeysOf(n: number): SortedKeys {
  return { high: shared(n), low: shared(n), order: shared(n) };
}

/** Sorts these parts' keys into their place in `out` (each part's keys go after the previous part's). */
export function sortParts(parts: BucketParts, out: SortedKeys): void {
  const { high, low, order } = out;
  let largest = 0;
  for (const m of parts.fill) largest = Math.max(largest, m);
  const th = new Uint32Array(largest);
  const tl = new Uint32Array(largest);
  const to = new Uint32Array(largest);
  const count = new Uint32Array(PASS);
  let s = parts.at;
  for (let p = 0; p < parts.fill.length; p++) {
    const m = parts.fill[p]!;
    const bh = parts.high[p]!;
    const bl = parts.low[p]!;
    const bi = parts.index[p]!;
    // Bits 0-11, from the part into the scratch arrays; bits 12-23, into place.
    count.fill(0);
    for (let i = 0; i < m; i++) count[bh[i]! & (PASS - 1)]!++;
    for (let c = 0, at = 0; c < PASS; c++) {
      const v = count[c]!;
      count[c] = at;
      at += v;
    }
    for (let i = 0; i < m; i++) {
      const h = bh[i]!;
      const q = count[h & (PASS - 1)]!++;
      th[q] = h;
      tl[q] = bl[i]!;
      to[q] = bi[i]!;
    }
    count.fill(0);
    for (let i = 0; i < m; i++) count[(th[i]! >>> PASS_BITS) & (PASS - 1)]!++;
    for (let c = 0, at = s; c < PASS; c++) {
      const v = count[c]!;
      count[c] = at;
      at += v;
    }
    for (let i = 0; i < m; i++) {
      const h = th[i]!;
      const q = count[(h >>> PASS_BITS) & (PASS - 1)]!++;
      high[q] = h;
      low[q] = tl[i]!;
      order[q] = to[i]!;
    }
    // Equal high halves (about m² / 2^33 pairs): insertion sort of each run by the low half.
    for (let i = s + 1; i < s + m; i++) {
      if (high[i] !== high[i - 1]) continue;
      for (let j = i; j > s && high[j] === high[j - 1] && low[j]! < low[j - 1]!; j--) {
        const l = low[j]!;
        low[j] = low[j - 1]!;
        low[j - 1] = l;
        const o = order[j]!;
        order[j] = order[j - 1]!;
        order[j - 1] = o;
      }
    }
    s += m;
  }
}

/** Keys sorted, each with its index in the input. */
export function sortKeys(high: Uint32Array, low: Uint32Array): SortedKeys {
  const buckets = new KeyBuckets(high.length);
  buckets.add(high, low, 0, high.length, 0);
  return buckets.sorted();
}

/** The keys of ids [from, to) (MurmurHash3 halves of each id's bytes), into `high` and `low` from 0. */
export function hashIds(
  ids: TextColumn,
  from: number,
  to: number,
  high: Uint32Array,
  low: Uint32Array,
): void {
  const halves = new Uint32Array(2);
  ids.each(
    (bytes, start, end, i) => {
      keyHalves(bytes, start, end, halves);
      high[i - from] = halves[0]!;
      low[i - from] = halves[1]!;
    },
    from,
    to,
  );
}
