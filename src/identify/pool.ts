import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { TextParts } from '../source/text.js';
import { KEY_BYTES } from '../record/records.js';
import type { IdentityBuffers } from './one.js';

/**
 * Worker threads that identify customers in parallel (normalise + hash: the CPU-heavy step of a plan),
 * so a plan of millions uses every core and the main thread's event loop stays free for job locks and
 * signals. The threads read the source's shared columns; each slice's identities come back in buffers the
 * thread made for it and gave away (moved, not copied), which the caller copies into its table. Nothing a
 * table is made of is shared with a thread: a thread's heap holds no reference that would keep an
 * audience's memory alive until that thread happens to collect its garbage.
 */
export interface IdentifyTask {
  id: number;
  /** The connector's identifier rules: a module relative to the thread script's folder (`ConnectorDefinition.identifiers`). */
  rules: string;
  config: unknown;
  /** Profile fields, then attributes, by name (the order `identifyOne` reads them in). */
  columns: [string, TextParts][];
  ids: TextParts;
  /** The slice's customers (indexes into the source), in order. */
  customers: Uint32Array;
  /** The position of the slice's first customer in the caller's list (skips are answered by position). */
  from: number;
  slotCount: number;
  /** The reasons skips are counted by (`IdentityBuffers.reasons`). */
  reasons: readonly string[];
}

/** One slice's identities (`IdentityBuffers` and the slots, from position 0), made by the thread. */
export interface IdentifiedSlice {
  keys: ArrayBuffer;
  digests: ArrayBuffer;
  masks: ArrayBuffer;
  skips: ArrayBuffer;
  slots: ArrayBuffer;
}

/** At most this many customers per task: small enough to balance the threads, large enough to amortise a message. */
const SLICE = 32_768;

export type Reply = { id: number; odd?: [number, string][]; out?: IdentifiedSlice; error?: string };

/**
 * One identify thread, shared by every call in the process (a worker runs several jobs at once): each
 * reply goes to the call that sent its task, by the task's id, and to no other.
 */
class Thread {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, (reply: Reply) => void>();
  private stopped: string | undefined;

