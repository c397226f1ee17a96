import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config/schema.js';
import { ConfigError } from '../src/errors.js';
import { Lease } from './lease.js';
import { keys, SYNC_JOB_OPTIONS, type SyncJob } from './queues.js';

/** A schedule's id is its content: the same entry always maps to the same BullMQ job scheduler. */
export function scheduleId(s: Config['schedules'][number]): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([s.destination, s.audience ?? null, s.cron, s.tz, s.full]))
    .digest('hex')
    .slice(0, 24);
  return `schedule-${digest}`;
}

export interface Reconciled {
  kept: string[];
  added: string[];
  removed: string[];
}

/**
 * Makes the queue's job schedulers exactly the config's schedules. Reconcilers take turns under a
 * lock, and ids are derived from content, so processes reconciling at once end with one scheduler
 * per entry; entries gone from the config are removed.
 */
export async function reconcileSchedules(config: Config, queue: Queue, redis: Redis): Promise<Reconciled> {
  config.schedules.forEach((s, k) => {
    if (!(s.destination in config.destinations))
      throw new ConfigError(`schedules[${k}].destination: no destination named '${s.destination}'`);
  });
  let lease: Lease | undefined;
  for (
    let waited = 0;
    !(lease = await Lease.acquire(redis, keys.reconcileLock(queue.opts.prefix ?? ''), 30_000));
    waited += 100
  ) {
    if (waited > 60_000) throw new Error('another process has held the schedule lock for a minute');
    await sleep(100);
  }
  try {
    const desired = new Map(config.schedules.map((s) => [scheduleId(s), s]));
    const existing = new Set((await queue.getJobSchedulers(0, -1)).map((s) => s.key));
    const result: Reconciled = { kept: [], added: [], removed: [] };
    for (const [id, s] of desired) {
      const data: SyncJob = {
        destination: s.destination,
        full: s.full,
        reason: 'schedule',
        ...(s.audience ? { audience: s.audience } : {}),
      };
      try {
        await queue.upsertJobScheduler(
          id,
          { pattern: s.cron, tz: s.tz },
          { name: 'sync', data, opts: SYNC_JOB_OPTIONS },
        );
      } catch (error) {
        throw new ConfigError(
          `schedules: '${s.cron}' (tz ${s.tz}) for ${s.destination} is not a valid schedule: ${(error as Error).message}`,
          'use a cron pattern such as "0 3 * * *" and an IANA time zone such as Europe/Berlin',
        );
      }
      (existing.has(id) ? result.kept : result.added).push(id);
    }
    for (const id of existing) {
      if (desired.has(id)) continue;
      await queue.removeJobScheduler(id);
      result.removed.push(id);
    }
    return result;
  } finally {
    await lease.release();
  }
}

/** When each destination (and audience) is next scheduled, in ms since the epoch. */
export async function nextRuns(
  queue: Queue,
): Promise<{ destination: string; audience?: string; next: number }[]> {
  const schedulers = await queue.getJobSchedulers(0, -1);
  return schedulers.flatMap((s) => {
    const data = (s.template?.data ?? {}) as Partial<SyncJob>;
    return data.destination && s.next
      ? [
          {
            destination: data.destination,
            ...(data.audience ? { audience: data.audience } : {}),
            next: s.next,
          },
        ]
      : [];
  });
}
