/**
 * The state's checkpoint at the size of a first sync: `members` records with five identifiers each (as
 * Meta's five keys keep), appended in batches of 10,000 in key order as a run journals them, then folded
 * into the buckets; then a tenth of them changed and folded again. Prints a JSON line: seconds, CPU
 * seconds and minor page faults of the first fold (this machine pays about 11 µs for each), and seconds
 * of the second. `node dist/bench/checkpoint.js <members> <redisUrl>`.
 */
import { Redis } from 'ioredis';
import { Status, type StateRecord } from '../src/record/records.js';
import { StateStore } from '../src/record/store.js';

const [count, redisUrl] = process.argv.slice(2) as [string, string];
const members = Number(count);
const BATCH = 10_000;
const redis = new Redis(redisUrl);
const prefix = `bench-checkpoint-${process.pid}`;
const state = new StateStore(redis, prefix).audience('bench', 'audience');

// Keys spread over the key space in order (a run sends its members in key order), slots of fixed bytes.
const keys = Buffer.alloc(8 * members);
for (let i = 0; i < members; i++) {
  keys.writeUInt32BE(Math.floor((i * 2 ** 32) / members), 8 * i);
  keys.writeUInt32BE(Math.imul(i, 2654435761) >>> 0, 8 * i + 4);
}
const slots = Buffer.alloc(32 * 5 * members, 7);
const record = (i: number, status: StateRecord['status'], kept: number, upload = 0): StateRecord => ({
  key: keys.subarray(8 * i, 8 * i + 8),
  status,
  upload,
  slots: Array.from({ length: kept }, (_, s) => slots.subarray(160 * i + 32 * s, 160 * i + 32 * s + 32)),
});
for (let from = 0; from < members; from += BATCH) {
  const batch: StateRecord[] = [];
  for (let i = from; i < Math.min(members, from + BATCH); i++) batch.push(record(i, Status.confirmed, 5));
  await state.append(batch);
}

const faults = process.resourceUsage().minorPageFault;
const cpu = process.cpuUsage();
let started = performance.now();
await state.checkpoint();
const firstSeconds = (performance.now() - started) / 1000;
const used = process.cpuUsage(cpu);
const firstFaults = process.resourceUsage().minorPageFault - faults;

// The next day: every tenth member leaves (a removal waiting on its upload).
for (let from = 0; from < members; from += 10 * BATCH) {
  const batch: StateRecord[] = [];
  for (let i = from; i < Math.min(members, from + 10 * BATCH); i += 10)
    batch.push(record(i, Status.removePending, 1, 1));
  await state.append(batch);
}
started = performance.now();
await state.checkpoint();
const nextSeconds = (performance.now() - started) / 1000;
const counts = await state.counts();
if (
  counts?.confirmed !== members - Math.ceil(members / 10) ||
  counts.removePending !== Math.ceil(members / 10)
)
  throw new Error(`checkpoint bench: counts ${JSON.stringify(counts)} are not those written`);

const written = await redis.keys(`${prefix}:*`);
if (written.length > 0) await redis.del(...written);
redis.disconnect();
process.stdout.write(
  JSON.stringify({
    members,
    firstSeconds,
    firstCpuSeconds: (used.user + used.system) / 1e6,
    firstFaults,
    nextSeconds,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  }) + '\n',
);
