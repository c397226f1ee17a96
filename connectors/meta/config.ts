import { z } from 'zod';
import type { Check } from '../../src/connector.js';
import { consentRow, consentSignal } from '../../src/identify/consent.js';
import { schemaSetting, SLOTS } from './identifiers.js';
import { DEFAULT_API_VERSION } from './versions.js';

export { DEFAULT_API_VERSION };

/**
 * `destinations.<name>` for `type: meta`. The token comes from the environment through a `${ENV}`
 * reference (the config loader refuses it written in the file).
 */

export const DEFAULT_ENDPOINT = 'https://graph.facebook.com';
/** Meta's limit of rows per `/users` or `/usersreplace` request. */
export const MAX_ROWS = 10_000;

const adAccountId = z
  .union([
    z.string(),
    z
      .number()
      .int()
      .refine(Number.isSafeInteger, 'this number is too long for YAML: write the ad account id in quotes'),
  ])
  .transform((v) => String(v).trim().replace(/^act_/, ''))
  .pipe(z.string().regex(/^\d+$/, 'expected an ad account id such as 1234567890 or act_1234567890'));

export const metaConfigSchema = z.strictObject({
  type: z.literal('meta'),
  /** The ad account the audiences live in, with or without its `act_` prefix. */
  ad_account_id: adAccountId,
  /** A system-user token with `ads_management` on the ad account: `${META_ACCESS_TOKEN}`. */
  access_token: z.string().min(1),
  /** Meta keys sent for each member, in this order (EXTERN_ID and MADID go in plaintext). */
  schema: schemaSetting.default([...SLOTS]),
  /** Who collected the customer data; Meta requires it when an audience is created. */
  customer_file_source: z
    .enum(['USER_PROVIDED_ONLY', 'PARTNER_PROVIDED_ONLY', 'BOTH_USER_AND_PARTNER_PROVIDED'])
    .default('USER_PROVIDED_ONLY'),
  /** Country (ISO alpha-2) of customers without one: reads their phones, ZIP and COUNTRY. */
  default_country: z
    .string()
    .regex(/^[A-Za-z]{2}$/, 'expected an ISO 3166 alpha-2 code such as US')
    .optional(),
  /** Rows per request: Meta takes at most 10,000. */
  batch_size: z.number().int().min(1).max(MAX_ROWS).default(MAX_ROWS),
  /**
   * Requests to one audience in flight at once: while one waits for Meta's answer the next is built and
   * sent. Meta limits calls per ad account, not per audience; 1 sends strictly one after another.
   */
  requests_in_flight: z.number().int().min(1).max(8).default(2),
  api_version: z
    .string()
    .regex(/^v\d+\.\d+$/, `expected a Graph API version such as ${DEFAULT_API_VERSION}`)
    .default(DEFAULT_API_VERSION),
  /** Graph API base URL: a sandbox or a local test server. */
  endpoint: z
    .url()
    .transform((u) => u.replace(/\/+$/, ''))
    .default(DEFAULT_ENDPOINT),
  /** Description of the audiences this destination creates (shown in Ads Manager). */
  description: z.string().max(500).optional(),
  /** Wait after throttling when Meta does not say how long (advanced); unset: the sync's short backoff. */
  throttle_wait_seconds: z.number().min(0).max(3600).optional(),
  /** The ad account reaches people in the EEA, the UK or Switzerland (default no): `consent` must then be written out. */
  eea: z.boolean().optional(),
  /**
   * Consent to use the customer's data for ads: people without it are not uploaded (and removed if they
   * were). Unset: everyone, except on an EEA account (`eea: true`), which refuses to upload.
   */
  consent: z.strictObject({ ads: consentSignal }).optional(),
});
export type MetaConfig = z.infer<typeof metaConfigSchema>;

/** The consent settings as a row of `check` where set or required (`eea: true`), else none. */
export function consentCheck(
  destination: string,
  config: Pick<MetaConfig, 'eea' | 'consent'>,
): Check | undefined {
  return config.consent || config.eea ? consentRow(destination, config, ['ads']) : undefined;
}
