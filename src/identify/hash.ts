import * as crypto from 'node:crypto';
import type { Slot } from './types.js';

/** Size of every identifier slot in state: a SHA-256 digest, or a value packed to the same size. */
export const SLOT_BYTES = 32;

const SHA256_HEX = /^[a-f0-9]{64}$/i;

// crypto.hash (Node >= 20.12, below the engines floor of 20.19) hashes without a Hash object.

/**
 * SHA-256 of the UTF-8 bytes of `text` as an identifier slot: the 32 bytes as latin1 ('binary') characters,
 * no Buffer. A Buffer digest allocates an ArrayBuffer per call and is two to three times slower.
 */
export function sha256Slot(text: string): string {
  return crypto.hash('sha256', text, 'binary');
}

/** SHA-256 of the UTF-8 bytes of `text`: 32 bytes, in a pooled Buffer. */
export function sha256(text: string): Buffer {
  return Buffer.from(sha256Slot(text), 'latin1');
}

/** MD5 of the UTF-8 bytes of `text`, lowercase hex (Mailchimp's subscriber hash). */
export function md5Hex(text: string): string {
  return crypto.hash('md5', text, 'hex');
}

/** True for a SHA-256 digest written in hex, either case. */
export function isSha256Hex(s: string): boolean {
  return s.length === 64 && SHA256_HEX.test(s);
}

/**
 * A value that may already be hashed: a SHA-256 hex digest is decoded as it is (never hashed twice),
 * anything else is hashed. Give it the raw source value, before normalisation: a normalised value is
 * hashed with `sha256` directly, since a name of 64 hex letters must still be hashed.
 */
export function hashed(rawOrHash: string): Buffer {
  const trimmed = rawOrHash.trim();
  return isSha256Hex(trimmed) ? Buffer.from(trimmed, 'hex') : sha256(rawOrHash);
}

/**
 * A raw source value as an identifier slot: undefined when absent (empty or blank), null when present but
 * unusable, else the SHA-256 of its normalised form. A SHA-256 hex digest in the source is taken as it
 * is, checked before `normalize` could change it.
 */
export function hashIdentifier(
  raw: string | undefined,
  normalize: (trimmed: string) => string | undefined,
): Slot | null | undefined {
  const value = raw?.trim();
  if (!value) return undefined;
  if (isSha256Hex(value)) return hashed(value);
  const normalized = normalize(value);
  return normalized === undefined ? null : sha256Slot(normalized);
}

/** A blank value, as `repeatedIdentifier` remembers it. */
const ABSENT = Symbol('absent');

/**
 * `hashIdentifier` for a field whose values repeat from customer to customer (names, cities, countries,
 * genders): each distinct raw value is normalised and hashed once, then remembered. Memory is bounded by
 * two generations of up to `limit` values each: when the recent one is full, the older one is forgotten
 * and the recent one becomes older; a value found in the older generation is remembered anew. So the
 * values a column keeps using stay (a shop's few hundred thousand family names at 2 × 65,536), and a
 * column of unique values costs a lookup, not memory. In a plan of Meta's five keys, first and last names
 * and the country are three hashes of five. A digest is shared when it is a Buffer (a hashed source
 * value): a caller copies it, never writes to it. The raw values remembered are a bounded few of what
 * the source's columns hold in the same memory during a run.
 */
export function repeatedIdentifier(
  normalize: (trimmed: string) => string | undefined,
  limit = 1 << 16,
): (raw: string | undefined) => Slot | null | undefined {
  // An absent value (blank) is remembered as ABSENT: a miss is then one `get` per generation, no `has`.
  let recent = new Map<string, Slot | null | typeof ABSENT>();
  let older = new Map<string, Slot | null | typeof ABSENT>();
  const remember = (raw: string, slot: Slot | null | typeof ABSENT) => {
    if (recent.size >= limit) {
      older = recent;
      recent = new Map();
    }
    recent.set(raw, slot);
    return slot === ABSENT ? undefined : slot;
  };
  return (raw) => {
    if (raw === undefined) return undefined;
    const seen = recent.get(raw);
    if (seen !== undefined) return seen === ABSENT ? undefined : seen;
    const old = older.get(raw);
    if (old !== undefined) return remember(raw, old);
    const slot = hashIdentifier(raw, normalize);
    return remember(raw, slot === undefined ? ABSENT : slot);
  };
}
