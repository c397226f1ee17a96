import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { FakeGraph, rowIdentifiers } from '../../connectors/meta/fixtures/fake-graph.js';
import { toRow } from '../../connectors/meta/identifiers.js';
import { metaConnector } from '../../connectors/meta/index.js';
import type { MetaConfig } from '../../connectors/meta/config.js';
import { prepareSync } from '../../src/sync/prepare.js';
import { keys, queuePrefix } from '../../jobs/queues.js';
import { identifiedMembers, makeShop } from '../sync/harness.js';

/**
 * Worker processes against a platform served over real HTTP (the Meta fake behind a local server): a
 * 429 with Retry-After in the middle of a run, and runs of different audiences side by side while runs
 * of one audience never overlap.
 */
const BIN = path.resolve('dist/app/cli/bin.js');
const TOKEN = 'EAAB-worker-token-0123456789';
process.env.META_ACCESS_TOKEN = TOKEN;
const children: ChildProcess[] = [];
const servers: Server[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const s of servers) s.close();
  nock.cleanAll();
});

async function platform() {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fake = new FakeGraph(origin, 'v25.0', '1234567890', TOKEN);
  // Per audience id, requests in flight now and at most.
  const inFlight = new Map<string, number>();
  const most = new Map<string, number>();
  let overall = 0;
  let mostOverall = 0;
  server.on('request', (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const audience = new URL(req.url!, origin).pathname.split('/')[2] ?? '';
      inFlight.set(audience, (inFlight.get(audience) ?? 0) + 1);
      most.set(audience, Math.max(most.get(audience) ?? 0, inFlight.get(audience)!));
      mostOverall = Math.max(mostOverall, ++overall);
      const [status, answer, headers] = fake.handle(req.method!, req.url!, body, req.headers);
      // A little latency, so that overlapping runs would show.
      setTimeout(() => {
        inFlight.set(audience, inFlight.get(audience)! - 1);
        overall--;
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(answer));
      }, 15);
    });
  });
  return { origin, fake, most, mostOverall: () => mostOverall };
}

async function metaShop(origin: string, inFlight = 1) {
  const shop = await makeShop({ customers: 600, sync: 'max_removal_share: 1' });
  const config = path.join(shop.dir, 'audience-sync.yaml');
  writeFileSync(
    config,
    `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
destinations:
  meta:
    type: meta
    ad_account_id: "1234567890"
    access_token: \${META_ACCESS_TOKEN}
    endpoint: ${origin}
    batch_size: 20
    requests_in_flight: ${inFlight}
    throttle_wait_seconds: 1
sync: { redis_prefix: ${shop.prefix}, lease_seconds: 2 }
`,
  );
  const env = {
    ...process.env,
    CI: 'true',
    REDIS_URL: inject('redisUrl'),
    LOG_LEVEL: 'warn',
    META_ACCESS_TOKEN: TOKEN,
  };
  const worker = () => {
    const child = spawn(process.execPath, [BIN, 'worker'], { cwd: shop.dir, env, stdio: 'ignore' });
    children.push(child);
    return child;
  };
  const cli = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: shop.dir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => resolve({ code, out }));
    });
  const expected = async () => {
    const prepared = await prepareSync(config, {
      meta: metaConnector,
    });
    const meta = prepared.destinations[0]!.config as MetaConfig;
    const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
      metaConnector.identify(person, meta),
    );
    return new Map(
      [...members]
        .filter(([, byId]) => byId.size > 0)
        .map(([name, byId]) => [
          name,
          new Set(
            [...byId.values()].flatMap((slots) => rowIdentifiers(meta.schema, toRow(slots, meta.schema))),
          ),
        ]),
    );
  };
  return { shop, worker, cli, expected };
}

const onPlatform = (fake: FakeGraph) =>
  new Map(
    [...fake.audiences.values()]
      .filter((a) => !a.deleted && a.identifiers.size > 0)
      .map((a) => [a.name, new Set(a.identifiers)]),
  );

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
});
