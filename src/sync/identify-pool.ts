import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { TextParts } from '../source/text.js';

/**
 * Worker threads that identify customers in parallel (normalise + hash: the CPU-heavy step of a plan),
 * so a plan of millions uses every core and the main thread's event loop stays free for job locks and
 * signals. The threads read the source's shared columns and write the shared identity buffers.
 */
export interface IdentifyTask {
  id: number;
  connector: string;
  config: unknown;
  /** Profile fields, then attributes, by name (the order `identifyOne` reads them in). */
  columns: [string, TextParts][];
  ids: TextParts;
  /** Uint32 customer indexes; the task covers [from, to). */
  customers: SharedArrayBuffer;
  from: number;
  to: number;
  slotCount: number;
  /** Slots by position in `customers`; masks, skips, keys and keyed by customer index. */
  slots: SharedArrayBuffer;
  masks: SharedArrayBuffer;
  skips: SharedArrayBuffer;
  keys: SharedArrayBuffer;
  keyed: SharedArrayBuffer;
}

/** Tasks of this many customers: small enough to balance the threads, large enough to amortise a message. */
const SLICE = 32_768;

type Reply = { id: number; odd?: [number, string][]; error?: string };

const pools = new Map<string, Worker[]>();
let nextId = 1;

/**
 * Threads run a built script (the registry's `connectors/identify-thread.js`); under a TypeScript test
 * runner there is none, and the work stays inline. `AUDIENCE_SYNC_THREADS=0` turns them off, `=N` sets N.
 */
export function threadsAvailable(script: URL): boolean {
  return process.env.AUDIENCE_SYNC_THREADS !== '0' && existsSync(fileURLToPath(script));
}

function threads(script: URL): Worker[] {
  let pool = pools.get(script.href);
  if (!pool) {
    const n = Math.max(1, Math.min(Number(process.env.AUDIENCE_SYNC_THREADS) || availableParallelism(), 16));
    pool = Array.from({ length: n }, () => {
      // A small young generation: a thread's garbage is short strings, and memory is the scarce part.
      const worker = new Worker(script, { resourceLimits: { maxYoungGenerationSizeMb: 8 } });
      worker.unref();
      return worker;
    });
    pools.set(script.href, pool);
  }
  return pool;
}

/** Identifies customers [0, count) of the task on all threads; returns customers skipped for an unlisted reason. */
export async function identifyInThreads(
  script: URL,
  task: Omit<IdentifyTask, 'id' | 'from' | 'to'>,
  count: number,
): Promise<[number, string][]> {
  const workers = threads(script);
  const odd: [number, string][] = [];
  let next = 0;
  const drive = (worker: Worker): Promise<void> =>
    new Promise((resolve, reject) => {
      const send = () => {
        if (next >= count) {
          worker.off('message', onMessage);
          worker.off('error', reject);
          worker.unref();
          resolve();
          return;
        }
        const from = next;
        next = Math.min(count, next + SLICE);
        worker.postMessage({ ...task, id: nextId++, from, to: next } satisfies IdentifyTask);
      };
      const onMessage = (reply: Reply) => {
        if (reply.error) {
          worker.off('message', onMessage);
          reject(new Error(`identify thread: ${reply.error}`));
          return;
        }
        if (reply.odd) odd.push(...reply.odd);
        send();
      };
      worker.ref();
      worker.on('message', onMessage);
      worker.once('error', reject);
      send();
    });
  await Promise.all(workers.map(drive));
  return odd;
}
