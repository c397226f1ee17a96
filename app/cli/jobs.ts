import { setTimeout as sleep } from 'node:timers/promises';
import type { Job, Queue } from 'bullmq';
import { lastRuns } from '../../jobs/history.js';
import { adminQueue, ADMIN_QUEUE, keys, queuePrefix, syncQueue, SYNC_QUEUE } from '../../jobs/queues.js';
import { adminJobFor, enqueueAdmin, type DestinationAction } from '../../jobs/admin.js';
import { adminAudit, cliOperator, recordAudit } from '../../src/privacy/audit.js';
import {
  describeVersion,
  nextRuns,
  olderMessage,
  reconcileSchedules,
  reconcileStatsSchedules,
} from '../../jobs/schedules.js';
import { MAX_INTERRUPTIONS, STALLED_REASON, startWorker } from '../worker.js';
import { audiencesOf } from '../../src/audience/audiences.js';
import { audienceHealth } from '../../src/health/audience.js';
import type { Divergence } from '../../src/health/schema.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, ExitCode, UserError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { redisConfigProblem, redisWhere } from '../../src/redis-url.js';
import { buildSegmentMap } from '../../src/segment/maps.js';
import { table, thousands } from './output.js';
import { connect, redisFor } from './sync.js';

function needConfig(config: string | undefined): string {
  if (!config)
    throw new ConfigError('this command needs a config: pass --config FILE or create ./audience-sync.yaml');
  return config;
}

/** Producers fail fast when Redis is down, with a message that says what to do; queues come after. */
async function reachable<T extends { on(event: 'error', listener: (e: Error) => void): unknown }>(
  make: () => T,
): Promise<T> {
  const probe = redisFor();
  await connect(probe);
  probe.disconnect();
  const q = make();
  q.on('error', () => undefined);
  return q;
}

export async function runWorker(
  options: {
    config?: string | undefined;
    concurrency?: string;
    metricsPort?: string;
    metricsHost?: string;
    httpPort?: string | undefined;
    httpHost?: string;
    allowVolatileRedis?: boolean;
  },
  log: Logger,
): Promise<ExitCode> {
  // Listening before the start: a signal while it starts stops the worker cleanly too.
  let signalled: (signal: string) => void = () => undefined;
  const signal = new Promise<string>((resolve) => (signalled = resolve));
  const onSignal = (name: string) => () => signalled(name);
  process.once('SIGTERM', onSignal('SIGTERM'));
  process.once('SIGINT', onSignal('SIGINT'));
  const started = startWorker({
    configFile: needConfig(options.config),
    log,
    ...(options.concurrency ? { concurrency: Number(options.concurrency) } : {}),
    ...(options.metricsPort ? { metricsPort: Number(options.metricsPort) } : {}),
    ...(options.metricsHost ? { metricsHost: options.metricsHost } : {}),
    ...(options.allowVolatileRedis ? { allowVolatileRedis: true } : {}),
  });
  const first = await Promise.race([started, signal]);
  if (typeof first === 'string') {
    started.catch(() => undefined);
    log.info(`${first} before the worker started: stopping`);
    return ExitCode.ok;
  }
  const worker = first;
  // The API beside the worker: the same server as `serve`, loaded only when asked for.
  let api: { close(): Promise<void> } | undefined;
  if (options.httpPort !== undefined)
    try {
      const { serveApi, portOf } = await import('./serve.js');
      api = await serveApi(
        needConfig(options.config),
        { port: portOf('--http-port', options.httpPort), host: options.httpHost ?? '127.0.0.1' },
        log,
      );
    } catch (error) {
      await worker.close();
      throw error;
    }
  const fatal = await Promise.race([
    signal.then((name) => {
      log.info(`${name}: finishing the current batch, saving state, stopping`);
      return undefined;
    }),
    worker.fatal,
  ]);
  await api?.close();
  if (fatal) {
    // Bounded: closing talks to a Redis that will not answer as it should; the process exits after.
    await Promise.race([worker.close().catch(() => undefined), sleep(5000)]);
    throw fatal;
  }
  await worker.close();
  return ExitCode.ok;
}

