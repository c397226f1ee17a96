import { Queue, type ConnectionOptions } from 'bullmq';
import { Cluster } from 'ioredis';
import { z } from 'zod';
import { createRedis, serverOptions } from '../src/redis-client.js';
import { redisCluster } from '../src/redis-url.js';

/**
 * Queue names, key prefix and job data. One hash-tagged prefix keeps every queue and key in one
 * Redis Cluster slot. Job data holds names and flags only, never identifiers: BullMQ stores it in clear.
 */
/** The BullMQ prefix for a config: `sync.redis_prefix` as a hash tag. */
export function queuePrefix(redisPrefix: string): string {
  return `{${redisPrefix}}`;
}
export const SYNC_QUEUE = 'sync';
export const ADMIN_QUEUE = 'admin';

export const syncJobSchema = z.strictObject({
  destination: z.string().min(1),
  audience: z.string().min(1).optional(),
  full: z.boolean().default(false),
  reason: z.enum(['schedule', 'resync', 'retry', 'poll']).default('schedule'),
  /** Audiences the removal brake lets through in this run (`*`: all). */
  allowRemovals: z.array(z.string().min(1)).default([]),
  /** Go ahead although the source shrank more than its max_shrink_share. */
  allowShrink: z.boolean().default(false),
});
/** Job data as producers write it (defaults filled in when a worker reads it). */
export type SyncJob = z.input<typeof syncJobSchema>;

export const adminJobSchema = z.discriminatedUnion('action', [
  z.strictObject({
    action: z.literal('resync'),
    destination: z.string().min(1),
    audience: z.string().min(1).optional(),
    full: z.boolean().default(false),
    allowRemovals: z.array(z.string().min(1)).default([]),
    allowShrink: z.boolean().default(false),
  }),
  z.strictObject({ action: z.literal('check'), destination: z.string().min(1) }),
  z.strictObject({ action: z.literal('pause'), destination: z.string().min(1) }),
  z.strictObject({ action: z.literal('resume'), destination: z.string().min(1) }),
  /** Reads the platform's size of each audience of the destination, for audience health. */
  z.strictObject({ action: z.literal('stats'), destination: z.string().min(1) }),
  /** Carries out an erasure request (src/privacy): its id only, the digests stay in their own keys. */
  z.strictObject({ action: z.literal('forget'), erasure: z.string().min(1) }),
  /** Evaluates alert conditions (jobs/alerts.ts): after a run of a destination, a stats read, or on schedule. */
  z.strictObject({
    action: z.literal('alerts'),
    after: z.enum(['run', 'retry', 'stats', 'schedule']),
    destination: z.string().min(1).optional(),
  }),
  /** Sends the weekly digest (alerts.digest.cron). */
  z.strictObject({ action: z.literal('digest') }),
]);
export type AdminJob = z.input<typeof adminJobSchema>;

/**
 * Redis connection for BullMQ, from the environment. Workers wait out outages; producers fail fast. For
 * one Redis these are options (BullMQ connects, and closes what it opened); for a Cluster, a client of
 * its own (BullMQ cannot tell a Cluster from options), which whoever asked for it closes (`release`).
 */
export function connection(kind: 'worker' | 'producer'): ConnectionOptions {
  const settings =
    kind === 'worker'
      ? { maxRetriesPerRequest: null }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 5000 };
  return redisCluster() ? createRedis(settings) : serverOptions(settings);
}

/** Closes a connection `connection` made, where it is a client (BullMQ leaves a client it was given open). */
export async function release(made: ConnectionOptions): Promise<void> {
  if (made instanceof Cluster) await made.quit().catch(() => made.disconnect());
}

/** A queue that closes its connection with it, whatever `connection` made. */
class OwnQueue extends Queue {
  constructor(
    name: string,
    prefix: string,
    private readonly made: ConnectionOptions,
  ) {
    super(name, { connection: made, prefix });
  }

  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      await release(this.made);
    }
  }
}

export function syncQueue(prefix: string, kind: 'worker' | 'producer' = 'producer'): Queue {
  return new OwnQueue(SYNC_QUEUE, prefix, connection(kind));
}

export function adminQueue(prefix: string, kind: 'worker' | 'producer' = 'producer'): Queue {
  return new OwnQueue(ADMIN_QUEUE, prefix, connection(kind));
}

/** Keys of our own beside BullMQ's, under the same prefix. */
export const keys = {
  /** One run per audience; `*`: the whole destination, for connectors that share state between audiences. */
  lease: (prefix: string, destination: string, audience = '*') =>
    `${prefix}:lease:${destination}:${audience}`,
  fullRequested: (prefix: string, destination: string, audience?: string) =>
    `${prefix}:full:${destination}:${audience ?? '*'}`,
  paused: (prefix: string, destination: string) => `${prefix}:paused:${destination}`,
  history: (prefix: string, destination: string, audience: string) =>
    `${prefix}:history:${destination}:${audience}`,
  reconcileLock: (prefix: string) => `${prefix}:schedules:lock`,
  /** The schedules version Redis's schedulers come from (JSON), and the contents it replaced, with when. */
  schedulesApplied: (prefix: string) => `${prefix}:schedules:applied`,
  schedulesReplaced: (prefix: string) => `${prefix}:schedules:replaced`,
};

/** An erasure's attempts: a failed one is retried by the erasure itself (with its receipts), these cover a lost worker. */
export const ERASURE_JOB_OPTIONS = {
  attempts: 5,
  backoff: { type: 'exponential' as const, delay: 30_000 },
  removeOnComplete: { age: 30 * 86_400 },
  removeOnFail: { age: 30 * 86_400 },
};

/** A periodic stats read: one attempt (the next one is minutes away), kept a day. */
export const STATS_JOB_OPTIONS = {
  attempts: 1,
  removeOnComplete: { age: 86_400, count: 100 },
  removeOnFail: { age: 7 * 86_400 },
};

/** Retries for a sync job: backed off exponentially; a run's own retries handle platform errors first. */
export const SYNC_JOB_OPTIONS = {
  attempts: 5,
  backoff: { type: 'exponential' as const, delay: 30_000 },
  removeOnComplete: { age: 7 * 86_400, count: 1000 },
  removeOnFail: { age: 30 * 86_400 },
};
