import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { expectedAudiences, fileAudiences, makeShop } from './harness.js';

/** Identifying in worker threads (the built CLI) gives exactly what identifying inline gives. */
const BIN = path.resolve('dist/app/cli/bin.js');

function sync(cwd: string, threads: boolean) {
  const r = spawnSync(process.execPath, [BIN, 'sync', '--json'], {
    cwd,
    env: {
      ...process.env,
      CI: 'true',
      REDIS_URL: inject('redisUrl'),
      AUDIENCE_SYNC_THREADS: threads ? '3' : '0',
      AUDIENCE_SYNC_THREADS_FROM: '1',
    },
    encoding: 'utf8',
  });
  expect([0, 3], r.stderr).toContain(r.status);
  return JSON.parse(r.stdout) as {
    results: { audience: string; added: number; removed: number; skipped: object }[];
  };
}

describe('identify in worker threads', () => {
  it('syncs the same members as inline identification, first run and after changes', async () => {
    const threaded = await makeShop({ seed: 5, sync: 'max_removal_share: 1' });
    const inline = await makeShop({ seed: 5, sync: 'max_removal_share: 1' });
    const a = sync(threaded.dir, true);
    const b = sync(inline.dir, false);
    const summary = (x: typeof a) => x.results.map((r) => [r.audience, r.added, r.removed, r.skipped]);
    expect(summary(a)).toEqual(summary(b));
    expect(fileAudiences(threaded.out)).toEqual(await expectedAudiences(threaded.config));

    // Some customers change email, some opt out.
    for (const shop of [threaded, inline])
      shop.editCustomers((cells, header, r) => {
        if (r >= 60) return;
        if (r % 2) cells[header.indexOf('email')] = `changed-${r}@example.org`;
        else cells[header.indexOf('opted_out')] = 'true';
      });
    const c = sync(threaded.dir, true);
    const d = sync(inline.dir, false);
    expect(summary(c)).toEqual(summary(d));
    expect(
      c.results.some((r) => r.removed > 0),
      JSON.stringify(summary(c)),
    ).toBe(true);
    expect(fileAudiences(threaded.out)).toEqual(await expectedAudiences(threaded.config));
  });
});
