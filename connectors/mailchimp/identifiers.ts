import { isSha256Hex, md5Hex, SLOT_BYTES } from '../../src/identify/hash.js';
import { normalizeEmail } from '../../src/identify/normalize.js';
import { granted, signalOf } from '../../src/identify/consent.js';
import type { Identified, Person } from '../../src/identify/types.js';
import type { MailchimpConfig } from './config.js';

/**
 * Mailchimp identifies a member by email. The slot holds the subscriber hash (MD5 of the trimmed,
 * lowercased email: 16 bytes, zero-padded to 32); the email itself, which Mailchimp needs to add a member,
 * travels beside it in `plain` and is never stored. No Gmail rule: Mailchimp writes to the address given.
 * Someone without consent to marketing e-mail is left out (`consent.email_marketing`).
 */

/** Mailchimp needs the plaintext address, and the source holds only its hash. */
export const HASHED_EMAIL = 'hashed email';

export const SLOTS = ['email'] as const;

const HASH_BYTES = 16;

export function identify(
  person: Person,
  config: Pick<MailchimpConfig, 'eea' | 'consent'> = {},
): Identified<Buffer> {
  const raw = person.email?.trim();
  if (!raw) return { skip: 'no usable identifier' };
  if (isSha256Hex(raw)) return { skip: HASHED_EMAIL };
  const email = normalizeEmail(raw);
  if (!email) return { skip: 'invalid email' };
  if (!granted(signalOf(config, 'email_marketing'), person))
    return { skip: 'consent not granted (email marketing)' };
  return { slots: [emailSlot(email)], plain: { email } };
}

/** The slot of a normalised email: its subscriber hash, zero-padded. */
export function emailSlot(email: string): Buffer {
  const slot = Buffer.alloc(SLOT_BYTES);
  slot.write(md5Hex(email), 'hex');
  return slot;
}

/** The subscriber hash in a slot, as the API's `{subscriber_hash}` (32 hex characters). */
export function subscriberHash(slot: Buffer): string {
  return slot.subarray(0, HASH_BYTES).toString('hex');
}

/** A slot this connector wrote: a subscriber hash and its zero padding (a SHA-256 digest is not one). */
export function isEmailSlot(slot: Buffer): boolean {
  return slot.length === SLOT_BYTES && slot.subarray(HASH_BYTES).every((b) => b === 0);
}
