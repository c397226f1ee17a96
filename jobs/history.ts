import type { Redis } from 'ioredis';
import type { AudienceStats, ErrorKind } from '../src/connector.js';
import type { AudienceResult } from '../src/sync/run.js';
import { keys } from './queues.js';

/** Which run this was: its id, when it started, and why. */
export interface RunMeta {
  run: string;
  at: string;
  full: boolean;
  reason: string;
}

/** Fields that describe the audience as of a run: only a run that completed knows them. */
type SizeField =
  | 'segmentSize'
  | 'members'
  | 'unchanged'
  | 'waiting'
  | 'pending'
  | 'skipped'
  | 'plannedAdds'
  | 'plannedRemoves';

/** A run that completed for this audience: what it did and the sizes it left. */
export type CompletedRun = RunMeta &
  Omit<AudienceResult, 'error' | 'errorKind'> & {
    outcome: 'completed';
    stats?: AudienceStats | undefined;
    error?: undefined;
    errorKind?: undefined;
  };

/**
 * A run that failed for this audience: what it did before it stopped, and why; never sizes (a chart of
 * sizes shows a gap, not a drop to zero).
 */
export type FailedRun = RunMeta &
  Omit<AudienceResult, SizeField | 'error' | 'errorKind'> & {
    outcome: 'failed';
    error: string;
    errorKind?: ErrorKind | undefined;
  } & { [K in SizeField | 'stats']?: undefined };

/** One audience's part of one run, as kept in Redis (newest first). */
export type RunRecord = CompletedRun | FailedRun;

export const DEFAULT_RETENTION = 1000;

/** The record of a run's result for one audience: failed (without sizes) when it has an error. */
export function runRecord(result: AudienceResult, meta: RunMeta, stats?: AudienceStats): RunRecord {
  const { error, errorKind, ...rest } = result;
  if (error === undefined) return { ...meta, ...rest, outcome: 'completed', ...(stats ? { stats } : {}) };
  const {
    segmentSize: _segmentSize,
    members: _members,
    unchanged: _unchanged,
    waiting: _waiting,
    pending: _pending,
    skipped: _skipped,
    plannedAdds: _plannedAdds,
    plannedRemoves: _plannedRemoves,
    ...done
  } = rest;
  return { ...meta, ...done, outcome: 'failed', error, ...(errorKind ? { errorKind } : {}) };
}

/** The record of a run that failed for an audience before it had any result (the source could not be read, …). */
export function failedRun(
  destination: string,
  audience: string,
  meta: RunMeta,
  error: string,
  durationMs = 0,
): FailedRun {
  return {
    ...meta,
    destination,
    audience,
    outcome: 'failed',
    error,
    added: 0,
    removed: 0,
    rejected: 0,
    rejectedReasons: {},
    failed: 0,
    inFlight: 0,
    durationMs,
  };
}

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
  return raw.map((r) => fromStored(JSON.parse(r) as StoredRun));
}

/** Records written before `outcome` existed: a failed one carried zero sizes, which are not sizes. */
type StoredRun = RunRecord | (Omit<CompletedRun, 'outcome'> & { outcome?: undefined; error?: string });

function fromStored(r: StoredRun): RunRecord {
  if (r.outcome !== undefined) return r;
  const { outcome: _outcome, error, ...result } = r;
  return runRecord({ ...result, ...(error !== undefined ? { error } : {}) }, r, r.stats);
}
