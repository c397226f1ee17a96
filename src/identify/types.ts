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

/** A phone in national form (no `+`) that no country could be read with: the fix is a country, not the number. */
export const PHONE_WITHOUT_COUNTRY =
  "invalid phone (no country code: set the destination's default_country or map a country column)";

/**
 * Why a member is left out of a platform's audience, for the reasons of the core's own steps:
 * - `invalid email` / `invalid phone`: the value is there but cannot be normalised (and nothing else is usable);
 *   a phone without its country code, for a person without a country, says how to give one;
 * - `consent not granted (<purpose>)`: the customer lacks the consent the destination requires for that purpose
 *   (src/identify/consent.ts); plain `consent not granted` is what runs recorded before purposes were named;
 * - `no usable identifier`: nothing this platform matches on.
 * A connector lists its own reasons in its definition (`ConnectorDefinition.skipReasons`: Google's
 * `incomplete address`, Meta's `identifier too long`, Mailchimp's `hashed email`); a reason in neither
 * list is counted all the same, only reported one by one from the identify threads.
 */
export const SKIP_REASONS = [
  'no usable identifier',
  'invalid email',
  'invalid phone',
  PHONE_WITHOUT_COUNTRY,
  'consent not granted',
  'consent not granted (ad_user_data)',
  'consent not granted (ad_personalization)',
  'consent not granted (ads)',
  'consent not granted (email marketing)',
] as const;
/** One of SKIP_REASONS, or a connector's own reason (`string & {}` keeps the listed ones suggested). */
export type SkipReason = (typeof SKIP_REASONS)[number] | (string & Record<never, never>);

/**
 * One identifier slot as `identify` gives it: exactly 32 bytes, in a Buffer or as a string of 32 latin1
 * characters (a digest as `crypto.hash(…, 'binary')` returns it: most slots of a plan, with no Buffer made
 * per hash). Members built from the state always hold Buffers.
 */
export type Slot = Buffer | string;

/** The slots as Buffers (for code that reads `identify`'s answer byte by byte). */
export function slotBuffers(slots: readonly (Slot | undefined)[]): (Buffer | undefined)[] {
  return slots.map((s) => (typeof s === 'string' ? Buffer.from(s, 'latin1') : s));
}

/** A member's identifiers for one platform, or why it has none (`S`: what the connector's slots are made of). */
export type Identified<S extends Slot = Slot> =
  | {
      /** Aligned with the connector's slot names; each exactly 32 bytes, or undefined when unusable. */
      slots: (S | undefined)[];
      /** Plaintext the platform needs to add the member (Mailchimp's email): in memory only, never stored. */
      plain?: { email: string };
    }
  | { skip: SkipReason };
