import { z } from 'zod';
import type { Check } from '../../src/connector.js';
import { consentRow, consentSignal } from '../../src/identify/consent.js';

/** The platform's limits (see the Mailchimp section of the platform reference). */
export const LIMITS = {
  /** Emails per `members_to_add` / `members_to_remove` array of the segment endpoint. */
  membersPerArray: 500,
  /** Simultaneous connections Mailchimp allows per account. */
  connections: 10,
} as const;

/** How long the download of a `/batches` job's results may take, like the SDK's own calls. */
export const RESULTS_TIMEOUT_MS = 120_000;

/** The data centre is the part after the last `-` of the API key (`…-us21` → `us21`). */
export function dataCentre(apiKey: string): string | undefined {
  const dash = apiKey.lastIndexOf('-');
  const dc = dash < 0 ? '' : apiKey.slice(dash + 1).trim();
  return /^[a-z]+\d+$/i.test(dc) ? dc.toLowerCase() : undefined;
}

export const mailchimpConfigSchema = z.strictObject({
  type: z.literal('mailchimp'),
  /** Write `${MAILCHIMP_API_KEY}`: credentials never live in the config file. */
  api_key: z
    .string()
    .min(1, 'the API key is empty: set MAILCHIMP_API_KEY')
    .refine((key) => dataCentre(key) !== undefined, {
      message:
        'the API key has no data-centre suffix (such as -us21): copy the whole key from Mailchimp (Profile → Extras → API keys)',
    }),
  /** The audience id (Audience → Settings → Audience name and defaults → Audience ID). */
  list_id: z.string().regex(/^[A-Za-z0-9]+$/, 'expected the audience id, such as a1b2c3d4e5'),
  /**
   * Customers who are not contacts of the audience yet: `skip` records them as rejected
   * (`not in the Mailchimp audience`); `upsert` adds them as contacts first, with `status_if_new`.
   */
  missing_members: z.enum(['skip', 'upsert']).default('skip'),
  /** Status of contacts created by `upsert`; existing contacts keep theirs. */
  status_if_new: z.enum(['transactional', 'pending', 'subscribed', 'unsubscribed']).default('transactional'),
  /** Requests in flight at once for this account (Mailchimp allows 10 in total). */
  max_connections: z.number().int().min(1).max(LIMITS.connections).default(5),
  /** Emails per array of the segment endpoint. */
  batch_size: z.number().int().min(1).max(LIMITS.membersPerArray).default(LIMITS.membersPerArray),
  /** An add or remove of more members than this goes through `/batches` (one request, processed by Mailchimp). */
  batch_operations_threshold: z.number().int().min(1).max(100_000).default(5_000),
  /** Seconds between two looks at a running `/batches` job. */
  batch_poll_seconds: z.number().min(0.01).max(300).default(5),
  /** Longest wait for a `/batches` job before the call is retried (the job is then followed, not sent again). */
  batch_timeout_seconds: z
    .number()
    .min(1)
    .max(6 * 3600)
    .default(1800),
  /** Base URL, for a sandbox or a local test server; default `https://<dc>.api.mailchimp.com/3.0`. */
  endpoint: z.url().optional(),
  /** The audience has contacts in the EEA, the UK or Switzerland (default no): `consent` must then be written out. */
  eea: z.boolean().optional(),
  /**
   * Consent to marketing e-mail: people without it are neither tagged nor added as contacts (and are
   * untagged if they were). Unset: everyone, except with `eea: true`, which refuses to upload.
   */
  consent: z.strictObject({ email_marketing: consentSignal }).optional(),
});
export type MailchimpConfig = z.infer<typeof mailchimpConfigSchema>;

/** The consent settings as a row of `check` where set or required (`eea: true`), else none. */
export function consentCheck(
  destination: string,
  config: Pick<MailchimpConfig, 'eea' | 'consent'>,
): Check | undefined {
  return config.consent || config.eea ? consentRow(destination, config, ['email_marketing']) : undefined;
}

/** The base URL of the account's API. */
export function baseUrl(config: Pick<MailchimpConfig, 'api_key' | 'endpoint'>): string {
  if (config.endpoint) return config.endpoint.replace(/\/+$/, '');
  return `https://${dataCentre(config.api_key)}.api.mailchimp.com/3.0`;
}

/**
 * Members the core hands over per add/remove call: twice the `/batches` threshold, so a run with more
 * changes than the threshold sends at least one call through `/batches`; each call is split into
 * arrays of `batch_size` for the segment endpoint.
 */
export function membersPerCall(config: MailchimpConfig): number {
  return Math.max(config.batch_size, 2 * config.batch_operations_threshold);
}
