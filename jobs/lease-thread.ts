/**
 * The thread that renews a process's leases (`Lease.keep`): its own event loop and its own Redis connection,
 * so a main thread busy for seconds with a large run cannot starve the renewals. It renews only while the
 * main thread shows it is alive (a heartbeat it writes every second): a main thread stuck for `STUCK_MS`
 * is taken for dead, and its leases run out as a killed process's would.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createRedis } from '../src/redis-client.js';
import { RENEW, STUCK_MS, type RenewerMessage, type RenewerReport } from './renew.js';

const beat = new BigInt64Array(workerData as SharedArrayBuffer);
const redis = createRedis({ maxRetriesPerRequest: 1 });
// A Redis outage: renewals fail until it is back (the lease may run out, and the run is told).
redis.on('error', () => undefined);
// Ready once connected (or failed to: the main thread's own renewals go on meanwhile).
redis
  .ping()
  .catch(() => undefined)
  .finally(() => parentPort!.postMessage({ ready: true } satisfies RenewerReport));
const timers = new Map<number, NodeJS.Timeout>();

parentPort!.on('message', (message: RenewerMessage) => {
  if (message.op === 'drop') {
    clearInterval(timers.get(message.id));
    timers.delete(message.id);
    return;
  }
  const { id, key, token, ttlMs } = message;
  const renew = () => {
    if (Date.now() - Number(Atomics.load(beat, 0)) > STUCK_MS) return;
    redis
      .eval(RENEW, 1, key, token, ttlMs)
      .then((r) => {
        if (r !== 1 && timers.has(id)) parentPort!.postMessage({ lost: id } satisfies RenewerReport);
      })
      .catch(() => undefined);
  };
  timers.set(id, setInterval(renew, ttlMs / 3));
  renew();
});