export async function runAdmin(
  action: DestinationAction,
  options: {
    config?: string | undefined;
    destination: string;
    audience?: string;
    full?: boolean;
    wait?: boolean;
    json?: boolean;
    allowRemovals?: string[];
    allowShrink?: boolean;
  },
  log: Logger,
): Promise<ExitCode> {
  const { config } = loadConfig(needConfig(options.config));
  const data = adminJobFor(config, action, options);
  const prefix = queuePrefix(config.sync.redis_prefix);
  const queue = await reachable(() => adminQueue(prefix));
  try {
    const id = await enqueueAdmin(queue, data);
    const redis = redisFor();
    await connect(redis);
    await recordAudit(
      redis,
      config.sync.redis_prefix,
      config.privacy.audit_keep_days,
      adminAudit(cliOperator(), data, `${ADMIN_QUEUE}:${id}`),
    ).finally(() => redis.disconnect());
    if (!options.wait) {
      process.stdout.write(options.json ? JSON.stringify({ job: id, queue: ADMIN_QUEUE }) + '\n' : `${id}\n`);
      return ExitCode.ok;
    }
    const adminResult = await follow(queue, id, ADMIN_QUEUE, log);
    if (action !== 'resync') {
      process.stdout.write(JSON.stringify(adminResult) + '\n');
      const checks = (adminResult as { checks?: { ok: boolean }[] } | null)?.checks;
      return checks?.some((c) => !c.ok) ? ExitCode.failed : ExitCode.ok;
    }
    const { syncJobId: syncId, joined } = adminResult as { syncJobId: string; joined?: boolean };
    log.info(
      joined
        ? `resync joined sync job ${syncId}, which had not started yet; waiting for it to finish`
        : `resync enqueued as sync job ${syncId}; waiting for it to finish`,
    );
    const sq = await reachable(() => syncQueue(prefix));
    try {
      const result = await follow(sq, syncId, SYNC_QUEUE, log);
      process.stdout.write(JSON.stringify({ job: syncId, ...(joined ? { joined } : {}), result }) + '\n');
      return ExitCode.ok;
    } finally {
      await sq.close();
    }
  } finally {
    await queue.close();
  }
}

/** How long `--wait` goes on following a job while Redis cannot be reached before it gives up. */
const FOLLOW_REDIS_LOSS_MS = 60_000;

/**
 * Waits for a job to finish and returns its result, or fails with its reason. Says when an attempt failed
 * and the job will be retried; follows the job through a Redis restart, and gives up (saying so) if Redis
 * stays away.
 */
async function follow(queue: Queue, id: string, name: string, log: Logger): Promise<unknown> {
  let lostSince: number | undefined;
  let attemptsSeen = 0;
  // Polls the job's state: event subscriptions can miss a job that finishes while they start.
  for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
    let job: Job | undefined;
    let state: string;
    try {
      job = await queue.getJob(id);
      state = job ? await job.getState() : 'gone';
      // Read again: the job may have finished between fetching it and asking its state (a job read
      // before it failed has no failedReason: a loaded machine showed `failed: undefined`).
      if (state === 'completed' || state === 'failed') job = await queue.getJob(id);
    } catch (error) {
      const problem = redisConfigProblem(error);
      if (problem) throw new ConfigError(problem);
      if (lostSince === undefined) {
        lostSince = Date.now();
        log.warn(`lost Redis at ${redisWhere()} while following job ${id}; reconnecting`);
      }
      if (Date.now() - lostSince > FOLLOW_REDIS_LOSS_MS)
        throw new UserError(
          `lost Redis at ${redisWhere()} for ${FOLLOW_REDIS_LOSS_MS / 1000} s while following job ${id} on the ${name} queue (${(error as Error).message})`,
          ExitCode.failed,
          'the job goes on on the workers once Redis is back: see `audience-sync status`',
        );
      wait = 1000;
      await sleep(wait);
      continue;
    }
    if (lostSince !== undefined) log.info(`Redis is back; following job ${id}`);
    lostSince = undefined;
    if (!job)
      throw new UserError(
        `job ${id} on the ${name} queue is gone (removed before it was followed)`,
        ExitCode.failed,
      );
    if (state === 'completed') return job.returnvalue;
    if (state === 'failed')
      throw new UserError(
        `job ${id} on the ${name} queue failed: ${failedReason(job.failedReason)}`,
        ExitCode.failed,
      );
    if (job.attemptsMade > attemptsSeen) {
      attemptsSeen = job.attemptsMade;
      log.warn(
        `job ${id}: attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1} failed (${failedReason(job.failedReason)}); it will be retried`,
      );
    }
    await sleep(wait);
  }
}

