import type { TextColumn } from '../source/text.js';
import { hashIds, sortKeys, type SortedKeys } from './key-order.js';
import {
  difference,
  peel,
  reusedLayout,
  sameLayout,
  sketchOf,
  type KeyList,
  type KeySketch,
  type Layout,
  type SketchShape,
} from './sketch.js';

/**
 * Each customer's segment in one scoring, in memory: a key per customer (the state's two MurmurHash3
 * digests of the id, so no id is kept) and the segment, in key order (`sortKeys`), with each customer's
 * place in the source.
 */
export interface Scored {
  /** The analysis date, YYYY-MM-DD. */
  readonly date: string;
  /** Segment names; `segments` holds indexes into them. */
  readonly names: readonly string[];
  readonly high: Uint32Array;
  readonly low: Uint32Array;
  readonly segments: Uint8Array;
  /** Each customer's index in the scoring (its source order). */
  readonly source: Uint32Array;
}

/**
 * What the latest snapshot keeps of its customers, to count the next movement: about 1.3 bytes per
 * customer, none of them a customer's key. Each customer's segment, in key order, and a sketch of the
 * keys: the next scoring lists who arrived and who left since from the sketch (when they are at most
 * about `capacity` customers), so its keys without the arrivals and with the departures are this
 * scoring's keys, whose order tells whose segment is whose.
 */
export interface Kept {
  readonly date: string;
  readonly names: readonly string[];
  readonly customers: number;
  /** How many customers may arrive or leave before the next scoring for its movement to be counted. */
  readonly capacity: number;
  /** Bits per stored segment: enough for the largest segment index. */
  readonly bits: number;
  /** Each customer's segment index, in key order. */
  readonly segments: Uint8Array;
  readonly sketch: KeySketch;
}

/** Segment indexes are bytes. */
export const MAX_SEGMENTS = 256;
/** The default share of customers that may arrive or leave between two scorings (history.movement_capacity). */
export const DEFAULT_CAPACITY_SHARE = 0.05;

export function bitsFor(segments: number): number {
  return Math.max(1, Math.ceil(Math.log2(Math.max(2, segments))));
}

/**
 * The customers' keys and segments; undefined when there are too many segments to keep. `followed`:
 * their keys, and segments in key order, made already (by a `KeyFollower`).
 */
export function scoredFrom(
  date: string,
  ids: TextColumn,
  segment: Uint16Array,
  names: readonly string[],
  followed?: { sorted: SortedKeys; segments: Uint8Array },
): Scored | undefined {
  if (names.length > MAX_SEGMENTS) return undefined;
  if (followed) {
    const { high, low, order } = followed.sorted;
    return { date, names, high, low, segments: followed.segments, source: order };
  }
  const n = segment.length;
  const { high, low, order } = keysOf(ids);
  const segments = new Uint8Array(n);
  for (let k = 0; k < n; k++) segments[k] = segment[order[k]!]!;
  return { date, names, high, low, segments, source: order };
}

/** The ids' keys, sorted. */
function keysOf(ids: TextColumn): SortedKeys {
  const high = new Uint32Array(ids.length);
  const low = new Uint32Array(ids.length);
  hashIds(ids, 0, ids.length, high, low);
  return sortKeys(high, low);
}

/**
 * What the latest snapshot keeps of a scoring, with a sketch of this shape (a capacity share: a fresh
 * one; `reusedLayout` keeps the kept one's, so that the next movement subtracts them cell by cell).
 * `sketch`: one made already of these keys, used when it has that layout.
 */
export function keptFrom(scored: Scored, shape: number | SketchShape, sketch?: KeySketch): Kept {
  const n = scored.segments.length;
  const { layout, capacity } =
    typeof shape === 'number' ? reusedLayout(Math.ceil(shape * n), undefined) : shape;
  return {
    date: scored.date,
    names: scored.names,
    customers: n,
    capacity,
    bits: bitsFor(scored.names.length),
    segments: scored.segments,
    sketch: sketch && sameLayout(sketch.layout, layout) ? sketch : sketchOf(layout, scored.high, scored.low),
  };
}

