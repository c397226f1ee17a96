import type { Member } from '../connector.js';
import { isConsentReason } from './consent.js';
import { SKIP_REASONS, type Identified, type Person } from './types.js';
import type { Suppression } from '../privacy/suppression.js';
import type { Segmented } from '../score/pipeline.js';
import { PROFILE_FIELDS } from '../source/columns.js';
import type { TextColumn, TextParts } from '../source/text.js';
import { writeKey } from '../record/keys.js';
import {
  KEY_BYTES,
  maskAt,
  MAX_SLOTS,
  SLOT_BYTES,
  slotsAt,
  type SlotRow,
  type StateRecord,
} from '../record/records.js';
import { digestSlots, identifyOne, type IdentityBuffers } from './one.js';
import { identifyInThreads, sliceFor, threadsAvailable } from './pool.js';

/** Below this many customers, starting threads costs more than it saves (`AUDIENCE_SYNC_THREADS_FROM` for tests). */
const THREADS_FROM = Number(process.env.AUDIENCE_SYNC_THREADS_FROM) || 20_000;

/** How one destination identifies a person: its connector's rules, slots and needs. */
export interface IdentifyRules {
  identify: (person: Person) => Identified;
  slotCount: number;
  /** Slot indexes that form one identifier (Google's address: four slots); others stand alone. */
  groups?: readonly (readonly number[])[];
  /** The platform needs plaintext (Mailchimp's email) to add and to remove. */
  plaintext?: boolean;
  /** Skip reasons of the connector's own (`ConnectorDefinition.skipReasons`), counted by code after SKIP_REASONS. */
  reasons?: readonly string[] | undefined;
  /** Worker threads: their script, the module of the connector's rules it loads, and its config. */
  threaded?: { script: URL; rules: string; config: unknown };
}

/**
 * Customers by key, for the few lookups of members leaving an audience: every customer's key (see
 * keys.ts), 8 bytes by customer index, and an index over them, built on the first lookup and kept for the
 * source's life (shared by its destinations).
 */
export class CustomerKeys {
  private static readonly bySource = new WeakMap<Segmented, CustomerKeys>();
  private readonly keys: Buffer;
  private index: Promise<KeyIndex> | undefined;

  private constructor(private readonly ids: TextColumn) {
    this.keys = Buffer.allocUnsafe(ids.length * KEY_BYTES);
  }

  static of(segmented: Segmented): CustomerKeys {
    let keys = CustomerKeys.bySource.get(segmented);
    if (!keys) CustomerKeys.bySource.set(segmented, (keys = new CustomerKeys(segmented.customers.ids)));
    return keys;
  }

  /** The customer with this key, or -1. The first call indexes every customer, yielding as it goes. */
  async customerOf(key: Buffer): Promise<number> {
    this.index ??= (async () => {
      const index = new KeyIndex(this.keys, this.ids.length);
      for (let i = 0; i < this.ids.length; i++) {
        if ((i & 0xffff) === 0xffff) await new Promise((resolve) => setImmediate(resolve));
        writeKey(this.ids.bytes(i)!, this.keys, i * KEY_BYTES);
        index.add(i);
      }
      return index;
    })();
    return (await this.index).get(key);
  }
}

/**
 * One audience's customers as one platform knows them: entry k is customer `customers[k]` (in the
 * source's order, as identified), with its key and either its identifier slots or why it is left out. A
 * value: nothing changes it once `Identifier.identify` returns, so members built from it stay right however
 * long they wait to be sent.
 */
export class IdentityTable {
  constructor(
    readonly slotCount: number,
    /** Slot indexes that form one identifier; every slot is in exactly one group. */
    readonly groups: readonly (readonly number[])[],
    /** Entry k's customer (an index into the source). */
    readonly customers: Uint32Array,
    /** Entry k's key at `k * KEY_BYTES`. */
    readonly keys: Buffer,
    /** Which slots entry k has (0 when it is left out). */
    readonly masks: Uint16Array,
    /** 0 for a row with identifiers, else 1 + the index of why it is left out in `reasons`. */
    readonly skips: Uint8Array,
    readonly reasons: readonly string[],
    /**
     * Entry k's slot s at `((k % perChunk) * slotCount + s) * SLOT_BYTES` of chunk `⌊k / perChunk⌋`: a
     * chunk is one slice as the identify thread made it, not copied into one buffer.
     */
    readonly slots: readonly Buffer[],
    readonly perChunk: number,
    /** Plaintext the platform needs, by entry (Mailchimp's email), in memory only. */
    readonly plain: ReadonlyMap<number, { email: string }>,
  ) {}

