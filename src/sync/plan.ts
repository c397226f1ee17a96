import type { AudienceSpec } from '../audience/audiences.js';
import { membershipOf } from '../audience/audiences.js';
import type { Member } from '../connector.js';
import type { Identified, Person } from '../identity/types.js';
import type { Segmented } from '../score/pipeline.js';
import { PROFILE_FIELDS } from '../source/columns.js';
import type { TextColumn, TextParts } from '../source/text.js';
import { SKIP_REASONS } from '../identity/types.js';
import { computeKey, identifyOne, type IdentityBuffers } from './identify-one.js';
import { identifyInThreads, threadsAvailable } from './identify-pool.js';
import {
  decodeRecords,
  KEY_BYTES,
  MAX_SLOTS,
  recordLength,
  SLOT_BYTES,
  Status,
  type StateRecord,
} from '../state/records.js';
import { writeLegacyKey } from '../state/keys.js';
import type { AudienceState } from '../state/store.js';
import type { Suppression } from '../privacy/suppression.js';
import { isConsentReason } from '../identity/consent.js';

/** Below this many customers, starting threads costs more than it saves (`AUDIENCE_SYNC_THREADS_FROM` for tests). */
const THREADS_FROM = Number(process.env.AUDIENCE_SYNC_THREADS_FROM) || 20_000;

/** What a sync would do to one audience on one destination. */
export interface AudiencePlan {
  destination: string;
  audience: string;
  /** Customers of the audience's segments (after its filter), opted out included. */
  segmentSize: number;
  /** Customers that should be on the platform: in the segment, not opted out, identifiable. */
  members: number;
  /** Members the state says the platform holds (or is adding) before this run: what removals are a share of. */
  current: number;
  /** Customers to add (indexes; `Identities.member(i)` gives what is sent). */
  add: Uint32Array;
  /**
   * Members to remove, with the identifiers the state kept for them: first the `required` ones, then
   * customers whose identifiers changed, then the `left` ones.
   */
  remove: Member[];
  /**
   * The first of `remove` that privacy requires (suppressed, opted out, consent withdrawn): no check holds
   * them back. Told apart only when the plan is asked to (`classify`); otherwise 0 and counted in `left`.
   */
  required: number;
  /** The last of `remove`: members who left the audience (its segments, or the source). */
  left: number;
  /** Members who left an additive-only audience (`sync.removals: false`): kept on the platform and in the state. */
  kept: number;
  unchanged: number;
  /** Additions held back until a pending removal of the same customer or identifiers is done. */
  waiting: number;
  /** Sent earlier and still being processed by the platform. */
  pending: number;
  /** Named invalid by the platform earlier, unchanged since: not re-sent. */
  rejectedEarlier: number;
  /** Why members were left out: `opted out`, `no usable identifier`, `invalid email`, … */
  skipped: Record<string, number>;
  /** Records to drop without a platform call (rejected members who left; removals with nothing left to send). */
  forget: Buffer[];
  full: boolean;
}

/**
 * Identity of the customers for one destination: keys for everyone (8 bytes each, computed once), and the
 * identifier slots (32 bytes each) of the audience being planned, packed in one buffer that the next
 * audience replaces — so memory follows the largest audience, not the whole customer base.
 */
