import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { lastRuns } from '../../jobs/history.js';
import { queuePrefix } from '../../jobs/queues.js';
import { changeLog, expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';

/** The job layer through its commands, with real worker processes on a real Redis. */
const BIN = path.resolve('dist/app/cli/bin.js');
const redisUrl = inject('redisUrl');
const env = { ...process.env, CI: 'true', REDIS_URL: redisUrl, LOG_LEVEL: 'warn' };
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

function cli(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A worker process; `started` resolves on its `worker started` log line (its queues and signal handlers
 * are in place), however long a busy machine takes to get there.
 */
function worker(cwd: string, args: string[] = []): ChildProcess & { started: Promise<void> } {
  const child = spawn(process.execPath, [BIN, 'worker', ...args], {
    cwd,
    env: { ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  const started = new Promise<void>((resolve, reject) => {
    // Read to the end: a full pipe would block the worker's logging.
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.includes('"msg":"worker started"')) return;
      stderr += d.toString();
      if (stderr.includes('"msg":"worker started"')) resolve();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`the worker exited (${code ?? signal}) before it started:\n${stderr}`)),
    );
  });
  started.catch(() => undefined);
  return Object.assign(child, { started });
}

const cliAsync = (args: string[], cwd: string) =>
  new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(child);
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout }));
  });

describe('schedules', () => {
  it('three processes reconciling at once leave exactly one scheduler per entry; removed entries go', async () => {
    const shop = await makeShop();
    const schedules = `schedules:
  - { destination: local, cron: "0 3 * * *", tz: Europe/Berlin }
  - { destination: local, cron: "30 * * * *", audience: "RFM: Champions" }
  - { destination: local, cron: "0 4 * * 1", full: true }`;
    shop.write('2026-01-01', schedules);
    const runs = await Promise.all([1, 2, 3].map(() => cliAsync(['schedules', '--json'], shop.dir)));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
    const queue = new Queue('sync', { connection: { url: redisUrl }, prefix: `{${shop.prefix}}` });
    try {
      expect(await queue.getJobSchedulers(0, -1)).toHaveLength(3);
      shop.write('2026-01-01', schedules.split('\n').slice(0, 2).join('\n'));
      const r = JSON.parse(cli(['schedules', '--json'], shop.dir).stdout);
      expect(r).toMatchObject({
        kept: [expect.any(String)],
        removed: [expect.any(String), expect.any(String)],
        added: [],
      });
      const left = await queue.getJobSchedulers(0, -1);
      expect(left).toHaveLength(1);
      expect(left[0]).toMatchObject({ pattern: '0 3 * * *', tz: 'Europe/Berlin' });
      const status = JSON.parse(cli(['status', '--json'], shop.dir).stdout);
      expect(status.audiences[0].next_run).toMatch(/^\d{4}-\d\d-\d\dT0[12]:00/);
    } finally {
      await queue.close();
    }
  });

  it('rejects an invalid cron pattern with the entry named', async () => {
    const shop = await makeShop();
    shop.write('2026-01-01', 'schedules:\n  - { destination: local, cron: "every day" }');
    const r = cli(['schedules'], shop.dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/schedules\[0\]\.cron: 'every day' is not a cron pattern/);
  });
});

