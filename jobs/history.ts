import type { Redis } from 'ioredis';
import type { AudienceStats } from '../src/connector.js';
import type { AudienceResult } from '../src/sync/run.js';
import { keys } from './queues.js';

/** One audience's part of one run, as kept in Redis (newest first). */
export interface RunRecord extends AudienceResult {
  run: string;
  at: string;
  full: boolean;
  reason: string;
  stats?: AudienceStats | undefined;
}

export const DEFAULT_RETENTION = 1000;

export async function recordRun(
  redis: Redis,
  prefix: string,
  records: readonly RunRecord[],
  retention = DEFAULT_RETENTION,
): Promise<void> {
  const tx = redis.multi();
  for (const r of records) {
    const key = keys.history(prefix, r.destination, r.audience);
    tx.lpush(key, JSON.stringify(r)).ltrim(key, 0, retention - 1);
  }
  await tx.exec();
}

export async function lastRuns(
  redis: Redis,
  prefix: string,
  destination: string,
  audience: string,
  count = 1,
): Promise<RunRecord[]> {
  const raw = await redis.lrange(keys.history(prefix, destination, audience), 0, count - 1);
  return raw.map((r) => JSON.parse(r) as RunRecord);
}