export class Identities {
  readonly slotCount: number;
  /** Slot indexes that form one identifier; every slot is in exactly one group. */
  readonly groups: readonly (readonly number[])[];
  /** Every customer's key at `i * KEY_BYTES` (zeros until computed). */
  readonly keys: Buffer;
  /** Keys, masks and skips of every customer, in shared memory: worker threads write them in place. */
  private readonly out: IdentityBuffers;
  private readonly masks: Uint16Array;
  private readonly skips: Uint8Array;
  /** Profile fields, then attributes under their names: what `identify` reads of a customer. */
  private readonly columns: [string, TextColumn][];
  /** Where customer i's slots are in `slots` (in slot-count units), or -1 when not held. */
  private readonly pos: Int32Array;
  private slots: Buffer = Buffer.alloc(0);
  private held: ArrayLike<number> = [];
  /** The held customers in order, shared with the threads. */
  private order = new Uint32Array(new SharedArrayBuffer(0));
  /** Scratch flags, a bit per customer, for planAudience. */
  private flags: Uint32Array | undefined;
  /** Customers identified outside the held audience (a removal's plaintext lookup): few. */
  private readonly extra = new Map<number, Buffer>();
  private readonly reasons: string[] = ['', ...SKIP_REASONS];
  private readonly plain = new Map<number, { email: string }>();
  /** Customers by key, built on the first removal when the platform needs plaintext. */
  private byKey: Promise<KeyIndex> | undefined;
  /** Customers by the key formats 1 and 2 gave them, built for the first state kept in one of those. */
  private legacy: Promise<KeyIndex> | undefined;

  constructor(
    private readonly segmented: Segmented,
    private readonly identify: (person: Person) => Identified,
    slotCount: number,
    groups: readonly (readonly number[])[] = [],
    /** The platform needs plaintext (Mailchimp's email) for removals too, when the source still has it. */
    private readonly plaintext = false,
    /** Worker threads: their script, the module of the connector's rules it loads, and its config. */
    private readonly threaded?: { script: URL; rules: string; config: unknown },
  ) {
    const n = segmented.customers.ids.length;
    this.slotCount = Math.min(slotCount, MAX_SLOTS);
    const grouped = new Set(groups.flat());
    this.groups = [
      ...groups,
      ...Array.from({ length: this.slotCount }, (_, s) => s)
        .filter((s) => !grouped.has(s))
        .map((s) => [s]),
    ];
    const { profile, attributes } = segmented.customers;
    this.columns = [
      ...PROFILE_FIELDS.flatMap((field) =>
        profile[field] ? [[field, profile[field]] as [string, TextColumn]] : [],
      ),
      ...Object.entries(attributes),
    ];
    this.out = {
      slotCount: this.slotCount,
      keys: Buffer.from(new SharedArrayBuffer(n * KEY_BYTES)),
      masks: new Uint16Array(new SharedArrayBuffer(n * 2)),
      skips: new Uint8Array(new SharedArrayBuffer(n)),
    };
    ({ keys: this.keys, masks: this.masks, skips: this.skips } = this.out);
    this.pos = new Int32Array(n).fill(-1);
  }

  /**
   * Identifies these customers (an audience's members) and holds their slots until the next call.
   * Yields to the event loop as it goes: millions of hashes must not stall job locks or signals.
   */
  async hold(customers: ArrayLike<number>): Promise<void> {
    for (let k = 0; k < this.held.length; k++) this.pos[this.held[k]!] = -1;
    this.plain.clear();
    this.extra.clear();
    this.held = customers;
    // One buffer for every audience, grown as needed: shared memory is freed only when the collector
    // notices, and a new buffer per audience would keep several hundred megabytes alive at 10 M customers.
    const bytes = customers.length * this.slotCount * SLOT_BYTES;
    if (this.slots.length < bytes) this.slots = Buffer.from(new SharedArrayBuffer(bytes));
    if (
      this.threaded &&
      !this.plaintext &&
      customers.length >= THREADS_FROM &&
      threadsAvailable(this.threaded.script)
    ) {
      if (this.order.length < customers.length)
        this.order = new Uint32Array(new SharedArrayBuffer(Math.ceil(customers.length * 1.25) * 4));
      const shared = this.order;
      for (let k = 0; k < customers.length; k++) {
        shared[k] = customers[k]!;
        this.pos[customers[k]!] = k;
      }
      const odd = await identifyInThreads(
        this.threaded.script,
        {
          rules: this.threaded.rules,
          config: this.threaded.config,
          columns: this.columns.map(([name, column]): [string, TextParts] => [name, column.parts()]),
          ids: this.segmented.customers.ids.parts(),
          customers: shared.buffer,
          slotCount: this.slotCount,
          slots: this.slots.buffer as SharedArrayBuffer,
          masks: this.masks.buffer as SharedArrayBuffer,
          skips: this.skips.buffer as SharedArrayBuffer,
          keys: this.keys.buffer as SharedArrayBuffer,
        },
        customers.length,
        (from, to) => {
          for (let k = from; k < to; k++)
            this.compute(shared[k]!, this.slots, k * this.slotCount * SLOT_BYTES);
        },
      );
      for (const [i, reason] of odd) this.skip(i, reason);
      return;
    }
    for (let k = 0; k < customers.length; k++) {
      if ((k & 0x3fff) === 0x3fff) await new Promise((resolve) => setImmediate(resolve));
      const i = customers[k]!;
      this.pos[i] = k;
      this.compute(i, this.slots, k * this.slotCount * SLOT_BYTES);
    }
  }