function failedReason(reason: string | undefined): string {
  if (reason === undefined) return 'no reason recorded (see `audience-sync status` and the worker logs)';
  return reason === STALLED_REASON
    ? `its run was interrupted more than ${MAX_INTERRUPTIONS} times (its workers were killed or stalled) and was given up`
    : reason;
}

export async function runSchedules(options: {
  config?: string | undefined;
  json?: boolean;
  force?: boolean;
}): Promise<ExitCode> {
  const { config } = loadConfig(needConfig(options.config));
  const prefix = queuePrefix(config.sync.redis_prefix);
  const queue = await reachable(() => syncQueue(prefix));
  const admin = await reachable(() => adminQueue(prefix));
  const redis = redisFor();
  await connect(redis);
  try {
    const result = await reconcileSchedules(config, queue, redis, { force: options.force ?? false });
    if (result.outcome === 'older') {
      if (options.json) process.stdout.write(JSON.stringify(result) + '\n');
      process.stderr.write(`audience-sync: ${olderMessage(result)}\n`);
      return ExitCode.failed;
    }
    const stats = await reconcileStatsSchedules(config, admin, redis);
    if (options.json) process.stdout.write(JSON.stringify({ ...result, stats }) + '\n');
    else
      process.stdout.write(
        `schedules: ${result.added.length} added, ${result.kept.length} kept, ${result.removed.length} removed (${describeVersion(result.mine)}); ` +
          `stats every ${config.health.stats_minutes} min for ${stats.added.length + stats.kept.length} destinations\n`,
      );
    return ExitCode.ok;
  } finally {
    redis.disconnect();
    await Promise.all([queue.close(), admin.close()]);
  }
}

