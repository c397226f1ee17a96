import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisSentinel, type SentinelService } from '../../app/local/services.js';
import { BIN, killAll, run } from '../jobs/procs.js';
import { expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';

/**
 * The commands against a master watched by Redis Sentinel (REDIS_SENTINELS, REDIS_URL naming the master):
 * sync, status, a worker's resyncs, and a failover (the master killed, its replica promoted by the
 * Sentinel) that the worker lives through, after which every audience is exact.
 */
let setup: SentinelService;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  setup = await startRedisSentinel('audiences');
  const { REDIS_URL: _url, REDIS_CLUSTER_NODES: _nodes, ...rest } = process.env;
  env = {
    ...rest,
    CI: 'true',
    REDIS_SENTINELS: setup.sentinels,
    REDIS_URL: `redis://${setup.name}`,
    LOG_LEVEL: 'warn',
  };
});
afterAll(async () => {
  killAll();
  await setup?.stop();
});

function cli(args: string[], cwd: string) {
  // A hang guard (a command waiting on a Redis that never answers fails the test instead of stalling it).
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env, encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Results = { results: { audience: string; added: number; removed: number; error?: string }[] };

describe('on a master watched by Redis Sentinel', () => {
  it('syncs, tells the status, runs a worker, and after a failover the worker lives on and the audiences are exact', async () => {
    const shop = await makeShop({ seed: 31, sync: 'max_removal_share: 1' });
    const first = cli(['sync', '--json'], shop.dir);
    expect([0, 3], first.stderr).toContain(first.code);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    const status = cli(['status', '--json'], shop.dir);
    expect(status.code, status.stderr).toBe(0);
    // The state is on the master the Sentinel names, and on its replica.
    const before = setup.master();
    const master = new Redis({ port: before });
    expect(await master.keys(`${shop.prefix}:*`)).not.toHaveLength(0);

    const worker = run(['worker'], { cwd: shop.dir, env: { ...env, LOG_LEVEL: 'info' } });
    await worker.waitFor(/"msg":"worker started"/);
    const resync = cli(['resync', '--destination', 'local', '--full', '--wait'], shop.dir);
    expect(resync.code, `${resync.stderr}\nworker: ${worker.stderr()}`).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));

    // The master goes as a crashed machine does; the Sentinel promotes the replica.
    const pid = Number(/process_id:(\d+)/.exec(await master.info('server'))![1]);
    master.disconnect();
    process.kill(pid, 'SIGKILL');
    for (const deadline = Date.now() + 120_000; setup.master() === before;) {
      if (Date.now() > deadline) throw new Error(`no failover of the master on port ${before} in 120 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    shop.editCustomers((cells, header, r) => {
      if (r % 5 === 1) cells[header.indexOf('email')] = `moved-${r}@example.org`;
      else if (r % 5 === 2) cells[header.indexOf('opted_out')] = 'true';
    });
    // The worker that was running follows the master to its new place.
    const after = cli(['resync', '--destination', 'local', '--wait'], shop.dir);
    expect(after.code, `${after.stderr}\nworker: ${worker.stderr()}`).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    // And a CLI run finds nothing left to do.
    const again = cli(['sync', '--json'], shop.dir);
    for (const r of (JSON.parse(again.stdout) as Results).results)
      expect([r.audience, r.added, r.removed, r.error]).toEqual([r.audience, 0, 0, undefined]);
  });
});