  /** A zeroed bit per customer (customer i at bit i % 32 of word i / 32), reused from audience to audience. */
  scratch(): Uint32Array {
    this.flags ??= new Uint32Array(Math.ceil(this.pos.length / 32));
    this.flags.fill(0);
    return this.flags;
  }

  /** The skip reason of customer i, or undefined when it has identifiers. */
  resolve(i: number): string | undefined {
    if (this.pos[i]! < 0 && !this.extra.has(i)) {
      const own = Buffer.alloc(this.slotCount * SLOT_BYTES);
      this.compute(i, own, 0);
      this.extra.set(i, own);
    }
    return this.skips[i] ? this.reasons[this.skips[i]!] : undefined;
  }

  /**
   * How a state of format 1 or 2 is read (`AudienceState.translateKeys`): an old key (SHA-256 of the id)
   * to the same customer's current key. Built once per destination, over every customer, and yielding
   * to the event loop as it goes (a hash per customer, once, in the first run after the upgrade).
   */
  async legacyTranslation(): Promise<(legacy: Buffer) => Buffer | undefined> {
    if (!this.legacy) {
      const { ids } = this.segmented.customers;
      const keys = Buffer.alloc(ids.length * KEY_BYTES);
      this.legacy = indexCustomers(keys, ids.length, (i) =>
        writeLegacyKey(ids.bytes(i)!, keys, i * KEY_BYTES),
      );
    }
    const index = await this.legacy;
    return (key) => {
      const i = index.get(key);
      return i < 0 ? undefined : this.key(i);
    };
  }

  key(i: number): Buffer {
    computeKey(i, this.segmented.customers.ids, this.out);
    return this.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
  }

  slot(i: number, s: number): Buffer | undefined {
    if (!(this.masks[i]! & (1 << s))) return undefined;
    const k = this.pos[i]!;
    if (k >= 0) {
      const at = (k * this.slotCount + s) * SLOT_BYTES;
      return this.slots.subarray(at, at + SLOT_BYTES);
    }
    return this.extra.get(i)?.subarray(s * SLOT_BYTES, (s + 1) * SLOT_BYTES);
  }

  member(i: number): Member {
    const slots: (Buffer | undefined)[] = [];
    for (let s = 0; s < this.slotCount; s++) slots.push(this.slot(i, s));
    return { key: this.key(i), slots, plain: this.plain.get(i) };
  }

  /** Distinct identifiers (slot and value) the given customers have between them. */
  distinctIdentifiers(indexes: Iterable<number>): number {
    const seen = new Set<string>();
    for (const i of indexes)
      for (let s = 0; s < this.slotCount; s++) {
        const v = this.slot(i, s);
        if (v) seen.add(`${s}:${v.toString('base64')}`);
      }
    return seen.size;
  }

  /** One identifier of customer i: the group's slots together, or undefined when none is present. */
  identifier(i: number, group: readonly number[]): string | undefined {
    return identifierOf(group, (s) => this.slot(i, s));
  }

