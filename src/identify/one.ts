import type { Identified, Person } from './types.js';
import type { TextColumn } from '../source/text.js';
import { finish, writeKey } from '../record/keys.js';
import { KEY_BYTES, SLOT_BYTES } from '../record/records.js';

/** Where identities are written, by position (a table's buffers, or a thread's for one slice). */
export interface IdentityBuffers {
  slotCount: number;
  /** The skip reasons counted by code (SKIP_REASONS, then the connector's own); the first is `no usable identifier`. */
  reasons: readonly string[];
  /** The key of the customer at position k (keys.ts), at `k * KEY_BYTES`. */
  keys: Buffer;
  /** The digest of its slots (`digestSlots`), finished, at `2k` and `2k + 1`. */
  digests: Uint32Array;
  /** Which slots the customer at position k has (0: none, see `skips`). */
  masks: Uint16Array;
  /** 1 + the index in `reasons` of why the customer at k is left out; 0 otherwise (or an unlisted reason). */
  skips: Uint8Array;
}

/**
 * Identifies customer i into row k of the identity buffers: the one step the main thread and the
 * identify threads share. A person from the columns (profile fields first, then attributes under their
 * names, the first value of a name winning), the connector's rules, and the slots written at
 * `row * slotCount * SLOT_BYTES` in `slots` (the customer's row in the slice `slots` holds; k by default).
 * Returns the connector's answer: the caller keeps plaintext, and records a skip reason that `reasons`
 * does not list.
 */
export function identifyOne(
  i: number,
  columns: readonly (readonly [string, TextColumn])[],
  ids: TextColumn,
  identify: (person: Person) => Identified,
  out: IdentityBuffers,
  k: number,
  slots: Buffer,
  row = k,
): Identified {
  writeKey(ids.bytes(i)!, out.keys, k * KEY_BYTES);
  const person: Person = {};
  for (const [name, column] of columns) {
    if (person[name] !== undefined) continue;
    const v = column.get(i);
    if (v !== undefined) person[name] = v;
  }
  const id = identify(person);
  out.masks[k] = 0;
  out.skips[k] = 0;
  if ('skip' in id) {
    out.skips[k] = out.reasons.indexOf(id.skip) + 1;
    return id;
  }
  const at = row * out.slotCount * SLOT_BYTES;
  let mask = 0;
  for (let s = 0; s < id.slots.length && s < out.slotCount; s++) {
    const slot = id.slots[s];
    if (!slot) continue;
    if (typeof slot === 'string') slots.write(slot, at + s * SLOT_BYTES, SLOT_BYTES, 'latin1');
    else slots.set(slot.subarray(0, SLOT_BYTES), at + s * SLOT_BYTES);
    mask |= 1 << s;
  }
  if (mask === 0) {
    out.skips[k] = out.reasons.indexOf('no usable identifier') + 1;
    return { skip: 'no usable identifier' };
  }
  out.masks[k] = mask;
  digestSlots(slots, at, mask, out.slotCount, false, out.digests, 2 * k);
  return id;
}

/**
 * The digest of a member's slots, two 32-bit hashes over every byte of each present slot and its index,
 * written to `into[at2]` and `into[at2 + 1]`: what tells an unchanged member in the diff without reading its slots out of key order.
 * Two different sets of slots share a digest with a chance of 2^-64 (a changed member taken for unchanged
 * once in 10^13 years of daily runs with half a million changes each): the slots are SHA-256 digests or
 * packed values, not chosen to collide. Slot s is at `at + s * SLOT_BYTES`, or with `packed` (a state
 * record, which keeps only present slots) the present ones follow each other from `at`.
 */
export function digestSlots(
  buf: Buffer,
  at: number,
  mask: number,
  slotCount: number,
  packed: boolean,
  into: Uint32Array,
  at2: number,
): void {
  let h1 = 0;
  let h2 = 0;
  for (let s = 0, next = at; s < slotCount; s++) {
    if (!(mask & (1 << s))) continue;
    const from = packed ? next : at + s * SLOT_BYTES;
    next += SLOT_BYTES;
    h1 ^= Math.imul(s + 1, 0x9e3779b1);
    h2 ^= Math.imul(s + 1, 0x85ebca77);
    // Each little-endian word from its bytes: Buffer.readInt32LE checks its bounds on every call, and took
    // 2.5 to 3 times as long here.
    for (let b = from; b < from + SLOT_BYTES; b += 4) {
      const w = buf[b]! | (buf[b + 1]! << 8) | (buf[b + 2]! << 16) | (buf[b + 3]! << 24);
      h1 = Math.imul(h1 ^ w, 0xcc9e2d51);
      h1 = (h1 << 13) | (h1 >>> 19);
      h2 = Math.imul(h2 ^ w, 0x1b873593);
      h2 = (h2 << 17) | (h2 >>> 15);
    }
  }
  into[at2] = finish(h1);
  into[at2 + 1] = finish(h2);
}
