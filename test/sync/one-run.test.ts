import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { BIN, changeLog, cli, cliEnv, expectedAudiences, fileAudiences, makeShop } from './harness.js';

/** Case 11 of issue 14: CLI runs take the audience leases workers take, so two runs never overlap. */
const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());

/** Starts a CLI process; resolves with its exit code and output, and tells when its stderr matches `when`. */
function start(args: string[], cwd: string, when?: RegExp) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: cliEnv() });
  let stdout = '';
  let stderr = '';
  let seen: () => void = () => undefined;
  const matched = new Promise<void>((resolve) => (seen = resolve));
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (when?.test(stderr)) seen();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stdout, stderr })),
  );
  return { matched, done };
}

describe('one run per audience, whoever starts it', () => {
  it('a sync waits for the run holding its audiences, or fails at once with --no-wait naming it', async () => {
    const shop = await makeShop();
    // A worker's run holds the file destination (its audiences share one folder and one log).
    const key = `{${shop.prefix}}:lease:local:*`;
    await redis.set(key, 'abc123 worker job 7 (pid 4242 on shop-host)', 'PX', 120_000);

    const refused = cli(['sync', '--no-wait'], shop.dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/another run is syncing this: worker job 7 \(pid 4242 on shop-host\)/);
    expect(changeLog(shop.out)).toEqual([]);

    const waiting = start(['sync', '--json'], shop.dir, /waiting for another run to finish: worker job 7/);
    await waiting.matched;
    expect(changeLog(shop.out)).toEqual([]);
    await redis.del(key);
    const r = await waiting.done;
    expect([0, 3]).toContain(r.code);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    expect(await redis.exists(key)).toBe(0); // released
  });

  it('two syncs started together: one after the other, the destination exact, each batch logged once', async () => {
    const shop = await makeShop({ batchSize: 7 });
    const runs = await Promise.all([
      start(['sync', '--json'], shop.dir).done,
      start(['sync', '--json'], shop.dir).done,
    ]);
    for (const r of runs) expect([0, 3], r.stderr).toContain(r.code);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    const added = runs.map((r) =>
      (JSON.parse(r.stdout).results as { added: number }[]).reduce((a, x) => a + x.added, 0),
    );
    // The second run found everything done by the first.
    expect(Math.min(...added)).toBe(0);
    const log = changeLog(shop.out) as unknown as { seq: number; audience: string }[];
    expect(new Set(log.map((e) => e.seq)).size).toBe(log.length);
  });
});