  /** A cheap fingerprint of customer i's identifier in a group (its first present slot's first word). */
  fingerprint(i: number, group: readonly number[]): number | undefined {
    for (const s of group) {
      const v = this.slot(i, s);
      if (v) return v.readUInt32LE(0);
    }
    return undefined;
  }

  /**
   * The plaintext of a member to remove, when the platform needs it and the customer is still in the
   * source under the same identifiers (someone who left the segment, not someone who changed email).
   */
  async plainFor(record: StateRecord): Promise<{ email: string } | undefined> {
    if (!this.plaintext) return undefined;
    const i = await this.customerOf(record.key);
    if (i < 0 || this.resolve(i) !== undefined || !this.sameAs(i, record)) return undefined;
    return this.plain.get(i);
  }

  /**
   * Why privacy requires the customer with this key to leave every audience, if the source still has
   * them: opted out, suppressed under their current identifiers, or a consent the platform needs withdrawn.
   */
  async withdrawn(key: Buffer, suppressed: Suppression | undefined): Promise<string | undefined> {
    const i = await this.customerOf(key);
    if (i < 0) return undefined;
    if (this.segmented.customers.optedOut[i]) return 'opted out';
    const reason = this.resolve(i);
    if (reason !== undefined && isConsentReason(reason)) return reason;
    if (reason === undefined && suppressed?.matches(key, (s) => this.slot(i, s), this.slotCount))
      return 'suppressed';
    return undefined;
  }

  /** The customer with this key, or -1. */
  private async customerOf(key: Buffer): Promise<number> {
    const { ids } = this.segmented.customers;
    // The keys' own table (8 bytes per customer), not a Map of key strings (about 100).
    this.byKey ??= indexCustomers(this.keys, ids.length, (i) => computeKey(i, ids, this.out));
    return (await this.byKey).get(key);
  }

  /**
   * `sameAs` for a packed record at `at` in `packed` (current format), compared in place: the common case
   * of a diff, an unchanged member, without decoding the record.
   */
  samePacked(i: number, packed: Buffer, at: number): boolean {
    const k = this.pos[i]!;
    const mask = packed.readUInt16BE(at + KEY_BYTES + 1);
    if (k < 0 || mask !== this.masks[i]) return false;
    let from = at + KEY_BYTES + 3 + (packed[at + KEY_BYTES] === Status.addPending ? 4 : 0);
    for (let s = 0; s < this.slotCount; s++) {
      if (!(mask & (1 << s))) continue;
      const mine = (k * this.slotCount + s) * SLOT_BYTES;
      for (let b = 0; b < SLOT_BYTES; b++) if (packed[from + b] !== this.slots[mine + b]) return false;
      from += SLOT_BYTES;
    }
    return true;
  }

  /** Whether a state record holds exactly this customer's identifiers. */
  sameAs(i: number, record: StateRecord): boolean {
    for (let s = 0; s < Math.max(this.slotCount, record.slots.length); s++) {
      const mine = this.slot(i, s);
      const theirs = record.slots[s];
      if (!mine !== !theirs) return false;
      if (mine && theirs && !mine.equals(theirs)) return false;
    }
    return true;
  }

  private compute(i: number, into: Buffer, at: number): void {
    const id = identifyOne(i, this.columns, this.segmented.customers.ids, this.identify, this.out, into, at);
    if ('skip' in id) {
      if (!this.skips[i]) this.skip(i, id.skip);
    } else if (id.plain) this.plain.set(i, id.plain);
  }

  private skip(i: number, reason: string): void {
    let r = this.reasons.indexOf(reason);
    if (r < 0) r = this.reasons.push(reason) - 1;
    this.skips[i] = r;
  }
}

/**
 * Customers by key: open addressing over key bytes held by customer index (a Map of strings would need
 * ~100 bytes per customer; this needs 8).
 */
class KeyIndex {
  private readonly table: Int32Array;

  constructor(
    private readonly keys: Buffer,
    capacity: number,
  ) {
    let size = 16;
    while (size < capacity * 2) size *= 2;
    this.table = new Int32Array(size);
  }