/** Customers per (previous segment, current segment), with `new` and `gone`. */
export interface MovementCounts {
  /** counts[from][to]: indexes into the previous and current names; customers in both scorings. */
  moved: number[][];
  /** Per current segment: customers the previous scoring did not have. */
  arrived: number[];
  /** Per previous segment: customers the current scoring does not have. */
  left: number[];
  /**
   * Up to `examples` customers (indexes into the current scoring) per moved cell ([from][to]) and per
   * arrived segment (row `previous.names.length`), a pick that follows no customer order (key order);
   * only when the current scoring is the one in memory. Customers who left have no id, so no examples.
   */
  examples?: number[][][];
  /** The sketch of the scoring in memory made to count against a kept one (`keptFrom` reuses it). */
  sketch?: KeySketch;
}

/**
 * The movement from one scoring to the next, when at least one of them is in memory. Exact when it is
 * counted; undefined when more customers arrived or left than the kept scoring's sketch can list (its
 * `capacity`).
 */
export function movementCounts(
  previous: Scored | Kept,
  current: Scored | Kept,
  options: CountOptions = {},
): MovementCounts | undefined {
  if (isScored(current)) return countAgainst(current, previous, true, options);
  if (isScored(previous)) return countAgainst(previous, current, false, options);
  throw new Error('movement needs one of the two scorings in memory');
}

interface CountOptions {
  /** Up to this many examples per cell. */
  examples?: number;
  /** The sketch of the scoring in memory, made already: used when in the kept one's layout. */
  sketch?: KeySketch | undefined;
}

/** Whether a scoring is the one in memory (every customer's key), not what a snapshot kept. */
export function isScored(s: Scored | Kept): s is Scored {
  return 'high' in s;
}

/** A short list of keys as typed arrays, in key order: four stable 16-bit counting passes, low half first. */
function sortedList(list: KeyList): { high: Uint32Array; low: Uint32Array } {
  const n = list.high.length;
  let high = Uint32Array.from(list.high);
  let low = Uint32Array.from(list.low);
  let th = new Uint32Array(n);
  let tl = new Uint32Array(n);
  const count = new Uint32Array(1 << 16);
  for (let pass = 0; pass < 4; pass++) {
    const shift = (pass & 1) * 16;
    const by = pass < 2 ? low : high;
    count.fill(0);
    for (let i = 0; i < n; i++) count[(by[i]! >>> shift) & 0xffff]!++;
    for (let c = 0, at = 0; c < count.length; c++) {
      const v = count[c]!;
      count[c] = at;
      at += v;
    }
    for (let i = 0; i < n; i++) {
      const q = count[(by[i]! >>> shift) & 0xffff]!++;
      th[q] = high[i]!;
      tl[q] = low[i]!;
    }
    [high, th] = [th, high];
    [low, tl] = [tl, low];
  }
  return { high, low };
}

/**
 * Walks the scoring in memory (`listed`) in key order beside the other one's customers in key order.
 * `forward`: listed is the current scoring; otherwise the previous.
 */
