/**
 * 64-bit customer keys (two 32-bit halves, hash outputs) in key order: the order per-customer history
 * keeps segments in, so that a scoring's keys, less those that arrived and plus those that left, give
 * back the previous scoring's order without keeping any key.
 */

/** Keys sorted, with each one's index in the input (`order`). */
export interface SortedKeys {
  high: Uint32Array;
  low: Uint32Array;
  order: Uint32Array;
}

const TOP = 256;
const PASS_BITS = 12;
const PASS = 1 << PASS_BITS;

/**
 * Keys gathered into 256 parts by the top 8 bits of the high half as they come, then sorted part by
 * part: two 12-bit counting passes within each part (small enough to stay in cache), then by the low
 * half where high halves tie (rare). Keys can be added while a source is still read.
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
      this.high.push(new Uint32Array(room));
      this.low.push(new Uint32Array(room));
      this.index.push(new Uint32Array(room));
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
      const bigger = new Uint32Array(parts[b]!.length * 2);
      bigger.set(parts[b]!);
      parts[b] = bigger;
    }
  }

  /**
   * Every key added, sorted, with its index (`order`); the parts are released as they are sorted.
   * `shared`: in shared memory, for another thread to read.
   */
  sorted(shared = false): SortedKeys {
    const n = this.added;
    const array = () => new Uint32Array(shared ? new SharedArrayBuffer(4 * n) : new ArrayBuffer(4 * n));
    const high = array();
    const low = array();
    const order = array();
    let largest = 0;
    for (let b = 0; b < TOP; b++) largest = Math.max(largest, this.fill[b]!);
    const th = new Uint32Array(largest);
    const tl = new Uint32Array(largest);
    const to = new Uint32Array(largest);
    const count = new Uint32Array(PASS);
    let s = 0;
    for (let b = 0; b < TOP; b++) {
      const m = this.fill[b]!;
      const bh = this.high[b]!;
      const bl = this.low[b]!;
      const bi = this.index[b]!;
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
        const p = count[h & (PASS - 1)]!++;
        th[p] = h;
        tl[p] = bl[i]!;
        to[p] = bi[i]!;
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
        const p = count[(h >>> PASS_BITS) & (PASS - 1)]!++;
        high[p] = h;
        low[p] = tl[i]!;
        order[p] = to[i]!;
      }
      s += m;
      this.high[b] = this.low[b] = this.index[b] = EMPTY;
    }
    // Equal high halves (about n² / 2^33 pairs): insertion sort of each run by the low half.
    for (let i = 1; i < n; i++) {
      if (high[i] !== high[i - 1]) continue;
      for (let j = i; j > 0 && high[j] === high[j - 1] && low[j]! < low[j - 1]!; j--) {
        const l = low[j]!;
        low[j] = low[j - 1]!;
        low[j - 1] = l;
        const o = order[j]!;
        order[j] = order[j - 1]!;
        order[j - 1] = o;
      }
    }
    return { high, low, order };
  }
}

const EMPTY = new Uint32Array(0);

/** Keys sorted, each with its index in the input. */
export function sortKeys(high: Uint32Array, low: Uint32Array): SortedKeys {
  const buckets = new KeyBuckets(high.length);
  buckets.add(high, low, 0, high.length, 0);
  return buckets.sorted();
}