  /** Indexes customer i under its key; false when a customer with that key is there already. */
  add(i: number): boolean {
    const mask = this.table.length - 1;
    let s = this.keys.readUInt32LE(i * KEY_BYTES) & mask;
    while (this.table[s] !== 0) {
      if (this.same(this.table[s]! - 1, this.keys, i * KEY_BYTES)) return false;
      s = (s + 1) & mask;
    }
    this.table[s] = i + 1;
    return true;
  }

  /** The customer with the key at `at` in `key`, or -1. */
  get(key: Buffer, at = 0): number {
    const mask = this.table.length - 1;
    for (let s = key.readUInt32LE(at) & mask; ; s = (s + 1) & mask) {
      const v = this.table[s]!;
      if (v === 0) return -1;
      if (this.same(v - 1, key, at)) return v - 1;
    }
  }

  private same(i: number, key: Buffer, at: number): boolean {
    const o = i * KEY_BYTES;
    for (let b = 0; b < KEY_BYTES; b++) if (this.keys[o + b] !== key[at + b]) return false;
    return true;
  }
}

/** Customers [0, n) by the keys `write(i)` puts in `keys`, yielding to the event loop as it goes. */
async function indexCustomers(keys: Buffer, n: number, write: (i: number) => void): Promise<KeyIndex> {
  const index = new KeyIndex(keys, n);
  for (let i = 0; i < n; i++) {
    if ((i & 0xffff) === 0xffff) await new Promise((resolve) => setImmediate(resolve));
    write(i);
    index.add(i);
  }
  return index;
}

/**
 * The customers an audience wants, in the order they came, and by key: the key table is built on the
 * first lookup, so a first run (an empty state) never builds it. Keys are unique per customer (64 bits
 * of a unique id; see keys.ts), so the list needs no table to stay free of duplicates.
 */
class Wanted {
  private readonly list: Uint32Array;
  private count = 0;
  private index: KeyIndex | undefined;

  constructor(
    private readonly keys: Buffer,
    capacity: number,
  ) {
    this.list = new Uint32Array(capacity);
  }

  add(i: number): void {
    this.list[this.count++] = i;
  }

  get members(): Uint32Array {
    return this.list.subarray(0, this.count);
  }

  /** The customer with the key at `at` in `key`, or -1. */
  get(key: Buffer, at = 0): number {
    if (!this.index) {
      this.index = new KeyIndex(this.keys, this.count);
      for (let k = 0; k < this.count; k++) this.index.add(this.list[k]!);
    }
    return this.index.get(key, at);
  }
}

/** Identifiers (group values) with a fingerprint each, so customers can be checked against them cheaply. */
class IdentifierSet {
  readonly values = new Set<string>();
  readonly prints = new Set<number>();

  /** Adds the identifier of one group of these slots, if any slot of the group is present. */
  add(group: readonly number[], slots: readonly (Buffer | undefined)[]): void {
    const value = identifierOf(group, (s) => slots[s]);
    if (value === undefined) return;
    this.values.add(value);
    for (const s of group)
      if (slots[s]) {
        this.prints.add(slots[s].readUInt32LE(0));
        break;
      }
  }

  /** How many of these customers hold each identifier (a fingerprint filters before any value is built). */
  holders(identities: Identities, customers: ArrayLike<number> & Iterable<number>): Map<string, number> {
    const counts = new Map<string, number>();
    if (this.values.size === 0) return counts;
    for (const i of customers)
      for (const g of identities.groups) {
        const print = identities.fingerprint(i, g);
        if (print === undefined || !this.prints.has(print)) continue;
        const v = identities.identifier(i, g)!;
        if (this.values.has(v)) counts.set(v, (counts.get(v) ?? 0) + 1);
      }
    return counts;
  }
}

