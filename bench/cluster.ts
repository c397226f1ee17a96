/**
 * The Redis Cluster scenario, one process's share: reads and scores the source, plans its audiences
 * (share `part` of `parts`, by size, as `workers.ts` splits them) and writes what a complete sync leaves in
 * their states, on the Redis the environment names (`REDIS_URL` or `REDIS_CLUSTER_NODES`), as a worker's run
 * does: as a BullMQ job (its lock of 30 s renewed by BullMQ from the main thread, as the worker's is with
 * `sync.lease_seconds: 30`), holding a lease (renewed from its thread). Prints a JSON line: times, peak RSS, the
 * longest event-loop stall, and a digest of every state's records (the same audiences give the same digest
 * on any Redis). `node dist/bench/cluster.js <scores.csv> <part> <parts>`.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Lease } from '../jobs/lease.js';
import { connection, release } from '../jobs/queues.js';
import { recordLength } from '../src/record/records.js';
import { StateStore } from '../src/record/store.js';
import { createRedis } from '../src/redis-client.js';
import { segmentCustomers } from '../src/score/pipeline.js';
import { StallWatch } from '../src/stall.js';
import { planDestination } from '../src/sync/run.js';
import { localFile, scoresConfig, shareOf, writeState } from './util.js';

const [csv, partArg, partsArg] = process.argv.slice(2) as [string, string, string];
const [part, parts] = [Number(partArg), Number(partsArg)];
const PREFIX = '{bench-cluster}';
const LOCK_MS = 30_000;
const redis = createRedis({ maxRetriesPerRequest: null });

/** The run, as the job's processor. */
async function work() {
  const stalls = new StallWatch();
  await Lease.prepare();
  const lease = await Lease.acquire(redis, `bench-cluster:lease:${part}`, LOCK_MS, 'bench');
  if (!lease) throw new Error(`bench-cluster:lease:${part} is held`);
  lease.keep(() => {
    throw new Error('lost the lease');
  });
  const started = performance.now();
  const config = scoresConfig(csv);
  const segmented = await segmentCustomers(config, { baseDir: path.dirname(csv) });
  const readSeconds = (performance.now() - started) / 1000;
  const store = new StateStore(redis, 'bench-cluster');
  const mine = await shareOf(config, segmented, part, parts);
  const planStarted = performance.now();
  const plans = await planDestination(localFile, { segmented, audiences: mine, store });
  const planSeconds = (performance.now() - planStarted) / 1000;
  const stateStarted = performance.now();
  await writeState(store, plans);
  const stateSeconds = (performance.now() - stateStarted) / 1000;
  const members = plans.reduce((a, p) => a + p.add.length, 0);
  const seconds = (performance.now() - started) / 1000;
  const longestStallMs = stalls.stop();
  // Each state's records, byte for byte in key order, digested.
  const digests: Record<string, string> = {};
  for (const spec of mine) {
    const digest = createHash('sha256');
    for await (const packed of store.audience('local', spec.name).ordered())
      for (let at = 0; at < packed.length; at += recordLength(packed, at))
        digest.update(packed.subarray(at, at + recordLength(packed, at)));
    digests[spec.name] = digest.digest('hex').slice(0, 16);
  }
  await lease.release();
  return {
    audiences: mine.length,
    members,
    readSeconds,
    planSeconds,
    stateSeconds,
    seconds,
    longestStallMs,
    digests,
  };
}

// One job on a queue of this process's own (`{bench-cluster}:part-<n>`, its lock `…:run:lock`), taken by a
// BullMQ worker with the app's worker's lock settings.
const name = `part-${part}`;
const [producer, consumer] = [connection('producer'), connection('worker')];
const queue = new Queue(name, { connection: producer, prefix: PREFIX });
await queue.add('run', {}, { jobId: 'run', removeOnComplete: true, removeOnFail: true });
const done = new Promise<Awaited<ReturnType<typeof work>>>((resolve, reject) => {
  const worker = new Worker(name, work, {
    connection: consumer,
    prefix: PREFIX,
    lockDuration: LOCK_MS,
    stalledInterval: LOCK_MS,
  });
  worker.on('completed', (_job, result: Awaited<ReturnType<typeof work>>) => {
    void worker.close().then(() => resolve(result));
  });
  worker.on('failed', (_job, error) => {
    void worker.close().then(() => reject(error));
  });
});
const result = await done;
await queue.close();
await Promise.all([release(producer), release(consumer)]);
redis.disconnect();
process.stdout.write(JSON.stringify({ ...result, maxRssMb: process.resourceUsage().maxRSS / 1024 }) + '\n');