  constructor(script: URL, onExit: (thread: Thread) => void) {
    // A small young generation: a thread's garbage is short strings, and memory is the scarce part.
    this.worker = new Worker(script, { resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    this.worker.unref();
    this.worker.on('message', (reply: Reply) => this.answer(reply));
    let crash: Error | undefined;
    this.worker.on('error', (error) => (crash = error));
    this.worker.on('exit', (code) => {
      onExit(this);
      this.stopped = `the thread stopped (${crash?.message ?? `exit code ${code}`})`;
      for (const id of [...this.waiting.keys()]) this.answer({ id, error: this.stopped });
    });
  }

  /** Runs a task; a task that fails, or that the thread dies with, answers with `error`. */
  run(task: IdentifyTask): Promise<Reply> {
    if (this.stopped) return Promise.resolve({ id: task.id, error: this.stopped });
    return new Promise((resolve) => {
      // Referenced while a task is out, so the process waits for it; idle threads never hold it open.
      if (this.waiting.size === 0) this.worker.ref();
      this.waiting.set(task.id, resolve);
      this.worker.postMessage(task);
    });
  }

  private answer(reply: Reply): void {
    const resolve = this.waiting.get(reply.id);
    if (!resolve) return;
    this.waiting.delete(reply.id);
    if (this.waiting.size === 0) this.worker.unref();
    resolve(reply);
  }
}

const pools = new Map<string, Thread[]>();
let nextId = 1;

/**
 * Threads run a built script (the registry's `connectors/identify-thread.js`); under a TypeScript test
 * runner there is none, and the work stays inline. The main thread identifies too, between other work:
 * `AUDIENCE_SYNC_THREADS=N` makes N threads in all (N - 1 workers); 0 or 1 keeps the work inline.
 */
export function threadsAvailable(script: URL): boolean {
  return workerCount() > 0 && existsSync(fileURLToPath(script));
}

export function workerCount(): number {
  const n = process.env.AUDIENCE_SYNC_THREADS;
  return Math.min((n !== undefined && n !== '' ? Number(n) || 0 : availableParallelism()) - 1, 15);
}

function threads(script: URL): Thread[] {
  let pool = pools.get(script.href);
  if (!pool) pools.set(script.href, (pool = []));
  const own = pool;
  // A thread that died is replaced by the next call.
  while (own.length < Math.max(1, workerCount()))
    own.push(new Thread(script, (dead) => own.includes(dead) && own.splice(own.indexOf(dead), 1)));
  return own;
}

/** How many customers a slice of a list of `count` has (each thread's answer is one slice of the table). */
export function sliceFor(count: number): number {
  // Several slices per thread even for a small audience, so that every thread has a share.
  return Math.max(16, Math.min(SLICE, Math.ceil(count / (4 * (Math.max(1, workerCount()) + 1)))));
}

/** Identification under way on the worker threads (`identifyInThreads`). */
export interface Identification {
  /**
   * Helps with what is left on this thread (`inline`, a slice at a time, yielding between slices and
   * wherever `inline` does) and
   * resolves when every slice is done: the caller's buffers are then final. Returns customers the
   * workers skipped for an unlisted reason (by position), or throws what a slice failed with.
   */
  finish(): Promise<[number, string][]>;
  /** Resolves once the threads have no slice of it left (done, or failed): the next can have them. */
  readonly threadsDone: Promise<void>;
}

/**
 * Starts identifying `customers` into `into` (by position) on the worker threads, `slice` customers at a
 * time (`sliceFor`); the slots of slice j are `slots[j]`, as the thread that made them gave them. This
 * thread takes no share until `finish` is called: a caller can start the next audience's identification
 * while it sends the current one, and the threads work while it does. A slice that fails stops the
 * handing out of others; nothing rejects before `finish`.
 */
export function identifyInThreads(
  script: URL,
  task: Omit<IdentifyTask, 'id' | 'from' | 'customers'>,
  customers: Uint32Array,
  into: { buffers: IdentityBuffers; slots: Buffer[]; slice: number },
  inline: (from: number, to: number) => void | Promise<void>,
): Identification {
  const workers = threads(script);
  const count = customers.length;
  const odd: [number, string][] = [];
  const { slice } = into;
  let next = 0;
  let failure: Error | undefined;
  const take = (): [number, number] | undefined => {
    if (failure || next >= count) return undefined;
    const from = next;
    next = Math.min(count, next + slice);
    return [from, next];
  };
  const failed = (error: unknown) => (failure ??= error instanceof Error ? error : new Error(String(error)));
  // Neither kind of lane rejects: a failure waits in `failure` for `finish`, which may come much later.
  const lane = async (thread: Thread) => {
    try {
      for (let range = take(); range; range = take()) {
        const [from, to] = range;
        // A copy of the slice (a view would send the whole list along).
        const reply = await thread.run({ ...task, id: nextId++, from, customers: customers.slice(from, to) });
        if (reply.error || !reply.out) failed(new Error(`identify thread: ${reply.error ?? 'no answer'}`));
        else {
          place(reply.out, into.buffers, from);
          into.slots[from / slice] = Buffer.from(reply.out.slots);
          if (reply.odd) odd.push(...reply.odd);
        }
      }
    } catch (error) {
      failed(error);
    }
  };
  const here = async () => {
    try {
      for (let range = take(); range; range = take()) {
        await new Promise((resolve) => setImmediate(resolve));
        await inline(range[0], range[1]);
      }
    } catch (error) {
      failed(error);
    }
  };
  // Two slices in hand per thread: a worker never waits for this thread to finish a slice of its own.
  const lanes = workers.flatMap((thread) => [lane(thread), lane(thread)]);
  return {
    threadsDone: Promise.all(lanes).then(() => undefined),
    finish: async () => {
      await Promise.all([...lanes, here()]);
      if (failure) throw failure;
      return odd;
    },
  };
}

/** Copies a thread's slice into the caller's buffers at position `from` (its slots are kept as they are). */
function place(out: IdentifiedSlice, into: IdentityBuffers, from: number): void {
  into.keys.set(new Uint8Array(out.keys), from * KEY_BYTES);
  into.digests.set(new Uint32Array(out.digests), 2 * from);
  into.masks.set(new Uint16Array(out.masks), from);
  into.skips.set(new Uint8Array(out.skips), from);
}