describe('workers', () => {
  it('two workers, the same destination asked for twice: one run at a time, both requests honoured', async () => {
    const shop = await makeShop({ batchSize: 20 });
    await Promise.all([worker(shop.dir).started, worker(shop.dir).started]);
    // The full resync is asked for while the incremental one runs (not after a guessed delay: a busy
    // machine may not have queued the first yet, and then one full run honours both).
    const queue = new Queue('sync', { connection: { url: redisUrl }, prefix: `{${shop.prefix}}` });
    const firstRun = cliAsync(['resync', '-d', 'local', '--wait', '--json'], shop.dir);
    try {
      await expect.poll(() => queue.getActiveCount(), { timeout: 120_000, interval: 20 }).toBe(1);
    } finally {
      await queue.close();
    }
    const [first, second] = await Promise.all([
      firstRun,
      cliAsync(['resync', '-d', 'local', '--full', '--wait', '--json'], shop.dir),
    ]);
    expect([first.code, second.code]).toEqual([0, 0]);
    const results = [first, second].map((r) => JSON.parse(r.stdout).result);
    expect(results.map((r) => r.full).sort()).toEqual([false, true]);
    // Runs never interleave: every batch of the incremental run comes before the full run's replaces.
    const ops = changeLog(shop.out).map((e) => e.op);
    expect(ops.lastIndexOf('add')).toBeLessThan(ops.indexOf('replace'));
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    // Both requests honoured for every audience, in whichever order the workers took them.
    const status = JSON.parse(cli(['status', '--json'], shop.dir).stdout);
    const redis = new Redis(redisUrl);
    try {
      for (const a of status.audiences as { audience: string }[]) {
        const runs = await lastRuns(redis, queuePrefix(shop.prefix), 'local', a.audience, 2);
        expect(runs.map((r) => r.full).sort(), a.audience).toEqual([false, true]);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('a resync asked for while a run that covers it waits joins that run instead of queueing another', async () => {
    const shop = await makeShop();
    const prefix = queuePrefix(shop.prefix);
    const redis = new Redis(redisUrl);
    const sync = new Queue('sync', { connection: { url: redisUrl }, prefix });
    const admin = new Queue('admin', { connection: { url: redisUrl }, prefix });
    try {
      // Another run holds the destination: what is asked for meanwhile waits.
      await redis.set(`${prefix}:lease:local:*`, 'another run', 'PX', 300_000);
      await worker(shop.dir).started;
      const jobs = async () => (await sync.getJobs(['waiting', 'delayed', 'active', 'completed'])).length;
      const handled = async () =>
        (await admin.getJobs(['completed'])).filter((j) => j.name === 'resync').length;
      const incremental = cliAsync(['resync', '-d', 'local', '--wait', '--json'], shop.dir);
      await expect.poll(jobs, { timeout: 120_000, interval: 20 }).toBe(1);
      // A full run is more than the waiting incremental one does: a run of its own.
      const full = cliAsync(['resync', '-d', 'local', '--full', '--wait', '--json'], shop.dir);
      await expect.poll(jobs, { timeout: 120_000, interval: 20 }).toBe(2);
      // Covered by a waiting run: the destination again, and one of its audiences.
      const again = cliAsync(['resync', '-d', 'local', '--wait', '--json'], shop.dir);
      const one = cliAsync(
        ['resync', '-d', 'local', '--audience', 'RFM: Champions', '--wait', '--json'],
        shop.dir,
      );
      await expect.poll(handled, { timeout: 120_000, interval: 20 }).toBe(4);
      expect(await jobs()).toBe(2);
      await redis.del(`${prefix}:lease:local:*`);

      const results = await Promise.all([incremental, full, again, one]);
      expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0]);
      const [a, b, c, d] = results.map((r) => JSON.parse(r.stdout) as { job: string; joined?: boolean });
      expect(a!.job).not.toBe(b!.job);
      expect([a!.joined, b!.joined, c!.joined, d!.joined]).toEqual([undefined, undefined, true, true]);
      expect([a!.job, b!.job]).toContain(c!.job);
      expect([a!.job, b!.job]).toContain(d!.job);
      expect(await sync.getCompletedCount()).toBe(2);
      expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    } finally {
      redis.disconnect();
      await Promise.all([sync.close(), admin.close()]);
    }
  });

  it('a worker killed in the middle of a run: the next run converges and the destination is exact', async () => {
    const shop = await makeShop({ customers: 800, batchSize: 2 });
    const doomed = worker(shop.dir);
    await doomed.started;
    const request = cliAsync(['resync', '-d', 'local', '--json'], shop.dir);
    // Kill it once it has sent something.
    for (let i = 0; i < 3000 && changeLog(shop.out).length < 5; i++) await sleep(20);
    doomed.kill('SIGKILL');
    await request;
    expect(fileAudiences(shop.out)).not.toEqual(await expectedAudiences(shop.config));
    await worker(shop.dir).started;
    await sleep(2500); // the killed worker's lease runs out (lease_seconds: 2)
    const r = await cliAsync(['resync', '-d', 'local', '--wait', '--json'], shop.dir);
    expect(r.code).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });

  it('pause holds a destination until resume', async () => {
    const shop = await makeShop();
    await worker(shop.dir).started;
    expect(cli(['pause', '-d', 'local', '--wait'], shop.dir).code).toBe(0);
    const paused = JSON.parse(cli(['resync', '-d', 'local', '--wait', '--json'], shop.dir).stdout);
    expect(paused.result).toEqual({ skipped: 'paused' });
    expect(changeLog(shop.out)).toHaveLength(0);
    expect(cli(['resume', '-d', 'local', '--wait'], shop.dir).code).toBe(0);
    const resumed = JSON.parse(cli(['resync', '-d', 'local', '--wait', '--json'], shop.dir).stdout);
    expect(resumed.result.added).toBeGreaterThan(0);
  });

  it('SIGTERM stops a worker cleanly', async () => {
    const shop = await makeShop();
    const w = worker(shop.dir);
    await w.started;
    const exited = new Promise<number | null>((resolve) => w.once('exit', resolve));
    w.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('metrics', () => {
  it('the worker serves /healthz and Prometheus /metrics with run counts and queue depth', async () => {
    const shop = await makeShop();
    const port = 20000 + Math.floor(Math.random() * 20000);
    // The metrics port is open before the worker says it started.
    await worker(shop.dir, ['--metrics-port', String(port)]).started;
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text()).toBe('ok\n');
    expect((await cliAsync(['resync', '-d', 'local', '--wait'], shop.dir)).code).toBe(0);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/audience_sync_runs_total\{destination="local",outcome="ok"\} 13/);
    expect(text).toMatch(/audience_sync_members_total\{destination="local",change="added"\} [1-9]/);
    expect(text).toMatch(/audience_sync_queue_jobs\{queue="sync",state="waiting"\} 0/);
    expect(text).toMatch(/audience_sync_run_duration_seconds_count\{destination="local"\} 1/);
  });
});

describe('platforms that process uploads later', () => {
  it('a delayed poll run settles the pending uploads without anyone asking', async () => {
    const shop = await makeShop();
    // The file destination in "process later" mode: batches take effect 1 s after they are sent.
    const text = readFileSync(shop.config, 'utf8')
      .replace('batch_size: 10000', 'batch_size: 10000, process_after_seconds: 1')
      .replace('lease_seconds: 2', 'lease_seconds: 2, poll_seconds: 2');
    writeFileSync(shop.config, text);
    await worker(shop.dir).started;
    const first = JSON.parse(
      (await cliAsync(['resync', '-d', 'local', '--wait', '--json'], shop.dir)).stdout,
    );
    expect(first.result.added).toBeGreaterThan(0);
    // Nothing has taken effect yet; the worker follows up by itself.
    let reasons: string[] = [];
    for (let i = 0; i < 100; i++) {
      await sleep(200);
      const status = JSON.parse(cli(['status', '--json'], shop.dir).stdout);
      reasons = status.audiences.map((a: { last_run: { reason: string } }) => a.last_run?.reason);
      if (reasons.every((r) => r === 'poll')) break;
    }
    expect(reasons.every((r) => r === 'poll')).toBe(true);
    const plan = JSON.parse(cli(['plan', '--json'], shop.dir).stdout).plans as {
      to_add: number;
      pending: number;
      unchanged: number;
    }[];
    expect(plan.every((p) => p.to_add === 0 && p.pending === 0)).toBe(true);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });
});
