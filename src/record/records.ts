/**
 * What we know a platform holds for one audience, packed as binary: the one place that knows the layout.
 * Format 3, per member: key 8, status 1, slot mask 2, then the upload id 4 only while the member waits on
 * one, then 32 bytes per identifier kept for removals: 11 bytes of overhead for a settled member. Records
 * of one bucket are sorted by key. Formats 1 and 2 (development builds before 0.1.0) are not read: a
 * state in one of them is replaced whole (see `AudienceState.outdated`).
 */

export const KEY_BYTES = 8;
export const SLOT_BYTES = 32;
export const MAX_SLOTS = 16;
export const FORMAT = 3;

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
  slots: readonly (Buffer | undefined)[];
}

/**
 * A member's slots where they lie, unpacked: slot s, when bit s of `mask` is set, is the 32 bytes at
 * `at + s * SLOT_BYTES` of `bytes` (an identity table's row). Read in place, it costs no Buffer per slot.
 */
export interface SlotRow {
  readonly bytes: Buffer;
  readonly at: number;
  readonly mask: number;
}

/** Slots held as a list, or as a row (`SlotRow`), which is read first where there is one. */
export interface HeldSlots {
  readonly slots?: StateRecord['slots'] | undefined;
  readonly row?: SlotRow | undefined;
}

/** A record to write: its slots as a list or as a row (none: no slots). */
export type RecordToWrite = Omit<StateRecord, 'slots'> & HeldSlots;

const waits = (status: Status) => status === Status.addPending || status === Status.removePending;

/** Which slots are held (bit s: slot s): the row's mask, without reading the list, where there is a row. */
export function slotMask(held: HeldSlots): number {
  if (held.row) return held.row.mask;
  const slots = held.slots ?? [];
  let mask = 0;
  for (let i = 0; i < slots.length; i++) if (slots[i]) mask |= 1 << i;
  return mask;
}

/** Set bits of a 16-bit mask. */
function bitsIn(mask: number): number {
  let n = 0;
  for (let m = mask; m !== 0; m &= m - 1) n++;
  return n;
}

export function encodedSize(record: RecordToWrite): number {
  return KEY_BYTES + 3 + (waits(record.status) ? 4 : 0) + bitsIn(slotMask(record)) * SLOT_BYTES;
}

export function encodeRecords(records: readonly RecordToWrite[]): Buffer {
  let size = 0;
  for (const r of records) size += encodedSize(r);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const r of records) {
    // TypedArray.set of exact views, not Buffer.copy: a million records are a batch of a first sync.
    out.set(r.key.length === KEY_BYTES ? r.key : r.key.subarray(0, KEY_BYTES), at);
    out[at + KEY_BYTES] = r.status;
    const mask = slotMask(r);
    out[at + KEY_BYTES + 1] = mask >>> 8;
    out[at + KEY_BYTES + 2] = mask & 0xff;
    at += KEY_BYTES + 3;
    if (waits(r.status)) at = out.writeUInt32BE(r.upload >>> 0, at);
    if (r.row) {
      // Present slots that lie side by side in the row go in one copy.
      const { bytes, at: from } = r.row;
      for (let s = 0; mask >>> s !== 0;) {
        if (!(mask & (1 << s))) {
          s++;
          continue;
        }
        let end = s + 1;
        while (mask & (1 << end)) end++;
        at += bytes.copy(out, at, from + s * SLOT_BYTES, from + end * SLOT_BYTES);
        s = end;
      }
      continue;
    }
    const slots = r.slots ?? [];
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (!s) continue;
      out.set(s.length === SLOT_BYTES ? s : s.subarray(0, SLOT_BYTES), at);
      at += SLOT_BYTES;
    }
  }
  return out;
}

/** The status of the packed record at `at`. */
export function statusAt(buf: Buffer, at: number): Status {
  return buf[at + KEY_BYTES] as Status;
}

/** Which slots the packed record at `at` keeps (bit s: slot s). */
export function maskAt(buf: Buffer, at: number): number {
  return buf.readUInt16BE(at + KEY_BYTES + 1);
}

/** Where the first kept slot of the packed record at `at` starts; the others follow, 32 bytes each. */
export function slotsAt(buf: Buffer, at: number): number {
  return at + KEY_BYTES + 3 + (waits(statusAt(buf, at)) ? 4 : 0);
}

/** The length of the packed record at `at`, from its status and slot mask. */
export function recordLength(buf: Buffer, at: number): number {
  let n = slotsAt(buf, at) - at;
  for (let mask = maskAt(buf, at); mask; mask &= mask - 1) n += SLOT_BYTES;
  return n;
}

/** The first four bytes of the key at `at`, as an unsigned number (keys sort by it first). */
export function keyHigh(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at);
}

/** The last four bytes of the key at `at`, as an unsigned number. */
export function keyLow(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at + 4);
}

/** Compares the keys at `a` in `x` and at `b` in `y` (byte order, which is the order records are kept in). */
export function compareKeys(x: Buffer, a: number, y: Buffer, b: number): number {
  return x.readUInt32BE(a) - y.readUInt32BE(b) || x.readUInt32BE(a + 4) - y.readUInt32BE(b + 4);
}

/** Decodes packed records; keys and slots are views into `buf` (copy them to keep past its life). */
export function decodeRecords(buf: Buffer): StateRecord[] {
  const out: StateRecord[] = [];
  for (let at = 0; at < buf.length; at += recordLength(buf, at)) out.push(decodeAt(buf, at));
  return out;
}

/** The packed record at `at`, decoded (views into `buf`). */
export function decodeAt(buf: Buffer, at: number): StateRecord {
  const status = statusAt(buf, at);
  const mask = maskAt(buf, at);
  let from = slotsAt(buf, at);
  const slots: (Buffer | undefined)[] = [];
  for (let i = 0; i < MAX_SLOTS && mask >> i; i++) {
    if (mask & (1 << i)) {
      slots.push(buf.subarray(from, from + SLOT_BYTES));
      from += SLOT_BYTES;
    } else slots.push(undefined);
  }
  return {
    key: buf.subarray(at, at + KEY_BYTES),
    status,
    upload: waits(status) ? buf.readUInt32BE(at + KEY_BYTES + 3) : 0,
    slots,
  };
}
