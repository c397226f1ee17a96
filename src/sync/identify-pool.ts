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
  /** Slots by position in `customers`; masks, skips and keys by customer index. */
  slots: SharedArrayBuffer;
  masks: SharedArrayBuffer;
  skips: SharedArrayBuffer;
  keys: SharedArrayBuffer;
}

/** At most this many customers per task: small enough to balance the threads, large enough to amortise a message. */
const SLICE = 32_768;

type Reply = { id: number; odd?: [number, string][]; error?: string };

const pools = new Map<string, Worker[]>();
let nextId = 1;

/**
 * Threads run a built script (the registry's `connectors/identify-thread.js`); under a TypeScript test
 * runner there is none, and the work stays inline. The main thread identifies too, between other work:
 * `AUDIENCE_SYNC_THREADS=N` makes N threads in all (N - 1 workers); 0 or 1 keeps the work inline.
 */
export function threadsAvailable(script: URL): boolean {
  return workerCount() > 0 && existsSync(fileURLToPath(script));
}

function workerCount(): number {
  const n = process.env.AUDIENCE_SYNC_THREADS;
  return Math.min((n !== undefined && n !== '' ? Number(n) || 0 : availableParallelism()) - 1, 15);
}

function threads(script: URL): Worker[] {
  let pool = pools.get(script.href);
  if (!pool) {
    pool = Array.from({ length: Math.max(1, workerCount()) }, () => {
      // A small young generation: a thread's garbage is short strings, and memory is the scarce part.
      const worker = new Worker(script, { resourceLimits: { maxYoungGenerationSizeMb: 8 } });
      worker.unref();
      return worker;
    });
    pools.set(script.href, pool);
  }
  return pool;
}

/**
 * Identifies customers [0, count) of the task on the worker threads and, slice by slice, on this thread
 * with `inline` (yielding to the event loop between slices); returns customers the workers skipped for an
 * unlisted reason.
 */
export async function identifyInThreads(
  script: URL,
  task: Omit<IdentifyTask, 'id' | 'from' | 'to'>,
  count: number,
  inline: (from: number, to: number) => void,
): Promise<[number, string][]> {
  const workers = threads(script);
  const odd: [number, string][] = [];
  // Several slices per thread even for a small audience, so that every thread has a share.
  const slice = Math.max(16, Math.min(SLICE, Math.ceil(count / (4 * (workers.length + 1)))));
  let next = 0;
  const take = (): [number, number] | undefined => {
    if (next >= count) return undefined;
    const from = next;
    next = Math.min(count, next + slice);
    return [from, next];
  };
  const drive = (worker: Worker): Promise<void> =>
    new Promise((resolve, reject) => {
      let busy = 0;
      const send = () => {
        const range = take();
        if (!range) {
          if (busy > 0) return;
          worker.off('message', onMessage);
          worker.off('error', reject);
          worker.unref();
          resolve();
          return;
        }
        busy++;
        worker.postMessage({ ...task, id: nextId++, from: range[0], to: range[1] } satisfies IdentifyTask);
      };
      const onMessage = (reply: Reply) => {
        busy--;
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
      // Two slices in hand: a worker never waits for this thread to finish a slice of its own.
      send();
      send();
    });
  const here = async () => {
    for (let range = take(); range; range = take()) {
      await new Promise((resolve) => setImmediate(resolve));
      inline(range[0], range[1]);
    }
  };
  await Promise.all([...workers.map(drive), here()]);
  return odd;
}
