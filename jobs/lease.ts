import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClient } from '../src/redis-client.js';
import { audienceNamesOf } from '../src/audience/audiences.js';
import type { Config } from '../src/config/schema.js';
import type { ConnectorRegistry } from '../src/sync/prepare.js';
import { ExitCode, UserError } from '../src/errors.js';
import { keys } from './queues.js';
import { RENEW, type RenewerMessage, type RenewerReport } from './renew.js';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const SCRIPT = new URL('./lease-thread.js', import.meta.url);

/**
 * The process's renewing thread, started with the first lease kept; undefined where its script is not
 * built (tests run from source), where the main thread's timer renews instead.
 */
class Renewer {
  private static made: Renewer | undefined | null = null;
  private readonly thread: Worker;
  private readonly lost = new Map<number, () => void>();
  private next = 0;
  /** Settles once the thread has connected to Redis (or failed to, or died). */
  readonly ready: Promise<void>;

  private constructor() {
    const beat = new SharedArrayBuffer(8);
    const now = new BigInt64Array(beat);
    const tick = () => Atomics.store(now, 0, BigInt(Date.now()));
    tick();
    setInterval(tick, 1000).unref();
    this.thread = new Worker(SCRIPT, { workerData: beat });
    let started = () => {};
    this.ready = new Promise((resolve) => (started = resolve));
    this.thread.on('message', (m: RenewerReport) => {
      if ('ready' in m) started();
      else this.lost.get(m.lost)?.();
    });
    // A thread that died: the leases it kept run out, and their runs are told as if Redis had lost them.
    this.thread.on('exit', () => {
      started();
      for (const lost of this.lost.values()) lost();
      this.lost.clear();
      Renewer.made = null;
    });
    // After the listeners: adding a 'message' listener refs the thread's port again, and the process would
    // not exit while it lives.
    this.thread.unref();
  }

  static get(): Renewer | undefined {
    if (Renewer.made === null) Renewer.made = existsSync(fileURLToPath(SCRIPT)) ? new Renewer() : undefined;
    return Renewer.made;
  }

  keep(key: string, token: string, ttlMs: number, lost: () => void): number {
    const id = this.next++;
    this.lost.set(id, lost);
    this.thread.postMessage({ op: 'keep', id, key, token, ttlMs } satisfies RenewerMessage);
    return id;
  }

  drop(id: number): void {
    this.lost.delete(id);
    this.thread.postMessage({ op: 'drop', id } satisfies RenewerMessage);
  }
}

/**
 * A lease on an audience (or a whole destination): at most one run holds it. Taken with SET NX PX, renewed while the run
 * lasts, released by compare-and-delete; a run that loses it (Redis lost it, a long stall) is told.
 */
export class Lease {
  private timer: NodeJS.Timeout | undefined;
  private kept: { renewer: Renewer; id: number } | undefined;
  private constructor(
    private readonly redis: RedisClient,
    readonly key: string,
    private readonly token: string,
    private readonly ttlMs: number,
  ) {}

  /** `holder` says who holds it, for whoever has to wait (`sync (pid 12 on host)`). */
  static async acquire(
    redis: RedisClient,
    key: string,
    ttlMs = 60_000,
    holder = describeHolder('a process'),
  ): Promise<Lease | undefined> {
    const token = `${randomBytes(12).toString('hex')} ${holder}`;
    const ok = await redis.set(key, token, 'PX', ttlMs, 'NX');
    return ok === 'OK' ? new Lease(redis, key, token, ttlMs) : undefined;
  }

  /** Who holds the lease on `key`, or undefined when nobody does. */
  static async holder(redis: RedisClient, key: string): Promise<string | undefined> {
    const value = await redis.get(key);
    return value === null ? undefined : value.slice(value.indexOf(' ') + 1) || 'another process';
  }

