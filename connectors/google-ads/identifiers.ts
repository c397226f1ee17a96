import { hashIdentifier, repeatedIdentifier, SLOT_BYTES } from '../../src/identify/hash.js';
import {
  normalizeCountry,
  normalizeEmail,
  normalizeName,
  normalizePhone,
  normalizePostal,
  phoneSkip,
} from '../../src/identify/normalize.js';
import type { Identified, Person } from '../../src/identify/types.js';

/**
 * Google Customer Match identifiers (Data Manager API and Google Ads API alike):
 * - email: SHA-256 of the email without whitespace, lowercased, Gmail dots and `+tag`s dropped;
 * - phone: SHA-256 of E.164 with its `+`;
 * - first_name, last_name: SHA-256 of the name lowercased without punctuation, titles or suffixes;
 * - address: country code and postal code, not hashed, packed into 32 bytes (`packAddress`).
 * The names and the address form one identifier: they are given only when all four parts are usable.
 * Email, phone and address are separate identifiers; any one makes a member.
 */

/**
 * Google only gets a name-and-address match with first name, last name, country and postal code all
 * usable: a person with some of them and nothing else is left out for this reason.
 */
export const INCOMPLETE_ADDRESS = 'incomplete address';

export const SLOTS = ['email', 'phone', 'first_name', 'last_name', 'address'] as const;

/** First name, last name and address identify someone only together: one identifier for removals. */
export const IDENTIFIER_GROUPS: readonly (readonly number[])[] = [[2, 3, 4]];

export interface GoogleIdentifyOptions {
  /** Country (ISO alpha-2) of customers without a usable country: reads their phones and addresses. */
  defaultCountry?: string | undefined;
}

// Names repeat from customer to customer: each distinct one is hashed once.
const nameSlot = repeatedIdentifier((v) => normalizeName(v, { stripAffixes: true }));

export function identify(person: Person, options: GoogleIdentifyOptions = {}): Identified {
  const country =
    (person.country && normalizeCountry(person.country)) ||
    (options.defaultCountry ? normalizeCountry(options.defaultCountry) : undefined);
  const email = hashIdentifier(person.email, (v) => normalizeEmail(v, { canonicalGmail: true }));
  const phone = hashIdentifier(person.phone, (v) => normalizePhone(v, country));
  const first = nameSlot(person.first_name);
  const last = nameSlot(person.last_name);
  const postal = person.postal_code && country ? normalizePostal(person.postal_code, country) : undefined;
  const address = first && last && country && postal ? packAddress(country, postal) : undefined;
  const [given, family] = address ? [first!, last!] : [];

  if (email || phone || address)
    return { slots: [email ?? undefined, phone ?? undefined, given, family, address] };
  if (email === null) return { skip: 'invalid email' };
  if (phone === null) return { skip: phoneSkip(person.phone!, person.country) };
  if (person.first_name?.trim() || person.last_name?.trim() || person.postal_code?.trim()) {
    return { skip: INCOMPLETE_ADDRESS };
  }
  return { skip: 'no usable identifier' };
}

/** The unhashed country and postal code in one slot: `US`, a zero byte, `94045`, zero-padded to 32 bytes. */
export function packAddress(regionCode: string, postalCode: string): Buffer | undefined {
  const text = `${regionCode}\u0000${postalCode}`;
  if (Buffer.byteLength(text) > SLOT_BYTES || postalCode.includes('\u0000')) return undefined;
  const slot = Buffer.alloc(SLOT_BYTES);
  slot.write(text, 'utf8');
  return slot;
}

export function unpackAddress(slot: Buffer): { regionCode: string; postalCode: string } {
  const [regionCode = '', postalCode = ''] = slot.toString('utf8').split('\u0000');
  return { regionCode, postalCode };
}

/** One entry of the Data Manager API's `userData.userIdentifiers` (hashes in hex, `encoding: "HEX"`). */
export type UserIdentifier =
  | { emailAddress: string }
  | { phoneNumber: string }
  | { address: { givenName: string; familyName: string; regionCode: string; postalCode: string } };

/** A member's slots as Data Manager `userIdentifiers`: email, phone, then the address when complete. */
export function userIdentifiers(slots: readonly (Buffer | undefined)[]): UserIdentifier[] {
  const [email, phone, first, last, address] = slots;
  const ids: UserIdentifier[] = [];
  if (email) ids.push({ emailAddress: email.toString('hex') });
  if (phone) ids.push({ phoneNumber: phone.toString('hex') });
  if (first && last && address) {
    const { regionCode, postalCode } = unpackAddress(address);
    ids.push({
      address: { givenName: first.toString('hex'), familyName: last.toString('hex'), regionCode, postalCode },
    });
  }
  return ids;
}
