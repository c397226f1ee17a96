import type { Identified, Person } from '../../src/identify/types.js';
import { granted, signalOf } from '../../src/identify/consent.js';
import type { GoogleAdsConfig } from './config.js';
import { identify as identifyPerson } from './identifiers.js';

/** Slots each `identifiers` choice fills (the address is first name, last name and country + postal code). */
const SLOTS_OF = { email: [0], phone: [1], address: [2, 3, 4] } as const;

/** Google's identifier rules, the identifiers the config sends, then the EU consents of the person. */
export function identify(person: Person, config: GoogleAdsConfig): Identified {
  const id = identifyPerson(person, { defaultCountry: config.default_country });
  if ('skip' in id) return id;
  const kept = new Set<number>(config.identifiers.flatMap((name) => SLOTS_OF[name]));
  const slots = id.slots.map((slot, i) => (kept.has(i) ? slot : undefined));
  if (slots.every((s) => s === undefined)) return { skip: 'no usable identifier' };
  if (!granted(signalOf(config, 'ad_user_data'), person))
    return { skip: 'consent not granted (ad_user_data)' };
  if (!granted(signalOf(config, 'ad_personalization'), person))
    return { skip: 'consent not granted (ad_personalization)' };
  return { slots };
}
