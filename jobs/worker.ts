import { createHash } from 'node:crypto';
import { DelayedError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { connectors, identifyThread } from '../connectors/index.js';
import { loadConfig } from '../src/config/load.js';
import { describeError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { StateStore } from '../src/state/store.js';
import { destinationsOf, prepareSync } from '../src/sync/prepare.js';
import { syncDestination } from '../src/sync/run.js';
import { recordRun, type RunRecord } from './history.js';
import { describeHolder, Lease, leaseKeysOf } from './lease.js';
import {
  adminJobSchema,
  adminQueue,
  ADMIN_QUEUE,
  connection,
  keys,
  queuePrefix,
  syncJobSchema,
  syncQueue,
  SYNC_JOB_OPTIONS,
  SYNC_QUEUE,
} from './queues.js';
import { reconcileSchedules } from './schedules.js';
import { Metrics } from './metrics.js';

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
}

export interface RunningWorker {
  close(): Promise<void>;
}

/**
 * Runs sync and admin jobs until closed. Any number of these share the work through Redis: a lease
 * per audience keeps runs of one audience apart, whichever process picks them up, while runs of
 * different audiences go on side by side.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { log, configFile } = options;
  const { config } = loadConfig(configFile);
  const redis = new Redis(connection('worker') as object);
  redis.on('error', (error) => log.warn({ err: error.message }, 'Redis connection error; reconnecting'));
  const store = new StateStore(redis, config.sync.redis_prefix);
  const prefix = queuePrefix(config.sync.redis_prefix);
  const running = new Set<AbortController>();
  const producer = syncQueue(prefix, 'worker');

  if (options.schedules !== false) {
    const admin = syncQueue(prefix, 'worker');
    try {
      const r = await reconcileSchedules(config, admin, redis);
      log.info(
        { ...r },
        `schedules: ${r.added.length} added, ${r.kept.length} kept, ${r.removed.length} removed`,
      );
    } finally {
      await admin.close();
    }
  }

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

  const processSync = async (job: Job, token?: string) => {
    const data = syncJobSchema.parse(job.data);
    if (await redis.exists(keys.paused(prefix, data.destination))) {
      log.info(
        { job: job.id, destination: data.destination },
        `destination ${data.destination} is paused: run skipped`,
      );
      return { skipped: 'paused' };
    }
    const { config: current } = loadConfig(configFile);
    const leases = await Lease.acquireAll(
      redis,
      leaseKeysOf(current, prefix, data.destination, data.audience),
      current.sync.lease_seconds * 1000,
      describeHolder(`worker job ${job.id}`),
    );
    if (!leases) {
      // Another run of these audiences is in progress: this one runs after it.
      await job.moveToDelayed(Date.now() + 2000 + Math.random() * 2000, token);
      throw new DelayedError();
    }
    const abort = new AbortController();
    running.add(abort);
    for (const lease of leases) lease.keep(() => abort.abort(new Error('lost the audience lease')));
    const flags = [
      keys.fullRequested(prefix, data.destination),
      ...(data.audience ? [keys.fullRequested(prefix, data.destination, data.audience)] : []),
    ];
    const started = new Date().toISOString();
    try {
      const full = data.full || (await redis.exists(...flags)) > 0;
      const prepared = await prepareSync(configFile, connectors, {
        destination: data.destination,
        audience: data.audience,
      });
      const destination = prepared.destinations[0]!;
      const client = destination.connector.create(destination.config, {
        destination: destination.name,
        baseDir: prepared.baseDir,
        log,
      });
      let records: RunRecord[];
      try {
        const results = await syncDestination(destination, client, {
          segmented: prepared.segmented,
          audiences: prepared.audiences,
          store,
          log,
          threads: identifyThread,
          full,
          signal: abort.signal,
          ...(data.audience ? { audience: data.audience } : {}),
        });
        records = [];
        for (const r of results) {
          const stats = r.remoteId
            ? await client
                .stats({ id: r.remoteId, name: r.audience })
                .catch((error: unknown) => ({ warnings: [describeError(error)] }))
            : undefined;
          records.push({ ...r, run: String(job.id), at: started, full, reason: data.reason, stats });
        }
      } finally {
        await client.close?.();
      }
      await recordRun(redis, prefix, records, current.sync.history_runs);
      metrics.recordRun(data.destination, records, (Date.now() - Date.parse(started)) / 1000);
      const failed = records.filter((r) => r.error);
      if (abort.signal.aborted)
        throw new Error(`run interrupted (${String(abort.signal.reason)}); it resumes from the saved state`);
      if (failed.length > 0) throw new Error(failed.map((r) => `${r.audience}: ${r.error}`).join('; '));
      if (full) await redis.del(...flags);
      await followUp(String(job.id), data.destination, records, current.sync.poll_seconds);
      const total = (f: 'added' | 'removed' | 'rejected') => records.reduce((a, r) => a + r[f], 0);
      log.info(
        { job: job.id, destination: data.destination, added: total('added'), removed: total('removed') },
        `synced ${data.destination}`,
      );
      return {
        audiences: records.length,
        added: total('added'),
        removed: total('removed'),
        rejected: total('rejected'),
        full,
      };
    } finally {
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

  const processAdmin = async (job: Job) => {
    const data = adminJobSchema.parse(job.data);
    switch (data.action) {
      case 'resync': {
        // The flag outlives any job: a full resync is never replaced by an incremental run.
        if (data.full) await redis.set(keys.fullRequested(prefix, data.destination, data.audience), '1');
        const sync = await producer.add(
          'sync',
          {
            destination: data.destination,
            full: data.full,
            reason: 'resync',
            ...(data.audience ? { audience: data.audience } : {}),
          },
          SYNC_JOB_OPTIONS,
        );
        return { syncJobId: sync.id };
      }
      case 'check': {
        const { config: current, dir } = loadConfig(configFile);
        const [destination] = destinationsOf(current, connectors, data.destination);
        const client = destination!.connector.create(destination!.config, {
          destination: destination!.name,
          baseDir: dir,
          log,
        });
        try {
          return { checks: await client.check() };
        } finally {
          await client.close?.();
        }
      }
      case 'pause':
        await redis.set(keys.paused(prefix, data.destination), new Date().toISOString());
        return { paused: data.destination };
      case 'resume':
        await redis.del(keys.paused(prefix, data.destination));
        return { resumed: data.destination };
    }
  };

  const common = { connection: connection('worker'), prefix };
  const syncWorker = new Worker(SYNC_QUEUE, processSync, {
    ...common,
    concurrency: options.concurrency ?? 2,
  });
  const adminWorker = new Worker(ADMIN_QUEUE, processAdmin, { ...common, concurrency: 4 });
  for (const w of [syncWorker, adminWorker]) {
    w.on('failed', (job, error) =>
      log.warn({ job: job?.id, queue: w.name, attempts: job?.attemptsMade }, `job failed: ${error.message}`),
    );
    w.on('error', (error) => log.warn({ queue: w.name, err: error.message }, 'worker error'));
  }
  log.info({ queues: [SYNC_QUEUE, ADMIN_QUEUE], prefix }, 'worker started');

  return {
    async close() {
      // Stop each run after its current batch (its state is saved per batch), then stop taking jobs.
      for (const a of running) a.abort(new Error('worker shutting down'));
      await Promise.all([syncWorker.close(), adminWorker.close()]);
      await producer.close();
      served?.server.close();
      redis.disconnect();
      log.info('worker stopped');
    },
  };
}

export { adminQueue };
