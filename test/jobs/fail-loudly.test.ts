import { rmSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort, startRedis, type Service } from '../../app/local/services.js';
import { tempDir } from '../helpers.js';
import { makeShop } from '../sync/harness.js';
import { killAll, run, until } from './procs.js';

/**
 * Processes that cannot go on must stop, at once and non-zero, with a message that names what to fix: a
 * bad schedule, a Redis that wants a password, a REDIS_URL that is not one, a Redis that would lose the
 * state, a Redis Cluster node that does not hold our keys. (A Redis that is down is different: workers
 * wait for it, see outage.test.ts.) "At once" is checked against a bound far above what any of these
 * needs, so a busy machine cannot fail the test; what it catches is a process that never exits.
 */
const redisUrl = inject('redisUrl');
const baseEnv = { ...process.env, CI: 'true', LOG_LEVEL: 'info', REDIS_URL: redisUrl };
const EXIT_BOUND_MS = 120_000;
const servers: Service[] = [];
afterAll(async () => {
  killAll();
  await Promise.all(servers.map((s) => s.stop()));
});

async function redisWith(options: Parameters<typeof startRedis>[0]): Promise<Service> {
  const service = await startRedis(options);
  servers.push(service);
  return service;
}

describe('bad schedules', () => {
  const bad = `schedules:
  - { destination: nowhere, cron: "0 3 * * *" }
  - { destination: local, cron: "every day" }
  - { destination: local, cron: "0 3 * * *", tz: Mars/Olympus }
  - { destination: local, cron: "0 3 * *" }`;

  it('validate names each bad entry: unknown destination, a cron that does not parse, an unknown time zone', async () => {
    const shop = await makeShop();
    shop.write('2026-01-01', bad);
    const r = run(['validate'], { cwd: shop.dir, env: baseEnv });
    expect(await r.exited).toBe(2);
    const err = r.stderr();
    expect(err).toMatch(/schedules\[0\]\.destination: no destination named 'nowhere'.*local/);
    expect(err).toMatch(/schedules\[1\]\.cron: 'every day' is not a cron pattern/);
    expect(err).toMatch(/schedules\[2\]\.tz: 'Mars\/Olympus' is not a time zone/);
    // cron-parser alone would read four fields as something else: the entry must have five (or six).
    expect(err).toMatch(/schedules\[3\]\.cron: '0 3 \* \*' is not a cron pattern: it has 4 fields/);
  });

  it('validate names a schedule for an audience the config does not have', async () => {
    const shop = await makeShop();
    shop.write(
      '2026-01-01',
      'schedules:\n  - { destination: local, audience: "RFM: Nobody", cron: "0 3 * * *" }',
    );
    const r = run(['validate'], { cwd: shop.dir, env: baseEnv });
    expect(await r.exited).toBe(2);
    expect(r.stderr()).toMatch(/schedules\[0\]\.audience: no audience 'RFM: Nobody' on destination 'local'/);
  });

  it('a worker with any of them exits 2 at once, naming the entry', async () => {
    const shops = await Promise.all(
      bad
        .split('\n')
        .slice(1)
        .map(async (entry) => {
          const shop = await makeShop();
          shop.write('2026-01-01', `schedules:\n${entry}`);
          return shop;
        }),
    );
    const workers = shops.map((shop) => run(['worker'], { cwd: shop.dir, env: baseEnv }));
    const codes = await Promise.all(workers.map((w) => w.exitWithin(EXIT_BOUND_MS)));
    expect(codes).toEqual([2, 2, 2, 2]);
    expect(workers[0]!.stderr()).toMatch(/schedules\[0\]\.destination: no destination named 'nowhere'/);
    expect(workers[2]!.stderr()).toMatch(/schedules\[0\]\.tz: 'Mars\/Olympus' is not a time zone/);
  });
});