/** Per destination audience: the last run and its counts, the platform's size, the next scheduled run. */
export async function runStatus(options: { config?: string | undefined; json?: boolean }): Promise<ExitCode> {
  const { config } = loadConfig(needConfig(options.config));
  const prefix = queuePrefix(config.sync.redis_prefix);
  const queue = await reachable(() => syncQueue(prefix));
  const redis = redisFor();
  await connect(redis);
  try {
    const next = await nextRuns(queue);
    const audiences = audiencesOf(config, buildSegmentMap(config.segments).names);
    const rows = [];
    for (const destination of Object.keys(config.destinations)) {
      const paused = (await redis.exists(keys.paused(prefix, destination))) > 0;
      for (const a of audiences.filter((x) => x.destinations.includes(destination))) {
        const [last] = await lastRuns(redis, prefix, destination, a.name);
        const health = await audienceHealth(redis, prefix, config, destination, a.name, { queue });
        const upcoming = next
          .filter((n) => n.destination === destination && (n.audience === undefined || n.audience === a.name))
          .map((n) => n.next)
          .sort((x, y) => x - y)[0];
        rows.push({
          destination,
          audience: a.name,
          paused,
          last_run: last
            ? {
                at: last.at,
                run: last.run,
                full: last.full,
                reason: last.reason,
                outcome: last.outcome,
                error: last.error ?? null,
                held: last.held ?? null,
                replaced: last.replaced ?? null,
              }
            : null,
          segment_size: last?.segmentSize ?? null,
          members: last?.members ?? null,
          added: last?.added ?? null,
          removed: last?.removed ?? null,
          unchanged: last?.unchanged ?? null,
          rejected: last?.rejected ?? null,
          rejected_reasons: last?.rejectedReasons ?? null,
          platform_report: last?.platform ?? null,
          skipped: last?.skipped ?? null,
          expected: health.expected,
          confirmed: health.confirmed,
          platform_size: health.platform ? health.platform.size : (last?.stats?.size ?? null),
          match_rate: health.platform ? health.platform.matchRate : (last?.stats?.matchRate ?? null),
          platform_read_at: health.platform?.at ?? null,
          platform_problems: health.platform?.problems ?? [],
          divergence: health.divergence,
          next_run: upcoming ? new Date(upcoming).toISOString() : null,
        });
      }
    }
    if (options.json) process.stdout.write(JSON.stringify({ audiences: rows }) + '\n');
    else {
      const n = (v: number | null) => (v === null ? '-' : thousands(v));
      process.stdout.write(
        table(
          [
            'destination',
            'audience',
            'last run',
            'members',
            'confirmed',
            'added',
            'removed',
            'platform size',
            'match',
            'health',
            'next run',
            'state',
          ],
          rows.map((r) => [
            r.destination,
            r.audience,
            r.last_run ? r.last_run.at.replace('T', ' ').slice(0, 16) : 'never',
            n(r.members),
            n(r.confirmed),
            n(r.added),
            n(r.removed),
            n(r.platform_size),
            r.match_rate === null ? '-' : `${Math.round(r.match_rate * 100)} %`,
            HEALTH_WORDS[r.divergence.state],
            r.next_run ? r.next_run.replace('T', ' ').slice(0, 16) : '-',
            r.paused
              ? 'paused'
              : r.platform_problems.length > 0
                ? 'FAILED: the platform will not serve it (see below)'
                : r.last_run?.held
                  ? 'held by a brake (status --json says why)'
                  : r.last_run?.error
                    ? `failed: ${r.last_run.error}`
                    : r.last_run?.replaced
                      ? 'ok (replaced: its state was lost)'
                      : 'ok',
          ]),
        ),
      );
      for (const r of rows.filter((x) => x.divergence.divergent))
        process.stdout.write(`${r.destination} / ${r.audience}: ${describeDivergence(r.divergence)}\n`);
      for (const r of rows)
        for (const problem of r.platform_problems)
          process.stdout.write(`${r.destination} / ${r.audience}: FAILED health check: ${problem}\n`);
    }
    return ExitCode.ok;
  } finally {
    redis.disconnect();
    await queue.close();
  }
}

const HEALTH_WORDS: Record<Divergence['state'], string> = {
  in_band: 'ok',
  settling: 'settling',
  divergent: 'DIVERGENT',
  unknown: '-',
};

/** One line with the numbers that show a divergence. */
export function describeDivergence(d: Divergence): string {
  const n = (v: number | null) => (v === null ? '?' : thousands(Math.round(v)));
  const ratio =
    d.baseline.ratio === null
      ? 'no baseline yet'
      : `${Math.round(d.baseline.ratio * 100)} % ${d.baseline.from === 'match_rate' ? 'reported match rate' : 'own past ratio'}`;
  const band = d.band ? `${n(d.band.low)}–${n(d.band.high)}` : 'more than 0';
  return (
    `DIVERGENT since ${d.since?.replace('T', ' ').slice(0, 16)} UTC: the platform counts ${n(d.platformSize)}, ` +
    `expected ${band} (${n(d.sent)} sent of ${n(d.expected)} expected, ${ratio}, ± ${Math.round(d.share * 100)} %; ` +
    `the platform needs up to ${d.processingMinutes} min)`
  );
}