/** A group of slots as one comparable value (latin1 of the slots, a marker for each absent one). */
function identifierOf(group: readonly number[], slot: (s: number) => Buffer | undefined): string | undefined {
  let out = '';
  let any = false;
  for (const s of group) {
    const v = slot(s);
    if (v) any = true;
    out += v ? v.toString('latin1') : '-';
  }
  return any ? out : undefined;
}

/**
 * Whether privacy requires this member to leave (suppressed under the identifiers we sent, or, while the
 * source has them, opted out, suppressed or without a consent the platform needs), whatever the audience's
 * checks hold back.
 */
async function requiredRemoval(
  record: StateRecord,
  identities: Identities,
  suppressed: Suppression | undefined,
): Promise<boolean> {
  if (suppressed?.matches(record.key, (s) => record.slots[s], record.slots.length)) return true;
  return (await identities.withdrawn(record.key, suppressed)) !== undefined;
}

/**
 * Compares the members an audience should have with what the state says the platform holds.
 * Removals go before additions; a changed customer is removed under the old identifiers and added
 * under the new; identifiers that other members still need are never part of a removal.
 */
export async function planAudience(
  spec: AudienceSpec,
  destination: string,
  segmented: Segmented,
  identities: Identities,
  state: AudienceState,
  /** The platform's results are final when add/remove return (no processing later). */
  final: boolean,
  options: {
    full?: boolean;
    suppressed?: Suppression;
    /** false: additive only, members who left stay on the platform (privacy removals still go). */
    removals?: boolean;
    /** Tell the removals privacy requires from the others (`required`): needed when a check may hold removals. */
    classify?: boolean;
  } = {},
): Promise<AudiencePlan> {
  const full = options.full ?? false;
  const membership = membershipOf(spec, segmented);
  const skipped: Record<string, number> = {};
  if (membership.optedOut > 0) skipped['opted out'] = membership.optedOut;

  // Desired members by key.
  await identities.hold(membership.members);
  const desired = new Wanted(identities.keys, membership.members.length);
  const suppressed = options.suppressed?.empty === false ? options.suppressed : undefined;
  for (const i of membership.members) {
    let reason = identities.resolve(i);
    // Someone who asked to be forgotten, under this customer id or another with the same email or phone.
    if (
      reason === undefined &&
      suppressed?.matches(identities.key(i), (s) => identities.slot(i, s), identities.slotCount)
    )
      reason = 'suppressed';
    if (reason !== undefined) skipped[reason] = (skipped[reason] ?? 0) + 1;
    else desired.add(i);
  }

  const plan: AudiencePlan = {
    destination,
    audience: spec.name,
    segmentSize: membership.segmentSize,
    members: desired.members.length,
    current: 0,
    add: new Uint32Array(0),
    remove: [],
    required: 0,
    left: 0,
    kept: 0,
    unchanged: 0,
    waiting: 0,
    pending: 0,
    rejectedEarlier: 0,
    skipped,
    forget: [],
    full,
  };

  // A state from before format 3 keys its members by SHA-256 of their ids: it is read through a translation.
  if (await state.legacyKeys()) state.translateKeys(await identities.legacyTranslation());

  // Removals are decided after the scan: an identifier another desired member still has must stay.
  // Built as an array, kept typed: millions of indexes at 4 bytes each.
  let add: number[] = [];
  const leaving: { record: StateRecord; self?: number }[] = [];
  const removing = new IdentifierSet();
  const seen = identities.scratch();
  const changed: number[] = [];
  const copy = (r: StateRecord): StateRecord => ({
    ...r,
    key: Buffer.from(r.key),
    slots: r.slots.map((x) => (x ? Buffer.from(x) : undefined)),
  });
  for await (const packed of state.scanPacked()) {
    for (let at = 0; at < packed.length;) {
      const length = recordLength(packed, at);
      const want = desired.get(packed, at);
      if (want >= 0) seen[want >>> 5] = seen[want >>> 5]! | (1 << (want & 31));
      const status = packed[at + KEY_BYTES];
      // Most members are unchanged: told in place, without decoding their record.
      if (
        want >= 0 &&
        !full &&
        (status === Status.confirmed || status === Status.addPending) &&
        identities.samePacked(want, packed, at)
      ) {
        plan.current++;
        if (status === Status.addPending) plan.pending++;
        else plan.unchanged++;
        at += length;
        continue;
      }
      const r = decodeRecords(packed.subarray(at, at + length))[0]!;
      at += length;
      switch (r.status) {
        case Status.removePending:
          for (const g of identities.groups) removing.add(g, r.slots);
          if (want >= 0) plan.waiting++;
          else plan.pending++;
          break;
        case Status.rejected:
          if (want < 0) plan.forget.push(Buffer.from(r.key));
          else if (identities.sameAs(want, r)) plan.rejectedEarlier++;
          else add.push(want);
          break;
        default: {
          // confirmed or addPending: on the platform, or on its way there.
          plan.current++;
          if (want < 0) {
            leaving.push({ record: copy(r) });
            break;
          }
          const same = identities.sameAs(want, r);
          if (same && !full) {
            if (r.status === Status.addPending) plan.pending++;
            else plan.unchanged++;
          } else if (same) add.push(want);
          else {
            leaving.push({ record: copy(r), self: want });
            changed.push(want);
          }
        }
      }
    }
  }
  for (const i of desired.members) if (!(seen[i >>> 5]! & (1 << (i & 31)))) add.push(i);

  const additive = options.removals === false;
  if (leaving.length > 0) {
    const classify = additive || options.classify === true;
    // Removals by kind, in the order `remove` holds them.
    const kinds: { required: Member[]; changed: Member[]; left: Member[] } = {
      required: [],
      changed: [],
      left: [],
    };
    const going: { record: StateRecord; self?: number; kind: keyof typeof kinds }[] = [];
    for (const { record, self } of leaving) {
      if (self !== undefined) going.push({ record, self, kind: 'changed' });
      else if (classify && (await requiredRemoval(record, identities, suppressed)))
        going.push({ record, kind: 'required' });
      // Additive only: the member stays on the platform, and its record in the state as it is.
      else if (additive) plan.kept++;
      else going.push({ record, kind: 'left' });
    }
    const values = new IdentifierSet();
    for (const { record } of going) for (const g of identities.groups) values.add(g, record.slots);
    const holders = values.holders(identities, desired.members);
    for (const { record, self, kind } of going) {
      const slots = record.slots.slice();
      for (const group of identities.groups) {
        const value = identifierOf(group, (s) => record.slots[s]);
        if (value === undefined) continue;
        const own = self !== undefined && identities.identifier(self, group) === value ? 1 : 0;
        if ((holders.get(value) ?? 0) - own > 0) for (const s of group) slots[s] = undefined;
      }
      if (slots.some(Boolean))
        kinds[kind].push({ key: record.key, slots, plain: await identities.plainFor(record) });
      else plan.forget.push(record.key);
    }
    plan.remove = [...kinds.required, ...kinds.changed, ...kinds.left];
    plan.required = kinds.required.length;
    plan.left = kinds.left.length;
  }

  if (final) {
    // Removals finish before additions start, within the run.
    for (const i of changed) add.push(i);
  } else {
    // The platform processes removals later: an addition that shares a customer or an identifier
    // with a removal in flight waits for the next run, so the removal cannot take it away.
    for (const m of plan.remove) for (const g of identities.groups) removing.add(g, m.slots);
    plan.waiting += changed.length;
    if (removing.values.size > 0)
      add = add.filter((i) => {
        const overlaps = identities.groups.some((g) => {
          const print = identities.fingerprint(i, g);
          return (
            print !== undefined &&
            removing.prints.has(print) &&
            removing.values.has(identities.identifier(i, g)!)
          );
        });
        if (overlaps) plan.waiting++;
        return !overlaps;
      });
  }
  plan.add = Uint32Array.from(add);
  return plan;
}
