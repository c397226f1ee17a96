/**
 * The Redis Cluster scenario, one process's share: reads and scores the source, plans its audiences
 * (share `part` of `parts`, by size, as `workers.ts` splits them) and writes what a complete sync leaves in
 * their states, on the Redis the environment names (`REDIS_URL` or `REDIS_CLUSTER_NODES`), holding a lease
 * the whole time as a worker's run does (renewed from its thread). Prints a JSON line: times, peak RSS, the
 * longest event-loop stall, and a digest of every state's records (the same audiences give the same digest
 * on any Redis). `node dist/bench/cluster.js <scores.csv> <part> <parts>`.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Lease } from '../jobs/lease.js';
import { recordLength } from '../src/record/records.js';
import { StateStore } from '../src/record/store.js';
import { createRedis } from '../src/redis-client.js';
import { segmentCustomers } from '../src/score/pipeline.js';
import { StallWatch } from '../src/stall.js';
import { planDestination } from '../src/sync/run.js';
import { localFile, scoresConfig, shareOf, writeState } from './util.js';

const [csv, partArg, partsArg] = process.argv.slice(2) as [string, string, string];
const [part, parts] = [Number(partArg), Number(partsArg)];
const stalls = new StallWatch();
const redis = createRedis({ maxRetriesPerRequest: null });
const lease = await Lease.acquire(redis, `bench-cluster:lease:${part}`, 30_000, 'bench');
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
redis.disconnect();
process.stdout.write(
  JSON.stringify({
    audiences: mine.length,
    members,
    readSeconds,
    planSeconds,
    stateSeconds,
    seconds,
    longestStallMs,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    digests,
  }) + '\n',
);
