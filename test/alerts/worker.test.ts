import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { ALERTS_CHECK_ID } from '../../jobs/alerts.js';
import { makeShop } from '../sync/harness.js';
import { killAll, run, until } from '../jobs/procs.js';
import { SECRETS } from './fixture.js';
import { httpSink } from './wire.js';

/**
 * The hooks: a worker evaluates alerts once a run's retries are over (not after an attempt that will be
 * retried), and `audience-sync sync` after its run. Meta is faked at the wire; alerts go to a local receiver.
 */
const TOKEN = 'EAAB-alerts-worker-test-token-0123456789';
const redisUrl = inject('redisUrl');
const servers: Server[] = [];
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  killAll();
  for (const s of servers) s.close();
  await Promise.all(closers.map((c) => c()));
});

async function graph() {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fake = new FakeGraph(origin, 'v25.0', '1234567890', TOKEN);
  const state = { down: false };
  server.on('request', (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const [status, answer, headers] = state.down
        ? [500, FakeGraph.error(2, 'An unexpected error has occurred. Please retry your request later.')]
        : fake.handle(req.method!, req.url!, body, req.headers);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(answer));
    });
  });
  return { origin, fake, state };
}

async function shopWithAlerts(origin: string) {
  const hook = await httpSink();
  closers.push(hook.close);
  const shop = await makeShop({ customers: 200 });
  writeFileSync(
    path.join(shop.dir, 'audience-sync.yaml'),
    `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
audiences: { per_segment: false, list: [{ name: Champions, segments: [Champions] }] }
destinations:
  meta: { type: meta, ad_account_id: "1234567890", access_token: "\${META_ACCESS_TOKEN}", endpoint: ${origin} }
sync: { redis_prefix: ${shop.prefix}, lease_seconds: 2 }
alerts:
  channels:
    - { type: webhook, url: "${hook.url}/hook", secret: "\${ALERT_WEBHOOK_SECRET}" }
`,
  );
  const env = {
    ...process.env,
    CI: 'true',
    REDIS_URL: redisUrl,
    LOG_LEVEL: 'info',
    META_ACCESS_TOKEN: TOKEN,
    ALERT_WEBHOOK_SECRET: SECRETS.ALERT_WEBHOOK_SECRET,
  };
  const queue = (name: string) => {
    const q = new Queue(name, { connection: { url: redisUrl }, prefix: `{${shop.prefix}}` });
    closers.push(() => q.close());
    return q;
  };
  const alerts = () =>
    hook.on('/hook').map((r) => JSON.parse(r.body) as { status: string; key: string; title: string });
  return { shop, env, hook, alerts, sync: queue('sync'), admin: queue('admin') };
}

describe('alerts after runs', () => {
  it('a worker alerts a run that failed for good once, and not an attempt it will retry', async () => {
    const { origin, fake, state } = await graph();
    state.down = true;
    const { shop, env, alerts, sync, admin } = await shopWithAlerts(origin);
    const worker = run(['worker'], { cwd: shop.dir, env });
    await worker.waitFor(/worker started/);
    expect((await admin.getJobSchedulers(0, -1)).map((s) => s.key)).toContain(ALERTS_CHECK_ID);

    // A temporary error: the job waits for its next attempt; the evaluation after it sends nothing.
    run(['resync', '-d', 'meta'], { cwd: shop.dir, env });
    await until('the evaluation after the first attempt', async () => {
      const done = await admin.getJobs(['completed', 'failed']);
      return done.find((j) => j.name === 'alerts' && (j.data as { after: string }).after === 'retry');
    });
    expect(await sync.getJobs(['delayed'])).toHaveLength(1);
    expect(alerts()).toEqual([]);
    for (const j of await sync.getJobs(['delayed'])) await j.remove();

    // A permanent one (an expired token): the job fails for good, and the alert names the audience.
    state.down = false;
    fake.tokenValid = false;
    run(['resync', '-d', 'meta'], { cwd: shop.dir, env });
    const [firing] = await until('the run_failed alert', () => (alerts().length > 0 ? alerts() : undefined));
    expect(firing).toMatchObject({ status: 'firing', key: 'run_failed:meta:Champions' });
    expect(firing!.title).toMatch(/access token is not valid/);
    expect(JSON.stringify(alerts())).not.toContain(TOKEN);

    // Fixed, and run again: the alert resolves.
    fake.tokenValid = true;
    run(['resync', '-d', 'meta'], { cwd: shop.dir, env });
    await until('the resolved alert', () => (alerts().length > 1 ? true : undefined), 180_000);
    expect(alerts().map((a) => `${a.status} ${a.key}`)).toEqual([
      'firing run_failed:meta:Champions',
      'resolved run_failed:meta:Champions',
    ]);
    worker.child.kill('SIGTERM');
    await worker.exited;
  });

  it('`audience-sync sync` alerts its own failed run', async () => {
    const { origin, fake } = await graph();
    fake.tokenValid = false;
    const { shop, env, alerts } = await shopWithAlerts(origin);
    const sync = run(['sync'], { cwd: shop.dir, env });
    expect(await sync.exited).not.toBe(0);
    expect(alerts().map((a) => `${a.status} ${a.key}`)).toEqual(['firing run_failed:meta:Champions']);
  });
});
