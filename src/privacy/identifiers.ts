import { UserError, ExitCode } from '../errors.js';
import type { Person } from '../identify/types.js';
import { slotBuffers } from '../identify/types.js';
import { KEY_BYTES } from '../record/records.js';
import { writeKey } from '../record/keys.js';
import type { Destination } from '../sync/run.js';

/** Whom an erasure is about, as the operator gives it (plaintext: in memory only, never stored). */
export interface ErasureSubject {
  email?: string | undefined;
  phone?: string | undefined;
  customerId?: string | undefined;
}

/** What we keep of a subject: customer keys and identifier digests, in hex. */
export interface ErasureDigests {
  keys: string[];
  hashes: string[];
  /** Which kinds of identifier were given (`email`, `phone`, `customer_id`), for the record. */
  given: string[];
}

/**
 * The subject's identifiers as each configured destination's connector normalises and hashes them, and
 * the customer key of its id. Only slots that identify someone on their own are kept (not a name, nor a
 * country a destination's default fills in for anyone): those would suppress strangers.
 */
export function erasureDigests(
  subject: ErasureSubject,
  destinations: readonly Destination[],
): ErasureDigests {
  const email = subject.email?.trim();
  const phone = subject.phone?.trim();
  const customerId = subject.customerId?.trim();
  if (!email && !phone && !customerId)
    throw new UserError(
      'an erasure needs whom to forget: an email, a phone or a customer id',
      ExitCode.usage,
      'give --email, --phone or --customer-id (any of them, together for one person)',
    );
  const hashes = new Set<string>();
  const people: [string, Person][] = [];
  if (email) people.push(['email', { email }]);
  if (phone) people.push(['phone', { phone }]);
  for (const [kind, person] of people) {
    let usable = false;
    for (const d of destinations) {
      const alone = standaloneSlots(d);
      // Consent decides who is uploaded, not who can be forgotten: the destination's settings are set aside.
      const config = { ...d.config, eea: undefined, consent: undefined };
      const mine = d.connector.identify(person, config);
      if ('skip' in mine) continue;
      // A slot the same for another person comes from the config (a default country), not from this one.
      const other = d.connector.identify(
        kind === 'email' ? { email: 'someone.else@example.com' } : { phone: '+12025550123' },
        config,
      );
      const theirs = 'skip' in other ? [] : slotBuffers(other.slots);
      slotBuffers(mine.slots).forEach((slot, s) => {
        if (!slot || !alone.has(s) || theirs[s]?.equals(slot)) return;
        hashes.add(slot.toString('hex'));
        usable = true;
      });
    }
    if (!usable)
      throw new UserError(
        `the ${kind} given is not usable by any destination (none of them could normalise it)`,
        ExitCode.usage,
        kind === 'phone' ? 'write the phone with its country code (+44 …)' : 'check the address for typos',
      );
  }
  const keys: string[] = [];
  if (customerId) {
    const key = Buffer.alloc(KEY_BYTES);
    writeKey(Buffer.from(customerId, 'utf8'), key, 0);
    keys.push(key.toString('hex'));
  }
  return {
    keys,
    hashes: [...hashes],
    given: [...(email ? ['email'] : []), ...(phone ? ['phone'] : []), ...(customerId ? ['customer_id'] : [])],
  };
}

/** Slot indexes that identify someone on their own on this destination (not part of a group). */
export function standaloneSlots(d: Destination): Set<number> {
  const count = d.connector.slots(d.config).length;
  const grouped = new Set(
    (d.connector.identifierGroups?.(d.config) ?? []).filter((g) => g.length > 1).flat(),
  );
  return new Set(Array.from({ length: count }, (_, s) => s).filter((s) => !grouped.has(s)));
}
