/**
 * 64-bit customer keys (two 32-bit halves, hash outputs) in key order: the order per-customer history
 * keeps segments in, so that a scoring's keys, less those that arrived and plus those that left, give
 * back the previous scoring's order without keeping any key.
 */

/** -1, 0 or 1 as key (ah, al) sorts before, with or after (bh, bl). */
export function compareKeys(ah: number, al: number, bh: number, bl: number): number {
  return ah !== bh ? (ah < bh ? -1 : 1) : al !== bl ? (al < bl ? -1 : 1) : 0;
}

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
 * Sorts keys by a counting sort on the high half's top 8 bits, then two 12-bit passes within each of the
 * 256 parts (each small enough to stay in cache), then by the low half where high halves tie (rare).
 */
export function sortKeys(inHigh: Uint32Array, inLow: Uint32Array): SortedKeys {
  const n = inHigh.length;
  const starts = new Uint32Array(TOP + 1);
  for (let i = 0; i < n; i++) starts[(inHigh[i]! >>> 24) + 1]!++;
  for (let b = 0; b < TOP; b++) starts[b + 1]! += starts[b]!;
  const next = starts.slice(0, TOP);
  const high = new Uint32Array(n);
  const low = new Uint32Array(n);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const h = inHigh[i]!;
    const p = next[h >>> 24]!++;
    high[p] = h;
    low[p] = inLow[i]!;
    order[p] = i;
  }
  let largest = 0;
  for (let b = 0; b < TOP; b++) largest = Math.max(largest, starts[b + 1]! - starts[b]!);
  const th = new Uint32Array(largest);
  const tl = new Uint32Array(largest);
  const to = new Uint32Array(largest);
  const count = new Uint32Array(PASS);
  for (let b = 0; b < TOP; b++) {
    const s = starts[b]!;
    const e = starts[b + 1]!;
    if (e - s < 2) continue;
    // Bits 0-11, from the part into the scratch arrays; bits 12-23, back.
    count.fill(0);
    for (let i = s; i < e; i++) count[high[i]! & (PASS - 1)]!++;
    for (let c = 0, at = 0; c < PASS; c++) {
      const v = count[c]!;
      count[c] = at;
      at += v;
    }
    for (let i = s; i < e; i++) {
      const h = high[i]!;
      const p = count[h & (PASS - 1)]!++;
      th[p] = h;
      tl[p] = low[i]!;
      to[p] = order[i]!;
    }
    count.fill(0);
    for (let i = 0; i < e - s; i++) count[(th[i]! >>> PASS_BITS) & (PASS - 1)]!++;
    for (let c = 0, at = s; c < PASS; c++) {
      const v = count[c]!;
      count[c] = at;
      at += v;
    }
    for (let i = 0; i < e - s; i++) {
      const h = th[i]!;
      const p = count[(h >>> PASS_BITS) & (PASS - 1)]!++;
      high[p] = h;
      low[p] = tl[i]!;
      order[p] = to[i]!;
    }
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
