/**
 * A customer's key in the state: 8 bytes derived from its id, which name its records (no id is stored).
 *
 * Since record format 3 the key is two MurmurHash3 (x86, 32-bit) digests of the id's UTF-8 bytes, under
 * two seeds, big-endian: JavaScript over a dozen bytes instead of a native SHA-256 call, which was a third
 * of all hashing in a plan (a 3 M customer plan's main thread spends 0.2 s on keys instead of 0.8 s). The
 * key needs no secrecy (the identifier slots beside it are SHA-256 digests anyway) and ids are the shop's
 * own; it needs few collisions: 64 bits give one chance in about 10^4 of any at 50 million customers, the
 * same as the first 8 bytes of SHA-256 that keyed formats 1 and 2 (before 0.1.0).
 */
const SEED_HIGH = 0;
const SEED_LOW = 0x5bd1e995;

/** Writes the key of the id whose UTF-8 bytes are `id` at `at` in `out`. */
export function writeKey(id: Uint8Array, out: Buffer, at: number): void {
  keyHalves(id, 0, id.length, halves);
  const high = halves[0]!;
  const low = halves[1]!;
  out[at] = high >>> 24;
  out[at + 1] = high >>> 16;
  out[at + 2] = high >>> 8;
  out[at + 3] = high;
  out[at + 4] = low >>> 24;
  out[at + 5] = low >>> 16;
  out[at + 6] = low >>> 8;
  out[at + 7] = low;
}

const halves = new Uint32Array(2);

/**
 * The key of `bytes[from, to)` as its two halves, `murmur3` under each seed, into `out[0]` and `out[1]`:
 * one pass over the bytes for both.
 */
export function keyHalves(bytes: Uint8Array, from: number, to: number, out: Uint32Array): void {
  const n = to - from;
  const blocks = from + (n & ~3);
  let h = SEED_HIGH | 0;
  let l = SEED_LOW | 0;
  let k: number;
  for (let j = from; j < blocks; j += 4) {
    k = mix(bytes[j]! | (bytes[j + 1]! << 8) | (bytes[j + 2]! << 16) | (bytes[j + 3]! << 24));
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    l ^= k;
    l = (l << 13) | (l >>> 19);
    l = (Math.imul(l, 5) + 0xe6546b64) | 0;
  }
  const tail = n & 3;
  if (tail > 0) {
    k = bytes[blocks]!;
    if (tail > 1) k |= bytes[blocks + 1]! << 8;
    if (tail > 2) k |= bytes[blocks + 2]! << 16;
    k = mix(k);
    h ^= k;
    l ^= k;
  }
  out[0] = finish(h ^ n);
  out[1] = finish(l ^ n);
}

/** MurmurHash3's final mix of a 32-bit hash, as an unsigned number. */
export function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3_x86_32 of `bytes[from, to)` (Austin Appleby's reference, public domain), as an unsigned number. */
export function murmur3(bytes: Uint8Array, seed: number, from = 0, to = bytes.length): number {
  const n = to - from;
  const blocks = from + (n & ~3);
  let h = seed | 0;
  let k: number;
  for (let j = from; j < blocks; j += 4) {
    k = bytes[j]! | (bytes[j + 1]! << 8) | (bytes[j + 2]! << 16) | (bytes[j + 3]! << 24);
    h ^= mix(k);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = n & 3;
  if (tail > 0) {
    k = bytes[blocks]!;
    if (tail > 1) k |= bytes[blocks + 1]! << 8;
    if (tail > 2) k |= bytes[blocks + 2]! << 16;
    h ^= mix(k);
  }
  return finish(h ^ n);
}

function mix(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}
