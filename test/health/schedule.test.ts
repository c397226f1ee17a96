import { spawn, type ChildProcess } from 'node:child_process';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { statsScheduleId } from '../../jobs/schedules.js';
import { loadConfig } from '../../src/config/load.js';
import { audienceHealth, destinationHealth } from '../../src/health/audience.js';
import { listReadings } from '../../src/health/readings.js';
import { audienceHealthSchema } from '../../src/health/schema.js';
import { BIN, cli, cliEnv, fileAudiences } from '../sync/harness.js';
import { until } from '../jobs/procs.js';
import { scoresShop } from './shop.js';

/** The periodic stats read: a job scheduler per destination on the admin queue, run by real worker processes. */

const redisUrl = inject('redisUrl');
const redis = new Redis(redisUrl);
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  redis.disconnect();
});

/** A worker process; resolves once it logs `worker started`. */
function worker(cwd: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'worker'], {
    cwd,
    env: { ...cliEnv(), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.includes('"msg":"worker started"')) return;
      stderr += d.toString();
      if (stderr.includes('"msg":"worker started"')) resolve(child);
    });
    child.once('exit', (code) =>
      reject(new Error(`the worker exited (${code}) before it started:\n${stderr}`)),
    );
  });
}

describe('the stats schedule', () => {
  it('reads every destination every health.stats_minutes through the workers, and records it', async () => {
    const shop = scoresShop(120, '  local: { type: file, path: out }', 'health: { stats_minutes: 1 }');
    const admin = new Queue('admin', { connection: { url: redisUrl }, prefix: shop.queuePrefix });
    try {
      // Two workers reconciling at once leave one scheduler for the one destination.
      const workers = await Promise.all([worker(shop.dir), worker(shop.dir)]);
      const schedulers = await admin.getJobSchedulers(0, -1);
      expect(schedulers.map((s) => [s.key, s.pattern])).toEqual([[statsScheduleId('local'), '*/1 * * * *']]);

      const resync = cli(['resync', '--destination', 'local', '--wait'], shop.dir);
      expect(resync.code, resync.stderr).toBe(0);

      // The next minute's read, whenever a busy machine gets to it.
      const scheduled = await until(
        'a scheduled reading',
        async () => {
          const { readings } = await listReadings(redis, shop.queuePrefix, 'local', 'Champions');
          return readings.find((r) => r.by === 'schedule');
        },
        180_000,
      );
      // The file destination's count is its identifiers, one email per member here: read from its files.
      const onDisk = fileAudiences(`${shop.dir}/out`).get('Champions')!.size;
      const n = shop.expected.get('Champions')!;
      expect(onDisk).toBe(n);
      expect(scheduled).toMatchObject({ size: n, counts: 'identifiers', expected: n, sent: n, confirmed: n });
      const { readings } = await listReadings(redis, shop.queuePrefix, 'local', 'Champions');
      expect(readings[0]).toMatchObject({ by: 'run', size: n, changed: true });

      // `stats` asks a worker for a read now.
      const before = readings.filter((r) => r.by === 'schedule').length;
      const asked = cli(['stats', '--destination', 'local', '--wait'], shop.dir);
      expect(asked.code, asked.stderr).toBe(0);
      expect(JSON.parse(asked.stdout)).toEqual({ audiences: 2 });
      const now = (await listReadings(redis, shop.queuePrefix, 'local', 'Champions')).readings;
      expect(now.filter((r) => r.by === 'schedule').length).toBeGreaterThan(before);

      const status = cli(['status', '--json'], shop.dir);
      expect(status.code, status.stderr).toBe(0);
      const row = JSON.parse(status.stdout).audiences.find(
        (r: { audience: string }) => r.audience === 'Champions',
      );
      expect(row).toMatchObject({
        expected: n,
        confirmed: n,
        platform_size: n,
        divergence: { state: 'in_band', divergent: false, baseline: { ratio: 1, from: 'learned' } },
      });

      // Paused or not, as a worker left it.
      const { config } = loadConfig(shop.config);
      expect(cli(['pause', '--destination', 'local', '--wait'], shop.dir).code).toBe(0);
      expect((await audienceHealth(redis, shop.queuePrefix, config, 'local', 'Champions')).paused).toBe(true);
      expect(cli(['resume', '--destination', 'local', '--wait'], shop.dir).code).toBe(0);
      const all = await destinationHealth(redis, shop.queuePrefix, config);
      expect(all.map((h) => [h.audience, h.paused, h.expected])).toEqual([
        ['Champions', false, n],
        ['Slipping', false, shop.expected.get('At Risk')],
      ]);

      // `schedules` follows a changed interval: one scheduler, on the new pattern (workers stopped first:
      // their own periodic check would apply it too).
      await Promise.all(
        workers.map((w) => new Promise((resolve) => (w.once('exit', resolve), w.kill('SIGTERM')))),
      );
      shop.write('health: { stats_minutes: 15 }\nschedules: [{ destination: local, cron: "0 3 * * *" }]');
      const applied = cli(['schedules', '--json'], shop.dir);
      expect(applied.code, applied.stderr).toBe(0);
      expect(JSON.parse(applied.stdout).stats).toEqual({
        added: [statsScheduleId('local')],
        kept: [],
        removed: [],
      });
      expect((await admin.getJobSchedulers(0, -1)).map((s) => s.pattern)).toEqual(['*/15 * * * *']);
      // The next scheduled run of the audience: 03:00 UTC next, counted by hand.
      const next = new Date();
      next.setUTCHours(3, 0, 0, 0);
      if (next.getTime() <= Date.now()) next.setUTCDate(next.getUTCDate() + 1);
      const scheduledHealth = await audienceHealth(
        redis,
        shop.queuePrefix,
        loadConfig(shop.config).config,
        'local',
        'Champions',
      );
      expect(scheduledHealth.nextRun).toBe(next.toISOString());
    } finally {
      await admin.close();
    }
  });

  it('leaves the health of an audience never synced unknown, and valid', async () => {
    const shop = scoresShop(30, '  local: { type: file, path: out }');
    const { config } = loadConfig(shop.config);
    const h = await audienceHealth(redis, shop.queuePrefix, config, 'local', 'Slipping');
    expect(audienceHealthSchema.parse(JSON.parse(JSON.stringify(h)))).toEqual({
      destination: 'local',
      audience: 'Slipping',
      remoteId: null,
      paused: false,
      nextRun: null,
      segmentSize: null,
      expected: null,
      confirmed: null,
      state: null,
      platform: null,
      lastRun: null,
      divergence: {
        state: 'unknown',
        divergent: false,
        since: null,
        reading: null,
        expected: null,
        sent: null,
        platformSize: null,
        baseline: { ratio: null, from: 'none' },
        band: null,
        share: 0.2,
        processingMinutes: 0,
      },
      readings: [],
    });
  });
});
