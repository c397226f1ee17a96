import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';

// The built module: the renewing thread runs the built `lease-thread.js` (a thread cannot run TypeScript).
const { Lease } = (await import(
  pathToFileURL(path.resolve('dist/jobs/lease.js')).href
)) as typeof import('../../jobs/lease.js');

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());

describe('a lease kept while the run holds it', () => {
  it('is renewed from a thread of its own: a main thread busy for twice its length does not lose it', async () => {
    // The thread connects as the process does, from the environment.
    process.env.REDIS_URL = inject('redisUrl');
    delete process.env.REDIS_CLUSTER_NODES;
    const key = `lease-renewal-${process.pid}`;
    const lease = (await Lease.acquire(redis, key, 3000, 'test'))!;
    expect(lease).toBeDefined();
    let lost = false;
    lease.keep(() => (lost = true));
    // Ready once it has renewed: the key's time to live goes back up.
    let low = await redis.pttl(key);
    for (;;) {
      const ttl = await redis.pttl(key);
      if (ttl > low) break;
      low = Math.min(low, ttl);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The main thread busy for 7 s by the clock (more than twice the lease), as a large run's sort would be.
    const until = Date.now() + 7000;
    while (Date.now() < until);
    expect(await redis.pttl(key)).toBeGreaterThan(0);
    expect(await redis.get(key)).toMatch(/ test$/);
    expect(lost).toBe(false);
    // Released: gone, and not renewed back.
    await lease.release();
    expect(await redis.exists(key)).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await redis.exists(key)).toBe(0);
  });

  it('tells the run when the lease is no longer its own', async () => {
    process.env.REDIS_URL = inject('redisUrl');
    const key = `lease-lost-${process.pid}`;
    const lease = (await Lease.acquire(redis, key, 1500, 'test'))!;
    const lost = new Promise<void>((resolve) => lease.keep(resolve));
    // Another holder took it (the lease ran out and was taken): the next renewal finds another token.
    await redis.set(key, 'another holder');
    await lost;
    await lease.release();
    expect(await redis.get(key)).toBe('another holder');
    await redis.del(key);
  });

  it("is kept by the main thread's timer while the renewing thread cannot renew (still starting, or without Redis)", () => {
    // The thread reaches no Redis here (its REDIS_URL is a closed port), as a thread still starting renews
    // nothing: the lease lives by the main thread's renewals alone. Before them, it ran out.
    const r = runScript(
      'lease-start',
      `const lease = await Lease.acquire(redis, KEY, 1500, 'test');
      let lost = false;
      lease.keep(() => (lost = true));
      await new Promise((resolve) => setTimeout(resolve, 4000));
      const ttl = await redis.pttl(KEY);
      await lease.release();
      console.log(JSON.stringify({ lost, ttl }));`,
      { threadRedis: 'redis://127.0.0.1:1' },
    );
    expect([r.status, r.signal, r.stderr]).toEqual([0, null, '']);
    expect(JSON.parse(r.stdout)).toEqual({ lost: false, ttl: expect.any(Number) });
    expect(JSON.parse(r.stdout).ttl).toBeGreaterThan(0);
  });

  it('is renewed by the thread from its first moment when taken after prepare(), however busy the main thread', () => {
    const r = runScript(
      'lease-prepared',
      `await Lease.prepare();
      const lease = await Lease.acquire(redis, KEY, 1500, 'test');
      let lost = false;
      lease.keep(() => (lost = true));
      const until = Date.now() + 4000;
      while (Date.now() < until);
      const ttl = await redis.pttl(KEY);
      await new Promise((resolve) => setImmediate(resolve)); // a loss the thread reported arrives
      await lease.release();
      console.log(JSON.stringify({ lost, ttl }));`,
    );
    expect([r.status, r.signal, r.stderr]).toEqual([0, null, '']);
    expect(JSON.parse(r.stdout)).toEqual({ lost: false, ttl: expect.any(Number) });
    expect(JSON.parse(r.stdout).ttl).toBeGreaterThan(0);
  });

  it('lets its process exit once the leases are released (the renewing thread does not hold it)', () => {
    const r = runScript(
      'lease-exit',
      `const lease = await Lease.acquire(redis, KEY, 30000, 'test');
      lease.keep(() => {});
      await new Promise((resolve) => setTimeout(resolve, 200));
      await lease.release();`,
    );
    expect([r.status, r.signal, r.stderr]).toEqual([0, null, '']);
  });
});

/**
 * Runs `body` in a process of its own, with `redis` (the test Redis), `Lease` (the built module) and `KEY` (a
 * key of its own) in scope; the renewing thread connects to `threadRedis` (default: the test Redis). A file,
 * not `--input-type`: a thread inherits the process's flags, and that flag refuses a thread's file.
 */
function runScript(name: string, body: string, options: { threadRedis?: string } = {}) {
  const ioredis = pathToFileURL(createRequire(import.meta.url).resolve('ioredis')).href;
  const leaseModule = pathToFileURL(path.resolve('dist/jobs/lease.js')).href;
  const script = path.join(mkdtempSync(path.join(tmpdir(), `${name}-`)), 'script.mjs');
  writeFileSync(
    script,
    `const { Redis } = await import(${JSON.stringify(ioredis)});
    const { Lease } = await import(${JSON.stringify(leaseModule)});
    const redis = new Redis(process.env.TEST_REDIS_URL);
    const KEY = '${name}-${process.pid}';
    ${body}
    redis.disconnect();\n`,
  );
  return spawnSync(process.execPath, [script], {
    env: {
      ...process.env,
      TEST_REDIS_URL: inject('redisUrl'),
      REDIS_URL: options.threadRedis ?? inject('redisUrl'),
    },
    encoding: 'utf8',
    timeout: 60_000,
  });
}
