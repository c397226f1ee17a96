import { afterAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { SharedReads } from '../../jobs/shared-read.js';
import { loadConfig } from '../../src/config/load.js';
import type { Segmented } from '../../src/score/pipeline.js';
import { cli, cliEnv, expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';
import { killAll, run } from './procs.js';

afterAll(killAll);

describe("a worker's runs share one read of the source", () => {
  it('lends a read to the runs after it while the files are unchanged, and reads again once they change', async () => {
    const shop = await makeShop({ customers: 300, seed: 7, sync: 'max_removal_share: 1' });
    const worker = run(['worker'], { cwd: shop.dir, env: { ...cliEnv(), LOG_LEVEL: 'info' } });
    await worker.waitFor(/worker started/);
    let runs = 0;
    // A run asked and waited for; then its log lines, which the worker writes as the job ends.
    const resync = async (...args: string[]) => {
      const r = cli(['resync', '-d', 'local', ...args, '--wait'], shop.dir);
      expect(r.code, `${r.stderr}\nworker: ${worker.stderr()}`).toBe(0);
      await worker.waitFor(new RegExp(`("msg":"synced local"[^]*){${++runs}}`));
    };
    const lines = (pattern: RegExp) =>
      worker
        .stderr()
        .split('\n')
        .filter((line) => pattern.test(line)).length;
    // Three runs asked one after the other (two audiences, then the destination): one read.
    await resync('-a', 'RFM: Champions');
    await resync('-a', 'Slipping away');
    await resync();
    expect(lines(/read and scored the source: 300 customers/)).toBe(1);
    expect(lines(/took the source as another run read it at/)).toBe(2);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    // The export changes: the next run reads it, and the audiences follow it.
    shop.editCustomers((cells, header, r) => {
      if (r % 4 === 1) cells[header.indexOf('email')] = `moved-${r}@example.org`;
    });
    await resync();
    expect(lines(/read and scored the source/)).toBe(2);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });

  it('holds a read while runs keep taking it, each within reuse_read_seconds of the one before', async () => {
    const shop = await makeShop({ customers: 20, seed: 8, sync: 'reuse_read_seconds: 60' });
    const { config, dir } = loadConfig(shop.config);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    onTestFinished(() => void vi.useRealTimers());
    vi.setSystemTime(new Date('2026-12-04T12:00:00Z'));
    const reads = new SharedReads();
    let n = 0;
    // What the read gives is passed on as it is: any value does.
    const read = () => Promise.resolve({ n: ++n } as unknown as Segmented);
    const take = async () => (await reads.get(config, dir, read)).reused;
    expect(await take()).toBe(false);
    // A queue of runs, 50 s apart: the third starts 100 s after the read, 50 s after the run before it.
    await vi.advanceTimersByTimeAsync(50_000);
    expect(await take()).toBe(true);
    await vi.advanceTimersByTimeAsync(50_000);
    expect(await take()).toBe(true);
    // None for 61 s: let go, and read again.
    await vi.advanceTimersByTimeAsync(61_000);
    expect(await take()).toBe(false);
    expect(n).toBe(2);
  });

  it('makes what the runs do once again when it failed, and keeps it when it did not', async () => {
    const shop = await makeShop({ customers: 20, seed: 9 });
    const { config, dir } = loadConfig(shop.config);
    const reads = new SharedReads();
    const read = () => Promise.resolve({} as unknown as Segmented);
    const first = await reads.get(config, dir, read);
    const second = await reads.get(config, dir, read);
    expect(second.reused).toBe(true);
    let made = 0;
    const outcome = (status: string) => () => Promise.resolve({ status, n: ++made });
    const keep = (o: { status: string }) => o.status !== 'failed';
    // Two runs ask at once: one makes it, both get it; it failed, so the next run makes it again.
    const [a, b] = await Promise.all([
      first.once('snapshot', outcome('failed'), keep),
      second.once('snapshot', outcome('failed'), keep),
    ]);
    expect(a).toBe(b);
    expect(made).toBe(1);
    expect(await second.once('snapshot', outcome('recorded'), keep)).toEqual({ status: 'recorded', n: 2 });
    // Recorded: kept for every later run.
    expect(await first.once('snapshot', outcome('recorded'), keep)).toEqual({ status: 'recorded', n: 2 });
    expect(made).toBe(2);
    // An error is not kept either.
    await expect(first.once('other', () => Promise.reject(new Error('Redis gone')))).rejects.toThrow(
      'Redis gone',
    );
    expect(await first.once('other', () => Promise.resolve('made'))).toBe('made');
  });
});
