import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { listSnapshots, sourceIdOf } from '../../src/history/snapshots.js';
import { killAll, run } from '../jobs/procs.js';
import { cli, cliEnv, makeShop } from '../sync/harness.js';

afterAll(killAll);

describe('a worker records the snapshot of the date it scores', () => {
  it('once, however many audience jobs score the same date', async () => {
    const shop = await makeShop({ customers: 300, seed: 5 });
    const worker = run(['worker'], { cwd: shop.dir, env: { ...cliEnv(), LOG_LEVEL: 'info' } });
    await worker.waitFor(/worker started/);
    for (const audience of ['Slipping away', 'RFM: Champions', 'Slipping away'])
      expect(cli(['resync', '-d', 'local', '-a', audience, '--wait'], shop.dir).code).toBe(0);
    const redis = new Redis(cliEnv().REDIS_URL!);
    try {
      const source = sourceIdOf({ type: 'csv', path: 'shop/orders.csv' } as never);
      const { snapshots } = await listSnapshots(redis, `{${shop.prefix}}`, source);
      expect(snapshots.map((s) => [s.date, s.by])).toEqual([['2026-01-01', 'worker']]);
      expect(snapshots[0]!.customers).toBe(300);
    } finally {
      redis.disconnect();
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });

  it('records it at the next run that takes the read when it failed at the first', async () => {
    const shop = await makeShop({ customers: 300, seed: 6 });
    const redis = new Redis(cliEnv().REDIS_URL!);
    const worker = run(['worker'], { cwd: shop.dir, env: { ...cliEnv(), LOG_LEVEL: 'info' } });
    try {
      await worker.waitFor(/worker started/);
      const source = sourceIdOf({ type: 'csv', path: 'shop/orders.csv' } as never);
      // A key of another type where the snapshot goes: recording it fails (WRONGTYPE), the run does not.
      const where = `{${shop.prefix}}:snapshot:${source}:2026-01-01`;
      await redis.hset(where, 'not', 'a snapshot');
      const first = cli(['resync', '-d', 'local', '-a', 'Slipping away', '--wait'], shop.dir);
      expect(first.code, first.stderr).toBe(0);
      await worker.waitFor(/segment snapshot not recorded: .*WRONGTYPE/);
      expect((await listSnapshots(redis, `{${shop.prefix}}`, source)).snapshots).toEqual([]);
      await redis.del(where);
      const second = cli(['resync', '-d', 'local', '-a', 'RFM: Champions', '--wait'], shop.dir);
      expect(second.code, second.stderr).toBe(0);
      await worker.waitFor(/"msg":"segment snapshot of 2026-01-01 recorded"/);
      // The second run took the first one's read, and recorded what the first could not.
      expect(worker.stderr().match(/read and scored the source/g)).toHaveLength(1);
      expect(worker.stderr()).toMatch(/took the source as another run read it/);
      const { snapshots } = await listSnapshots(redis, `{${shop.prefix}}`, source);
      expect(snapshots.map((s) => [s.date, s.by, s.customers])).toEqual([['2026-01-01', 'worker', 300]]);
    } finally {
      redis.disconnect();
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });
});