  get size(): number {
    return this.customers.length;
  }

  /** Why entry k is left out, or undefined when it has identifiers. */
  reason(k: number): string | undefined {
    return this.skips[k] ? this.reasons[this.skips[k] - 1] : undefined;
  }

  slot(k: number, s: number): Buffer | undefined {
    if (!(this.masks[k]! & (1 << s))) return undefined;
    const at = ((k % this.perChunk) * this.slotCount + s) * SLOT_BYTES;
    return this.slots[(k / this.perChunk) | 0]!.subarray(at, at + SLOT_BYTES);
  }

  member(k: number): Member {
    const row = {
      bytes: this.slots[(k / this.perChunk) | 0]!,
      at: (k % this.perChunk) * this.slotCount * SLOT_BYTES,
      mask: this.masks[k]!,
    };
    return new TableMember(
      this.keys.subarray(k * KEY_BYTES, (k + 1) * KEY_BYTES),
      row,
      this.slotCount,
      this.plain.get(k),
    );
  }

  /** Members of these entries, built batch by batch (`slice`) rather than all at once. */
  members(entries: Uint32Array): MemberList {
    return {
      length: entries.length,
      slice: (from, to) => Array.from(entries.subarray(from, to), (k) => this.member(k)),
      distinctIdentifiers: () => {
        const seen = new Set<string>();
        for (const k of entries)
          for (let s = 0; s < this.slotCount; s++) {
            const v = this.slot(k, s);
            if (v) seen.add(`${s}:${v.toString('base64')}`);
          }
        return seen.size;
      },
    };
  }

  /** One identifier of entry k: the group's slots together, or undefined when none is present. */
  identifier(k: number, group: readonly number[]): string | undefined {
    return identifierOf(group, (s) => this.slot(k, s));
  }

  /** A cheap fingerprint of entry k's identifier in a group (its first present slot's first word). */
  fingerprint(k: number, group: readonly number[]): number | undefined {
    const mask = this.masks[k]!;
    for (const s of group)
      if (mask & (1 << s))
        return this.slots[(k / this.perChunk) | 0]!.readUInt32LE(
          ((k % this.perChunk) * this.slotCount + s) * SLOT_BYTES,
        );
    return undefined;
  }

  /** Whether a state record keeps exactly entry k's slots. */
  sameAs(k: number, record: StateRecord): boolean {
    for (let s = 0; s < Math.max(this.slotCount, record.slots.length); s++) {
      const mine = this.slot(k, s);
      const theirs = record.slots[s];
      if (!mine !== !theirs) return false;
      if (mine && theirs && !mine.equals(theirs)) return false;
    }
    return true;
  }
}

/** A member of an identity table: its slots read where they lie (`row`), and as a list only when asked. */
class TableMember implements Member {
  private list: (Buffer | undefined)[] | undefined;

  constructor(
    readonly key: Buffer,
    readonly row: SlotRow,
    private readonly slotCount: number,
    readonly plain: { email: string } | undefined,
  ) {}

  get slots(): readonly (Buffer | undefined)[] {
    if (this.list) return this.list;
    const { bytes, at, mask } = this.row;
    this.list = [];
    for (let s = 0; s < this.slotCount; s++)
      this.list.push(
        mask & (1 << s) ? bytes.subarray(at + s * SLOT_BYTES, at + (s + 1) * SLOT_BYTES) : undefined,
      );
    return this.list;
  }
}

/**
 * An identity table's entries in key order, with what the diff reads of each in that order, so that it
 * reads them in sequence: row r is entry `order[r]`, `his[r]` and `los[r]` the halves of its key,
 * `marks[r]` its slot mask (or LEFT_OUT), `d1[r]` and `d2[r]` the digest of its slots (`digestSlots`).
 * Made with the table, for the diff only (it is let go once the table is merged with the state).
 */
export class KeyOrder {
  constructor(
    readonly slotCount: number,
    readonly order: Uint32Array,
    readonly his: Uint32Array,
    readonly los: Uint32Array,
    readonly marks: Uint32Array,
    readonly d1: Uint32Array,
    readonly d2: Uint32Array,
  ) {}

