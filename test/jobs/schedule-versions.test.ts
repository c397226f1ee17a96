import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort, startRedis, type Service } from '../../app/local/services.js';
import { queuePrefix } from '../../jobs/queues.js';
import { tempDir } from '../helpers.js';
import { makeShop } from '../sync/harness.js';
import { killAll, run, until } from './procs.js';

/**
 * Schedules are reconciled from a config version: the newest wins, an older config never overwrites a
 * newer one (and says so), `schedules --force` rolls back on purpose, and running workers put back
 * schedules Redis lost.
 */
const redisUrl = inject('redisUrl');
const env = { ...process.env, CI: 'true', REDIS_URL: redisUrl, LOG_LEVEL: 'info' };
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  killAll();
  for (const c of closers) await c();
});

const OLD = 'schedules:\n  - { destination: local, cron: "0 3 * * *" }';
const NEW = 'schedules:\n  - { destination: local, cron: "30 4 * * *", tz: Europe/Berlin }';

async function patterns(url: string, prefix: string): Promise<string[]> {
  const queue = new Queue('sync', { connection: { url }, prefix: queuePrefix(prefix) });
  try {
    return (await queue.getJobSchedulers(0, -1)).map((s) => `${s.pattern}${s.tz ? ` ${s.tz}` : ''}`).sort();
  } finally {
    await queue.close();
  }
}

describe('schedule versions', () => {
  it('schedules: a config seen before and replaced is older; it is refused, naming both versions, unless --force', async () => {
    const shop = await makeShop();
    const schedules = async (text: string, ...flags: string[]) => {
      shop.write('2026-01-01', text);
      const r = run(['schedules', ...flags], { cwd: shop.dir, env });
      return { code: await r.exited, stderr: r.stderr() };
    };
    expect((await schedules(OLD)).code).toBe(0);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['0 3 * * * UTC']);
    expect((await schedules(NEW)).code).toBe(0);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);

    const refused = await schedules(OLD);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/older than/);
    // Both versions named: this config's content and the one in Redis.
    const versions = [...refused.stderr.matchAll(/content ([0-9a-f]{8})/g)].map((m) => m[1]);
    expect(new Set(versions).size).toBe(2);
    expect(refused.stderr).toMatch(/--force/);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);

    // A deliberate rollback; then the config it replaced is the older one.
    expect((await schedules(OLD, '--force')).code).toBe(0);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['0 3 * * * UTC']);
    expect((await schedules(NEW)).code).toBe(1);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['0 3 * * * UTC']);
  });

  it('an explicit schedules_version orders configs, whatever order they come in', async () => {
    const shop = await makeShop();
    const schedules = async (text: string) => {
      shop.write('2026-01-01', text);
      return run(['schedules'], { cwd: shop.dir, env }).exited;
    };
    expect(await schedules(`schedules_version: 2\n${NEW}`)).toBe(0);
    // Never seen, but of a lower version: refused.
    expect(await schedules(`schedules_version: 1\n${OLD}`)).toBe(1);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);
    // A higher version wins even with content seen before: a rollback by version.
    expect(await schedules(`schedules_version: 3\n${OLD}`)).toBe(0);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['0 3 * * * UTC']);
  });

  it('a rolling deploy: a worker started with the old config leaves the new schedules and says so', async () => {
    const shop = await makeShop();
    shop.write('2026-01-01', OLD);
    const oldConfig = path.join(shop.dir, 'old.yaml');
    copyFileSync(shop.config, oldConfig);
    expect(await run(['schedules', '--config', oldConfig], { cwd: shop.dir, env }).exited).toBe(0);
    shop.write('2026-01-01', NEW);
    const updated = run(['worker'], { cwd: shop.dir, env });
    await updated.waitFor(/worker started/);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);

    // An old worker (re)starts with the old config.
    const old = run(['worker', '--config', oldConfig], { cwd: shop.dir, env });
    await old.waitFor(/worker started/);
    expect(old.stderr()).toMatch(/schedules.*older than.*Redis/);
    expect(await patterns(redisUrl, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);
  });
});

describe('schedules lost from Redis', () => {
  let redis: Service | undefined;
  closers.push(async () => redis?.stop());

  it('a Redis without persistence restarts empty: the running worker re-creates the schedules, with a log line', async () => {
    const port = await freePort();
    const dir = tempDir('audience-sync-volatile-');
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    redis = await startRedis({ port, dir, volatile: true, persist: true });
    const shop = await makeShop();
    shop.write('2026-01-01', NEW);
    const config = readFileSync(shop.config, 'utf8').replace(
      'lease_seconds: 2',
      'lease_seconds: 2, schedule_check_seconds: 1',
    );
    writeFileSync(shop.config, config);
    const volatileEnv = { ...env, REDIS_URL: redis.url };
    const worker = run(['worker', '--allow-volatile-redis'], { cwd: shop.dir, env: volatileEnv });
    await worker.waitFor(/worker started/);
    expect(await patterns(redis.url, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);

    await redis.stop();
    redis = await startRedis({ port, dir, volatile: true, persist: true });
    await worker.waitFor(/re-created/);
    await until('the schedule to be back', async () =>
      (await patterns(redis!.url, shop.prefix)).length > 0 ? true : undefined,
    );
    expect(await patterns(redis.url, shop.prefix)).toEqual(['30 4 * * * Europe/Berlin']);
    // And status shows the next run again.
    const status = run(['status', '--json'], { cwd: shop.dir, env: volatileEnv });
    expect(await status.exited).toBe(0);
    expect(JSON.parse(status.stdout()).audiences[0].next_run).not.toBeNull();
  });
});
