import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import {
  errorSchema,
  movementSampleSchema,
  segmentSampleSchema,
  segmentsSchema,
  snapshotsSchema,
} from '../../src/api/schemas.js';
import { movementSchema } from '../../src/history/snapshots.js';
import { readCsv } from '../helpers.js';
import { killAll, run } from '../jobs/procs.js';
import { Client, makeSetup, OpenApi, serve, TOKENS } from './harness.js';

/**
 * Segments, snapshots and movement through the API, against counts made here from the `score` output files
 * of two analysis dates (not from the history code).
 */

let setup: Awaited<ReturnType<typeof makeSetup>>;
let client: Client;
let server: Awaited<ReturnType<typeof serve>>;
let openapi: OpenApi;
const viewer = { token: TOKENS.viewer };
const DATES = ['2025-12-01', '2026-01-01'] as const;
/** customer id → segment, per date, from the score files. */
const scored = new Map<string, Map<string, string>>();

beforeAll(async () => {
  setup = await makeSetup({ customers: 400 });
  for (const date of DATES) {
    const out = path.join(setup.dir, `scores-${date}.csv`);
    const p = run(['score', '--analysis-date', date, '--out', out], {
      cwd: setup.dir,
      env: { ...process.env, REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'warn' },
    });
    expect(await p.exited, p.stderr()).toBe(0);
    scored.set(date, new Map(readCsv(readFileSync(out, 'utf8')).map((r) => [r.customer_id!, r.segment!])));
  }
  server = await serve(['serve', '--port', '0'], setup.dir, inject('redisUrl'));
  client = new Client(server.url);
  openapi = new OpenApi((await client.call('GET', '/api/v1/openapi.json', viewer)).json as never);
});

afterAll(() => killAll());

const countBy = (values: Iterable<string>) => {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
};

it('lists segments with their definition, size, share, action and trend', async () => {
  const body = openapi.check(await client.call('GET', '/api/v1/segments', viewer), segmentsSchema);
  const latest = scored.get(DATES[1])!;
  const sizes = countBy(latest.values());
  expect(body.date).toBe(DATES[1]);
  expect(body.customers).toBe(latest.size);
  expect(body.trend_dates).toEqual([...DATES]);
  expect(body.segments.map((s) => s.name)).toHaveLength(11);
  for (const s of body.segments) {
    expect(s.customers, s.name).toBe(sizes.get(s.name) ?? 0);
    expect(s.share).toBeCloseTo((sizes.get(s.name) ?? 0) / latest.size, 10);
    expect(s.trend).toEqual(DATES.map((d) => countBy(scored.get(d)!.values()).get(s.name) ?? 0));
  }
  // The default map, by hand: Champions are 555, 554, 544, 545, 454, 455, 445.
  const champions = body.segments.find((s) => s.name === 'Champions')!;
  expect(champions.definition).toEqual({
    codes: [445, 454, 455, 544, 545, 554, 555],
    recency: [4, 5],
    frequency: [4, 5],
    monetary: [4, 5],
  });
  expect(champions.action).toMatch(/reward/);
});

it('lists segments as of an earlier snapshot: the last on or before `to`, its trend ending there', async () => {
  const early = countBy(scored.get(DATES[0])!.values());
  for (const to of [DATES[0], '2025-12-31']) {
    const body = openapi.check(await client.call('GET', `/api/v1/segments?to=${to}`, viewer), segmentsSchema);
    expect(body.date, to).toBe(DATES[0]);
    expect(body.customers).toBe(scored.get(DATES[0])!.size);
    expect(body.trend_dates).toEqual([DATES[0]]);
    for (const s of body.segments) {
      expect(s.customers, s.name).toBe(early.get(s.name) ?? 0);
      expect(s.trend).toEqual([early.get(s.name) ?? 0]);
    }
  }
  const before = await client.call('GET', '/api/v1/segments?to=2025-11-30', viewer);
  expect(before.status).toBe(404);
  expect(openapi.check(before, errorSchema).message).toBe('no snapshot on or before 2025-11-30');
  const bad = await client.call('GET', '/api/v1/segments?to=last-week', viewer);
  expect(bad.status).toBe(400);
  expect(openapi.check(bad, errorSchema).message).toMatch(/to: expected a date as YYYY-MM-DD/);
});

