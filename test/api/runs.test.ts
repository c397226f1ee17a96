import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { errorSchema, recentRunsSchema } from '../../src/api/schemas.js';
import { killAll } from '../jobs/procs.js';
import { Client, makeSetup, OpenApi, serve, TOKENS } from './harness.js';

/**
 * GET /api/v1/runs: the runs of every audience merged newest first, paged with cursors, against run records
 * this test wrote into Redis itself (the history lists, newest at the head, as the worker keeps them).
 */

let setup: Awaited<ReturnType<typeof makeSetup>>;
let client: Client;
let openapi: OpenApi;
let redis: Redis;
const viewer = { token: TOKENS.viewer };

interface Written {
  destination: string;
  audience: string;
  run: string;
  at: string;
  failed: boolean;
}
const written: Written[] = [];

beforeAll(async () => {
  setup = await makeSetup({ customers: 50 });
  redis = new Redis(inject('redisUrl'));
  // Three audiences, runs at interleaved times; two runs start at the same instant; some fail.
  const plan: [string, number, boolean][] = [
    ['RFM: Champions', 1, false],
    ['RFM: Lost', 2, true],
    ['RFM: Champions', 3, false],
    ['RFM: At Risk', 3, false],
    ['RFM: Lost', 4, false],
    ['RFM: At Risk', 5, true],
    ['RFM: Champions', 6, false],
  ];
  for (const [audience, minute, failed] of plan) {
    const at = new Date(Date.UTC(2026, 0, 1, 3, minute)).toISOString();
    const w = { destination: 'local', audience, run: `${minute}`, at, failed };
    written.push(w);
    const record = {
      destination: 'local',
      audience,
      run: w.run,
      at,
      full: false,
      reason: 'schedule',
      outcome: failed ? 'failed' : 'completed',
      added: minute,
      removed: 0,
      rejected: 0,
      rejectedReasons: {},
      failed: 0,
      inFlight: 0,
      durationMs: 10,
      ...(failed ? { error: `failed at minute ${minute}` } : { segmentSize: 5, members: 5, unchanged: 0 }),
    };
    // The key as Redis Cluster needs it: the prefix in braces (one hash slot).
    await redis.lpush(`{${setup.prefix}}:history:local:${audience}`, JSON.stringify(record));
  }
  const server = await serve(['serve', '--port', '0'], setup.dir, inject('redisUrl'));
  client = new Client(server.url);
  const doc = await client.call('GET', '/api/v1/openapi.json', viewer);
  openapi = new OpenApi(doc.json as ConstructorParameters<typeof OpenApi>[0]);
});

afterAll(async () => {
  redis?.disconnect();
  killAll();
});

/** Newest first; at the same instant, by run id (descending), then destination and audience. */
const expectedOrder = (runs: Written[]) =>
  [...runs].sort((a, b) =>
    a.at !== b.at
      ? b.at.localeCompare(a.at)
      : a.run !== b.run
        ? b.run.localeCompare(a.run)
        : `${a.destination}\u0000${a.audience}`.localeCompare(`${b.destination}\u0000${b.audience}`),
  );

async function all(query: string, limit: number) {
  const seen: { destination: string; audience: string; run: string; at: string; failed: boolean }[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await client.call(
      'GET',
      `/api/v1/runs?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
      viewer,
    );
    expect(r.status, r.text).toBe(200);
    const page = openapi.check(r, recentRunsSchema);
    expect(page.runs.length).toBeLessThanOrEqual(limit);
    seen.push(
      ...page.runs.map((x) => ({
        destination: x.destination,
        audience: x.audience,
        run: x.run,
        at: x.at,
        failed: x.outcome === 'failed',
      })),
    );
    cursor = page.next_cursor;
    pages++;
  } while (cursor);
  return { seen, pages };
}

it('merges every audience’s runs newest first, a page at a time', async () => {
  const { seen, pages } = await all('status=all', 2);
  expect(seen).toEqual(expectedOrder(written));
  expect(pages).toBe(Math.ceil(written.length / 2));
});

it('keeps only the failed runs when asked, with their errors', async () => {
  const { seen } = await all('status=failed', 1);
  expect(seen).toEqual(expectedOrder(written.filter((w) => w.failed)));
  const r = openapi.check(await client.call('GET', '/api/v1/runs?status=failed', viewer), recentRunsSchema);
  expect(r.runs.map((x) => x.error)).toEqual(['failed at minute 5', 'failed at minute 2']);
  expect(r.runs.every((x) => x.members === null)).toBe(true);
});

it('says what is wrong with a bad status, limit or cursor, and asks for a login', async () => {
  for (const [query, says] of [
    ['status=broken', 'querystring.status'],
    ['limit=0', 'expected a whole number from 1 to 200'],
    ['cursor=nonsense', 'cursor: not a cursor this API gave'],
  ] as const) {
    const r = await client.call('GET', `/api/v1/runs?${query}`, viewer);
    expect(r.status, query).toBe(400);
    expect(openapi.check(r, errorSchema).message).toContain(says);
  }
  expect((await client.call('GET', '/api/v1/runs')).status).toBe(401);
});
