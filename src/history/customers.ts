import { keyHalves } from '../state/keys.js';
import type { TextColumn } from '../source/text.js';
import {
  bitsFor,
  buildSegmentTable,
  copySketch,
  KeyTable,
  peel,
  segmentIn,
  sketchFor,
  sketchKey,
  walkPositions,
  WALK_BUCKETS,
  type KeySketch,
  type Layout,
  type SegmentTable,
} from './fuse.js';

/**
 * Each customer's segment in one scoring, in memory: a key per customer (the state's two MurmurHash3
 * digests of the id, so no id is kept) and the segment, in walk order (`walkPositions`: the order the
 * tables are best walked in), with each customer's place in the source.
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
 * What the latest snapshot keeps of its customers, to count the next movement: about 1.4 bytes per
 * customer, none of them a customer's key. A retrieval table answers the segment of a customer it has
 * (never whether it has one), and a sketch of the keys lists who arrived and who left since, when they
 * are at most about `capacity` customers.
 */
export interface Kept {
  readonly date: string;
  readonly names: readonly string[];
  readonly customers: number;
  /** How many customers may arrive or leave before the next scoring for its movement to be counted. */
  readonly capacity: number;
  readonly table: SegmentTable;
  readonly sketch: KeySketch;
}

/** Segment indexes are bytes. */
export const MAX_SEGMENTS = 256;
/** The default share of customers that may arrive or leave between two scorings (history.movement_capacity). */
export const DEFAULT_CAPACITY_SHARE = 0.05;

/** The customers' keys and segments; undefined when there are too many segments to keep. */
export function scoredFrom(
  date: string,
  ids: TextColumn,
  segment: Uint16Array,
  names: readonly string[],
): Scored | undefined {
  if (names.length > MAX_SEGMENTS) return undefined;
  const n = segment.length;
  const inHigh = new Uint32Array(n);
  const inLow = new Uint32Array(n);
  const halves = new Uint32Array(2);
  let i = 0;
  const put = (bytes: Uint8Array, from: number, to: number) => {
    keyHalves(bytes, from, to, halves);
    inHigh[i] = halves[0]!;
    inLow[i] = halves[1]!;
  };
  for (; i < n; i++) ids.read(i, put);
  // Scattered into walk order once, so that every later pass reads them front to back.
  const position = walkPositions(inHigh);
  const high = new Uint32Array(n);
  const low = new Uint32Array(n);
  const segments = new Uint8Array(n);
  const source = new Uint32Array(n);
  for (i = 0; i < n; i++) {
    const k = position[i]!;
    high[k] = inHigh[i]!;
    low[k] = inLow[i]!;
    segments[k] = segment[i]!;
    source[k] = i;
  }
  return { date, names, high, low, segments, source };
}

/** What the latest snapshot keeps of a scoring. */
export function keptFrom(scored: Scored, capacityShare: number): Kept {
  const n = scored.segments.length;
  const { high, low } = scored;
  const table = buildSegmentTable(high, low, scored.segments, bitsFor(scored.names.length));
  const capacity = Math.ceil(capacityShare * n);
  const sketch = sketchFor(capacity);
  const cells = new Uint32Array(3);
  for (let k = 0; k < n; k++) sketchKey(sketch, high[k]!, low[k]!, 1, cells);
  return { date: scored.date, names: scored.names, customers: n, capacity, table, sketch };
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
   * arrived segment (row `previous.names.length`), a pick that follows no customer order (walk order);
   * only when the current scoring is the one in memory. Customers who left have no id, so no examples.
   */
  examples?: number[][][];
}

/**
 * The movement from one scoring to the next, when at least one of them is in memory. Exact: a
 * retrieval table is only asked about customers the sketch showed it has. Undefined when more customers
 * arrived or left than the kept scoring's sketch can list (its `capacity`).
 */
export function movementCounts(
  previous: Scored | Kept,
  current: Scored | Kept,
  options: { examples?: number } = {},
): MovementCounts | undefined {
  if (isScored(current)) return countAgainst(current, previous, true, options);
  if (isScored(previous)) return countAgainst(previous, current, false, options);
  throw new Error('movement needs one of the two scorings in memory');
}