  /**
   * All of these keys or none (sorted, so two runs asking for overlapping sets cannot each hold a part
   * and wait on the other: the one that misses releases what it took and tries again later).
   */
  static async acquireAll(
    redis: RedisClient,
    keys: readonly string[],
    ttlMs = 60_000,
    holder?: string,
  ): Promise<Lease[] | undefined> {
    const taken: Lease[] = [];
    for (const key of [...new Set(keys)].sort()) {
      const lease = await Lease.acquire(redis, key, ttlMs, holder);
      if (!lease) {
        await Promise.all(taken.map((l) => l.release()));
        return undefined;
      }
      taken.push(lease);
    }
    return taken;
  }

  /**
   * Starts the process's renewing thread and waits until it is connected: leases taken after this are
   * renewed by it from their first moment (a thread takes a few hundred milliseconds to start, more on a
   * busy machine, and a lease shorter than that would run out first).
   */
  static async prepare(): Promise<void> {
    await Renewer.get()?.ready;
  }

  /**
   * Renews every third of the lease, from a thread of its own (`lease-thread.ts`) so that a busy main
   * thread cannot starve it, and from the main thread's timer as well, which covers the thread's start
   * (and a process where its script is not built); calls `lost` once if the lease is no longer ours.
   */
  keep(lost: () => void): void {
    let told = false;
    const tell = () => {
      if (told) return;
      told = true;
      lost();
    };
    const renewer = Renewer.get();
    if (renewer) this.kept = { renewer, id: renewer.keep(this.key, this.token, this.ttlMs, tell) };
    this.timer = setInterval(() => {
      this.redis
        .eval(RENEW, 1, this.key, this.token, this.ttlMs)
        .then((r) => {
          if (r !== 1 && this.timer) tell();
        })
        .catch(() => undefined);
    }, this.ttlMs / 3);
    this.timer.unref();
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.kept) this.kept.renewer.drop(this.kept.id);
    this.kept = undefined;
    await this.redis.eval(RELEASE, 1, this.key, this.token).catch(() => undefined);
  }
}

/** A lease holder's description: what it is, its pid and its host. */
export function describeHolder(what: string): string {
  return `${what} (pid ${process.pid} on ${hostname()})`;
}

/**
 * The leases a run of a destination (or one of its audiences) takes: one per audience, or the whole
 * destination for connectors whose audiences share state. Workers and CLI runs take the same ones.
 */
export function leaseKeysOf(
  config: Config,
  connectors: ConnectorRegistry,
  prefix: string,
  destination: string,
  audience: string | undefined,
): string[] {
  const raw = config.destinations[destination];
  const connector = raw ? connectors[raw.type] : undefined;
  if (connector?.exclusive === 'destination') return [keys.lease(prefix, destination)];
  const names = audienceNamesOf(config, destination, audience);
  return names.length > 0
    ? names.map((a) => keys.lease(prefix, destination, a))
    : [keys.lease(prefix, destination)];
}

/**
 * Takes all of these leases to keep, waiting while another run holds one (or failing at once without
 * `wait`, naming the holder). A holder that dies lets go when its lease expires.
 */
export async function takeLeases(
  redis: RedisClient,
  keys: readonly string[],
  options: { ttlMs: number; holder: string; wait: boolean; onWait?: (holder: string) => void },
): Promise<Lease[]> {
  await Lease.prepare(); // the renewing thread ready before a lease is taken
  for (let delay = 200, told = false; ; delay = Math.min(delay * 2, 2000)) {
    const leases = await Lease.acquireAll(redis, keys, options.ttlMs, options.holder);
    if (leases) return leases;
    const holders = await Promise.all(keys.map((k) => Lease.holder(redis, k)));
    const holder = holders.find((h) => h !== undefined);
    if (holder === undefined) continue; // let go meanwhile: try again at once
    if (!options.wait)
      throw new UserError(
        `another run is syncing this: ${holder}`,
        ExitCode.failed,
        'wait for it to finish, or leave out --no-wait to wait for it',
      );
    if (!told) options.onWait?.(holder);
    told = true;
    await sleep(delay);
  }
}