  /** Where `unchangedAt` puts a record's digest. */
  private readonly digest = new Uint32Array(2);

  get size(): number {
    return this.order.length;
  }

  /**
   * Whether the packed record at `at` keeps row r's slots: its mask, and the digest of its slots (the
   * table's own slots are not in key order, and are not read).
   */
  unchangedAt(r: number, packed: Buffer, at: number): boolean {
    const mask = maskAt(packed, at);
    if (mask !== this.marks[r]) return false;
    digestSlots(packed, slotsAt(packed, at), mask, this.slotCount, true, this.digest, 0);
    return this.digest[0] === this.d1[r] && this.digest[1] === this.d2[r];
  }
}

/** Members to send, built from an identity table batch by batch. */
export interface MemberList {
  readonly length: number;
  slice(from: number, to: number): Member[];
  /** Distinct identifiers (slot and value) the members have between them. */
  distinctIdentifiers(): number;
}

/** A group of slots as one comparable value (latin1 of the slots, a marker for each absent one). */
export function identifierOf(
  group: readonly number[],
  slot: (s: number) => Buffer | undefined,
): string | undefined {
  let out = '';
  let any = false;
  for (const s of group) {
    const v = slot(s);
    if (v) any = true;
    out += v ? v.toString('latin1') : '-';
  }
  return any ? out : undefined;
}

/** What the source says now of a customer who is leaving an audience (`describeLeavers`). */
export interface Leaver {
  /** Why privacy requires them to leave every audience: opted out, suppressed, a consent withdrawn. */
  withdrawn?: string;
  /** Their plaintext (Mailchimp's email), when the platform needs it and their identifiers are unchanged. */
  plain?: { email: string };
}

/** The identify stage for one destination over one source: tables of audiences, and what leavers are now. */
export class Identifier {
  readonly slotCount: number;
  readonly groups: readonly (readonly number[])[];
  /** The reasons a skip is counted by (its code: 1 + the index here): the core's, then the connector's. */
  private readonly reasons: readonly string[];
  private readonly keys: CustomerKeys;
  /** Profile fields, then attributes under their names: what `identify` reads of a customer. */
  private readonly columns: [string, TextColumn][];
  private readonly ids: TextColumn;
  private room: Uint32Array[] = [];
  /** Whether the sort's room is kept for another audience's (see `lastAudience`). */
  private keepRoom = true;
  /** The next audiences' identifications, started ahead (`ahead`), in the order they were asked for. */
  private queue: Ahead[] = [];

  constructor(
    private readonly segmented: Segmented,
    private readonly rules: IdentifyRules,
  ) {
    this.slotCount = Math.min(rules.slotCount, MAX_SLOTS);
    const grouped = new Set((rules.groups ?? []).flat());
    this.groups = [
      ...(rules.groups ?? []),
      ...Array.from({ length: this.slotCount }, (_, s) => s)
        .filter((s) => !grouped.has(s))
        .map((s) => [s]),
    ];
    // Codes are bytes (0: none); a reason beyond them is counted one by one, like an unlisted one.
    this.reasons = [...SKIP_REASONS, ...(rules.reasons ?? [])].slice(0, 255);
    this.keys = CustomerKeys.of(segmented);
    this.ids = segmented.customers.ids;
    const { profile, attributes } = segmented.customers;
    this.columns = [
      ...PROFILE_FIELDS.flatMap((field) =>
        profile[field] ? [[field, profile[field]] as [string, TextColumn]] : [],
      ),
      ...Object.entries(attributes),
    ];
  }

  /**
   * Says that the audience identified next is the last: its sort's room (35 bytes per member) is let go
   * after it, not held through its diff and push (a worker's run of one audience, two runs at once: about
   * 70 MB each at 2 M members).
   */
  lastAudience(): void {
    this.keepRoom = false;
  }

  /** Bytes of the table of `n` members as identified: keys, digests, masks, skips and slots. */
  private madeBytes(n: number): number {
    return n * (KEY_BYTES + 11 + this.slotCount * SLOT_BYTES);
  }

  /**
   * About what an audience of `n` members holds in this stage while its run goes on (`MemoryBudget`): its
   * table, the members' list, their key order for the diff (six words each) and the sort's room (seven).
   */
  runBytes(n: number): number {
    return this.madeBytes(n) + n * 4 * (1 + 6 + 7);
  }

