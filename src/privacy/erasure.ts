import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../redis-client.js';
import { z } from 'zod';
import type { ContactDeletion } from '../connector.js';
import { scrub } from '../redact.js';
import { privacyKeys } from './keys.js';
import { saveSuppression, type SuppressionEntry } from './suppression.js';
import type { ErasureDigests } from './identifiers.js';

export const contactDeletionSchema = z.enum(['archive', 'permanent']);

/** An erasure request as kept (and as the API shows it): when, by whom, which kinds of identifier; never the identifiers. */
export const erasureRequestSchema = z.object({
  id: z.string(),
  requested_at: z.string(),
  requested_by: z.string(),
  via: z.string(),
  /** Which kinds of identifier were given, never their values. */
  given: z.array(z.string()),
  destinations: z.array(z.string()),
  /**
   * Also delete the person's contact where the platform keeps contacts (Mailchimp), after removing them
   * from its audiences: `archive`, or `permanent` (blocks their re-import). Absent: contacts are kept.
   */
  mailchimp_delete: contactDeletionSchema.optional(),
});
export type ErasureRequest = z.infer<typeof erasureRequestSchema>;

/**
 * Where an erasure stands on one destination: `requested`; `sent` (the platform accepted the removals and
 * processes them later); `removed` (acknowledged, or settled); `failed` (retried until removed).
 */
export const receiptSchema = z.object({
  destination: z.string(),
  status: z.enum(['requested', 'sent', 'removed', 'failed']),
  requested_at: z.string(),
  sent_at: z.string().optional(),
  removed_at: z.string().optional(),
  failed_at: z.string().optional(),
  /** The last failure, scrubbed of credentials, emails and numbers. */
  reason: z.string().optional(),
  attempts: z.number().int(),
  /** Audiences the person was in, and members (records) taken out of them. */
  audiences: z.number().int(),
  members: z.number().int(),
  /** The contact deleted on the platform (`mailchimp_delete`): how, how many, how many were already gone. */
  contact: z
    .object({
      mode: contactDeletionSchema,
      deleted: z.number().int(),
      absent: z.number().int(),
      at: z.string(),
    })
    .optional(),
});
export type Receipt = z.infer<typeof receiptSchema>;

/**
 * Records an erasure request, its receipts (one per destination, `requested`) and the person's
 * suppression, at once; the caller then asks the workers to carry it out.
 */
export async function recordErasure(
  redis: RedisClient,
  redisPrefix: string,
  digests: ErasureDigests,
  destinations: readonly string[],
  by: { user: string; via: string },
  options: { mailchimpDelete?: ContactDeletion | undefined } = {},
): Promise<ErasureRequest> {
  const now = new Date();
  // Sortable by time, unguessable enough to name in a support ticket.
  const id = `er-${now.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
  const request: ErasureRequest = {
    id,
    requested_at: now.toISOString(),
    requested_by: by.user,
    via: by.via,
    given: digests.given,
    destinations: [...destinations],
    ...(options.mailchimpDelete ? { mailchimp_delete: options.mailchimpDelete } : {}),
  };
  const suppression: SuppressionEntry = {
    id,
    added_at: request.requested_at,
    erasure: id,
    keys: digests.keys,
    hashes: digests.hashes,
  };
  const tx = redis.multi().hset(privacyKeys.erasures(redisPrefix), id, JSON.stringify(request));
  for (const destination of destinations)
    tx.hset(
      privacyKeys.receipts(redisPrefix, id),
      destination,
      JSON.stringify(newReceipt(destination, request.requested_at)),
    );
  await tx.exec();
  // The suppression holds from the moment the request is recorded: no run adds the person again.
  await saveSuppression(redis, redisPrefix, suppression);
  return request;
}

/** A destination's receipt before any attempt. */
export function newReceipt(destination: string, at: string): Receipt {
  return { destination, status: 'requested', requested_at: at, attempts: 0, audiences: 0, members: 0 };
}

export async function erasureRequest(
  redis: RedisClient,
  redisPrefix: string,
  id: string,
): Promise<ErasureRequest | undefined> {
  const json = await redis.hget(privacyKeys.erasures(redisPrefix), id);
  return json === null ? undefined : erasureRequestSchema.parse(JSON.parse(json));
}

export async function receiptsOf(redis: RedisClient, redisPrefix: string, id: string): Promise<Receipt[]> {
  const all = await redis.hvals(privacyKeys.receipts(redisPrefix, id));
  return all
    .map((json) => receiptSchema.parse(JSON.parse(json)))
    .sort((a, b) => a.destination.localeCompare(b.destination));
}

export async function saveReceipt(
  redis: RedisClient,
  redisPrefix: string,
  id: string,
  receipt: Receipt,
): Promise<void> {
  const kept = receipt.reason === undefined ? receipt : { ...receipt, reason: scrub(receipt.reason) };
  await redis.hset(privacyKeys.receipts(redisPrefix, id), receipt.destination, JSON.stringify(kept));
}

/** Every erasure request with its receipts, oldest first; `done` when every receipt says removed. */
export async function erasures(
  redis: RedisClient,
  redisPrefix: string,
): Promise<(ErasureRequest & { done: boolean; receipts: Receipt[] })[]> {
  const requests = (await redis.hvals(privacyKeys.erasures(redisPrefix)))
    .map((json) => erasureRequestSchema.parse(JSON.parse(json)))
    .sort((a, b) => a.requested_at.localeCompare(b.requested_at) || a.id.localeCompare(b.id));
  return Promise.all(
    requests.map(async (r) => {
      const receipts = await receiptsOf(redis, redisPrefix, r.id);
      return { ...r, done: receipts.every((x) => x.status === 'removed'), receipts };
    }),
  );
}
