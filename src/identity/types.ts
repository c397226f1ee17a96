/** One customer's identifier fields as the source gives them (raw, untrimmed), by field name. */
export interface Person {
  email?: string;
  phone?: string;
  first_name?: string;
  last_name?: string;
  /** Country of the address, also the default region of national phone numbers. */
  country?: string;
  postal_code?: string;
  external_id?: string;
  /** The source's attribute columns, by name (a platform may read consent from one). */
  [field: string]: string | undefined;
}

/**
 * Why a member is left out of one platform's audience, the most telling first:
 * - `invalid email` / `invalid phone`: the value is there but cannot be normalised (and nothing else is usable);
 * - `incomplete address`: Google only gets a name-and-address match with first name, last name, country and
 *   postal code all usable, and some were missing;
 * - `identifier too long`: Meta's EXTERN_ID or MADID does not fit the 32-byte state slot;
 * - `hashed email`: Mailchimp needs the plaintext address and the source holds only a hash;
 * - `consent not granted`: the platform's consent for ad use (Google's EU user consent) is missing or denied;
 * - `no usable identifier`: nothing this platform matches on.
 */
export const SKIP_REASONS = [
  'no usable identifier',
  'invalid email',
  'invalid phone',
  'incomplete address',
  'identifier too long',
  'hashed email',
  'consent not granted',
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/** A member's identifiers for one platform, or why it has none. */
export type Identified =
  | {
      /** Aligned with the connector's slot names; each exactly 32 bytes, or undefined when unusable. */
      slots: (Buffer | undefined)[];
      /** Plaintext the platform needs to add the member (Mailchimp's email): in memory only, never stored. */
      plain?: { email: string };
    }
  | { skip: SkipReason };
