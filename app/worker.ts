import { createHash } from 'node:crypto';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { createRedis } from '../src/redis-client.js';
import { connectors, identifyThread } from '../connectors/index.js';
import { loadConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { ConfigError, describeError, UserError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import type { ConnectorClient } from '../src/connector.js';
import { StateStore } from '../src/record/store.js';
import { redisConfigProblem } from '../src/redis-url.js';
import { destinationsOf, prepareSync } from '../src/sync/prepare.js';
import { KeyFollower } from '../src/history/follow.js';
import { logSnapshot, recordScoring } from '../src/history/snapshots.js';
import { checksOf, syncDestination, type AudienceResult, type Destination } from '../src/sync/run.js';
import { logReadReport } from '../src/source/report.js';
import { segmentCustomers } from '../src/score/pipeline.js';
import { StallWatch } from '../src/stall.js';
import { mallocAdvice } from '../src/runtime.js';
import { MemoryBudget } from '../src/identify/budget.js';
import { SharedReads, type SharedRead } from '../jobs/shared-read.js';
import { heldByShrink, recordSourceSize, removalBrake, sourceSizeOf } from '../src/diff/brakes.js';
import { recordFailedRun, recordRun, runRecordsOf, type RunMeta, type RunRecord } from '../jobs/history.js';
import { describeHolder, Lease, leaseKeysOf } from '../jobs/lease.js';
import {
  adminJobSchema,
  adminQueue,
  ADMIN_QUEUE,
  connection,
  release,
  keys,
  queuePrefix,
  syncJobSchema,
  syncQueue,
  SYNC_JOB_OPTIONS,
  SYNC_QUEUE,
  type SyncJob,
} from '../jobs/queues.js';
import { waitingRunCovering } from '../jobs/join.js';
import {
  describeVersion,
  olderMessage,
  reconcileSchedules,
  reconcileStatsSchedules,
} from '../jobs/schedules.js';
import { readDestination, recordRunReadings } from '../src/health/audience.js';
import { checkRedis } from '../jobs/redis-checks.js';
import { carryOutErasure, scheduleErasureRetry } from '../jobs/erasure.js';
import { Metrics } from '../jobs/metrics.js';
import { ALERTS_JOB_OPTIONS, evaluateAfter, reconcileAlertSchedules, runDigest } from '../jobs/alerts.js';

export interface WorkerOptions {
  configFile: string;
  log: Logger;
  concurrency?: number;
  /** Reconcile the config's schedules at start (default true). */
  schedules?: boolean;
  /** Port for /metrics and /healthz; none when undefined. */
  metricsPort?: number | undefined;
  /** Address to serve them on (default 127.0.0.1: this machine only). */
  metricsHost?: string | undefined;
  /** Run on a Redis that can lose the state (no persistence, or eviction), with a warning. */
  allowVolatileRedis?: boolean;
}

export interface RunningWorker {
  close(): Promise<void>;
  /** Settles with an error no reconnection can fix (a password, a Cluster node without our keys): stop. */
  fatal: Promise<UserError>;
}

/** A run interrupted (its worker killed or stalled) is resumed from the saved state up to this many times. */
export const MAX_INTERRUPTIONS = 5;
/** BullMQ's failedReason for a job it gave up on after MAX_INTERRUPTIONS stalls. */
export const STALLED_REASON = 'job stalled more than allowable limit';

/**
 * Runs sync and admin jobs until closed. Any number of these share the work through Redis: a lease
 * per audience keeps runs of one audience apart, whichever process picks them up, while runs of
 * different audiences go on side by side.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { log, configFile } = options;
  const { config } = loadConfig(configFile);
  const redis = createRedis({ maxRetriesPerRequest: null });
  let fail: (error: UserError) => void = () => undefined;
  const fatal = new Promise<UserError>((resolve) => (fail = resolve));
  /** Errors of any connection: a wrong password or a wrong server stops the worker; the rest it waits out. */
  const onError = (what: string) => (error: Error) => {
    const problem = redisConfigProblem(error);
    if (problem) fail(new ConfigError(problem));
    else log.warn({ err: error.message }, what);
  };
  redis.on('error', onError('Redis connection error; reconnecting'));
  const orFatal = <T>(work: Promise<T>) =>
    Promise.race([
      work,
      fatal.then((error) => {
        throw error;
      }),
    ]);
  const store = new StateStore(redis, config.sync.redis_prefix);
  const reads = new SharedReads();
  /** What the runs of this process hold in identity tables at once (`sync.table_memory_mb`). */
  const budget = new MemoryBudget(config.sync.table_memory_mb * 2 ** 20);
  /** The keys of a read's customers, made on a thread while it was read (for its segment snapshot). */
  const followers = new WeakMap<object, KeyFollower>();
  const prefix = queuePrefix(config.sync.redis_prefix);
  const running = new Set<AbortController>();
  const producer = syncQueue(prefix, 'worker');
  producer.on('error', onError('Redis connection error (queue); reconnecting'));
  const admin = adminQueue(prefix, 'worker');
  admin.on('error', onError('Redis connection error (admin queue); reconnecting'));

  let lastScheduleWarning = '';
  /** Whether the malloc setting's warning was given (once per process). */
  let mallocAdvised = false;
  /** Reconciles the schedules; an older config leaves Redis's and says so (once per pair of versions). */
  const reconcile = async (current: Config, onlyMissing: boolean) => {
    const r = await reconcileSchedules(current, producer, redis, { onlyMissing });
    if (r.outcome === 'older') {
      const warning = olderMessage(r);
      if (warning !== lastScheduleWarning)
        log.warn({ mine: r.mine, redis: r.previous }, `schedules: ${warning}`);
      lastScheduleWarning = warning;
      return;
    }
    lastScheduleWarning = '';
    const stats = await reconcileStatsSchedules(current, admin, redis);
    await reconcileAlertSchedules(current, admin);
    if (stats.added.length + stats.removed.length > 0)
      log.info(
        { ...stats },
        `stats schedules: ${stats.added.length} set, ${stats.removed.length} removed (every ${current.health.stats_minutes} min)`,
      );
    const counts = `${r.added.length} added, ${r.kept.length} kept, ${r.removed.length} removed`;
    if (!onlyMissing) log.info({ ...r }, `schedules: ${counts} (${describeVersion(r.mine)})`);
    else if (r.previous?.content === r.mine.content && r.added.length > 0)
      log.warn(
        { ...r },
        `schedules: re-created ${r.added.length} missing from Redis (flushed, evicted, or restarted without persistence)`,
      );
    else if (!r.previous && r.added.length > 0)
      log.warn(
        { ...r },
        `schedules: Redis had lost them; re-created (${counts}, ${describeVersion(r.mine)})`,
      );
    else if (r.previous && r.previous.content !== r.mine.content)
      log.info({ ...r }, `schedules: the config changed; applied (${counts}, ${describeVersion(r.mine)})`);
  };

  try {
    await orFatal(
      checkRedis(redis, keys.reconcileLock(prefix), {
        allowVolatile: options.allowVolatileRedis ?? false,
        log,
      }),
    );
    if (options.schedules !== false) await orFatal(reconcile(config, false));
  } catch (error) {
    // Not awaited: closing may wait on a Redis that will never answer; the process ends anyway.
    void producer.close().catch(() => undefined);
    void admin.close().catch(() => undefined);
    redis.disconnect();
    throw error;
  }

  // Running workers put back schedules Redis lost, from the config as it is now (if it is the newest).
  let checking = false;
  const scheduleCheck =
    options.schedules === false
      ? undefined
      : setInterval(() => {
          if (checking) return;
          checking = true;
          let current: Config;
          try {
            current = loadConfig(configFile).config;
          } catch (error) {
            log.error(`schedules not checked: ${describeError(error)}`);
            checking = false;
            return;
          }
          reconcile(current, true)
            .catch((error: unknown) => log.warn(`schedules not checked: ${describeError(error)}`))
            .finally(() => (checking = false));
        }, config.sync.schedule_check_seconds * 1000);
  scheduleCheck?.unref();

  const metrics = new Metrics([producer], redis);
  const served =
    options.metricsPort !== undefined
      ? await metrics.serve(options.metricsPort, options.metricsHost)
      : undefined;
  if (served)
    log.info(
      { host: served.host, port: served.port },
      `metrics on ${served.host}:${served.port}/metrics, health on /healthz`,
    );

  const recordFailure = (
    current: Config,
    job: { destination: string; audience?: string | undefined },
    meta: RunMeta,
    error: unknown,
    durationMs = 0,
  ) => recordFailedRun(redis, prefix, current, job, meta, error, durationMs);

  const processSync = async (job: Job, token?: string) => {
    const parsed = syncJobSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`not a sync job: ${parsed.error.message}`);
    const data = parsed.data;
    if (await redis.exists(keys.paused(prefix, data.destination))) {
      log.info(
        { job: job.id, destination: data.destination },
        `destination ${data.destination} is paused: run skipped`,
      );
      return { skipped: 'paused' };
    }
    const started = Date.now();
    const meta = (full: boolean): RunMeta => ({
      run: String(job.id),
      at: new Date(started).toISOString(),
      full,
      reason: data.reason,
    });
    let current: Config;
    try {
      current = loadConfig(configFile).config;
    } catch (error) {
      await recordFailure(config, data, meta(data.full), error);
      throw jobError(error);
    }
    await Lease.prepare(); // the renewing thread ready before a lease is taken
    const leases = await Lease.acquireAll(
      redis,
      leaseKeysOf(current, connectors, prefix, data.destination, data.audience),
      current.sync.lease_seconds * 1000,
      describeHolder(`worker job ${job.id}`),
    );
    if (!leases) {
      // Another run of these audiences is in progress: this one runs after it.
      await job.moveToDelayed(Date.now() + 2000 + Math.random() * 2000, token);
      throw new DelayedError();
    }
    const abort = new AbortController();
    // How long the event loop was held up during the run (the job's lock is renewed from this thread).
    const stalls = new StallWatch();
    running.add(abort);
    for (const lease of leases) lease.keep(() => abort.abort(new Error('lost the audience lease')));
    const flags = [
      keys.fullRequested(prefix, data.destination),
      ...(data.audience ? [keys.fullRequested(prefix, data.destination, data.audience)] : []),
    ];
    try {
      const full = data.full || (await redis.exists(...flags)) > 0;
      let results: AudienceResult[];
      let records: RunRecord[];
      // The source read once for the runs that start together or soon after (`SharedReads`); the run that
      // reads it makes the snapshot's keys on a thread meanwhile.
      const own: { keys?: KeyFollower | undefined; read?: SharedRead } = {};
      try {
        const prepared = await prepareSync(configFile, connectors, {
          destination: data.destination,
          audience: data.audience,
          score: async (config, baseDir) => {
            own.read = await reads.get(config, baseDir, async () => {
              const keys = (own.keys = KeyFollower.start());
              const segmented = await segmentCustomers(config, {
                baseDir,
                ...(keys ? { onCustomers: keys.follow } : {}),
              });
              if (keys) followers.set(segmented, keys);
              return segmented;
            });
            return own.read.segmented;
          },
        });
        const size = sourceSizeOf(prepared.segmented);
        const readAt = own.read?.readAt.toISOString();
        if (own.read?.reused)
          log.info(
            { job: job.id, destination: data.destination, readAt },
            `took the source as another run read it at ${readAt} (unchanged since)`,
          );
        else {
          log.info(
            { job: job.id, destination: data.destination, customers: size.customers, readAt },
            `read and scored the source: ${size.customers.toLocaleString('en-US')} customers`,
          );
          logReadReport(prepared.segmented.report, log);
          const advice = mallocAdvised ? undefined : mallocAdvice(size.customers);
          if (advice) {
            mallocAdvised = true;
            log.warn({ customers: size.customers }, advice);
          }
        }
        const shrink = data.allowShrink
          ? undefined
          : await heldByShrink(redis, current.sync.redis_prefix, size, current);
        // A partial export: nothing is sent, and retrying cannot help until someone looks.
        if (shrink) throw new HeldError(shrink);
        await recordSourceSize(redis, current.sync.redis_prefix, size);
        // Once per read, whichever run gets here first, with the keys the reading run's thread made: a run
        // that took the read and recorded it again would work out 10 M customers' keys on this thread
        // (over a second of stall at 10 M, before the snapshot it then finds recorded).
        // One that failed (Redis busy, out of memory) is made again by the next run that takes the read.
        let making = false;
        const snapshot = await own.read!.once(
          'snapshot',
          async () => {
            making = true;
            const keys = followers.get(prepared.segmented);
            // The keys are let go with the snapshot, not kept with the read for its later runs.
            followers.delete(prepared.segmented);
            return recordScoring(redis, prefix, current, prepared.segmented, 'worker', keys);
          },
          (outcome) => outcome.status !== 'failed',
        );
        if (making) logSnapshot(snapshot, log);
        const destination = prepared.destinations[0]!;
        const client = destination.connector.create(destination.config, {
          destination: destination.name,
          baseDir: prepared.baseDir,
          log,
        });
        try {
          budget.limit = current.sync.table_memory_mb * 2 ** 20;
          results = await syncDestination(destination, client, {
            segmented: prepared.segmented,
            audiences: prepared.audiences,
            store,
            log,
            threads: identifyThread,
            full,
            removals: removalBrake(current.sync, data.allowRemovals),
            signal: abort.signal,
            budget,
            ...(data.audience ? { audience: data.audience } : {}),
          });
          const run = await runRecordsOf(client, results, meta(full));
          records = run.records;
          // Health readings are a view of the run: one not written is a warning, never a failed run.
          await recordRunReadings(redis, prefix, current, store, destination, run).catch((error: unknown) =>
            log.warn(`audience health not recorded: ${describeError(error)}`),
          );
        } finally {
          await client.close?.();
        }
      } catch (error) {
        await recordFailure(current, data, meta(full), error, Date.now() - started);
        throw jobError(error);
      } finally {
        own.keys?.stop();
      }
      await recordRun(redis, prefix, records, current.sync.history_runs);
      metrics.recordRun(data.destination, results, (Date.now() - started) / 1000);
      if (abort.signal.aborted)
        throw new Error(`run interrupted (${String(abort.signal.reason)}); it resumes from the saved state`);
      const failed = results.filter((r) => r.error);
      if (failed.length > 0) {
        const message = failed.map((r) => `${r.audience}: ${r.error}`).join('; ');
        // A permanent error (an expired token, terms not accepted) or a brake fails every attempt alike:
        // fail the job now.
        throw failed.every((r) => r.errorKind === 'permanent' || r.held)
          ? new UnrecoverableError(message)
          : new Error(message);
      }
      if (full) await redis.del(...flags);
      await followUp(String(job.id), data.destination, records, current.sync.poll_seconds);
      const total = (f: 'added' | 'removed' | 'rejected') => results.reduce((a, r) => a + r[f], 0);
      const longestStallMs = stalls.longestMs();
      log.info(
        {
          job: job.id,
          destination: data.destination,
          added: total('added'),
          removed: total('removed'),
          longestStallMs,
          // The process's peak memory since it started (its runs and reads so far), for sizing workers.
          peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
        },
        `synced ${data.destination}`,
      );
      if (longestStallMs > (current.sync.lease_seconds * 1000) / 3)
        log.warn(
          { job: job.id, destination: data.destination, longestStallMs },
          `the event loop stalled for ${longestStallMs} ms during this run, more than a third of sync.lease_seconds (${current.sync.lease_seconds} s): the job's lock is renewed from this thread every half of it (the leases from a thread of their own), so a stall past half could let another worker take the job; raise sync.lease_seconds`,
        );
      return {
        audiences: records.length,
        added: total('added'),
        removed: total('removed'),
        rejected: total('rejected'),
        full,
        longestStallMs,
      };
    } finally {
      stalls.stop();
      running.delete(abort);
      await Promise.all(leases.map((l) => l.release()));
    }
  };

  /**
   * Uploads the platform processes later (10 minutes to 24 hours for Google) never hold a worker:
   * a delayed run of the audience settles them (one per run that left some; a spare run only diffs).
   */
  const followUp = async (
    after: string,
    destination: string,
    records: readonly RunRecord[],
    seconds: number,
  ) => {
    for (const r of records.filter((x) => x.inFlight > 0)) {
      const id = `poll-${createHash('sha256').update(`${destination}\0${r.audience}`).digest('hex').slice(0, 16)}-${after}`;
      await producer.add(
        'sync',
        { destination, audience: r.audience, full: false, reason: 'poll' },
        { ...SYNC_JOB_OPTIONS, jobId: id, delay: seconds * 1000 },
      );
    }
  };

  /** A client of the destination as the config on disk has it now, closed after `use`. */
  const withClient = async <T>(
    name: string,
    use: (client: ConnectorClient, destination: Destination, current: Config) => Promise<T>,
  ): Promise<T> => {
    const { config: current, dir } = loadConfig(configFile);
    const [destination] = destinationsOf(current, connectors, name);
    const client = destination!.connector.create(destination!.config, {
      destination: name,
      baseDir: dir,
      log,
    });
    try {
      return await use(client, destination!, current);
    } finally {
      await client.close?.();
    }
  };

  /** Alerts are evaluated by an admin job of their own: a channel that hangs or fails never holds a run. */
  const alertsAfter = (after: 'run' | 'retry' | 'stats', destination: string) =>
    admin
      .add('alerts', { action: 'alerts', after, destination }, ALERTS_JOB_OPTIONS)
      .then(() => undefined)
      .catch((error: unknown) => log.warn(`alerts not evaluated: ${describeError(error)}`));

  const processAdmin = async (job: Job) => {
    const data = adminJobSchema.parse(job.data);
    switch (data.action) {
      case 'resync': {
        // The flag outlives any job: a full resync is never replaced by an incremental run.
        if (data.full) await redis.set(keys.fullRequested(prefix, data.destination, data.audience), '1');
        const request: SyncJob = {
          destination: data.destination,
          full: data.full,
          reason: 'resync',
          allowRemovals: data.allowRemovals,
          allowShrink: data.allowShrink,
          ...(data.audience ? { audience: data.audience } : {}),
        };
        const waiting = await waitingRunCovering(producer, request);
        if (waiting) {
          log.info(
            { job: waiting.id, destination: data.destination, audience: data.audience },
            `resync joined sync job ${waiting.id}, which has not started yet`,
          );
          return { syncJobId: waiting.id, joined: true };
        }
        const sync = await producer.add('sync', request, SYNC_JOB_OPTIONS);
        return { syncJobId: sync.id };
      }
      case 'check':
        return withClient(data.destination, async (client, destination) => ({
          checks: await checksOf(destination, client),
        }));
      case 'stats':
        return withClient(data.destination, async (client, destination, current) => {
          const readings = await readDestination(redis, prefix, current, store, destination, client);
          log.info(
            { destination: data.destination, audiences: readings.length },
            `stats of ${data.destination} read (${readings.length} audiences)`,
          );
          await alertsAfter('stats', data.destination);
          return { audiences: readings.length };
        });
      case 'pause':
        await redis.set(keys.paused(prefix, data.destination), new Date().toISOString());
        return { paused: data.destination };
      case 'resume':
        await redis.del(keys.paused(prefix, data.destination));
        return { resumed: data.destination };
      case 'alerts':
        return summary(
          await evaluateAfter(
            redis,
            loadConfig(configFile).config,
            connectors,
            data.after,
            log,
            data.destination,
          ),
        );
      case 'digest':
        return runDigest(redis, loadConfig(configFile).config, log);
      case 'forget': {
        // Not held by a pause: a person's removal is owed whatever the schedules do.
        const outcome = await carryOutErasure(
          { redis, store, prefix, configFile, connectors, log },
          data.erasure,
        );
        await scheduleErasureRetry(admin, outcome);
        return outcome;
      }
    }
  };

  const common = { connection: connection('worker'), prefix };
  // A dead worker's job is taken over once its lock runs out, as its audience leases do.
  const lockMs = config.sync.lease_seconds * 1000;
  const syncWorker = new Worker(SYNC_QUEUE, processSync, {
    ...common,
    concurrency: options.concurrency ?? 2,
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: MAX_INTERRUPTIONS,
  });
  const adminWorker = new Worker(ADMIN_QUEUE, processAdmin, { ...common, concurrency: 4 });
  for (const w of [syncWorker, adminWorker]) {
    w.on('failed', (job, error) => {
      log.warn({ job: job?.id, queue: w.name, attempts: job?.attemptsMade }, `job failed: ${error.message}`);
      const problem = redisConfigProblem(error);
      if (problem) fail(new ConfigError(problem));
    });
    w.on('error', onError(`worker error (${w.name} queue)`));
  }
  syncWorker.on('completed', (job) => {
    const data = syncJobSchema.safeParse(job.data);
    if (data.success) void alertsAfter('run', data.data.destination);
  });
  // A run's failure is alerted once its retries are over (BullMQ sets finishedOn on the last).
  syncWorker.on('failed', (job) => {
    const data = syncJobSchema.safeParse(job?.data);
    if (job && data.success) void alertsAfter(job.finishedOn ? 'run' : 'retry', data.data.destination);
  });
  // BullMQ fails a job interrupted too often without running it: that run shows in status and the history too.
  syncWorker.on('failed', (job, error) => {
    if (!job || error.message !== STALLED_REASON) return;
    const data = syncJobSchema.safeParse(job.data);
    if (!data.success) return;
    const message =
      `the run was interrupted more than ${MAX_INTERRUPTIONS} times (its worker was killed, ran out of ` +
      'memory, or stalled) and was given up; the next scheduled run or `audience-sync resync` starts it again';
    const meta = {
      run: String(job.id),
      at: new Date().toISOString(),
      full: data.data.full,
      reason: data.data.reason,
    };
    let current = config;
    try {
      current = loadConfig(configFile).config;
    } catch {
      // the start config still names the audiences
    }
    void recordFailure(current, data.data, meta, new Error(message));
  });
  log.info({ queues: [SYNC_QUEUE, ADMIN_QUEUE], prefix }, 'worker started');

  return {
    fatal,
    async close() {
      clearInterval(scheduleCheck);
      // Stop each run after its current batch (its state is saved per batch), then stop taking jobs.
      for (const a of running) a.abort(new Error('worker shutting down'));
      await Promise.all([syncWorker.close(), adminWorker.close()]);
      await producer.close();
      await admin.close();
      await release(common.connection);
      served?.server.close();
      redis.disconnect();
      log.info('worker stopped');
    },
  };
}

/** What an alerts job returns: counts, and the keys sent or refused (no personal data in either). */
function summary(e: Awaited<ReturnType<typeof evaluateAfter>>) {
  return { holding: e.holding.length, sent: e.sent, failed: e.failed };
}

/** A config error fails the job at once: retrying reads the same config. */
function jobError(error: unknown): unknown {
  return error instanceof ConfigError || error instanceof HeldError
    ? new UnrecoverableError(error.message)
    : error;
}

/** A brake stopped the run: retrying the same data gives the same answer. */
class HeldError extends Error {}

export { adminQueue };
