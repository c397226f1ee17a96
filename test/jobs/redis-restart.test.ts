import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, type Service } from '../../app/local/services.js';
import { tempDir } from '../helpers.js';
import { changeLog, expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';
import { killAll, run, until } from './procs.js';

/**
 * Redis restarts while `resync --wait` follows a job: the command follows the job through the restart
 * to its end (or fails saying why), and every command ends when its work ends. The bound on the exit is
 * far above what the run needs: what it catches is a process that never exits.
 */
let redis: Service | undefined;
const dir = tempDir('audience-sync-restart-');
afterAll(async () => {
  killAll();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis restarting under resync --wait', () => {
  it('follows its job through the restart to the end, and exits', async () => {
    const port = await freePort();
    redis = await startRedis({ port, dir, persist: true });
    const env = { ...process.env, CI: 'true', REDIS_URL: redis.url, LOG_LEVEL: 'info' };
    const shop = await makeShop({ customers: 800, batchSize: 2 });
    const worker = run(['worker'], { cwd: shop.dir, env });
    await worker.waitFor(/worker started/);
    const resync = run(['resync', '-d', 'local', '--wait', '--json'], { cwd: shop.dir, env });
    await until('the run to send a few batches', () => (changeLog(shop.out).length >= 5 ? true : undefined));

    await redis.stop();
    redis = await startRedis({ port, dir, persist: true });

    const code = await resync.exitWithin(180_000);
    expect(code, resync.stderr()).toBe(0);
    expect(JSON.parse(resync.stdout()).result.audiences).toBeGreaterThan(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));

    // Short commands end when their work ends, whatever connections they opened.
    for (const args of [['status'], ['schedules'], ['pause', '-d', 'local', '--wait'], ['plan']]) {
      const r = run(args, { cwd: shop.dir, env });
      expect(await r.exitWithin(60_000), `${args.join(' ')}: ${r.stderr()}`).toBe(0);
    }
  });
});
