/**
 * What we know a platform holds for one audience, packed as binary. Format 3 (current), per member:
 * key 8, status 1, slot mask 2, then the upload id 4 only while the member waits on one, then 32 bytes per
 * identifier kept for removals: 11 bytes of overhead for a settled member. Format 2 had the same layout
 * and keys of SHA-256 (see keys.ts). Format 1 (the first, unmarked) stored the upload id for every member
 * (15 bytes). Older formats are read to upgrade a state, never written.
 */

export const KEY_BYTES = 8;
export const SLOT_BYTES = 32;
export const MAX_SLOTS = 16;
export const FORMAT = 3;
export type Format = 1 | 2 | 3;

export const Status = {
  /** On the platform, as far as we know. */
  confirmed: 0,
  /** Sent; the platform accepted the batch and processes it later. */
  addPending: 1,
  /** Removal sent and accepted; processed later. */
  removePending: 2,
  /** The platform named it invalid: not on the platform; not re-sent until its identifiers change. */
  rejected: 3,
  /** Journal only: the member is no longer in the state. */
  deleted: 255,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

export interface StateRecord {
  key: Buffer;
  status: Status;
  /** The upload (batch) a pending status waits on; 0 when none. */
  upload: number;
  slots: (Buffer | undefined)[];
}

const waits = (status: Status) => status === Status.addPending || status === Status.removePending;

export function encodedSize(record: StateRecord): number {
  let n = KEY_BYTES + 3 + (waits(record.status) ? 4 : 0);
  for (const s of record.slots) if (s) n += SLOT_BYTES;
  return n;
}

/** Encodes in the current format. */
export function encodeRecords(records: readonly StateRecord[]): Buffer {
  let size = 0;
  for (const r of records) size += encodedSize(r);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const r of records) {
    // TypedArray.set of exact views, not Buffer.copy: a million records are a batch of a first sync.
    out.set(r.key.length === KEY_BYTES ? r.key : r.key.subarray(0, KEY_BYTES), at);
    out[at + KEY_BYTES] = r.status;
    let mask = 0;
    for (let i = 0; i < r.slots.length; i++) if (r.slots[i]) mask |= 1 << i;
    out[at + KEY_BYTES + 1] = mask >>> 8;
    out[at + KEY_BYTES + 2] = mask & 0xff;
    at += KEY_BYTES + 3;
    if (waits(r.status)) at = out.writeUInt32BE(r.upload >>> 0, at);
    for (let i = 0; i < r.slots.length; i++) {
      const s = r.slots[i];
      if (!s) continue;
      out.set(s.length === SLOT_BYTES ? s : s.subarray(0, SLOT_BYTES), at);
      at += SLOT_BYTES;
    }
  }
  return out;
}

/** The length of the record at `at` (current format), from its status and slot mask. */
export function recordLength(buf: Buffer, at: number): number {
  let mask = buf.readUInt16BE(at + KEY_BYTES + 1);
  let n = KEY_BYTES + 3 + (waits(buf[at + KEY_BYTES] as Status) ? 4 : 0);
  for (; mask; mask &= mask - 1) n += SLOT_BYTES;
  return n;
}

/** Decodes records of either format; keys and slots are views into `buf` (copy them to keep past its life). */
export function decodeRecords(buf: Buffer, format: Format = FORMAT): StateRecord[] {
  const out: StateRecord[] = [];
  let at = 0;
  while (at < buf.length) {
    const key = buf.subarray(at, at + KEY_BYTES);
    const status = buf[at + KEY_BYTES] as Status;
    let upload = 0;
    let mask: number;
    if (format === 1) {
      upload = buf.readUInt32BE(at + KEY_BYTES + 1);
      mask = buf.readUInt16BE(at + KEY_BYTES + 5);
      at += KEY_BYTES + 7;
    } else {
      mask = buf.readUInt16BE(at + KEY_BYTES + 1);
      at += KEY_BYTES + 3;
      if (waits(status)) {
        upload = buf.readUInt32BE(at);
        at += 4;
      }
    }
    const slots: (Buffer | undefined)[] = [];
    for (let i = 0; i < MAX_SLOTS && mask >> i; i++) {
      if (mask & (1 << i)) {
        slots.push(buf.subarray(at, at + SLOT_BYTES));
        at += SLOT_BYTES;
      } else slots.push(undefined);
    }
    out.push({ key, status, upload: waits(status) ? upload : 0, slots });
  }
  return out;
}