it('pages snapshots with cursors, and counts movement between them like a join of the two score files', async () => {
  const first = openapi.check(await client.call('GET', '/api/v1/snapshots?limit=1', viewer), snapshotsSchema);
  expect(first.snapshots.map((s) => s.date)).toEqual([DATES[0]]);
  expect(first.next_cursor).not.toBeNull();
  const second = openapi.check(
    await client.call('GET', `/api/v1/snapshots?limit=1&cursor=${first.next_cursor}`, viewer),
    snapshotsSchema,
  );
  expect(second.snapshots.map((s) => s.date)).toEqual([DATES[1]]);
  expect(second.next_cursor).toBeNull();
  const ranged = openapi.check(
    await client.call('GET', `/api/v1/snapshots?from=${DATES[1]}&to=${DATES[1]}`, viewer),
    snapshotsSchema,
  );
  expect(ranged.snapshots).toHaveLength(1);

  const [before, after] = DATES.map((d) => scored.get(d)!);
  const expected = countBy(
    [...new Set([...before!.keys(), ...after!.keys()])].map(
      (id) => `${before!.get(id) ?? 'new'} -> ${after!.get(id) ?? 'gone'}`,
    ),
  );
  for (const query of ['', `?from=${DATES[0]}&to=${DATES[1]}`]) {
    const movement = openapi.check(
      await client.call('GET', `/api/v1/movement${query}`, viewer),
      movementSchema,
    );
    expect(movement).toMatchObject({ from: DATES[0], to: DATES[1], exact: true });
    expect(movement.steps).toHaveLength(1);
    const cells = new Map(movement.steps![0]!.cells.map((c) => [`${c.from} -> ${c.to}`, c.customers]));
    expect(cells).toEqual(expected);
  }

  const missing = openapi.check(
    await client.call('GET', `/api/v1/movement?from=2025-11-01&to=${DATES[1]}`, viewer),
    movementSchema,
  );
  expect(missing).toMatchObject({ exact: false });
  expect(missing.reason).toMatch(/no snapshot for 2025-11-01/);
  expect(missing.steps).toBeUndefined();

  for (const bad of ['?from=yesterday', '?to=2026-02-31', '?limit=9']) {
    const r = await client.call('GET', `/api/v1/movement${bad}`, viewer);
    expect(r.status, bad).toBe(400);
    expect(openapi.check(r, errorSchema).message).toMatch(bad.includes('limit') ? /limit/ : /date/);
  }
  // Counts only: no customer id anywhere.
  const ids = [...after!.keys()];
  for (const s of client.seen)
    for (const id of ids) expect(s.text.includes(id), `${s.path} carries ${id}`).toBe(false);
});

it('gives operators, and only them, up to 20 customer ids of a segment in the latest snapshot', async () => {
  // A client of its own: the test above checks that no other answer carries a customer id.
  const ops = new Client(server.url);
  const latest = scored.get(DATES[1])!;
  for (const segment of ['Champions', 'Lost', "Can't Lose Them"]) {
    const r = await ops.call('GET', `/api/v1/segments/${encodeURIComponent(segment)}/sample`, {
      token: TOKENS.operator,
    });
    const body = openapi.check(r, segmentSampleSchema);
    expect(body).toMatchObject({ segment, date: DATES[1] });
    const members = [...latest].filter(([, s]) => s === segment).map(([id]) => id);
    expect(body.customer_ids).toHaveLength(Math.min(20, members.length));
    expect(body.customer_ids.length).toBeGreaterThan(0);
    for (const id of body.customer_ids) expect(latest.get(id), id).toBe(segment);
  }
  expect((await ops.call('GET', '/api/v1/segments/Champions/sample', viewer)).status).toBe(403);
  const unknown = await ops.call('GET', '/api/v1/segments/Champs/sample', { token: TOKENS.operator });
  expect(unknown.status).toBe(404);
  expect(openapi.check(unknown, errorSchema).message).toMatch(/no segment named 'Champs'/);
});

it('gives operators up to 20 customer ids of a movement cell of the latest snapshot', async () => {
  const ops = new Client(server.url);
  const before = scored.get(DATES[0])!;
  const latest = scored.get(DATES[1])!;
  // The cells, by a join of the two scorings by customer id.
  const cells = new Map<string, string[]>();
  for (const [id, to] of latest) {
    const cell = `${before.get(id) ?? 'new'}\t${to}`;
    cells.set(cell, [...(cells.get(cell) ?? []), id]);
  }
  const largest = [...cells].sort((a, b) => b[1].length - a[1].length).slice(0, 3);
  const arrived = [...cells].find(([cell]) => cell.startsWith('new\t'));
  for (const [cell, members] of arrived ? [...largest, arrived] : largest) {
    const [from, to] = cell.split('\t') as [string, string];
    const r = await ops.call(
      'GET',
      `/api/v1/movement/sample?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
      { token: TOKENS.operator },
    );
    const body = openapi.check(r, movementSampleSchema);
    expect(body).toMatchObject({ date: DATES[1], since: DATES[0], from, to });
    expect(new Set(body.customer_ids).size, cell).toBe(Math.min(20, members.length));
    for (const id of body.customer_ids) expect(members, cell).toContain(id);
  }
  const path = '/api/v1/movement/sample?from=Champions&to=Lost';
  expect((await ops.call('GET', path, viewer)).status).toBe(403);
  const gone = await ops.call('GET', '/api/v1/movement/sample?from=Champions&to=gone', {
    token: TOKENS.operator,
  });
  expect(gone.status).toBe(400);
  expect(openapi.check(gone, errorSchema).message).toMatch(/no ids kept/);
  const unknown = await ops.call('GET', '/api/v1/movement/sample?from=Champs&to=Lost', {
    token: TOKENS.operator,
  });
  expect(unknown.status).toBe(404);
  expect(openapi.check(unknown, errorSchema).message).toMatch(/no segment named 'Champs'/);
});
