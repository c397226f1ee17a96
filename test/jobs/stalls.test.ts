import { renameSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { lastRuns } from '../../jobs/history.js';
import { queuePrefix } from '../../jobs/queues.js';
import { MAX_INTERRUPTIONS } from '../../app/worker.js';
import { changeLog, expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';
import { killAll, run, until, type Proc } from './procs.js';

/**
 * Runs whose workers die under them, more than once, are resumed and finish; a run that ends failed, for
 * whatever reason, shows in `status` and in the run history as failed, without sizes.
 */
const redisUrl = inject('redisUrl');
const env = { ...process.env, CI: 'true', REDIS_URL: redisUrl, LOG_LEVEL: 'info' };
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  killAll();
  await Promise.all(closers.map((c) => c()));
});

function syncQueueOf(prefix: string): Queue {
  const queue = new Queue('sync', { connection: { url: redisUrl }, prefix: queuePrefix(prefix) });
  closers.push(() => queue.close());
  return queue;
}

async function startedWorker(cwd: string): Promise<Proc> {
  const w = run(['worker'], { cwd, env });
  await w.waitFor(/worker started/);
  return w;
}

describe('a run whose workers are killed', () => {
  it('killed twice (the worker that resumed it too): the run is resumed again and the destination is exact', async () => {
    const shop = await makeShop({ customers: 800, batchSize: 2 });
    const queue = syncQueueOf(shop.prefix);
    let worker = await startedWorker(shop.dir);
    const resync = run(['resync', '-d', 'local', '--wait', '--json'], { cwd: shop.dir, env });
    for (let kill = 1; kill <= 2; kill++) {
      // Kill the worker once it has sent a few more batches of this run.
      const before = changeLog(shop.out).length;
      await until('the run to send more batches', () =>
        changeLog(shop.out).length >= before + 3 ? true : undefined,
      );
      worker.child.kill('SIGKILL');
      await worker.exited;
      worker = await startedWorker(shop.dir);
    }
    expect(await resync.exited, resync.stderr()).toBe(0);
    expect(JSON.parse(resync.stdout()).result.audiences).toBeGreaterThan(0);
    const [job] = await queue.getJobs(['completed']);
    // Both kills count; on a machine busy enough to hold a worker past its lock's renewal, BullMQ takes the
    // run for stalled once more (seen with two suites at once), and it is resumed all the same.
    expect(job?.stalledCounter).toBeGreaterThanOrEqual(2);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });

  it('interrupted more often than allowed: the job fails, and status and the history say why', async () => {
    const shop = await makeShop({ customers: 800, batchSize: 2 });
    let worker = await startedWorker(shop.dir);
    const resync = run(['resync', '-d', 'local', '--wait'], { cwd: shop.dir, env });
    for (let kill = 1; kill <= MAX_INTERRUPTIONS + 1; kill++) {
      const before = changeLog(shop.out).length;
      await until('the run to send more batches', () =>
        changeLog(shop.out).length >= before + 2 ? true : undefined,
      );
      worker.child.kill('SIGKILL');
      await worker.exited;
      worker = await startedWorker(shop.dir);
    }
    expect(await resync.exited).toBe(1);
    expect(resync.stderr()).toMatch(/interrupted more than 5 times/);
    const status = run(['status', '--json'], { cwd: shop.dir, env });
    expect(await status.exited).toBe(0);
    const rows = JSON.parse(status.stdout()).audiences as {
      last_run: { error: string | null; outcome: string } | null;
      members: number | null;
    }[];
    expect(rows).toHaveLength(13);
    for (const r of rows) {
      expect(r.last_run).toMatchObject({
        outcome: 'failed',
        error: expect.stringMatching(/interrupted more than 5 times/),
      });
      expect(r.members).toBeNull();
    }
  });

  it('a run that fails before any history (the source cannot be read) is recorded as failed, without sizes', async () => {
    const shop = await makeShop();
    const queue = syncQueueOf(shop.prefix);
    await startedWorker(shop.dir);
    // A first run that succeeds, so that a later failure must not look like a drop to zero.
    expect(await run(['resync', '-d', 'local', '--wait'], { cwd: shop.dir, env }).exited).toBe(0);
    renameSync(path.join(shop.dir, 'shop', 'orders.csv'), path.join(shop.dir, 'shop', 'orders.moved'));
    run(['resync', '-d', 'local'], { cwd: shop.dir, env });
    const failed = await until('the run to fail', async () => {
      const jobs = await queue.getJobs(['delayed', 'failed']);
      return jobs.find((j) => j.attemptsMade >= 1);
    });
    await failed.remove();

    const status = run(['status', '--json'], { cwd: shop.dir, env });
    expect(await status.exited).toBe(0);
    const rows = JSON.parse(status.stdout()).audiences as {
      audience: string;
      last_run: { error: string | null } | null;
      members: number | null;
      segment_size: number | null;
    }[];
    expect(rows).toHaveLength(13);
    const redis = new Redis(redisUrl);
    closers.push(async () => redis.disconnect());
    for (const r of rows) {
      expect(r.last_run?.error, r.audience).toMatch(/orders\.csv/);
      expect(r.members).toBeNull();
      expect(r.segment_size).toBeNull();
      const [last, previous] = await lastRuns(redis, queuePrefix(shop.prefix), 'local', r.audience, 2);
      expect(last).toMatchObject({ outcome: 'failed' });
      expect(last).not.toHaveProperty('segmentSize');
      expect(last).not.toHaveProperty('members');
      expect(previous).toMatchObject({ outcome: 'completed' });
      expect(previous!.segmentSize).toBeGreaterThanOrEqual(0);
    }
    // The table says it too.
    const table = run(['status'], { cwd: shop.dir, env });
    expect(await table.exited).toBe(0);
    expect(table.stdout()).toMatch(/failed: .*orders\.csv/);
  });
});
