import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { keys, queuePrefix } from '../../jobs/queues.js';
import { metaShop, onPlatform, platform, stopAll } from './meta-platform.js';
import { killAll, run } from './procs.js';

/**
 * Worker processes against a platform served over real HTTP (the Meta fake behind a local server): a
 * 429 with Retry-After in the middle of a run, and runs of different audiences side by side while runs
 * of one audience never overlap.
 */
afterAll(() => {
  stopAll();
  killAll();
  nock.cleanAll();
});

describe('workers against a platform over HTTP', () => {
  it('a 429 with Retry-After mid-run, two requests in flight: the run waits, finishes, and re-sends no acknowledged batch', async () => {
    const { origin, fake, most } = await platform();
    const { worker, cli, expected } = await metaShop(origin, 2);
    let adds = 0;
    fake.failNext(
      (r) => r.method === 'POST' && r.path.endsWith('/users') && ++adds === 4,
      429,
      FakeGraph.error(80003, 'There have been too many calls to this ad account'),
      { 'retry-after': '1' },
    );
    worker();
    const run = await cli(['resync', '--destination', 'meta', '--wait']);
    expect(run.code, run.out).toBe(0);
    expect(onPlatform(fake)).toEqual(await expected());

    // Every row went up in exactly one accepted request: the throttled batch once more, nothing else.
    const posts = fake.edge('users', 'POST');
    const rows = posts.map((r) => JSON.stringify((r.body as { payload: { data: unknown[] } }).payload.data));
    expect(posts.length).toBe(new Set(rows).size + 1);
    expect(rows.filter((r, i) => rows.indexOf(r) !== i)).toHaveLength(1);
    // Batches of one audience overlapped, never more than requests_in_flight of them.
    const peaks = [...most].filter(([id]) => /^\d+$/.test(id)).map(([, n]) => n);
    expect(Math.max(...peaks)).toBe(2);
  });

  it('two workers: one audience never runs twice at once; another audience does not wait for it', async () => {
    const { origin, fake, most } = await platform();
    const { shop, worker, cli, expected } = await metaShop(origin);
    worker();
    worker();
    const first = await cli(['resync', '--destination', 'meta', '--wait']);
    expect(first.code, first.out).toBe(0);
    const audiences = [...fake.audiences.values()].map((a) => a.name);
    // Each audience asked for twice at once, from both workers' point of view.
    const runs = await Promise.all(
      audiences
        .slice(0, 3)
        .flatMap((a) => [
          cli(['resync', '--destination', 'meta', '--audience', a, '--full', '--wait']),
          cli(['resync', '--destination', 'meta', '--audience', a, '--full', '--wait']),
        ]),
    );
    for (const r of runs) expect(r.code, r.out).toBe(0);

    // A run holding one audience does not hold up another audience of the same destination.
    const redis = new Redis(inject('redisUrl'));
    const held = keys.lease(queuePrefix(shop.prefix), 'meta', audiences[0]!);
    await redis.set(held, 'another run', 'PX', 120_000);
    const other = await cli(['resync', '--destination', 'meta', '--audience', audiences[1]!, '--wait']);
    expect(other.code, other.out).toBe(0);
    expect(await redis.get(held)).toBe('another run');
    await redis.del(held);
    redis.disconnect();
    for (const [id, n] of most)
      if (/^\d+$/.test(id)) expect(n, `requests in flight at once to audience ${id}`).toBe(1);
    expect(onPlatform(fake)).toEqual(await expected());
  });

  it("one worker without room for two identity tables: a second audience's run waits for the first to end", async () => {
    const { origin, fake, hold } = await platform();
    const { shop, env, cli, expected } = await metaShop(origin);
    const config = path.join(shop.dir, 'audience-sync.yaml');
    writeFileSync(
      config,
      readFileSync(config, 'utf8').replace('lease_seconds: 2 }', 'lease_seconds: 2, table_memory_mb: 0 }'),
    );
    // Two jobs at once (the default), so that only the budget keeps the runs apart.
    const worker = run(['worker'], { cwd: shop.dir, env: { ...env, LOG_LEVEL: 'info' } });
    await worker.waitFor(/worker started/);
    const first = await cli(['resync', '--destination', 'meta', '--wait']);
    expect(first.code, first.out).toBe(0);
    const [a, b] = [...fake.audiences.values()].filter((x) => x.identifiers.size > 0);
    const posts = (id: string) =>
      fake.requests.flatMap((r, at) => (r.method === 'POST' && r.path.includes(`/${id}/`) ? [at] : []));
    const before = fake.requests.length;
    // A's first upload is held: its run holds its table meanwhile.
    const gate = hold((method, url) => method === 'POST' && url.includes(`/${a!.id}/`));
    const runA = cli(['resync', '--destination', 'meta', '--audience', a!.name, '--full', '--wait']);
    await gate.reached;
    const runB = cli(['resync', '--destination', 'meta', '--audience', b!.name, '--full', '--wait']);
    const named = b!.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await worker.waitFor(new RegExp(`'${named}' on meta waits for memory`));
    gate.release();
    for (const r of await Promise.all([runA, runB])) expect(r.code, r.out).toBe(0);
    // Every upload of B's run came after the last of A's.
    const ofA = posts(a!.id).filter((at) => at >= before);
    const ofB = posts(b!.id).filter((at) => at >= before);
    expect(ofA.length).toBeGreaterThan(0);
    expect(ofB.length).toBeGreaterThan(0);
    expect(Math.min(...ofB)).toBeGreaterThan(Math.max(...ofA));
    expect(onPlatform(fake)).toEqual(await expected());
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });
});
