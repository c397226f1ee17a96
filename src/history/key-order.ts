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
  /** How many of each part's first keys are in key order already (`KeyBuckets.settle`). */
  ordered: number[];
  /** Where the first part's keys go in the output. */
  at: number;
}

/**
 * Keys gathered into 256 parts by the top 8 bits of the high half as they come, then sorted part by
 * part: two 12-bit counting passes within each part (small enough to stay in cache), then by the low
 * half where high halves tie (rare). Keys can be added while a source is still read, and the parts are
 * in shared memory, so that two threads can sort half of them each. A thread that adds keys while a
 * source is read can also `settle` them as they come, so that the sort at the end is mostly one merge.
 */
export class KeyBuckets {
  private readonly high: Uint32Array[] = [];
  private readonly low: Uint32Array[] = [];
  private readonly index: Uint32Array[] = [];
  private readonly fill = new Uint32Array(TOP);
  private readonly ordered = new Uint32Array(TOP);
  private readonly scratch = new RunScratch();
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

  /**
   * Sorts each part's newest keys into its ordered first keys where they are at least `share` of them
   * (and `least` keys): merges that grow geometrically, so that settling costs a few passes over the keys
   * in all, however often it is called, and at most about `share` of each part is left to sort at the end.
   */
  settle(share = 0.125, least = 1024): void {
    const scratch = this.scratch;
    for (let b = 0; b < TOP; b++) {
      const p = this.ordered[b]!;
      const m = this.fill[b]!;
      const t = m - p;
      if (t < least || t < p * share) continue;
      const h = this.high[b]!;
      const l = this.low[b]!;
      const x = this.index[b]!;
      scratch.sort(h, l, x, p, m);
      // Backwards, in place: the larger of the two runs' last keys goes last (the newer on ties: stable).
      let i = p - 1;
      let j = t - 1;
      const [sh, sl, sx] = scratch.sorted();
      for (let k = m - 1; j >= 0; k--) {
        if (i >= 0 && (h[i]! > sh[j]! || (h[i] === sh[j] && l[i]! > sl[j]!))) {
          h[k] = h[i]!;
          l[k] = l[i]!;
          x[k] = x[i]!;
          i--;
        } else {
          h[k] = sh[j]!;
          l[k] = sl[j]!;
          x[k] = sx[j]!;
          j--;
        }
      }
      this.ordered[b] = m;
    }
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
      ordered: Array.from(this.ordered.subarray(first, end)),
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

/**
 * Room for up to `capacity` keys in key order with their segments, and for the segments by customer
 * that the caller hands over (`given`), in shared memory. `keyRoom` writes every page once, so that the
 * sort at the end, which fills them, does not wait on the system to map 14 bytes per customer: made
 * while a source is read, on a thread with time to spare, that saves the end 0.15 s per 5 M keys here.
 */
export interface KeyRoom {
  sorted: SortedKeys;
  segments: Uint8Array;
  given: Uint8Array;
}

export function keyRoom(capacity: number): KeyRoom {
  const room = {
    sorted: sortedKeysOf(capacity),
    segments: sharedBytes(capacity),
    given: sharedBytes(capacity),
  };
  for (const part of [room.sorted.high, room.sorted.low, room.sorted.order, room.segments, room.given])
    part.fill(0);
  return room;
}

/** The first n places of a room (fresh memory when it is too small, or none was made). */
export function roomFor(n: number, room: KeyRoom | undefined): KeyRoom {
  if (!room || room.segments.length < n)
    return { sorted: sortedKeysOf(n), segments: sharedBytes(n), given: sharedBytes(n) };
  const { high, low, order } = room.sorted;
  return {
    sorted: { high: high.subarray(0, n), low: low.subarray(0, n), order: order.subarray(0, n) },
    segments: room.segments.subarray(0, n),
    given: room.given.subarray(0, n),
  };
}

function sharedBytes(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}

/** Each key's segment, put in key order beside the keys: `into[k] = from[order[k]]`. */
export interface Gather {
  from: Uint8Array;
  into: Uint8Array;
}

/**
 * Sorts these parts' keys into their place in `out` (each part's keys go after the previous part's),
 * and gathers their segments when asked (part by part, while its indexes are in cache).
 */
export function sortParts(parts: BucketParts, out: SortedKeys, gather?: Gather): void {
  const { order } = out;
  let largest = 0;
  for (let p = 0; p < parts.fill.length; p++)
    if (parts.ordered[p] === 0) largest = Math.max(largest, parts.fill[p]!);
  const th = new Uint32Array(largest);
  const tl = new Uint32Array(largest);
  const to = new Uint32Array(largest);
  const count = new Uint32Array(PASS);
  const scratch = new RunScratch();
  let s = parts.at;
  for (let p = 0; p < parts.fill.length; p++) {
    const m = parts.fill[p]!;
    const bh = parts.high[p]!;
    const bl = parts.low[p]!;
    const bi = parts.index[p]!;
    const ordered = parts.ordered[p]!;
    if (ordered > 0) mergeInto(bh, bl, bi, ordered, m, scratch, out, s);
    else sortPart(bh, bl, bi, m, th, tl, to, count, out, s);
    if (gather) {
      const { from, into } = gather;
      for (let k = s; k < s + m; k++) into[k] = from[order[k]!]!;
    }
    s += m;
  }
}

/** A part's m keys, none in order yet, into `out` from `s`: two 12-bit counting passes, then ties by the low half. */
function sortPart(
  bh: Uint32Array,
  bl: Uint32Array,
  bi: Uint32Array,
  m: number,
  th: Uint32Array,
  tl: Uint32Array,
  to: Uint32Array,
  count: Uint32Array,
  out: SortedKeys,
  s: number,
): void {
  const { high, low, order } = out;
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
  // Equal high halves: about m² / 2^33 pairs.
  sortTies(high, low, order, s, s + m);
}

/** Keys [from, to), in order by their high halves, put in order by their low halves where those tie (rare): an insertion sort of each run. */
function sortTies(high: Uint32Array, low: Uint32Array, order: Uint32Array, from: number, to: number): void {
  for (let i = from + 1; i < to; i++) {
    if (high[i] !== high[i - 1]) continue;
    for (let j = i; j > from && high[j] === high[j - 1] && low[j]! < low[j - 1]!; j--) {
      const l = low[j]!;
      low[j] = low[j - 1]!;
      low[j - 1] = l;
      const o = order[j]!;
      order[j] = order[j - 1]!;
      order[j - 1] = o;
    }
  }
}

/**
 * A part's ordered first keys [0, ordered) merged with its other keys [ordered, m), sorted first, into
 * `out` from `at`; the ordered ones first on ties (they were added first).
 */
function mergeInto(
  h: Uint32Array,
  l: Uint32Array,
  x: Uint32Array,
  ordered: number,
  m: number,
  scratch: RunScratch,
  out: SortedKeys,
  at: number,
): void {
  const { high, low, order } = out;
  scratch.sort(h, l, x, ordered, m);
  const [sh, sl, sx] = scratch.sorted();
  const t = m - ordered;
  let i = 0;
  let j = 0;
  for (let k = at; k < at + m; k++) {
    if (j >= t || (i < ordered && (h[i]! < sh[j]! || (h[i] === sh[j] && l[i]! <= sl[j]!)))) {
      high[k] = h[i]!;
      low[k] = l[i]!;
      order[k] = x[i]!;
      i++;
    } else {
      high[k] = sh[j]!;
      low[k] = sl[j]!;
      order[k] = sx[j]!;
      j++;
    }
  }
}

/**
 * Sorts runs of a part's keys (a few thousand at most, usually) by the high half's low 24 bits and then
 * the low half: three 8-bit counting passes, stable, in two sets of scratch arrays that grow as needed.
 */
class RunScratch {
  private a = [new Uint32Array(0), new Uint32Array(0), new Uint32Array(0)] as const;
  private b = [new Uint32Array(0), new Uint32Array(0), new Uint32Array(0)] as const;
  private readonly count = new Uint32Array(256);
  private result: readonly [Uint32Array, Uint32Array, Uint32Array] = this.a;

  /** Keys [from, to) of these arrays, sorted; read them with `sorted()`. */
  sort(h: Uint32Array, l: Uint32Array, x: Uint32Array, from: number, to: number): void {
    const n = to - from;
    if (this.a[0].length < n) {
      const room = Math.max(n, this.a[0].length * 2);
      this.a = [new Uint32Array(room), new Uint32Array(room), new Uint32Array(room)];
      this.b = [new Uint32Array(room), new Uint32Array(room), new Uint32Array(room)];
    }
    const count = this.count;
    let [fh, fl, fx] = [h, l, x];
    let start = from;
    let [th, tl, tx] = this.a;
    for (let shift = 0; shift < 24; shift += 8) {
      count.fill(0);
      for (let i = start; i < start + n; i++) count[(fh[i]! >>> shift) & 255]!++;
      for (let c = 0, at = 0; c < 256; c++) {
        const v = count[c]!;
        count[c] = at;
        at += v;
      }
      for (let i = start; i < start + n; i++) {
        const k = fh[i]!;
        const q = count[(k >>> shift) & 255]!++;
        th[q] = k;
        tl[q] = fl[i]!;
        tx[q] = fx[i]!;
      }
      [fh, fl, fx] = [th, tl, tx];
      start = 0;
      [th, tl, tx] = th === this.a[0] ? this.b : this.a;
    }
    sortTies(fh, fl, fx, 0, n);
    this.result = fh === this.a[0] ? this.a : this.b;
  }

  /** The keys `sort` sorted: high halves, low halves, indexes (valid up to the run's length). */
  sorted(): readonly [Uint32Array, Uint32Array, Uint32Array] {
    return this.result;
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
