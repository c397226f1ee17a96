import { createHash } from 'node:crypto';
import type { AudienceSpec } from '../audience/audiences.js';
import { membershipOf } from '../audience/audiences.js';
import type { ConnectorDefinition, Member } from '../connector.js';
import type { Identified, Person } from '../identity/types.js';
import type { Segmented } from '../score/pipeline.js';
import { PROFILE_FIELDS } from '../source/columns.js';
import { KEY_BYTES, sameSlots, Status, type StateRecord } from '../state/records.js';
import type { AudienceState } from '../state/store.js';

/** What a sync would do to one audience on one destination. */
export interface AudiencePlan {
  destination: string;
  audience: string;
  /** Customers of the audience's segments (after its filter), opted out included. */
  segmentSize: number;
  /** Customers that should be on the platform: in the segment, not opted out, identifiable. */
  members: number;
  add: Member[];
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
  /** Rejected members whose record is dropped because they left the audience (no platform call). */
  forget: Buffer[];
  full: boolean;
}

/** Identity of the customers for one destination, computed once and shared by its audiences. */
export class Identities {
  private readonly cache = new Map<number, Identified>();
  private readonly keys = new Map<number, Buffer>();

  constructor(
    private readonly segmented: Segmented,
    private readonly identify: (person: Person) => Identified,
  ) {}

  of(i: number): Identified {
    let id = this.cache.get(i);
    if (!id) {
      const { profile } = this.segmented.customers;
      const person: Person = {};
      for (const field of PROFILE_FIELDS) {
        const v = profile[field]?.[i];
        if (v !== undefined) person[field] = v;
      }
      id = this.identify(person);
      this.cache.set(i, id);
    }
    return id;
  }

  key(i: number): Buffer {
    let k = this.keys.get(i);
    if (!k) {
      k = customerKey(this.segmented.customers.ids[i]!);
      this.keys.set(i, k);
    }
    return k;
  }
}

/** Our stable key for a customer: the first 8 bytes of SHA-256 of the customer id. */
export function customerKey(customerId: string): Buffer {
  return createHash('sha256').update(customerId).digest().subarray(0, KEY_BYTES);
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
  connector: Pick<ConnectorDefinition, 'final'>,
  options: { full?: boolean } = {},
): Promise<AudiencePlan> {
  const full = options.full ?? false;
  const membership = membershipOf(spec, segmented);
  const skipped: Record<string, number> = {};
  if (membership.optedOut > 0) skipped['opted out'] = membership.optedOut;

  const desired = new Map<string, Member>();
  for (const i of membership.members) {
    const id = identities.of(i);
    if ('skip' in id) {
      skipped[id.skip] = (skipped[id.skip] ?? 0) + 1;
      continue;
    }
    const key = identities.key(i);
    desired.set(key.toString('latin1'), { key, slots: id.slots, ...(id.plain ? { plain: id.plain } : {}) });
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
  const usedByOthers = (slot: Buffer, self: Member | undefined): boolean => {
    if (!users) {
      users = new Map();
      for (const m of desired.values())
        for (const s of m.slots)
          if (s) users.set(s.toString('latin1'), (users.get(s.toString('latin1')) ?? 0) + 1);
    }
    const own = self?.slots.some((s) => s?.equals(slot)) ? 1 : 0;
    return (users.get(slot.toString('latin1')) ?? 0) - own > 0;
  };
  const removal = (r: StateRecord, self?: Member): void => {
    const slots = r.slots.map((s) => (s && !usedByOthers(s, self) ? Buffer.from(s) : undefined));
    if (slots.some(Boolean)) plan.remove.push({ key: Buffer.from(r.key), slots });
    else plan.forget.push(Buffer.from(r.key));
  };

  const removing = new Set<string>();
  const seen = new Set<string>();
  const changed: Member[] = [];
  for await (const records of state.scan()) {
    for (const r of records) {
      const k = r.key.toString('latin1');
      const want = desired.get(k);
      if (want) seen.add(k);
      switch (r.status) {
        case Status.removePending:
          for (const s of r.slots) if (s) removing.add(s.toString('latin1'));
          if (want) plan.waiting++;
          else plan.pending++;
          break;
        case Status.rejected:
          if (!want) plan.forget.push(Buffer.from(r.key));
          else if (sameSlots(r.slots, want.slots)) plan.rejectedEarlier++;
          else plan.add.push(want);
          break;
        default: {
          // confirmed or addPending: on the platform, or on its way there.
          if (!want) {
            removal(r);
            break;
          }
          if (sameSlots(r.slots, want.slots) && !full) {
            if (r.status === Status.addPending) plan.pending++;
            else plan.unchanged++;
            break;
          }
          if (!sameSlots(r.slots, want.slots)) {
            removal(r, want);
            changed.push(want);
          } else plan.add.push(want);
        }
      }
    }
  }
  for (const [k, m] of desired) if (!seen.has(k)) plan.add.push(m);

  if (connector.final) {
    // Removals finish before additions start, within the run.
    plan.add.push(...changed);
  } else {
    // The platform processes removals later: an addition that shares a customer or an identifier
    // with a removal in flight waits for the next run, so the removal cannot take it away.
    for (const m of plan.remove) for (const s of m.slots) if (s) removing.add(s.toString('latin1'));
    plan.waiting += changed.length;
    plan.add = plan.add.filter((m) => {
      const overlaps = m.slots.some((s) => s && removing.has(s.toString('latin1')));
      if (overlaps) plan.waiting++;
      return !overlaps;
    });
  }
  return plan;
}