function countAgainst(
  listed: Scored,
  other: Scored | Kept,
  forward: boolean,
  options: CountOptions,
): MovementCounts | undefined {
  const ls = listed.names.length;
  const os = other.names.length;
  const tally = new Tally(os, ls, forward ? (options.examples ?? 0) : 0);
  const { high, low, segments, source } = listed;
  const n = segments.length;
  const { cells, room } = tally;
  const onlyOther = new Float64Array(os);
  let sketch: KeySketch | undefined;
  if (isScored(other)) {
    // Both in memory (a backfill's dates in a row): a merge of the two key orders.
    const { high: oh, low: ol, segments: theirs } = other;
    const m = theirs.length;
    let j = 0;
    for (let i = 0; i < n; i++) {
      const h = high[i]!;
      const l = low[i]!;
      while (j < m && (oh[j]! < h || (oh[j] === h && ol[j]! < l))) onlyOther[theirs[j++]!]!++;
      const o = j < m && oh[j] === h && ol[j] === l ? theirs[j++]! : os;
      const cell = o * ls + segments[i]!;
      cells[cell]!++;
      if (room[cell]! > 0) tally.example(cell, source[i]!);
    }
    while (j < m) onlyOther[theirs[j++]!]!++;
  } else {
    sketch =
      options.sketch && sameLayout(options.sketch.layout, other.sketch.layout)
        ? options.sketch
        : sketchOf(other.sketch.layout, high, low);
    const listedOut = peel(difference(other.sketch, sketch));
    if (!listedOut) return undefined;
    // Keys only the kept scoring has (they left, or arrive going backwards), and only the listed one has.
    const gone = sortedList(listedOut.added);
    const extra = sortedList(listedOut.taken);
    // The kept scoring's customers in key order are the listed keys without `extra`, merged with `gone`:
    // the r-th of them has the r-th kept segment. A count that does not add up, a key of `extra` not
    // listed, or a segment past its names, means what was kept is not of these customers.
    const theirs = other.segments;
    const total = theirs.length;
    if (n - extra.high.length + gone.high.length !== total) return undefined;
    // Where each of those few keys is among the listed ones (one pass over the high halves), so that the
    // walk below reads segments only, not every key.
    const { goneAt, extraAt } = placesOf(high, low, gone, extra);
    for (let x = 0; x < extraAt.length; x++) {
      // Keys two customers share (rare) are listed twice: the second is the next place.
      const at = x > 0 && extraAt[x]! <= extraAt[x - 1]! ? extraAt[x - 1]! + 1 : extraAt[x]!;
      if (at >= n || high[at] !== extra.high[x] || low[at] !== extra.low[x]) return undefined;
      extraAt[x] = at;
    }
    let r = 0;
    let g = 0;
    let x = 0;
    let i = 0;
    while (i <= n) {
      // Up to the next place where a key left before the listed one, or the listed one is extra.
      const stop = Math.min(n, goneAt[g] ?? n, extraAt[x] ?? n);
      for (; i < stop; i++) {
        const o = theirs[r++]!;
        if (o >= os) return undefined;
        const cell = o * ls + segments[i]!;
        cells[cell]!++;
        if (room[cell]! > 0) tally.example(cell, source[i]!);
      }
      if (i === n && g === goneAt.length) break;
      for (; g < goneAt.length && goneAt[g] === i; g++) {
        const o = theirs[r++]!;
        if (o >= os) return undefined;
        onlyOther[o]!++;
      }
      if (x < extraAt.length && extraAt[x] === i) {
        x++;
        const cell = os * ls + segments[i]!;
        cells[cell]!++;
        if (room[cell]! > 0) tally.example(cell, source[i]!);
        i++;
      }
    }
  }
  const counts = tally.counts(onlyOther, forward);
  return sketch ? { ...counts, sketch } : counts;
}

/**
 * Where the keys that left (`gone`) and arrived (`extra`), each a few and in key order, are among these
 * (many, sorted) keys: for an arrived key, the place of the first key not below it; for one that left,
 * of the first key above it (after any listed customer who shares it). One pass over the high halves,
 * which reads them in order (faster here than searching, which reads them out of order).
 */
function placesOf(
  high: Uint32Array,
  low: Uint32Array,
  gone: { high: Uint32Array; low: Uint32Array },
  extra: { high: Uint32Array; low: Uint32Array },
): { goneAt: Uint32Array; extraAt: Uint32Array } {
  const n = high.length;
  const goneAt = new Uint32Array(gone.high.length);
  const extraAt = new Uint32Array(extra.high.length);
  let i = 0;
  let g = 0;
  let x = 0;
  while (g < gone.high.length || x < extra.high.length) {
    // The lower of the two next keys (the arrived one on a tie: its place is not past the key).
    const arrived =
      g === gone.high.length ||
      (x < extra.high.length &&
        (extra.high[x]! < gone.high[g]! ||
          (extra.high[x] === gone.high[g] && extra.low[x]! <= gone.low[g]!)));
    const h = arrived ? extra.high[x]! : gone.high[g]!;
    const l = arrived ? extra.low[x]! : gone.low[g]!;
    while (i < n && high[i]! < h) i++;
    while (i < n && high[i] === h && (low[i]! < l || (!arrived && low[i] === l))) i++;
    if (arrived) extraAt[x++] = i;
    else goneAt[g++] = i;
  }
  return { goneAt, extraAt };
}

/** Customers per cell (the other scoring's segment, or `os` for none, by the listed one's), with examples. */
class Tally {
  readonly cells: Float64Array;
  /** Examples each cell may still take (none when no examples are asked for). */
  readonly room: Uint8Array;
  private readonly examples: number[][][];

