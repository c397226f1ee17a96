/**
 * Two compact structures over 64-bit customer keys (the state's MurmurHash3 halves), both laid out as
 * binary fuse graphs (Graf and Lemire, "Binary Fuse Filters", 2022): each key touches three cells in
 * three consecutive segments of the table, and the segment follows the key's high half (a hash output,
 * so uniform), so keys visited in order of their high halves touch the tables front to back.
 *
 * - `SegmentTable` (a retrieval table, "static function"): a key's segment index is the XOR of its three
 *   cells. About 1.125 cells of `bits` each per key, and nothing of the key itself: asked about a key it
 *   was not built from, it answers a meaningless segment, so it is asked only about keys known to be in.
 * - `KeySketch` (an invertible Bloom lookup table): the keys' XOR and a check per cell, with a count.
 *   One sketch minus another holds only the keys in one set and not the other, and lists them when they
 *   are few enough (about `capacity`): who arrived and who left between two scorings.
 */

/** A good 32-bit mixer (lowbias32, Chris Wellons): every output bit depends on every input bit. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const MAX_SEGMENT_LENGTH = 1 << 18;

/** The shape of a binary fuse table for `size` keys (3-wise; the paper's parameters). */
export interface Layout {
  segmentLength: number;
  segmentCount: number;
  cells: number;
}

export function layoutFor(size: number): Layout {
  const segmentLength =
    size < 2 ? 4 : Math.min(MAX_SEGMENT_LENGTH, 2 ** Math.floor(Math.log(size) / Math.log(3.33) + 2.25));
  const factor = size < 2 ? 3 : Math.max(1.125, 0.875 + (0.25 * Math.log(1e6)) / Math.log(size));
  const capacity = Math.round(size * factor);
  const segmentCount = Math.max(1, Math.ceil(capacity / segmentLength) - 2);
  return { segmentLength, segmentCount, cells: (segmentCount + 2) * segmentLength };
}

/**
 * The three cells of a key: the first from its high half (exact: 24 bits times fewer than 2^29 cells
 * stay within a float64's integers), the other two one and two segments on, moved within their segment
 * by two sets of bits of `a` (a seeded mix of the key's low half).
 */
function cellsOf(layout: Layout, high: number, a: number, out: Uint32Array): void {
  const length = layout.segmentLength;
  const mask = length - 1;
  const h0 = Math.floor((high >>> 8) * ((layout.segmentCount * length) / 16_777_216));
  out[0] = h0;
  out[1] = ((h0 + length) ^ (a & mask)) >>> 0;
  out[2] = ((h0 + 2 * length) ^ ((Math.imul(a, 0x9e3779b1) >>> 14) & mask)) >>> 0;
}

/**
 * Where each key goes when keys are put in the order the tables are best walked in: a counting sort on
 * the top 8 bits of the high half (as coarse as a table's segments from about 50 M keys, so each table
 * is then walked front to back; coarse, so that the scatter writes few places at once). Returns each
 * key's new position.
 */
/** Walk buckets: keys in walk order are grouped by the top 8 bits of their high half. */
export const WALK_BUCKETS = 256;

export function walkPositions(high: Uint32Array): Uint32Array {
  const n = high.length;
  const next = new Uint32Array(WALK_BUCKETS);
  for (let i = 0; i < n; i++) next[high[i]! >>> 24]!++;
  for (let t = 0, at = 0; t < WALK_BUCKETS; t++) {
    const c = next[t]!;
    next[t] = at;
    at += c;
  }
  const position = new Uint32Array(n);
  for (let i = 0; i < n; i++) position[i] = next[high[i]! >>> 24]!++;
  return position;
}

export interface SegmentTable {
  layout: Layout;
  seed: number;
  /** Bits per cell: enough for the largest segment index. */
  bits: number;
  /** One byte per cell in memory; packed to `bits` when stored. */
  values: Uint8Array;
}

export function bitsFor(segments: number): number {
  return Math.max(1, Math.ceil(Math.log2(Math.max(2, segments))));
}

/** The segment index stored for a key; meaningless for a key the table was not built from. */
export function segmentIn(table: SegmentTable, high: number, low: number, cells: Uint32Array): number {
  cellsOf(table.layout, high, mix32(low ^ table.seed), cells);
  const v = table.values;
  return v[cells[0]!]! ^ v[cells[1]!]! ^ v[cells[2]!]!;
}

/**
 * Builds the retrieval table of keys → values (`values[i] < 2^bits`), fastest with the keys in walk
 * order (`walkPositions`: each pass then walks the table front to back). Keys must be distinct; the same key twice (two
 * ids with one 64-bit key: about once in 10^5 shops of 10 M customers) is kept once, and both customers
 * then count as the first one's segment.
 */
