/**
 * What we know a platform holds for one audience, packed as binary: per member 15 bytes of overhead
 * (key 8, status 1, upload 4, slot mask 2) plus 32 bytes per identifier kept for removals.
 */

export const KEY_BYTES = 8;
export const SLOT_BYTES = 32;
export const MAX_SLOTS = 16;
const HEADER = KEY_BYTES + 1 + 4 + 2;

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

export function encodedSize(record: StateRecord): number {
  let n = HEADER;
  for (const s of record.slots) if (s) n += SLOT_BYTES;
  return n;
}

export function encodeRecords(records: readonly StateRecord[]): Buffer {
  let size = 0;
  for (const r of records) size += encodedSize(r);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const r of records) at = writeRecord(out, at, r);
  return out;
}

function writeRecord(out: Buffer, at: number, r: StateRecord): number {
  r.key.copy(out, at, 0, KEY_BYTES);
  out[at + KEY_BYTES] = r.status;
  out.writeUInt32BE(r.upload >>> 0, at + KEY_BYTES + 1);
  let mask = 0;
  r.slots.forEach((s, i) => {
    if (s) mask |= 1 << i;
  });
  out.writeUInt16BE(mask, at + KEY_BYTES + 5);
  at += HEADER;
  for (const s of r.slots) {
    if (!s) continue;
    s.copy(out, at, 0, SLOT_BYTES);
    at += SLOT_BYTES;
  }
  return at;
}

/** Decodes records; keys and slots are views into `buf` (copy them to keep past its life). */
export function decodeRecords(buf: Buffer): StateRecord[] {
  const out: StateRecord[] = [];
  let at = 0;
  while (at < buf.length) {
    const key = buf.subarray(at, at + KEY_BYTES);
    const status = buf[at + KEY_BYTES] as Status;
    const upload = buf.readUInt32BE(at + KEY_BYTES + 1);
    const mask = buf.readUInt16BE(at + KEY_BYTES + 5);
    at += HEADER;
    const slots: (Buffer | undefined)[] = [];
    for (let i = 0; i < MAX_SLOTS && mask >> i; i++) {
      if (mask & (1 << i)) {
        slots.push(buf.subarray(at, at + SLOT_BYTES));
        at += SLOT_BYTES;
      } else slots.push(undefined);
    }
    out.push({ key, status, upload, slots });
  }
  return out;
}

export function sameSlots(a: readonly (Buffer | undefined)[], b: readonly (Buffer | undefined)[]): boolean {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (!x !== !y) return false;
    if (x && y && !x.equals(y)) return false;
  }
  return true;
}