describe('a Redis that needs a password', () => {
  const PASSWORD = 'test-only-redis-password-7q2';

  it('worker and CLI exit non-zero at once, say REDIS_URL needs the password, and never print it', async () => {
    const redis = await redisWith({ config: { requirepass: PASSWORD } });
    const shop = await makeShop();
    const port = new URL(redis.url).port;
    const cases = [
      { url: `redis://127.0.0.1:${port}`, says: /needs a password/ },
      { url: `redis://:not-the-${PASSWORD}@127.0.0.1:${port}`, says: /password .*(wrong|rejected)/ },
    ];
    for (const c of cases) {
      const env = { ...baseEnv, REDIS_URL: c.url };
      const procs = [
        run(['worker'], { cwd: shop.dir, env }),
        run(['status'], { cwd: shop.dir, env }),
        run(['resync', '-d', 'local', '--wait'], { cwd: shop.dir, env }),
      ];
      const codes = await Promise.all(procs.map((p) => p.exitWithin(EXIT_BOUND_MS)));
      for (const [k, p] of procs.entries()) {
        expect(codes[k], p.stderr()).not.toBe('running');
        expect(codes[k], p.stderr()).not.toBe(0);
        expect(p.stderr()).toMatch(/REDIS_URL/);
        expect(p.stderr()).toMatch(c.says);
        expect(p.stderr()).not.toContain(PASSWORD);
      }
    }
    // With the password, the worker runs.
    const ok = run(['worker'], {
      cwd: shop.dir,
      env: { ...baseEnv, REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${port}` },
    });
    await ok.waitFor(/worker started/);
    ok.child.kill('SIGTERM');
    expect(await ok.exited).toBe(0);
  });

  it('a running worker whose Redis comes back wanting a password exits non-zero', async () => {
    const port = await freePort();
    const dir = tempDir('audience-sync-auth-');
    let redis = await startRedis({ port, dir, persist: true });
    const shop = await makeShop();
    const env = { ...baseEnv, REDIS_URL: `redis://127.0.0.1:${port}` };
    const worker = run(['worker'], { cwd: shop.dir, env });
    try {
      await worker.waitFor(/worker started/);
      await redis.stop();
      redis = await startRedis({ port, dir, persist: true, config: { requirepass: PASSWORD } });
      const code = await worker.exitWithin(EXIT_BOUND_MS);
      expect(code, worker.stderr()).not.toBe('running');
      expect(code).not.toBe(0);
      expect(worker.stderr()).toMatch(/needs a password/);
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('REDIS_URL that is not a Redis URL', () => {
  it('names the variable and the form expected, without the password', async () => {
    const shop = await makeShop();
    const urls = ['redis//127.0.0.1:6379', 'http://user:hunter2-secret@127.0.0.1:6379', 'localhost:6379'];
    for (const url of urls) {
      const procs = [['worker'], ['status'], ['sync']].map((args) => ({
        what: `${args[0]} with ${url}`,
        proc: run(args, { cwd: shop.dir, env: { ...baseEnv, REDIS_URL: url } }),
      }));
      for (const { what, proc } of procs) {
        const code = await proc.exitWithin(EXIT_BOUND_MS);
        expect(code, `${what}: ${proc.stderr()}`).toBe(2);
        expect(proc.stderr()).toContain('REDIS_URL');
        expect(proc.stderr()).toContain('redis://[user:password@]host:port[/db]');
        expect(proc.stderr()).not.toContain('hunter2');
        expect(proc.stderr()).not.toMatch(/Invalid URL$/m);
      }
    }
  });
});

describe('a Redis that would lose the state', () => {
  it('workers refuse a Redis without persistence, naming the redis.conf settings, unless told', async () => {
    const redis = await redisWith({ volatile: true });
    const shop = await makeShop();
    const env = { ...baseEnv, REDIS_URL: redis.url };
    const refused = run(['worker'], { cwd: shop.dir, env });
    expect(await refused.exitWithin(EXIT_BOUND_MS)).toBe(2);
    expect(refused.stderr()).toMatch(/appendonly yes/);
    expect(refused.stderr()).toMatch(/--allow-volatile-redis/);

    for (const [args, extra] of [
      [['worker', '--allow-volatile-redis'], {}],
      [['worker'], { AUDIENCE_SYNC_ALLOW_VOLATILE_REDIS: '1' }],
    ] as const) {
      const allowed = run([...args], { cwd: shop.dir, env: { ...env, ...extra } });
      await allowed.waitFor(/worker started/);
      expect(allowed.stderr()).toMatch(/appendonly/); // still said, as a warning
      allowed.child.kill('SIGTERM');
      expect(await allowed.exited).toBe(0);
    }
  });

  it('workers refuse a Redis that may evict keys, and read INFO where CONFIG is not allowed', async () => {
    const evicting = await redisWith({ config: { 'maxmemory-policy': 'allkeys-lru' } });
    const noConfig = await redisWith({ volatile: true, config: { 'rename-command': ['CONFIG', ''] } });
    const shop = await makeShop();
    const a = run(['worker'], { cwd: shop.dir, env: { ...baseEnv, REDIS_URL: evicting.url } });
    const b = run(['worker'], { cwd: shop.dir, env: { ...baseEnv, REDIS_URL: noConfig.url } });
    expect(await a.exitWithin(EXIT_BOUND_MS)).toBe(2);
    expect(a.stderr()).toMatch(/maxmemory-policy is allkeys-lru.*maxmemory-policy noeviction/);
    expect(await b.exitWithin(EXIT_BOUND_MS)).toBe(2);
    expect(b.stderr()).toMatch(/appendonly yes/);
  });
});

describe('a Redis Cluster node that does not hold our keys', () => {
  it('a worker pointed at it exits non-zero on MOVED instead of hanging', async () => {
    const nodes = await Promise.all(
      [0, 1].map(async () => {
        const dir = tempDir('audience-sync-cluster-');
        return redisWith({
          volatile: true,
          config: { 'cluster-enabled': 'yes', 'cluster-config-file': path.join(dir, 'nodes.conf') },
        });
      }),
    );
    const [a, b] = nodes.map((n) => new Redis(n.url));
    try {
      await a!.call('CLUSTER', 'ADDSLOTSRANGE', '0', '8191');
      await b!.call('CLUSTER', 'ADDSLOTSRANGE', '8192', '16383');
      await a!.call('CLUSTER', 'MEET', '127.0.0.1', new URL(nodes[1]!.url).port);
      const shop = await makeShop();
      const slot = Number(await a!.call('CLUSTER', 'KEYSLOT', `{${shop.prefix}}`));
      const other = slot < 8192 ? nodes[1]! : nodes[0]!;
      // Wait until both nodes know every slot's owner, so the other one answers MOVED.
      await until('the cluster to form', async () => {
        const infos = await Promise.all([a!, b!].map((n) => n.call('CLUSTER', 'INFO')));
        return infos.every((i) => String(i).includes('cluster_state:ok')) ? true : undefined;
      });
      const worker = run(['worker', '--allow-volatile-redis'], {
        cwd: shop.dir,
        env: { ...baseEnv, REDIS_URL: other.url },
      });
      const code = await worker.exitWithin(EXIT_BOUND_MS);
      expect(code, worker.stderr()).not.toBe('running');
      expect(code).not.toBe(0);
      expect(worker.stderr()).toMatch(/MOVED/);
      expect(worker.stderr()).toMatch(/REDIS_URL/);
    } finally {
      a!.disconnect();
      b!.disconnect();
    }
  });
});
