import { z } from 'zod';
import type { Check } from '../../src/connector.js';
import { consentColumn, consentRow, eeaConsentProblem } from '../../src/identify/consent.js';

/**
 * `destinations.<name>` for `type: google_ads`. Credentials come from the environment through
 * `${ENV}` references (the config loader refuses them written in the file).
 */

const customerId = z
  .string()
  .transform((v) => v.replaceAll('-', '').trim())
  .pipe(z.string().regex(/^\d{10}$/, 'expected a 10-digit Google Ads customer id such as 123-456-7890'));

/** One EU consent signal: the same for everyone (`denied` is refused by `check`), or per customer from a column. */
const consentSignal = z.union([z.enum(['granted', 'denied']), consentColumn]);

/** The EU consents Google asks for, in the order a customer's are checked. */
export const CONSENT_PURPOSES = ['ad_user_data', 'ad_personalization'] as const;

const DEFAULTS = {
  data_manager: 'https://datamanager.googleapis.com',
  token_url: 'https://oauth2.googleapis.com/token',
  ads_rest: 'https://googleads.googleapis.com',
};

/** How long each call may take, its answer included: what Google's endpoints need, not settings. */
export const TIMEOUT_MS = {
  tokenExchange: 30_000,
  dataManager: 60_000,
  adsRest: 60_000,
  /** A gRPC call that hangs this long fails (retryable) instead of holding the run for gax's default 4 hours. */
  adsGrpc: 5 * 60_000,
} as const;

export const googleAdsConfigSchema = z
  .strictObject({
    type: z.literal('google_ads'),
    /**
     * `data_manager` (the default, and the only path for accounts that did not upload Customer Match
     * through the Google Ads API before April 2026) or `ads_api` (allowlisted developer tokens).
     */
    api: z.enum(['data_manager', 'ads_api']).default('data_manager'),
    customer_id: customerId,
    /** The manager account the OAuth user reaches the customer through, if any. */
    login_customer_id: customerId.optional(),
    client_id: z.string().min(1),
    client_secret: z.string().min(1),
    refresh_token: z.string().min(1),
    /** Google Ads API path only. */
    developer_token: z.string().min(1).optional(),
    /** Days a member stays on the list without being re-uploaded: 0–540, or 10000 for no expiry. */
    membership_days: z
      .number()
      .int()
      .refine((d) => (d >= 0 && d <= 540) || d === 10_000, 'expected 0 to 540 days, or 10000 for no expiry')
      .default(540),
    /** The account serves people in the EEA, the UK or Switzerland (default no): `consent` must then be written out. */
    eea: z.boolean().optional(),
    /**
     * EU user consent for ad use; people without both granted are not uploaded (and removed if they were).
     * Unset: everyone granted, except on an EEA account (`eea: true`), which refuses to upload.
     */
    consent: z.strictObject({ ad_user_data: consentSignal, ad_personalization: consentSignal }).optional(),
    /** Which identifiers to send: `address` means first name, last name, country and postal code together. */
    identifiers: z
      .array(z.enum(['email', 'phone', 'address']))
      .min(1)
      .default(['email', 'phone', 'address']),
    /** Country (ISO alpha-2) of customers without one: reads their phones and addresses. */
    default_country: z
      .string()
      .regex(/^[A-Za-z]{2}$/, 'expected an ISO 3166 alpha-2 code such as US')
      .optional(),
    /** Members per request (Data Manager: at most 10,000; Google Ads API: ~10,000 recommended). */
    batch_size: z.number().int().min(1).max(10_000).default(10_000),
    /**
     * Google Ads API path: members per job, sent in requests of `batch_size`. A list takes one job at a
     * time, each processed for minutes to hours: fewer, bigger jobs fill it sooner.
     */
    job_members: z.number().int().min(1).max(1_000_000).default(100_000),
    /** Sandboxes and local test servers. */
    endpoints: z
      .strictObject({
        /** Data Manager REST base URL. */
        data_manager: z.url().default(DEFAULTS.data_manager),
        /** OAuth token URL (refresh-token exchange); not `token`, which the loader would take for a secret. */
        token_url: z.url().default(DEFAULTS.token_url),
        /** Google Ads API gRPC host, port and CA file, for this destination's channel only (see ADS_API.md). */
        ads_api: z
          .strictObject({
            host: z.string().min(1),
            port: z.number().int().min(1).max(65_535).default(443),
            ca_file: z.string().min(1).optional(),
          })
          .optional(),
        /** Google Ads REST base URL for GAQL searches (sent by the connector itself, not by google-ads-api). */
        ads_rest: z.url().default(DEFAULTS.ads_rest),
      })
      .default(DEFAULTS),
  })
  .superRefine((c, ctx) => {
    if (c.api === 'ads_api' && !c.developer_token)
      ctx.addIssue({
        code: 'custom',
        path: ['developer_token'],
        message:
          'the Google Ads API path needs a developer token: set developer_token: ${GOOGLE_ADS_DEVELOPER_TOKEN}, or use api: data_manager',
      });
  });

export type GoogleAdsConfig = z.infer<typeof googleAdsConfigSchema>;
/**
 * Why nothing may be uploaded with these consent settings, naming the setting and the fix: unset on an
 * EEA account, or `denied` for everyone (nobody could ever be uploaded). Undefined when they are usable.
 */
export function consentProblem(
  destination: string,
  config: Pick<GoogleAdsConfig, 'eea' | 'consent'>,
): string | undefined {
  const eea = eeaConsentProblem(destination, config, CONSENT_PURPOSES);
  if (eea) return eea;
  const denied = CONSENT_PURPOSES.filter((k) => config.consent?.[k] === 'denied');
  if (denied.length === 0) return undefined;
  return (
    `destinations.${destination}.consent.${denied.join(` and destinations.${destination}.consent.`)} is 'denied' ` +
    "for everyone, so nobody could be uploaded. Set it to 'granted' when every customer consented, or to " +
    "{ column: <attribute> } to read each customer's consent"
  );
}

/** The consent settings as a row of `check`: failed when `consentProblem` has one. */
export function consentCheck(destination: string, config: Pick<GoogleAdsConfig, 'eea' | 'consent'>): Check {
  const problem = consentProblem(destination, config);
  if (problem) return { name: 'consent', ok: false, detail: problem };
  return consentRow(destination, config, CONSENT_PURPOSES);
}
