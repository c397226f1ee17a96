import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { changeLog, expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';
import { killAll, run } from './procs.js';

/**
 * The brakes in the workers (case 1 of issue 14): a held run fails its job at once (retrying the same data
 * gives the same answer), shows in status, and goes through when an operator allows it with resync.
 */
const env = { ...process.env, CI: 'true', REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'warn' };
afterAll(() => killAll());

const cli = async (args: string[], cwd: string) => {
  const p = run(args, { cwd, env });
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
};

describe('brakes in the workers', () => {
  it('a partial export fails the job at its first attempt; resync with --allow-shrink and --allow-removals goes on', async () => {
    const shop = await makeShop();
    const worker = run(['worker'], { cwd: shop.dir, env: { ...env, LOG_LEVEL: 'info' } });
    await worker.waitFor(/worker started/);
    expect((await cli(['resync', '-d', 'local', '--wait'], shop.dir)).code).toBe(0);
    const synced = fileAudiences(shop.out);
    const sent = changeLog(shop.out).length;

    const profiles = path.join(shop.dir, 'shop', 'customers.csv');
    const lines = readFileSync(profiles, 'utf8').split('\n');
    writeFileSync(profiles, lines.slice(0, 101).join('\n') + '\n');

    const held = await cli(['resync', '-d', 'local', '--wait'], shop.dir);
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(/held by the source brake: the profiles have 100 rows/);
    // Failed at once: no attempt was retried.
    expect(held.stderr).not.toMatch(/will be retried/);
    expect(changeLog(shop.out)).toHaveLength(sent);
    const status = JSON.parse((await cli(['status', '--json'], shop.dir)).stdout).audiences as {
      last_run: { outcome: string; error: string };
    }[];
    expect(
      status.every((r) => r.last_run.outcome === 'failed' && /source brake/.test(r.last_run.error)),
    ).toBe(true);

    const braked = await cli(['resync', '-d', 'local', '--allow-shrink', '--wait'], shop.dir);
    expect(braked.code).toBe(1);
    expect(braked.stderr).toMatch(/held by the removal brake/);
    expect(fileAudiences(shop.out).get('RFM: Champions')).toEqual(synced.get('RFM: Champions'));

    const allowed = await cli(
      ['resync', '-d', 'local', '--allow-shrink', '--allow-removals', '*', '--wait'],
      shop.dir,
    );
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });
});