export function buildSegmentTable(
  high: Uint32Array,
  low: Uint32Array,
  values: Uint8Array,
  bits: number,
): SegmentTable {
  const layout = layoutFor(high.length);
  for (let attempt = 0; attempt < 40; attempt++) {
    // After a few failures the keys are checked for duplicates, which no seed can place.
    if (attempt === 4) ({ high, low, values } = distinctKeys(high, low, values));
    const seed = mix32(0x9e3779b9 + attempt);
    const table = tryBuild(high, low, values, bits, layout, seed);
    if (table) return table;
  }
  throw new Error(`could not build the per-customer segment table for ${high.length} customers`);
}

function tryBuild(
  high: Uint32Array,
  low: Uint32Array,
  values: Uint8Array,
  bits: number,
  layout: Layout,
  seed: number,
): SegmentTable | undefined {
  const n = high.length;
  const size = layout.cells;
  const length = layout.segmentLength;
  const mask = length - 1;
  const spanned = (layout.segmentCount * length) / 16_777_216;
  // The hot loops below compute a key's cells as cellsOf does, inline (a call per key costs a third).
  // Per cell: 4 × how many keys touch it, plus the XOR of which of their three cells it is (0, 1, 2).
  const count = new Uint8Array(size);
  const xorKey = new Uint32Array(size);
  for (let k = 0; k < n; k++) {
    const a = mix32(low[k]! ^ seed);
    const c0 = Math.floor((high[k]! >>> 8) * spanned);
    const c1 = (c0 + length) ^ (a & mask);
    const c2 = (c0 + 2 * length) ^ ((Math.imul(a, 0x9e3779b1) >>> 14) & mask);
    const w0 = count[c0]!;
    const w1 = count[c1]!;
    const w2 = count[c2]!;
    if (w0 >= 252 || w1 >= 252 || w2 >= 252) return undefined; // 63 keys in one cell: another seed
    count[c0] = w0 + 4;
    count[c1] = (w1 + 4) ^ 1;
    count[c2] = (w2 + 4) ^ 2;
    xorKey[c0]! ^= k;
    xorKey[c1]! ^= k;
    xorKey[c2]! ^= k;
  }
  // Peel: a cell touched by one key fixes that key last; remove the key and look again.
  const queue = new Uint32Array(size);
  let queued = 0;
  for (let c = 0; c < size; c++) if (count[c]! >> 2 === 1) queue[queued++] = c;
  const stackKey = new Uint32Array(n);
  const stackCell = new Uint8Array(n);
  let stacked = 0;
  while (queued > 0) {
    const c = queue[--queued]!;
    if (count[c]! >> 2 !== 1) continue;
    const k = xorKey[c]!;
    const found = count[c]! & 3;
    stackKey[stacked] = k;
    stackCell[stacked++] = found;
    count[c] = 0;
    xorKey[c] = 0;
    const a = mix32(low[k]! ^ seed);
    const c0 = Math.floor((high[k]! >>> 8) * spanned);
    // The key's two cells other than `c`.
    const other1 = found === 0 ? (c0 + length) ^ (a & mask) : c0;
    const j1 = found === 0 ? 1 : 0;
    const other2 =
      found === 2
        ? (c0 + length) ^ (a & mask)
        : (c0 + 2 * length) ^ ((Math.imul(a, 0x9e3779b1) >>> 14) & mask);
    const j2 = found === 2 ? 1 : 2;
    const v1 = (count[other1]! - 4) ^ j1;
    count[other1] = v1;
    xorKey[other1]! ^= k;
    if (v1 >> 2 === 1) queue[queued++] = other1;
    const v2 = (count[other2]! - 4) ^ j2;
    count[other2] = v2;
    xorKey[other2]! ^= k;
    if (v2 >> 2 === 1) queue[queued++] = other2;
  }
  if (stacked !== n) return undefined;
  const table = new Uint8Array(size);
  for (let s = n - 1; s >= 0; s--) {
    const k = stackKey[s]!;
    const a = mix32(low[k]! ^ seed);
    const c0 = Math.floor((high[k]! >>> 8) * spanned);
    const c1 = (c0 + length) ^ (a & mask);
    const c2 = (c0 + 2 * length) ^ ((Math.imul(a, 0x9e3779b1) >>> 14) & mask);
    // The cell found last for the key is still 0: the XOR of all three leaves the other two.
    const target = stackCell[s] === 0 ? c0 : stackCell[s] === 1 ? c1 : c2;
    table[target] = values[k]! ^ table[c0]! ^ table[c1]! ^ table[c2]!;
  }
  return { layout, seed, bits, values: table };
}

/** The keys without their second and later copies (a map of keys seen; rare, so not fast). */
function distinctKeys(
  high: Uint32Array,
  low: Uint32Array,
  values: Uint8Array,
): { high: Uint32Array; low: Uint32Array; values: Uint8Array } {
  const seen = new KeyTable(high.length);
  const kept: number[] = [];
  for (let i = 0; i < high.length; i++) if (seen.add(high[i]!, low[i]!, i)) kept.push(i);
  if (kept.length === high.length) return { high, low, values };
  return {
    high: Uint32Array.from(kept, (i) => high[i]!),
    low: Uint32Array.from(kept, (i) => low[i]!),
    values: Uint8Array.from(kept, (i) => values[i]!),
  };
}

