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
});