  /**
   * Starts identifying these customers (a later audience's members) on the worker threads, for a later
   * `identify` of the same array to finish: the threads work while this thread sends the audiences before.
   * Several can wait, each started once the one before has left the threads (a short audience's sending
   * does not leave the threads idle until the next is planned), up to `AHEAD_BYTES` of tables in all, held
   * besides the audience being sent. Returns whether it was taken: nothing is started without threads, or
   * beyond that memory.
   */
  ahead(members: Uint32Array): boolean {
    const bytes = this.madeBytes(members.length);
    const held = this.queue.reduce((sum, a) => sum + a.bytes, 0);
    if (!this.threadedFor(members.length) || held + bytes > AHEAD_BYTES) return false;
    const before = this.queue.at(-1)?.started ?? Promise.resolve(undefined);
    const entry: Ahead = {
      members,
      bytes,
      wanted: true,
      // Not started at all if it is no longer wanted by its turn (see `identify`).
      started: before.then(async (earlier) => {
        await earlier?.threadsDone;
        return entry.wanted ? this.start(members) : undefined;
      }),
    };
    this.queue.push(entry);
    return true;
  }

  /**
   * Identifies these customers (an audience's members) into a table in key order; a customer on the
   * suppression list is left out as `suppressed`. Yields to the event loop as it goes, or identifies in
   * worker threads: millions of hashes must not stall job locks or signals.
   */
  async identify(
    members: Uint32Array,
    suppressed?: Suppression,
  ): Promise<{ table: IdentityTable; byKey: KeyOrder }> {
    const n = members.length;
    // Its own identification started ahead, if any; those asked for before it are not wanted any more.
    const at = this.queue.findIndex((a) => a.members === members);
    const taken = this.queue[at];
    for (const earlier of this.queue.splice(0, at + 1)) earlier.wanted = earlier === taken;
    const started = taken ? await taken.started : this.start(members);
    const { out, slots, per, reasons, plain, skip } = await started!.finish();
    const table = new IdentityTable(
      this.slotCount,
      this.groups,
      members,
      out.keys,
      out.masks,
      out.skips,
      reasons,
      slots,
      per,
      plain,
    );
    // The last step of making the table (it is not handed out before): who is on the suppression list.
    if (suppressed && !suppressed.empty)
      for (let k = 0; k < n; k++) {
        if (out.skips[k]) continue;
        const key = out.keys.subarray(k * KEY_BYTES, (k + 1) * KEY_BYTES);
        if (suppressed.matches(key, (s) => table.slot(k, s), this.slotCount)) {
          skip(k, 'suppressed');
          out.masks[k] = 0;
        }
      }
    return { table, byKey: await this.sorted(out) };
  }

  /** The threads' settings when `n` customers are identified on them, else undefined (inline). */
  private threadedFor(n: number): IdentifyRules['threaded'] {
    const threaded = this.rules.threaded;
    return threaded !== undefined &&
      !this.rules.plaintext &&
      n >= THREADS_FROM &&
      threadsAvailable(threaded.script)
      ? threaded
      : undefined;
  }

