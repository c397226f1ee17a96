import { hash } from 'node:crypto';
import type { AudienceSpec } from '../audience/audiences.js';
import { membershipOf } from '../audience/audiences.js';
import type { Member } from '../connector.js';
import type { Identified, Person } from '../identity/types.js';
import type { Segmented } from '../score/pipeline.js';
import { PROFILE_FIELDS } from '../source/columns.js';
import type { TextColumn } from '../source/text.js';
import { KEY_BYTES, MAX_SLOTS, SLOT_BYTES, Status, type StateRecord } from '../state/records.js';
import type { AudienceState } from '../state/store.js';

/** What a sync would do to one audience on one destination. */
export interface AudiencePlan {
  destination: string;
  audience: string;
  /** Customers of the audience's segments (after its filter), opted out included. */
  segmentSize: number;
  /** Customers that should be on the platform: in the segment, not opted out, identifiable. */
  members: number;
  /** Customers to add (indexes; `Identities.member(i)` gives what is sent). */
  add: number[];
  /** Members to remove, with the identifiers the state kept for them. */
  remove: Member[];
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
 * Identity of the customers for one destination, computed once, on demand, and shared by its
 * audiences: identifier slots packed in one buffer (32 bytes each), keys in another.
 */
export class Identities {
  readonly slotCount: number;
  /** Slot indexes that form one identifier; every slot is in exactly one group. */
  readonly groups: readonly (readonly number[])[];
  private readonly slots: Buffer;
  private readonly masks: Uint16Array;
  private readonly keys: Buffer;
  private readonly skips: Uint8Array;
  private readonly reasons: string[] = [''];
  private readonly plain = new Map<number, { email: string }>();
  private readonly attributes: [string, TextColumn][];
  /** Customer index by key (latin1), built on the first removal when the platform needs plaintext. */
  private byKey: Map<string, number> | undefined;

  constructor(
    private readonly segmented: Segmented,
    private readonly identify: (person: Person) => Identified,
    slotCount: number,
    groups: readonly (readonly number[])[] = [],
    /** The platform needs plaintext (Mailchimp's email) for removals too, when the source still has it. */
    private readonly plaintext = false,
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
    this.attributes = Object.entries(segmented.customers.attributes);
    this.slots = Buffer.alloc(n * this.slotCount * SLOT_BYTES);
    this.masks = new Uint16Array(n);
    this.keys = Buffer.alloc(n * KEY_BYTES);
    this.skips = new Uint8Array(n);
  }

  /** Identifies customer i (once); returns the skip reason, or undefined when it has identifiers. */
  resolve(i: number): string | undefined {
    if (this.masks[i] === 0 && this.skips[i] === 0) this.compute(i);
    return this.skips[i] ? this.reasons[this.skips[i]!] : undefined;
  }

  key(i: number): Buffer {
    return this.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
  }

  slot(i: number, s: number): Buffer | undefined {
    if (!(this.masks[i]! & (1 << s))) return undefined;
    const at = (i * this.slotCount + s) * SLOT_BYTES;
    return this.slots.subarray(at, at + SLOT_BYTES);
  }

  member(i: number): Member {
    const slots: (Buffer | undefined)[] = [];
    for (let s = 0; s < this.slotCount; s++) slots.push(this.slot(i, s));
    return { key: this.key(i), slots, plain: this.plain.get(i) };
  }

  /** One identifier of customer i: the group's slots together, or undefined when none is present. */
  identifier(i: number, group: readonly number[]): string | undefined {
    return identifierOf(group, (s) => this.slot(i, s));
  }

