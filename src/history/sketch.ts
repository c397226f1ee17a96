/**
 * An invertible Bloom lookup table (IBLT) of 64-bit customer keys (the state's MurmurHash3 halves): per
 * cell, the keys' count and XOR and the XOR of a check of each. One sketch minus another holds only the
 * keys in one set and not the other, and lists them when they are few enough (about its capacity): who
 * arrived and who left between two scorings. Laid out as a binary fuse graph (Graf and Lemire, "Binary
 * Fuse Filters", 2022): a key's three cells are in three consecutive segments, the first following the
 * key's high half, so keys in key order touch the sketch front to back.
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
/** Mixed into a key's low half for its cells and check. */
const SEED = 0xa54ff53a;

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

/** A sketch's layout, and about how many keys it lists back. */
export interface SketchShape {
  layout: Layout;
  capacity: number;
}

/** The shape for `capacity`, or `previous` when it is as good: sketches of one layout subtract cell by cell. */
export function reusedLayout(capacity: number, previous: SketchShape | undefined): SketchShape {
  if (previous && previous.capacity >= capacity * 0.9 && previous.capacity <= capacity * 1.25)
    return previous;
  return { layout: layoutFor(Math.max(64, Math.ceil(capacity * 1.1))), capacity };
}

function emptySketch(layout: Layout): KeySketch {
  return {
    layout,
    count: new Int8Array(layout.cells),
    high: new Uint32Array(layout.cells),
    low: new Uint32Array(layout.cells),
    check: new Uint32Array(layout.cells),
  };
}

/** The sketch of these keys (in key order, the pass walks the sketch front to back). */
export function sketchOf(layout: Layout, high: Uint32Array, low: Uint32Array): KeySketch {
  const s = emptySketch(layout);
  const { count, high: xh, low: xl, check: xc } = s;
  const length = layout.segmentLength;
  const mask = length - 1;
  const spanned = (layout.segmentCount * length) / 16_777_216;
  // cellsOf and checkOf inline: a call per key would cost a third of the loop.
  for (let k = 0; k < high.length; k++) {
    const h = high[k]!;
    const l = low[k]!;
    const a = mix32(l ^ SEED);
    const c0 = Math.floor((h >>> 8) * spanned);
    const c1 = (c0 + length) ^ (a & mask);
    const c2 = (c0 + 2 * length) ^ ((Math.imul(a, 0x9e3779b1) >>> 14) & mask);
    const check = mix32(a ^ h);
    count[c0]!++;
    xh[c0]! ^= h;
    xl[c0]! ^= l;
    xc[c0]! ^= check;
    count[c1]!++;
    xh[c1]! ^= h;
    xl[c1]! ^= l;
    xc[c1]! ^= check;
    count[c2]!++;
    xh[c2]! ^= h;
    xl[c2]! ^= l;
    xc[c2]! ^= check;
  }
  return s;
}

/** `a` plus `b` (one layout), into `a`: the sketch of both sets of keys. */
export function addSketch(a: KeySketch, b: KeySketch): KeySketch {
  if (!sameLayout(a.layout, b.layout)) throw new Error('sketches of two layouts do not add');
  for (let c = 0; c < a.count.length; c++) {
    a.count[c]! += b.count[c]!;
    a.high[c]! ^= b.high[c]!;
    a.low[c]! ^= b.low[c]!;
    a.check[c]! ^= b.check[c]!;
  }
  return a;
}

/** `a` minus `b` (one layout), cell by cell: the keys only `a` holds (count 1) and only `b` holds (-1). */
export function difference(a: KeySketch, b: KeySketch): KeySketch {
  if (!sameLayout(a.layout, b.layout)) throw new Error('sketches of two layouts do not subtract');
  const d = emptySketch(a.layout);
  for (let c = 0; c < d.count.length; c++) {
    d.count[c] = a.count[c]! - b.count[c]!;
    d.high[c] = a.high[c]! ^ b.high[c]!;
    d.low[c] = a.low[c]! ^ b.low[c]!;
    d.check[c] = a.check[c]! ^ b.check[c]!;
  }
  return d;
}

export function sameLayout(a: Layout, b: Layout): boolean {
  return a.cells === b.cells && a.segmentLength === b.segmentLength && a.segmentCount === b.segmentCount;
}

/** A key's check: a pure cell (one key) holds the check of the key it holds. */
function checkOf(high: number, a: number): number {
  return mix32(a ^ high);
}

/** Adds (`sign` 1) or takes away (-1) a key. */
function sketchKey(s: KeySketch, high: number, low: number, sign: 1 | -1, cells: Uint32Array): void {
  const a = mix32(low ^ SEED);
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

/**
 * Lists the keys a sketch holds (count 1: added and not taken away) and lacks (count -1: taken away and
 * not added), emptying it. Undefined when they are too many for its size: the sketch does not peel.
 */
export function peel(s: KeySketch): { added: KeyList; taken: KeyList } | undefined {
  const size = s.layout.cells;
  const added: KeyList = { high: [], low: [] };
  const taken: KeyList = { high: [], low: [] };
  const pure = (c: number) =>
    (s.count[c] === 1 || s.count[c] === -1) && s.check[c] === checkOf(s.high[c]!, mix32(s.low[c]! ^ SEED));
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