  constructor(
    private readonly os: number,
    private readonly ls: number,
    private readonly keep: number,
  ) {
    this.cells = new Float64Array((os + 1) * ls);
    this.room = new Uint8Array(this.cells.length).fill(Math.min(255, keep));
    this.examples = Array.from({ length: os + 1 }, () => Array.from({ length: ls }, () => [] as number[]));
  }

  example(cell: number, customer: number): void {
    this.room[cell]!--;
    this.examples[Math.floor(cell / this.ls)]![cell % this.ls]!.push(customer);
  }

  /** The counts, the previous scoring's segments first: the other's when `forward`, else the listed one's. */
  counts(onlyOther: Float64Array, forward: boolean): Omit<MovementCounts, 'sketch'> {
    const { os, ls } = this;
    const pair = (o: number, l: number) => this.cells[o * ls + l]!;
    const onlyListed = Array.from({ length: ls }, (_, l) => pair(os, l));
    const left = Array.from(onlyOther);
    return forward
      ? {
          moved: Array.from({ length: os }, (_, o) => Array.from({ length: ls }, (_, l) => pair(o, l))),
          arrived: onlyListed,
          left,
          ...(this.keep > 0 ? { examples: this.examples } : {}),
        }
      : {
          moved: Array.from({ length: ls }, (_, l) => Array.from({ length: os }, (_, o) => pair(o, l))),
          arrived: left,
          left: onlyListed,
        };
  }
}

/**
 * A stored Kept is split into values of this size: no multi-hundred-MB values, and each fits Redis's
 * allocator's 4 MiB size class with its header (8 MiB and a few bytes would take a 10 MiB block).
 */
export const CHUNK_BYTES = (4 << 20) - 64;
const FORMAT = 2;

interface KeptHeader {
  format: number;
  customers: number;
  capacity: number;
  bits: number;
  sketch: Layout;
}

/** The stored form of a Kept: a JSON header, the segments packed to their bits, then the sketch. */
export function encodeKept(kept: Kept): Buffer[] {
  const { sketch } = kept;
  const header: KeptHeader = {
    format: FORMAT,
    customers: kept.customers,
    capacity: kept.capacity,
    bits: kept.bits,
    sketch: sketch.layout,
  };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const packed = packBits(kept.segments, kept.bits);
  const m = sketch.layout.cells;
  const out = Buffer.allocUnsafe(4 + head.length + packed.length + 13 * m);
  let at = out.writeUInt32LE(head.length, 0);
  at += head.copy(out, at);
  at += Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength).copy(out, at);
  for (const part of [sketch.count, sketch.high, sketch.low, sketch.check])
    at += Buffer.from(asBytes(part)).copy(out, at);
  const chunks: Buffer[] = [];
  for (let from = 0; from < out.length || from === 0; from += CHUNK_BYTES)
    chunks.push(out.subarray(from, Math.min(out.length, from + CHUNK_BYTES)));
  return chunks;
}

/** The sketch shape of a stored Kept, from the first bytes of its stored form; undefined for another format. */
export function keptShapeOf(head: Buffer): SketchShape | undefined {
  if (head.length < 4) return undefined;
  const length = head.readUInt32LE(0);
  if (4 + length > head.length) return undefined;
  try {
    const header = JSON.parse(head.toString('utf8', 4, 4 + length)) as KeptHeader;
    return header.format === FORMAT ? { layout: header.sketch, capacity: header.capacity } : undefined;
  } catch {
    return undefined;
  }
}