  /**
   * The plaintext of a member to remove, when the platform needs it and the customer is still in the
   * source under the same identifiers (someone who left the segment, not someone who changed email).
   */
  plainFor(record: StateRecord): { email: string } | undefined {
    if (!this.plaintext) return undefined;
    if (!this.byKey) {
      this.byKey = new Map();
      const { ids } = this.segmented.customers;
      for (let i = 0; i < ids.length; i++) this.byKey.set(customerKey(ids.bytes(i)!).toString('latin1'), i);
    }
    const i = this.byKey.get(record.key.toString('latin1'));
    if (i === undefined || this.resolve(i) !== undefined || !this.sameAs(i, record)) return undefined;
    return this.plain.get(i);
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

  private compute(i: number): void {
    const { profile, ids } = this.segmented.customers;
    const person: Person = {};
    for (const field of PROFILE_FIELDS) {
      const v = profile[field]?.get(i);
      if (v !== undefined) person[field] = v;
    }
    // Attributes too, under their names: a platform may read consent from one (Google's EU consent).
    for (const [name, column] of this.attributes) {
      const v = column.get(i);
      if (v !== undefined && person[name] === undefined) person[name] = v;
    }
    const id = this.identify(person);
    // Our key for a customer: the first 8 bytes of SHA-256 of the customer id.
    hash('sha256', ids.bytes(i)!, 'buffer').copy(this.keys, i * KEY_BYTES, 0, KEY_BYTES);
    if ('skip' in id) return this.skip(i, id.skip);
    let mask = 0;
    id.slots.forEach((slot, s) => {
      if (!slot || s >= this.slotCount) return;
      slot.copy(this.slots, (i * this.slotCount + s) * SLOT_BYTES, 0, SLOT_BYTES);
      mask |= 1 << s;
    });
    if (mask === 0) return this.skip(i, 'no usable identifier');
    this.masks[i] = mask;
    if (id.plain) this.plain.set(i, id.plain);
  }

  private skip(i: number, reason: string): void {
    let r = this.reasons.indexOf(reason);
    if (r < 0) r = this.reasons.push(reason) - 1;
    this.skips[i] = r;
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

/** Our stable key for a customer: the first 8 bytes of SHA-256 of the customer id. */
export function customerKey(customerId: string | Buffer): Buffer {
  return hash('sha256', customerId, 'buffer').subarray(0, KEY_BYTES);
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
  options: { full?: boolean } = {},
): Promise<AudiencePlan> {
  const full = options.full ?? false;
  const membership = membershipOf(spec, segmented);
  const skipped: Record<string, number> = {};
  if (membership.optedOut > 0) skipped['opted out'] = membership.optedOut;

  // Desired members by key (latin1 of the 8 key bytes) → customer index.
  const desired = new Map<string, number>();
  for (let k = 0; k < membership.members.length; k++) {
    // Hashing millions of identifiers: let the event loop breathe (job locks, signals).
    if ((k & 0x3fff) === 0x3fff) await new Promise((resolve) => setImmediate(resolve));
    const i = membership.members[k]!;
    const reason = identities.resolve(i);
    if (reason !== undefined) skipped[reason] = (skipped[reason] ?? 0) + 1;
    else desired.set(identities.key(i).toString('latin1'), i);
  }

  const plan: AudiencePlan = {
    destination,
    audience: spec.name,
    segmentSize: membership.segmentSize,
    members: desired.size,
    add: [],
    remove: [],
    unchanged: 0,
    waiting: 0,
    pending: 0,
    rejectedEarlier: 0,
    skipped,
    forget: [],
    full,
  };

  // How many desired members use each identifier: a removal must not take one away from another member.
  let users: Map<string, number> | undefined;
  const usedByOthers = (value: string, self: number | undefined, group: readonly number[]): boolean => {
    if (!users) {
      users = new Map();
      for (const i of desired.values())
        for (const g of identities.groups) {
          const v = identities.identifier(i, g);
          if (v !== undefined) users.set(v, (users.get(v) ?? 0) + 1);
        }
    }
    const own = self !== undefined && identities.identifier(self, group) === value ? 1 : 0;
    return (users.get(value) ?? 0) - own > 0;
  };
  const removal = (r: StateRecord, self?: number): void => {
    const slots: (Buffer | undefined)[] = r.slots.map((s) => (s ? Buffer.from(s) : undefined));
    for (const group of identities.groups) {
      const value = identifierOf(group, (s) => r.slots[s]);
      if (value !== undefined && usedByOthers(value, self, group))
        for (const s of group) slots[s] = undefined;
    }
    if (slots.some(Boolean))
      plan.remove.push({ key: Buffer.from(r.key), slots, plain: identities.plainFor(r) });
    else plan.forget.push(Buffer.from(r.key));
  };

  const removing = new Set<string>();
  const seen = new Uint8Array(segmented.customers.ids.length);
  const changed: number[] = [];
  for await (const records of state.scan()) {
    for (const r of records) {
      const want = desired.get(r.key.toString('latin1'));
      if (want !== undefined) seen[want] = 1;
      switch (r.status) {
        case Status.removePending:
          for (const g of identities.groups) {
            const v = identifierOf(g, (s) => r.slots[s]);
            if (v !== undefined) removing.add(v);
          }
          if (want !== undefined) plan.waiting++;
          else plan.pending++;
          break;
        case Status.rejected:
          if (want === undefined) plan.forget.push(Buffer.from(r.key));
          else if (identities.sameAs(want, r)) plan.rejectedEarlier++;
          else plan.add.push(want);
          break;
        default: {
          // confirmed or addPending: on the platform, or on its way there.
          if (want === undefined) {
            removal(r);
            break;
          }
          const same = identities.sameAs(want, r);
          if (same && !full) {
            if (r.status === Status.addPending) plan.pending++;
            else plan.unchanged++;
          } else if (same) plan.add.push(want);
          else {
            removal(r, want);
            changed.push(want);
          }
        }
      }
    }
  }
  for (const i of desired.values()) if (!seen[i]) plan.add.push(i);

  if (final) {
    // Removals finish before additions start, within the run.
    plan.add.push(...changed);
  } else {
    // The platform processes removals later: an addition that shares a customer or an identifier
    // with a removal in flight waits for the next run, so the removal cannot take it away.
    for (const m of plan.remove)
      for (const g of identities.groups) {
        const v = identifierOf(g, (s) => m.slots[s]);
        if (v !== undefined) removing.add(v);
      }
    plan.waiting += changed.length;
    if (removing.size > 0)
      plan.add = plan.add.filter((i) => {
        const overlaps = identities.groups.some((g) => {
          const v = identities.identifier(i, g);
          return v !== undefined && removing.has(v);
        });
        if (overlaps) plan.waiting++;
        return !overlaps;
      });
  }
  return plan;
}
