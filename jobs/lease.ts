import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * A lease on an audience (or a whole destination): at most one run holds it. Taken with SET NX PX, renewed while the run
 * lasts, released by compare-and-delete; a run that loses it (Redis lost it, a long stall) is told.
 */
export class Lease {
  private timer: NodeJS.Timeout | undefined;
  private constructor(
    private readonly redis: Redis,
    readonly key: string,
    private readonly token: string,
    private readonly ttlMs: number,
  ) {}

  static async acquire(redis: Redis, key: string, ttlMs = 60_000): Promise<Lease | undefined> {
    const token = randomBytes(12).toString('hex');
    const ok = await redis.set(key, token, 'PX', ttlMs, 'NX');
    return ok === 'OK' ? new Lease(redis, key, token, ttlMs) : undefined;
  }

  /**
   * All of these keys or none (sorted, so two runs asking for overlapping sets cannot each hold a part
   * and wait on the other: the one that misses releases what it took and tries again later).
   */
  static async acquireAll(
    redis: Redis,
    keys: readonly string[],
    ttlMs = 60_000,
  ): Promise<Lease[] | undefined> {
    const taken: Lease[] = [];
    for (const key of [...new Set(keys)].sort()) {
      const lease = await Lease.acquire(redis, key, ttlMs);
      if (!lease) {
        await Promise.all(taken.map((l) => l.release()));
        return undefined;
      }
      taken.push(lease);
    }
    return taken;
  }

  /** Renews every third of the lease; calls `lost` if the lease is no longer ours. */
  keep(lost: () => void): void {
    this.timer = setInterval(() => {
      this.redis
        .eval(RENEW, 1, this.key, this.token, this.ttlMs)
        .then((r) => {
          if (r !== 1) lost();
        })
        .catch(() => undefined);
    }, this.ttlMs / 3);
    this.timer.unref();
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.eval(RELEASE, 1, this.key, this.token).catch(() => undefined);
  }
}