/** A Kept read back; throws on another format (an older one's step is then not counted). */
export function decodeKept(date: string, names: readonly string[], chunks: readonly Buffer[]): Kept {
  // Read where it lies (no copy of the whole: that would cost a fresh copy of every byte).
  const bytes = new ChunkBytes(chunks);
  const headLength = new DataView(bytes.read(0, 4).buffer).getUint32(0, true);
  const header = JSON.parse(Buffer.from(bytes.read(4, headLength)).toString('utf8')) as KeptHeader;
  if (header.format !== FORMAT) throw new Error(`stored customer segments have format ${header.format}`);
  let at = 4 + headLength;
  const packedLength = Math.ceil((header.customers * header.bits) / 8);
  const m = header.sketch.cells;
  if (bytes.length !== at + packedLength + 13 * m)
    throw new Error('stored customer segments are cut short or too long');
  const segments =
    header.bits === 4
      ? bytes.unpackNibbles(at, header.customers)
      : unpackBits(bytes.read(at, packedLength), header.bits, header.customers);
  at += packedLength;
  const take = (length: number) => {
    const part = bytes.read(at, length);
    at += length;
    return part.buffer;
  };
  const sketch: KeySketch = {
    layout: header.sketch,
    count: new Int8Array(take(m)),
    high: new Uint32Array(take(4 * m)),
    low: new Uint32Array(take(4 * m)),
    check: new Uint32Array(take(4 * m)),
  };
  return {
    date,
    names,
    customers: header.customers,
    capacity: header.capacity,
    bits: header.bits,
    segments,
    sketch,
  };
}

/** Stored chunks read as one run of bytes. */
class ChunkBytes {
  readonly length: number;
  constructor(private readonly chunks: readonly Buffer[]) {
    this.length = chunks.reduce((a, c) => a + c.length, 0);
  }

  /** Bytes [from, from + length), copied into fresh (aligned) memory. */
  read(from: number, length: number): Uint8Array {
    if (from + length > this.length) throw new Error('stored customer segments are cut short');
    const out = new Uint8Array(length);
    this.each(from, length, (chunk, start, end, to) => out.set(chunk.subarray(start, end), to));
    return out;
  }

  /** `cells` segments of 4 bits from byte `from` (two to a byte, the low half first). */
  unpackNibbles(from: number, cells: number): Uint8Array {
    const out = new Uint8Array(cells);
    const whole = cells >>> 1;
    this.each(from, whole, (chunk, start, end, to) => {
      for (let i = start, k = 2 * to; i < end; i++, k += 2) {
        const b = chunk[i]!;
        out[k] = b & 15;
        out[k + 1] = b >>> 4;
      }
    });
    if (cells & 1) out[cells - 1] = this.read(from + whole, 1)[0]! & 15;
    return out;
  }

  /** Calls `f` with each chunk's part of bytes [from, from + length) and where that part starts in them. */
  private each(
    from: number,
    length: number,
    f: (chunk: Buffer, start: number, end: number, to: number) => void,
  ): void {
    let base = 0;
    for (const chunk of this.chunks) {
      const start = Math.max(from, base);
      const end = Math.min(from + length, base + chunk.length);
      if (start < end) f(chunk, start - base, end - base, start - from);
      base += chunk.length;
      if (base >= from + length) return;
    }
  }
}

function packBits(values: Uint8Array, bits: number): Uint8Array {
  if (bits === 8) return values;
  const out = new Uint8Array(Math.ceil((values.length * bits) / 8));
  if (bits === 4) {
    // Up to 16 segments (the eleven default ones): two to a byte, the common case, in one pass.
    const pairs = values.length >>> 1;
    for (let i = 0; i < pairs; i++) out[i] = values[2 * i]! | (values[2 * i + 1]! << 4);
    if (values.length & 1) out[pairs] = values[values.length - 1]!;
    return out;
  }
  let bit = 0;
  for (let i = 0; i < values.length; i++, bit += bits) {
    const v = values[i]!;
    const byte = bit >>> 3;
    const shift = bit & 7;
    out[byte]! |= v << shift;
    if (shift + bits > 8) out[byte + 1]! |= v >>> (8 - shift);
  }
  return out;
}

/** Segments of other sizes than 4 bits (`ChunkBytes.unpackNibbles`), from a fresh copy of their bytes. */
function unpackBits(packed: Uint8Array, bits: number, cells: number): Uint8Array {
  if (bits === 8) return packed;
  const out = new Uint8Array(cells);
  const mask = (1 << bits) - 1;
  let bit = 0;
  for (let i = 0; i < cells; i++, bit += bits) {
    const byte = bit >>> 3;
    const shift = bit & 7;
    const word = packed[byte]! | ((packed[byte + 1] ?? 0) << 8);
    out[i] = (word >>> shift) & mask;
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A view of a typed array as bytes, little-endian (the stored order) on every machine. */
function asBytes(words: Uint32Array | Int8Array): Uint8Array {
  if (!LITTLE_ENDIAN) throw new Error('per-customer history needs a little-endian machine');
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}
