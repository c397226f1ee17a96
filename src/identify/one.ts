import { SKIP_REASONS, type Identified, type Person } from './types.js';
import type { TextColumn } from '../source/text.js';
import { SLOT_BYTES } from '../record/records.js';

/** Where identities are written, by row (shared with threads). */
export interface IdentityBuffers {
  slotCount: number;
  /** Which slots the customer at position k has (0: none, see `skips`). */
  masks: Uint16Array;
  /** 1 + the index in SKIP_REASONS of why the customer at k is left out; 0 otherwise (or an unlisted reason). */
  skips: Uint8Array;
}

/**
 * Identifies customer i into row k of the identity buffers: the one step the main thread and the
 * identify threads share. A person from the columns (profile fields first, then attributes under their
 * names, the first value of a name winning), the connector's rules, and the slots written at
 * `k * slotCount * SLOT_BYTES` in `slots`. Returns the connector's answer: the caller keeps plaintext, and
 * records a skip reason that SKIP_REASONS does not list.
 */
export function identifyOne(
  i: number,
  columns: readonly (readonly [string, TextColumn])[],
  identify: (person: Person) => Identified,
  out: IdentityBuffers,
  k: number,
  slots: Buffer,
): Identified {
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
    out.skips[k] = SKIP_REASONS.indexOf(id.skip) + 1;
    return id;
  }
  const at = k * out.slotCount * SLOT_BYTES;
  let mask = 0;
  for (let s = 0; s < id.slots.length && s < out.slotCount; s++) {
    const slot = id.slots[s];
    if (!slot) continue;
    if (typeof slot === 'string') slots.write(slot, at + s * SLOT_BYTES, SLOT_BYTES, 'latin1');
    else slots.set(slot.subarray(0, SLOT_BYTES), at + s * SLOT_BYTES);
    mask |= 1 << s;
  }
  if (mask === 0) {
    out.skips[k] = SKIP_REASONS.indexOf('no usable identifier') + 1;
    return { skip: 'no usable identifier' };
  }
  out.masks[k] = mask;
  return id;
}
