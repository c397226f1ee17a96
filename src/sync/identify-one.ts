import { SKIP_REASONS, type Identified, type Person } from '../identity/types.js';
import type { TextColumn } from '../source/text.js';
import { writeKey } from '../state/keys.js';
import { KEY_BYTES, SLOT_BYTES } from '../state/records.js';

/** Where customers' identities are written: by customer index, slots by position (shared with threads). */
export interface IdentityBuffers {
  slotCount: number;
  /** Keys (`writeKey` of the customer id) at `i * KEY_BYTES`; zeros until computed. */
  keys: Buffer;
  /** Which slots customer i has (0: none, see `skips`). */
  masks: Uint16Array;
  /** 1 + the index in SKIP_REASONS of why customer i is left out; 0 otherwise (or an unlisted reason). */
  skips: Uint8Array;
}

/** Computes customer i's key (see keys.ts) at `i * KEY_BYTES`, once. */
export function computeKey(i: number, ids: TextColumn, out: Pick<IdentityBuffers, 'keys'>): void {
  const at = i * KEY_BYTES;
  // Eight zero bytes mean "not computed yet" (a real key of zeros, once in 2^64, is just computed again).
  if (out.keys.readUInt32LE(at) === 0 && out.keys.readUInt32LE(at + 4) === 0)
    writeKey(ids.bytes(i)!, out.keys, at);
}

/**
 * Identifies customer i, the one step the main thread and the identify threads share: a person from the
 * columns (profile fields first, then attributes under their names, the first value of a name winning),
 * the connector's rules, the key, and the slots written at `at` in `slots`. Returns the connector's answer:
 * the caller keeps plaintext, and records a skip reason that SKIP_REASONS does not list.
 */
export function identifyOne(
  i: number,
  columns: readonly (readonly [string, TextColumn])[],
  ids: TextColumn,
  identify: (person: Person) => Identified,
  out: IdentityBuffers,
  slots: Buffer,
  at: number,
): Identified {
  const person: Person = {};
  for (const [name, column] of columns) {
    if (person[name] !== undefined) continue;
    const v = column.get(i);
    if (v !== undefined) person[name] = v;
  }
  const id = identify(person);
  computeKey(i, ids, out);
  out.masks[i] = 0;
  out.skips[i] = 0;
  if ('skip' in id) {
    out.skips[i] = SKIP_REASONS.indexOf(id.skip) + 1;
    return id;
  }
  let mask = 0;
  for (let s = 0; s < id.slots.length && s < out.slotCount; s++) {
    const slot = id.slots[s];
    if (!slot) continue;
    if (typeof slot === 'string') slots.write(slot, at + s * SLOT_BYTES, SLOT_BYTES, 'latin1');
    else slots.set(slot.subarray(0, SLOT_BYTES), at + s * SLOT_BYTES);
    mask |= 1 << s;
  }
  if (mask === 0) {
    out.skips[i] = SKIP_REASONS.indexOf('no usable identifier') + 1;
    return { skip: 'no usable identifier' };
  }
  out.masks[i] = mask;
  return id;
}