  /**
   * Starts identifying `members` into fresh buffers (on the threads, when there are any for it): its
   * `finish` finishes the work, this thread helping, and gives the buffers, final.
   */
  private start(members: Uint32Array): Starting {
    const n = members.length;
    const threaded = this.threadedFor(n);
    const out: IdentityBuffers = {
      slotCount: this.slotCount,
      reasons: this.reasons,
      keys: Buffer.alloc(n * KEY_BYTES),
      digests: new Uint32Array(n * 2),
      masks: new Uint16Array(n),
      skips: new Uint8Array(n),
    };
    // Slots by slice: each thread's slice is kept as the thread made it; inline, one slice of everyone.
    const per = threaded ? sliceFor(n) : Math.max(1, n);
    const slots: Buffer[] = [];
    const reasons: string[] = [...this.reasons];
    const skip = (k: number, reason: string) => {
      let at = reasons.indexOf(reason);
      if (at < 0) at = reasons.push(reason) - 1;
      out.skips[k] = at + 1;
    };
    const plain = new Map<number, { email: string }>();
    const done: Started = { out, slots, per, reasons, plain, skip };
    // In the source's order: its columns are read, and the table written, in sequence.
    const one = (k: number, chunk: Buffer, row: number) => {
      const id = identifyOne(members[k]!, this.columns, this.ids, this.rules.identify, out, k, chunk, row);
      if ('skip' in id) {
        if (!out.skips[k]) skip(k, id.skip);
      } else if (id.plain) plain.set(k, id.plain);
    };
    if (!threaded)
      return {
        threadsDone: Promise.resolve(),
        finish: async () => {
          const chunk = (slots[0] = Buffer.alloc(n * this.slotCount * SLOT_BYTES));
          for (let k = 0; k < n; k++) {
            if ((k & 0x3fff) === 0x3fff) await new Promise((resolve) => setImmediate(resolve));
            one(k, chunk, k);
          }
          return done;
        },
      };
    const work = identifyInThreads(
      threaded.script,
      {
        rules: threaded.rules,
        config: threaded.config,
        columns: this.columns.map(([name, column]): [string, TextParts] => [name, column.parts()]),
        ids: this.ids.parts(),
        slotCount: this.slotCount,
        reasons: this.reasons,
      },
      members,
      { buffers: out, slots, slice: per },
      // This thread's share, yielding every 4,096 customers: a slice is sized for a thread (up to 32,768),
      // and on a busy machine one slice here held a worker's event loop for over a second.
      async (from, to) => {
        const chunk = (slots[from / per] = Buffer.alloc((to - from) * this.slotCount * SLOT_BYTES));
        for (let k = from; k < to; k++) {
          if (k > from && ((k - from) & 0xfff) === 0) await new Promise((resolve) => setImmediate(resolve));
          one(k, chunk, k - from);
        }
      },
    );
    return {
      threadsDone: work.threadsDone,
      finish: async () => {
        for (const [k, reason] of await work.finish()) skip(k, reason);
        return done;
      },
    };
  }

  /**
   * What the source says now of members leaving an audience (records of its state its identity table
   * does not want): whether privacy requires their removal (`withdrawn`, when asked), and the plaintext
   * the platform needs to remove them (when it needs any). One entry per record, in order.
   */
  async leavers(
    records: readonly StateRecord[],
    suppressed: Suppression | undefined,
    need: { withdrawn: boolean },
  ): Promise<Leaver[]> {
    const plaintext = this.rules.plaintext === true;
    if (!need.withdrawn && !plaintext) return records.map(() => ({}));
    const { optedOut } = this.segmented.customers;
    const found: Leaver[] = [];
    for (const record of records) {
      const i = await this.keys.customerOf(record.key);
      if (i < 0) {
        found.push({});
        continue;
      }
      // The customer as this platform knows them now: identified on their own (few leave in a run).
      const out: IdentityBuffers = {
        slotCount: this.slotCount,
        reasons: this.reasons,
        keys: Buffer.alloc(KEY_BYTES),
        digests: new Uint32Array(2),
        masks: new Uint16Array(1),
        skips: new Uint8Array(1),
      };
      const slots = Buffer.alloc(this.slotCount * SLOT_BYTES);
      const id = identifyOne(i, this.columns, this.ids, this.rules.identify, out, 0, slots);
      const key = out.keys;
      const own = new IdentityTable(
        this.slotCount,
        this.groups,
        Uint32Array.of(i),
        key,
        out.masks,
        out.skips,
        this.reasons,
        [slots],
        1,
        new Map(),
      );
      const reason = 'skip' in id ? id.skip : undefined;
      const leaver: Leaver = {};
      if (need.withdrawn) {
        if (optedOut[i]) leaver.withdrawn = 'opted out';
        else if (reason !== undefined && isConsentReason(reason)) leaver.withdrawn = reason;
        else if (reason === undefined && suppressed?.matches(own.keys, (s) => own.slot(0, s), this.slotCount))
          leaver.withdrawn = 'suppressed';
      }
      if (plaintext && !('skip' in id) && id.plain && own.sameAs(0, record)) leaver.plain = id.plain;
      found.push(leaver);
    }
    return found;
  }