/** Where each walk bucket (the top 8 bits of the high half) starts in keys in walk order, and the end. */
function bucketStarts(high: Uint32Array): Uint32Array {
  const starts = new Uint32Array(WALK_BUCKETS + 1);
  for (let b = 0; b <= WALK_BUCKETS; b++) {
    // The first key whose bucket is b or later.
    let lo = b === 0 ? 0 : starts[b - 1]!;
    let hi = high.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (high[mid]! >>> 24 < b) lo = mid + 1;
      else hi = mid;
    }
    starts[b] = lo;
  }
  return starts;
}

/** Whether a scoring is the one in memory (every customer's key), not what a snapshot kept. */
export function isScored(s: Scored | Kept): s is Scored {
  return 'high' in s;
}

/**
 * Walks the scoring in memory (`listed`) and looks each customer up in the other one. `forward`: listed
 * is the current scoring; otherwise the previous.
 */
function countAgainst(
  listed: Scored,
  other: Scored | Kept,
  forward: boolean,
  options: { examples?: number },
): MovementCounts | undefined {
  const listedSegments = listed.names.length;
  const otherSegments = other.names.length;
  // pairs[o * listedSegments + l]: customers in both, by the other scoring's segment and the listed one's.
  const pairs = new Float64Array(otherSegments * listedSegments);
  const onlyListed = new Array<number>(listedSegments).fill(0);
  const onlyOther = new Array<number>(otherSegments).fill(0);
  const keep = forward ? (options.examples ?? 0) : 0;
  const examples = keep
    ? Array.from({ length: otherSegments + 1 }, () =>
        Array.from({ length: listedSegments }, () => [] as number[]),
      )
    : undefined;
  const n = listed.segments.length;
  const { high, low, segments, source } = listed;

  if (isScored(other)) {
    // Both in memory (a backfill's dates in a row): an exact join on the keys, a walk bucket at a time
    // (both are in walk order, so a bucket's keys are together in each), so its table stays in cache.
    const listedStarts = bucketStarts(high);
    const otherStarts = bucketStarts(other.high);
    let largest = 0;
    for (let b = 0; b < WALK_BUCKETS; b++) largest = Math.max(largest, otherStarts[b + 1]! - otherStarts[b]!);
    const index = new KeyTable(largest);
    const met = new Uint8Array(other.segments.length);
    for (let b = 0; b < WALK_BUCKETS; b++) {
      index.clear();
      for (let j = otherStarts[b]!; j < otherStarts[b + 1]!; j++) index.add(other.high[j]!, other.low[j]!, j);
      for (let i = listedStarts[b]!; i < listedStarts[b + 1]!; i++) {
        const j = index.get(high[i]!, low[i]!);
        const l = segments[i]!;
        const o = j < 0 ? otherSegments : other.segments[j]!;
        if (j < 0) onlyListed[l]!++;
        else {
          met[j] = 1;
          pairs[o * listedSegments + l]!++;
        }
        if (examples && examples[o]![l]!.length < keep) examples[o]![l]!.push(source[i]!);
      }
    }
    for (let j = 0; j < met.length; j++) if (!met[j]) onlyOther[other.segments[j]!]!++;
  } else {
    const sketch = copySketch(other.sketch);
    const cells = new Uint32Array(3);
    for (let k = 0; k < n; k++) sketchKey(sketch, high[k]!, low[k]!, -1, cells);
    const difference = peel(sketch);
    if (!difference) return undefined;
    const { added: otherOnly, taken: listedOnly } = difference;
    for (let k = 0; k < otherOnly.high.length; k++)
      onlyOther[segmentIn(other.table, otherOnly.high[k]!, otherOnly.low[k]!, cells)]!++;
    const extra = new KeyTable(listedOnly.high.length);
    for (let k = 0; k < listedOnly.high.length; k++) extra.add(listedOnly.high[k]!, listedOnly.low[k]!, k);
    const anyExtra = listedOnly.high.length > 0;
    // In walk order, the table is read front to back.
    for (let k = 0; k < n; k++) {
      const l = segments[k]!;
      const o =
        anyExtra && extra.get(high[k]!, low[k]!) >= 0
          ? otherSegments
          : segmentIn(other.table, high[k]!, low[k]!, cells);
      if (o === otherSegments) onlyListed[l]!++;
      else if (o < otherSegments) pairs[o * listedSegments + l]!++;
      else return undefined; // a segment the kept scoring cannot have: its data is not this scoring's
      if (examples && examples[o]![l]!.length < keep) examples[o]![l]!.push(source[k]!);
    }
  }

  const moved = forward
    ? Array.from({ length: otherSegments }, (_, o) =>
        Array.from({ length: listedSegments }, (_, l) => pairs[o * listedSegments + l]!),
      )
    : Array.from({ length: listedSegments }, (_, l) =>
        Array.from({ length: otherSegments }, (_, o) => pairs[o * listedSegments + l]!),
      );
  return forward
    ? { moved, arrived: onlyListed, left: onlyOther, ...(examples ? { examples } : {}) }
    : { moved, arrived: onlyOther, left: onlyListed };
}

