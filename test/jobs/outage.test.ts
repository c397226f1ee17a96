import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, type Service } from '../../app/local/services.js';
import { tempDir } from '../helpers.js';
import { expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';

/** Redis goes away under a running worker and comes back: the worker waits, reconnects and goes on. */
const BIN = path.resolve('dist/app/cli/bin.js');
const children: ChildProcess[] = [];
let redis: Service | undefined;
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await redis?.stop();
});

describe('a Redis outage', () => {
  it('workers wait and reconnect instead of exiting; CLI commands fail fast meanwhile', async () => {
    const port = await freePort();
    const dir = tempDir('audience-sync-outage-');
    redis = await startRedis({ port, dir, persist: true });
    const env = { ...process.env, CI: 'true', REDIS_URL: `redis://127.0.0.1:${port}`, LOG_LEVEL: 'warn' };
    const shop = await makeShop();
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [BIN, ...args], { cwd: shop.dir, env, encoding: 'utf8', timeout: 600_000 });

    const worker = spawn(process.execPath, [BIN, 'worker'], {
      cwd: shop.dir,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(worker);
    let stderr = '';
    let exitCode: number | null | undefined;
    const exited = new Promise<void>((resolve) =>
      worker.once('exit', (code) => {
        exitCode = code;
        resolve();
      }),
    );
    /** Until the worker logs `text` (or exits): however long a busy machine takes. */
    const logged = (text: string) =>
      Promise.race([
        exited,
        new Promise<void>((resolve) => {
          const look = () => {
            if (stderr.includes(text)) resolve();
          };
          look();
          worker.stderr!.on('data', look);
        }),
      ]);
    worker.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(cli(['resync', '--destination', 'local', '--wait']).status).toBe(0);

    await redis.stop();
    redis = undefined;
    // The worker has seen the outage, and goes on.
    await logged('Redis connection error; reconnecting');
    expect(exitCode).toBeUndefined();
    const status = cli(['status']);
    expect(status.status).not.toBe(0);
    expect(status.stderr).toContain('cannot reach Redis');
    // It gave up by itself while Redis was still down (not stopped by the hang guard above).
    expect(status.signal).toBeNull();

    redis = await startRedis({ port, dir, persist: true });
    // A change to sync after the outage: the worker must pick up the new job.
    shop.write('2026-03-01');
    const after = cli(['resync', '--destination', 'local', '--wait']);
    expect(after.status, after.stderr).toBe(0);
    expect(exitCode).toBeUndefined();
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    expect(stderr).toContain('Redis');
  });
});
