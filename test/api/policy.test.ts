import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { recordRun, runRecord } from '../../jobs/history.js';
import { queuePrefix } from '../../jobs/queues.js';
import { runsSchema } from '../../src/api/schemas.js';
import { audienceHealthSchema } from '../../src/health/schema.js';
import { emptyResult, type AudienceResult } from '../../src/sync/run.js';
import { killAll } from '../jobs/procs.js';
import { Client, makeSetup, OpenApi, serve, TOKENS } from './harness.js';

/**
 * Issue 17: what the checks before an upload found reaches the people who look, through the API: the run
 * history and audience health's last run, as `policy: [{check, message, blocked}]`, from a run record
 * written the way a worker writes it.
 */

let setup: Awaited<ReturnType<typeof makeSetup>>;
let client: Client;
let openapi: OpenApi;
let redis: Redis;
const viewer = { token: TOKENS.viewer };
const AUDIENCE = 'RFM: Champions';
const findings = [
  {
    check: 'min_size',
    message:
      'Google serves a Customer Match list from 100 members; this audience would hold 42 after this run',
    blocked: false,
  },
  { check: 'additive_only', message: '3 members who left this audience stay on the platform', blocked: true },
];

beforeAll(async () => {
  setup = await makeSetup({ customers: 50 });
  redis = new Redis(inject('redisUrl'));
  const result: AudienceResult = {
    ...emptyResult('local', AUDIENCE),
    segmentSize: 45,
    members: 42,
    plannedAdds: 42,
    added: 42,
    durationMs: 12,
    policy: findings,
  };
  const meta = { run: 'r1', at: new Date().toISOString(), full: false, reason: 'schedule' };
  await recordRun(redis, queuePrefix(setup.prefix), [runRecord(result, meta)]);
  const server = await serve(['serve', '--port', '0'], setup.dir, inject('redisUrl'));
  client = new Client(server.url);
  const doc = await client.call('GET', '/api/v1/openapi.json', viewer);
  openapi = new OpenApi(doc.json as ConstructorParameters<typeof OpenApi>[0]);
});

afterAll(async () => {
  redis?.disconnect();
  killAll();
});

it('the run history and the last run carry the findings', async () => {
  const path = `/api/v1/destinations/local/audiences/${encodeURIComponent(AUDIENCE)}`;
  const runs = openapi.check(await client.call('GET', `${path}/runs`, viewer), runsSchema);
  expect(runs.runs.map((r) => r.policy)).toEqual([findings]);
  const health = openapi.check(await client.call('GET', path, viewer), audienceHealthSchema);
  expect(health.lastRun?.policy).toEqual(findings);
});
