/**
 * The end-to-end aim with Meta's five keys (EMAIL, PHONE, FN, LN, COUNTRY): customers per second
 * from the source file to the platform — read the scores, put customers into the 11 segments, identify,
 * diff against the (empty) state and send every `/users` request to a wire-level fake of the Graph API in
 * another process (its work is not ours: it only counts rows). Yardstick: one thread of
 * crypto.hash('sha256') over exactly the normalised strings sent.
 * `node dist/bench/meta.js <scores.csv> <redisUrl>`; prints a JSON line (`BENCH_IN_FLIGHT=N`: Meta's
 * `requests_in_flight`, default 2). `node dist/bench/meta.js serve` is the fake.
 */
import { fork } from 'node:child_process';
import { hash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { connectors, identifyThread } from '../connectors/index.js';
import {
  normalizeCountry,
  normalizeEmail,
  normalizeName,
  normalizePhone,
} from '../src/identify/normalize.js';
import { createLogger } from '../src/log.js';
import { StateStore } from '../src/record/store.js';
import { prepareSync, syncPrepared } from '../src/sync/prepare.js';
import { redisCpu } from './util.js';

const TOKEN = 'EAAB-bench-token-0123456789';
const ACCOUNT = '1234567890';

if (process.argv[2] === 'serve') await serve();
else await measure(process.argv[2]!, process.argv[3]!);

/**
 * The fake: audiences and account calls by FakeGraph; `/users` rows counted, not kept. FakeGraph's module
 * is loaded here only: it imports nock, and nock, once loaded, intercepts every `fetch` of its process
 * (the measuring process would time nock's copy of each body).
 */
async function serve(): Promise<void> {
  const { FakeGraph } = await import('../connectors/meta/fixtures/fake-graph.js');
  const server = createServer();
  server.listen(0, '127.0.0.1', () => {
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const fake = new FakeGraph(origin, 'v25.0', ACCOUNT, TOKEN);
    let requests = 0;
    let rows = 0;
    server.on('request', (req, res) => {
      const answer = (status: number, body: unknown, headers?: Record<string, string>) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'POST' && req.url!.split('?')[0]!.endsWith('/users')) {
        // Rows counted as the body arrives, without keeping it or parsing 3.5 MB of JSON per request (a
        // real platform's work is not on our machine): every row, like the schema, is an array of strings,
        // so each opens with `["` (a pair split between two chunks is counted too).
        const head: Buffer[] = [];
        let headBytes = 0;
        let count = -1;
        let lastByte = 0;
        req.on('data', (d: Buffer) => {
          if (headBytes < 22) {
            head.push(d.subarray(0, 22 - headBytes));
            headBytes += Math.min(d.length, 22 - headBytes);
          }
          if (lastByte === 0x5b && d[0] === 0x22) count++;
          for (let at = d.indexOf('["'); at >= 0; at = d.indexOf('["', at + 2)) count++;
          lastByte = d[d.length - 1]!;
        });
        req.on('end', () => {
          if (!Buffer.concat(head).equals(Buffer.from('{"payload":{"schema":[')))
            throw new Error('fake Graph: not a /users payload');
          requests++;
          rows += count;
          answer(200, {
            audience_id: req.url!.split('/')[2],
            num_received: count,
            num_invalid_entries: 0,
          });
        });
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        answer(...fake.handle(req.method!, req.url!, Buffer.concat(chunks).toString(), req.headers));
      });
    });
    process.send!({ origin });
    process.on('message', () => {
      const cpu = process.cpuUsage();
      process.send!({ requests, rows, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
    });
    // The measuring process is gone (it finished, or died mid-run): so is the fake.
    process.on('disconnect', () => process.exit(0));
  });
}

async function measure(scores: string, redisUrl: string): Promise<void> {
  const fake = fork(fileURLToPath(import.meta.url), ['serve'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = () => new Promise<Record<string, unknown>>((resolve) => fake.once('message', resolve));
  const { origin } = (await ask()) as { origin: string };
  const dir = path.dirname(scores);
  const config = path.join(dir, 'meta.yaml');
  process.env.BENCH_META_TOKEN = TOKEN;
  writeFileSync(
    config,
    `source: { type: csv, path: ${path.basename(scores)} }
scoring: { analysis_date: "2026-01-01" }
destinations:
  meta:
    type: meta
    ad_account_id: "${ACCOUNT}"
    access_token: "\${BENCH_META_TOKEN}"
    endpoint: ${origin}
    schema: [EMAIL, PHONE, FN, LN, COUNTRY]
    requests_in_flight: ${process.env.BENCH_IN_FLIGHT ?? 2}
sync: { redis_prefix: bench-meta-${process.pid} }
`,
  );
  const redis = new Redis(redisUrl);
  const store = new StateStore(redis, `bench-meta-${process.pid}`);
  const log = createLogger({ level: 'silent', json: true });

  const redisCpuBefore = redisCpu(await redis.info('cpu'));
  const planned: number[] = [];
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const prepared = await prepareSync(config, connectors, { destination: 'meta' });
  const readSeconds = (performance.now() - started) / 1000;
  const results = await syncPrepared(prepared, {
    store,
    log,
    threads: identifyThread,
    onPlan: () => planned.push(performance.now()),
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  let planSeconds = 0;
  let from = started + readSeconds * 1000;
  results.forEach((r, k) => {
    planSeconds += (planned[k]! - from) / 1000;
    from += r.durationMs;
  });
  const maxRssMb = process.resourceUsage().maxRSS / 1024;
  fake.send('count');
  const sent = (await ask()) as { requests: number; rows: number; cpuSeconds: number };
  const redisCpuSeconds = redisCpu(await redis.info('cpu')) - redisCpuBefore;
  fake.kill();

  // Yardstick: the normalised strings of what was sent (every identifiable customer), hashed on one thread.
  const { customers } = prepared.segmented;
  let yardstickSeconds = 0;
  let strings = 0;
  let sink = 0;
  for (let from = 0; from < customers.ids.length; from += 100_000) {
    const batch: string[] = [];
    for (let i = from; i < Math.min(customers.ids.length, from + 100_000); i++) {
      if (customers.optedOut[i]) continue;
      const get = (field: 'email' | 'phone' | 'first_name' | 'last_name' | 'country') =>
        customers.profile[field]?.get(i);
      const country = normalizeCountry(get('country') ?? '');
      for (const v of [
        normalizeEmail(get('email') ?? ''),
        normalizePhone(get('phone') ?? '', country)?.slice(1),
        normalizeName(get('first_name') ?? ''),
        normalizeName(get('last_name') ?? ''),
        country?.toLowerCase(),
      ])
        if (v) batch.push(v);
    }
    const t = performance.now();
    // As the issue defines it: crypto.hash('sha256', s), a hex digest.
    for (const s of batch) sink ^= hash('sha256', s).charCodeAt(0);
    yardstickSeconds += (performance.now() - t) / 1000;
    strings += batch.length;
  }

  const keys = await redis.keys(`bench-meta-${process.pid}:*`);
  for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
  redis.disconnect();
  process.stdout.write(
    JSON.stringify({
      customers: customers.ids.length,
      added: results.reduce((a, r) => a + r.added, 0),
      errors: results.filter((r) => r.error).map((r) => r.error),
      requests: sent.requests,
      rowsSent: sent.rows,
      strings,
      readSeconds,
      seconds,
      // Per audience, identify + diff until its plan is ready, then push and state until its run ends.
      planSeconds,
      pushSeconds: seconds - readSeconds - planSeconds,
      yardstickSeconds,
      // CPU of this process (every thread) from reading to the end: steadier than seconds on a busy machine.
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      maxRssMb,
      // The other processes on the same cores: the fake platform (all its life) and Redis (the run).
      fakeCpuSeconds: sent.cpuSeconds,
      redisCpuSeconds,
      sink,
    }) + '\n',
  );
}