  /** The entries in key order, with what the diff reads of each in that order (see `KeyOrder`). */
  private async sorted(out: IdentityBuffers): Promise<KeyOrder> {
    const n = out.masks.length;
    const columns: Sorted = {
      order: Uint32Array.from({ length: n }, (_, k) => k),
      his: new Uint32Array(n),
      los: new Uint32Array(n),
      marks: new Uint32Array(n),
      d1: new Uint32Array(n),
      d2: new Uint32Array(n),
    };
    for (let k = 0; k < n; k++) {
      if ((k & 0xfffff) === 0xfffff) await new Promise((resolve) => setImmediate(resolve));
      columns.his[k] = out.keys.readUInt32BE(k * KEY_BYTES);
      columns.los[k] = out.keys.readUInt32BE(k * KEY_BYTES + 4);
      columns.marks[k] = out.skips[k] ? LEFT_OUT : out.masks[k]!;
      columns.d1[k] = out.digests[2 * k]!;
      columns.d2[k] = out.digests[2 * k + 1]!;
    }
    sortByKey(columns, this.scratch(n));
    if (!this.keepRoom) this.room = [];
    const { order, his, los, marks, d1, d2 } = columns;
    return new KeyOrder(this.slotCount, order, his, los, marks, d1, d2);
  }

  /** Seven arrays of at least n, kept from audience to audience: a sort's room to work. */
  private scratch(n: number): Uint32Array[] {
    if (this.room.length === 0 || this.room[0]!.length < n)
      this.room = Array.from({ length: 7 }, () => new Uint32Array(Math.ceil(n * 1.25)));
    return this.room.map((a) => a.subarray(0, n));
  }
}

/** The columns of a `KeyOrder`, as they are sorted. */
interface Sorted {
  order: Uint32Array;
  his: Uint32Array;
  los: Uint32Array;
  marks: Uint32Array;
  d1: Uint32Array;
  d2: Uint32Array;
}

/** An identification under way: `finish` helps with what is left and gives the buffers, final. */
interface Starting {
  readonly threadsDone: Promise<void>;
  finish(): Promise<Started>;
}

/** An identification asked for ahead: it starts once the one before it has left the threads. */
interface Ahead {
  members: Uint32Array;
  bytes: number;
  /** False once `identify` asked for a later one: its turn then starts nothing. */
  wanted: boolean;
  started: Promise<Starting | undefined>;
}

/** What identifying an audience's members gives, before the suppression list and the sort. */
interface Started {
  out: IdentityBuffers;
  slots: Buffer[];
  /** Customers per chunk of `slots`. */
  per: number;
  /** The skip reasons by code, the unlisted ones a run met added (see `skip`). */
  reasons: string[];
  plain: Map<number, { email: string }>;
  /** Records why entry k is left out, adding the reason to `reasons` where it is not there. */
  skip: (k: number, reason: string) => void;
}

/**
 * At most this much memory goes to the tables identified ahead, in all (about 1.4 M members of Meta's five
 * keys): beyond it, an audience waits for its turn rather than double the memory a run holds.
 */
const AHEAD_BYTES = 256 * 2 ** 20;

/** In `IdentityTable.marks`: the entry is left out (a skip reason), whatever its mask. */
export const LEFT_OUT = 1 << 16;

/**
 * Sorts these columns by key, in place: a radix sort on the keys' high halves (two passes of 16 bits,
 * every column carried along in sequence, through `room`: seven arrays as long), then ties on the high half
 * (a few hundred in ten million) put in order by the low one.
 */
function sortByKey(columns: Sorted, room: Uint32Array[]): void {
  const n = columns.his.length;
  const names = Object.keys(columns) as (keyof Sorted)[];
  const places = room[names.length]!;
  let from = columns;
  let to = Object.fromEntries(names.map((name, c) => [name, room[c]!])) as unknown as Sorted;
  for (const shift of [0, 16]) {
    const counts = new Uint32Array(65_537);
    const his = from.his;
    for (let k = 0; k < n; k++) counts[((his[k]! >>> shift) & 0xffff) + 1]!++;
    for (let d = 1; d <= 65_536; d++) counts[d]! += counts[d - 1]!;
    for (let k = 0; k < n; k++) places[k] = counts[(his[k]! >>> shift) & 0xffff]!++;
    for (const name of names) {
      const a = from[name];
      const b = to[name];
      for (let k = 0; k < n; k++) b[places[k]!] = a[k]!;
    }
    [from, to] = [to, from];
  }
  // Two passes: the columns are back in their own arrays.
  const { his, los } = columns;
  for (let r = 1; r < n; r++)
    for (let j = r; j > 0 && his[j] === his[j - 1] && los[j]! < los[j - 1]!; j--)
      for (const name of names) {
        const c = columns[name];
        [c[j], c[j - 1]] = [c[j - 1]!, c[j]!];
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