/**
 * An open-addressing table of 64-bit keys to customer indexes (or any 32-bit value), for exact joins
 * of two scorings in memory and for small sets of keys.
 */
export class KeyTable {
  private readonly high: Uint32Array;
  private readonly low: Uint32Array;
  private readonly value: Int32Array;
  private readonly mask: number;

  constructor(expected: number) {
    let size = 16;
    while (size < expected * 2) size *= 2;
    this.high = new Uint32Array(size);
    this.low = new Uint32Array(size);
    this.value = new Int32Array(size).fill(-1);
    this.mask = size - 1;
  }

  /** Empties the table. */
  clear(): void {
    this.value.fill(-1);
  }

  /** Adds the key with its value; false when the key was there already (its first value is kept). */
  add(high: number, low: number, value: number): boolean {
    let slot = mix32(low ^ high) & this.mask;
    while (this.value[slot]! !== -1) {
      if (this.high[slot] === high && this.low[slot] === low) return false;
      slot = (slot + 1) & this.mask;
    }
    this.high[slot] = high;
    this.low[slot] = low;
    this.value[slot] = value;
    return true;
  }

  /** The key's value, or -1. */
  get(high: number, low: number): number {
    let slot = mix32(low ^ high) & this.mask;
    for (;;) {
      const v = this.value[slot]!;
      if (v === -1 || (this.high[slot] === high && this.low[slot] === low)) return v;
      slot = (slot + 1) & this.mask;
    }
  }
}

/** Keys one sketch holds and another does not, as listed by `peel`. */
export interface KeyList {
  high: number[];
  low: number[];
}

export interface KeySketch {
  layout: Layout;
  /** Per cell: how many keys (mod 256, signed), the XOR of their halves, and the XOR of their checks. */
  count: Int8Array;
  high: Uint32Array;
  low: Uint32Array;
  check: Uint32Array;
}

/** Keys per customer the sketch can list back, as a share of the customers it was built for. */
export function sketchFor(capacity: number): KeySketch {
  const layout = layoutFor(Math.max(64, Math.ceil(capacity * 1.1)));
  return {
    layout,
    count: new Int8Array(layout.cells),
    high: new Uint32Array(layout.cells),
    low: new Uint32Array(layout.cells),
    check: new Uint32Array(layout.cells),
  };
}

/** A key's check: a pure cell (one key) holds the check of the key it holds. */
function checkOf(high: number, a: number): number {
  return mix32(a ^ high);
}

/** Adds (`sign` 1) or takes away (-1) a key. */
export function sketchKey(s: KeySketch, high: number, low: number, sign: 1 | -1, cells: Uint32Array): void {
  const a = mix32(low ^ 0xa54ff53a);
  cellsOf(s.layout, high, a, cells);
  const check = checkOf(high, a);
  for (let j = 0; j < 3; j++) {
    const c = cells[j]!;
    s.count[c]! += sign;
    s.high[c]! ^= high;
    s.low[c]! ^= low;
    s.check[c]! ^= check;
  }
}

export function copySketch(s: KeySketch): KeySketch {
  return {
    layout: s.layout,
    count: s.count.slice(),
    high: s.high.slice(),
    low: s.low.slice(),
    check: s.check.slice(),
  };
}

/**
 * Lists the keys a sketch holds (count 1: added and not taken away) and lacks (count -1: taken away and
 * not added), emptying it. Undefined when they are too many for its size: the sketch does not peel.
 */
export function peel(s: KeySketch): { added: KeyList; taken: KeyList } | undefined {
  const size = s.layout.cells;
  const added: KeyList = { high: [], low: [] };
  const taken: KeyList = { high: [], low: [] };
  const pure = (c: number) =>
    (s.count[c] === 1 || s.count[c] === -1) &&
    s.check[c] === checkOf(s.high[c]!, mix32(s.low[c]! ^ 0xa54ff53a));
  const queue: number[] = [];
  for (let c = 0; c < size; c++) if (pure(c)) queue.push(c);
  const cells = new Uint32Array(3);
  while (queue.length > 0) {
    const c = queue.pop()!;
    if (!pure(c)) continue;
    const high = s.high[c]!;
    const low = s.low[c]!;
    const sign = s.count[c]! as 1 | -1;
    const list = sign === 1 ? added : taken;
    list.high.push(high);
    list.low.push(low);
    if (list.high.length > size) return undefined;
    sketchKey(s, high, low, sign === 1 ? -1 : 1, cells);
    for (let j = 0; j < 3; j++) if (pure(cells[j]!)) queue.push(cells[j]!);
  }
  for (let c = 0; c < size; c++)
    if (s.count[c] !== 0 || s.high[c] !== 0 || s.low[c] !== 0 || s.check[c] !== 0) return undefined;
  return { added, taken };
}