/**
 * A stored Kept is split into values of this size: no multi-hundred-MB values, and each fits Redis's
 * allocator's 4 MiB size class with its header (8 MiB and a few bytes would take a 10 MiB block).
 */
export const CHUNK_BYTES = (4 << 20) - 64;
const FORMAT = 1;

interface KeptHeader {
  format: number;
  customers: number;
  capacity: number;
  seed: number;
  bits: number;
  table: Layout;
  sketch: Layout;
}

/** The stored form of a Kept: a JSON header, the table packed to its bits per cell, then the sketch. */
export function encodeKept(kept: Kept): Buffer[] {
  const { table, sketch } = kept;
  const header: KeptHeader = {
    format: FORMAT,
    customers: kept.customers,
    capacity: kept.capacity,
    seed: table.seed,
    bits: table.bits,
    table: table.layout,
    sketch: sketch.layout,
  };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const packed = packBits(table.values, table.bits);
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

export function decodeKept(date: string, names: readonly string[], chunks: readonly Buffer[]): Kept {
  const all = Buffer.concat(chunks);
  const headLength = all.readUInt32LE(0);
  const header = JSON.parse(all.toString('utf8', 4, 4 + headLength)) as KeptHeader;
  if (header.format !== FORMAT) throw new Error(`stored customer segments have format ${header.format}`);
  let at = 4 + headLength;
  const cells = header.table.cells;
  const packedLength = Math.ceil((cells * header.bits) / 8);
  const values = unpackBits(all.subarray(at, at + packedLength), header.bits, cells);
  at += packedLength;
  const m = header.sketch.cells;
  const take = (bytes: number) => {
    // A copy, aligned for the typed array over it.
    const part = new Uint8Array(bytes);
    part.set(all.subarray(at, at + bytes));
    at += bytes;
    return part.buffer;
  };
  const sketch: KeySketch = {
    layout: header.sketch,
    count: new Int8Array(take(m)),
    high: new Uint32Array(take(4 * m)),
    low: new Uint32Array(take(4 * m)),
    check: new Uint32Array(take(4 * m)),
  };
  if (at !== all.length) throw new Error('stored customer segments are cut short or too long');
  return {
    date,
    names,
    customers: header.customers,
    capacity: header.capacity,
    table: { layout: header.table, seed: header.seed, bits: header.bits, values },
    sketch,
  };
}

function packBits(values: Uint8Array, bits: number): Uint8Array {
  if (bits === 8) return values;
  const out = new Uint8Array(Math.ceil((values.length * bits) / 8));
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

function unpackBits(packed: Uint8Array, bits: number, cells: number): Uint8Array {
  if (bits === 8) return Uint8Array.from(packed.subarray(0, cells));
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
