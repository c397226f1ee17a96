import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue, type Job } from 'bullmq';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { makeShop } from '../sync/harness.js';
import { killAll, run, until } from './procs.js';

/**
 * A permanent platform error (an expired token) fails the job at its first attempt, with the platform's
 * message; a temporary one is retried later. Meta's Graph API is faked at the wire, served over HTTP to
 * real worker processes.
 */
const TOKEN = 'EAAB-permanent-test-token-0123456789';
const redisUrl = inject('redisUrl');
const servers: Server[] = [];
const queues: Queue[] = [];
afterAll(async () => {
  killAll();
  for (const s of servers) s.close();
  await Promise.all(queues.map((q) => q.close()));
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

async function metaShop(origin: string) {
  const shop = await makeShop({ customers: 300 });
  writeFileSync(
    path.join(shop.dir, 'audience-sync.yaml'),
    `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
destinations:
  meta:
    type: meta
    ad_account_id: "1234567890"
    access_token: \${META_ACCESS_TOKEN}
    endpoint: ${origin}
    batch_size: 50
sync: { redis_prefix: ${shop.prefix}, lease_seconds: 2 }
`,
  );
  const env = {
    ...process.env,
    CI: 'true',
    REDIS_URL: redisUrl,
    LOG_LEVEL: 'info',
    META_ACCESS_TOKEN: TOKEN,
  };
  const queue = new Queue('sync', { connection: { url: redisUrl }, prefix: `{${shop.prefix}}` });
  queues.push(queue);
  return { shop, env, queue };
}

/** The sync job once its first attempt is over: failed for good, or waiting to be tried again. */
async function afterFirstAttempt(queue: Queue): Promise<{ job: Job; state: string }> {
  return until('the sync job to finish its first attempt', async () => {
    const [job] = await queue.getJobs(['failed', 'delayed', 'completed']);
    if (!job || job.attemptsMade < 1) return undefined;
    return { job, state: await job.getState() };
  });
}

describe('errors a retry cannot fix', () => {
  it('an expired token fails the job at its first attempt, with the platform message', async () => {
    const { origin, fake } = await graph();
    fake.tokenValid = false;
    const { shop, env, queue } = await metaShop(origin);
    const worker = run(['worker'], { cwd: shop.dir, env });
    await worker.waitFor(/worker started/);
    const resync = run(['resync', '-d', 'meta', '--wait'], { cwd: shop.dir, env });

    const { job, state } = await afterFirstAttempt(queue);
    expect(state).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/access token is not valid.*code 190/);
    expect(await resync.exited).toBe(1);
    expect(resync.stderr()).toMatch(/access token is not valid.*code 190/);
    expect(resync.stderr()).not.toContain(TOKEN);

    // status says so, and the failed run has no sizes.
    const status = run(['status', '--json'], { cwd: shop.dir, env });
    expect(await status.exited).toBe(0);
    const rows = JSON.parse(status.stdout()).audiences as {
      last_run: { error: string } | null;
      members: number | null;
      segment_size: number | null;
    }[];
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(r.last_run?.error).toMatch(/access token is not valid/);
      expect(r.members).toBeNull();
      expect(r.segment_size).toBeNull();
    }
  });

  it('a temporary platform error is retried later (the job backs off)', async () => {
    const { origin, state: platform } = await graph();
    platform.down = true;
    const { shop, env, queue } = await metaShop(origin);
    const worker = run(['worker'], { cwd: shop.dir, env });
    await worker.waitFor(/worker started/);
    run(['resync', '-d', 'meta', '-a', 'RFM: Champions'], { cwd: shop.dir, env });
    const { job, state } = await afterFirstAttempt(queue);
    expect(state).toBe('delayed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/temporary error on Meta's side/);
    await job.remove();
  });
});
