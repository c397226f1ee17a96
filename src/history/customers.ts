import { keyHalves } from '../state/keys.js';
import type { TextColumn } from '../source/text.js';

/**
 * Each customer's segment in one scoring, as the next movement matrix needs it: a key per customer (the
 * state's two MurmurHash3 digests of the id, so no id is kept) and the segment, sorted by key so that two
 * scorings meet in one merge. Stored as 9 bytes per customer (`encodeCustomers`).
 */
export interface CustomerSegments {
  /** The analysis date, YYYY-MM-DD. */
  readonly date: string;
  /** Segment names; `segments` holds indexes into them. */
  readonly names: readonly string[];
  /** Keys' high and low 32 bits and the segment index, ascending by key. */
  readonly high: Uint32Array;
  readonly low: Uint32Array;
  readonly segments: Uint8Array;
}

export const RECORD_BYTES = 9;
/** Segment indexes ride in the 5 bits a float64 has left beside a 48-bit key (see `sortedByKey`). */
export const MAX_SEGMENTS = 32;
const TWO_32 = 2 ** 32;

/** The customers' keys and segments, sorted by key; undefined when there are too many segments to keep. */
export function customerSegmentsFrom(
  date: string,
  ids: TextColumn,
  segment: Uint16Array,
  names: readonly string[],
): CustomerSegments | undefined {
  if (names.length > MAX_SEGMENTS) return undefined;
  const n = segment.length;
  const top = new Uint16Array(n);
  const rest = new Float64Array(n);
  let i = 0;
  const halves = new Uint32Array(2);
  const put = (bytes: Uint8Array, from: number, to: number) => {
    keyHalves(bytes, from, to, halves);
    const high = halves[0]!;
    const low = halves[1]!;
    top[i] = high >>> 16;
    // 16 + 32 + 5 bits: exact in a float64, and its order is the key's order.
    rest[i] = ((high & 0xffff) * TWO_32 + low) * MAX_SEGMENTS + segment[i]!;
  };
  for (; i < n; i++) ids.read(i, put);
  return sortedByKey(date, names, top, rest);
}

/** A counting sort on the keys' top 16 bits, then a native sort of each bucket's packed values. */
function sortedByKey(
  date: string,
  names: readonly string[],
  top: Uint16Array,
  rest: Float64Array,
): CustomerSegments {
  const n = top.length;
  const starts = new Uint32Array(65_537);
  for (let i = 0; i < n; i++) starts[top[i]! + 1]!++;
  for (let b = 1; b <= 65_536; b++) starts[b]! += starts[b - 1]!;
  const next = starts.slice(0, 65_536);
  const sorted = new Float64Array(n);
  for (let i = 0; i < n; i++) sorted[next[top[i]!]!++] = rest[i]!;
  const high = new Uint32Array(n);
  const low = new Uint32Array(n);
  const segments = new Uint8Array(n);
  for (let b = 0; b < 65_536; b++) {
    const from = starts[b]!;
    const to = starts[b + 1]!;
    if (to - from > 1) sorted.subarray(from, to).sort();
    for (let i = from; i < to; i++) {
      const v = sorted[i]!;
      const seg = v % MAX_SEGMENTS;
      const key48 = (v - seg) / MAX_SEGMENTS;
      const lowBits = key48 % TWO_32;
      high[i] = ((b << 16) | ((key48 - lowBits) / TWO_32)) >>> 0;
      low[i] = lowBits;
      segments[i] = seg;
    }
  }
  return { date, names, high, low, segments };
}

/** Customers per (previous segment, current segment), with `new` and `gone`, by a merge of two key orders. */
export interface MovementCounts {
  /** counts[from][to]: indexes into the previous and current names; customers in both scorings. */
  moved: number[][];
  /** Per current segment: customers the previous scoring did not have. */
  arrived: number[];
  /** Per previous segment: customers the current scoring does not have. */
  left: number[];
}

export function movementCounts(previous: CustomerSegments, current: CustomerSegments): MovementCounts {
  const moved = previous.names.map(() => new Array<number>(current.names.length).fill(0));
  const arrived = new Array<number>(current.names.length).fill(0);
  const left = new Array<number>(previous.names.length).fill(0);
  const { high: ph, low: pl, segments: ps } = previous;
  const { high: ch, low: cl, segments: cs } = current;
  let i = 0;
  let j = 0;
  while (i < ph.length && j < ch.length) {
    const order = ph[i]! !== ch[j]! ? ph[i]! - ch[j]! : pl[i]! - cl[j]!;
    if (order === 0) moved[ps[i++]!]![cs[j++]!]!++;
    else if (order < 0) left[ps[i++]!]!++;
    else arrived[cs[j++]!]!++;
  }
  while (i < ph.length) left[ps[i++]!]!++;
  while (j < ch.length) arrived[cs[j++]!]!++;
  return { moved, arrived, left };
}

/**
 * The stored form of customers [from, to): their keys' high halves, low halves (32-bit little-endian)
 * and segments, as three runs: 9 bytes per customer, copied to and from typed arrays in one go.
 */
export function encodeCustomers(c: CustomerSegments, from = 0, to = c.segments.length): Buffer {
  const n = to - from;
  const out = Buffer.allocUnsafe(n * RECORD_BYTES);
  out.set(asBytes(c.high.subarray(from, to)), 0);
  out.set(asBytes(c.low.subarray(from, to)), n * 4);
  out.set(c.segments.subarray(from, to), n * 8);
  return out;
}

/** Reads the stored chunks back (in order); names and date come from the stored meta. */
export function decodeCustomers(
  date: string,
  names: readonly string[],
  chunks: readonly Buffer[],
): CustomerSegments {
  const total = chunks.reduce((a, c) => a + c.length / RECORD_BYTES, 0);
  const high = new Uint32Array(total);
  const low = new Uint32Array(total);
  const segments = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    const n = chunk.length / RECORD_BYTES;
    if (!Number.isInteger(n)) throw new Error('stored customer segments are cut short');
    asBytes(high.subarray(at, at + n)).set(chunk.subarray(0, n * 4));
    asBytes(low.subarray(at, at + n)).set(chunk.subarray(n * 4, n * 8));
    segments.set(chunk.subarray(n * 8), at);
    at += n;
  }
  return { date, names, high, low, segments };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A view of 32-bit words as bytes, little-endian (the stored order) on every machine. */
function asBytes(words: Uint32Array): Uint8Array {
  if (!LITTLE_ENDIAN) throw new Error('per-customer history needs a little-endian machine');
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}
