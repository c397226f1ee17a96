import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { FacebookAdsApi } from 'facebook-nodejs-business-sdk';
import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConnectorError, type Member } from '../../src/connector.js';
import type { Person } from '../../src/identify/types.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RETRY, retryDelay } from '../../src/push/retry.js';
import { MetaClient, reasonsOf } from './client.js';
import { FakeGraph } from './fixtures/fake-graph.js';
import { identify, SLOTS, type SchemaKey } from './identifiers.js';
import { metaConfigSchema, metaConnector } from './index.js';
import { slotBuffers } from '../../src/identify/types.js';

const TOKEN = 'EAAB-test-token-0123456789';
const ACCOUNT = '1234567890';
const h = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

beforeEach(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

function setup(extra: Record<string, unknown> = {}, fake = new FakeGraph()) {
  const config = metaConfigSchema.parse({
    type: 'meta',
    ad_account_id: `act_${ACCOUNT}`,
    access_token: TOKEN,
    throttle_wait_seconds: 7,
    ...extra,
  });
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', json: true, stream: { write: (l: string) => logs.push(l) } });
  const client = metaConnector.create(config, { destination: 'meta', baseDir: '.', log });
  return { fake, config, client, logs };
}

let n = 0;
function member(person: Person, schema: readonly SchemaKey[] = SLOTS): Member {
  const id = identify(person, { schema, defaultCountry: 'US' });
  if ('skip' in id) throw new Error(`skipped: ${id.skip}`);
  return { key: Buffer.alloc(8, ++n), slots: slotBuffers(id.slots) };
}

const mary = { email: 'Mary@Example.com ', first_name: 'Mary', phone: '+1 (212) 555-0123' };
const MARY_ROW = [
  'f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79',
  h('12125550123'),
  h('mary'),
  '',
  '',
  h('us'),
];

/** The error a call threw. */
async function failure(promise: Promise<unknown>): Promise<ConnectorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  return error as ConnectorError;
}

describe('meta config', () => {
  it('normalises the ad account id and fills the defaults', () => {
    const config = metaConfigSchema.parse({ type: 'meta', ad_account_id: 'act_42', access_token: 't' });
    expect(config).toEqual({
      type: 'meta',
      ad_account_id: '42',
      access_token: 't',
      schema: SLOTS,
      customer_file_source: 'USER_PROVIDED_ONLY',
      batch_size: 10_000,
      requests_in_flight: 2,
      api_version: 'v25.0',
      endpoint: 'https://graph.facebook.com',
    });
    expect(metaConfigSchema.parse({ type: 'meta', ad_account_id: 42, access_token: 't' }).ad_account_id).toBe(
      '42',
    );
  });

  it.each([
    [{ ad_account_id: 'acct_42' }, /ad_account_id.*expected an ad account id/],
    [{ batch_size: 10_001 }, /batch_size/],
    [{ schema: ['EMAIL', 'EMAIL'] }, /list each key once/],
    [{ api_version: '24' }, /v25\.0/],
    [{ customer_file_source: 'SOMEONE' }, /customer_file_source/],
  ])('refuses %j', (bad, message) => {
    const r = metaConfigSchema.safeParse({ type: 'meta', ad_account_id: '42', access_token: 't', ...bad });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n')).toMatch(message);
  });

  it('declares its slots and identifier groups from the schema', () => {
    const config = metaConfigSchema.parse({
      type: 'meta',
      ad_account_id: '42',
      access_token: 't',
      schema: ['EXTERN_ID', 'EMAIL', 'FN', 'LN', 'ZIP'],
    });
    expect(metaConnector.slots(config)).toEqual(['EXTERN_ID', 'EMAIL', 'FN', 'LN', 'ZIP']);
    expect(metaConnector.identifierGroups!(config)).toEqual([[2, 3, 4]]);
    expect(metaConnector.final(config)).toBe(true);
    expect(metaConnector.batchSize(config)).toBe(10_000);
  });
});

describe('meta ensureAudience (through the SDK)', () => {
  it('lists the ad account, then creates the audience with the exact request', async () => {
    const { fake, client } = setup({ description: 'RFM segment from audience-sync' });
    fake.addAudience('Someone else');
    const remote = await client.ensureAudience('Champions');
    expect(remote).toEqual({ id: expect.stringMatching(/^\d+$/), name: 'Champions', created: true });
    expect(fake.requests.map((r) => [r.method, r.path, r.query, r.body])).toEqual([
      [
        'GET',
        `/v25.0/act_${ACCOUNT}/customaudiences`,
        { fields: 'id,name,subtype,operation_status,description', limit: '500', access_token: TOKEN },
        {}, // the SDK sends an empty JSON object with a GET
      ],
      [
        'POST',
        `/v25.0/act_${ACCOUNT}/customaudiences`,
        { access_token: TOKEN },
        {
          name: 'Champions',
          subtype: 'CUSTOM',
          customer_file_source: 'USER_PROVIDED_ONLY',
          description: 'RFM segment from audience-sync',
        },
      ],
    ]);
    expect(fake.audiences.get(remote.id)).toMatchObject({
      name: 'Champions',
      customer_file_source: 'USER_PROVIDED_ONLY',
    });
  });

  it('finds an audience of that name on a later page instead of creating a twin (crash after create)', async () => {
    const { fake, client } = setup();
    fake.pageSize = 2;
    for (const name of ['A', 'B', 'C', 'D']) fake.addAudience(name);
    const existing = fake.addAudience('Champions');
    const remote = await client.ensureAudience('Champions');
    expect(remote).toEqual({ id: existing.id, name: 'Champions', created: false });
    expect(fake.requests.map((r) => [r.method, r.query.after])).toEqual([
      ['GET', undefined],
      ['GET', '2'],
      ['GET', '4'],
    ]);
    expect(fake.byName('Champions')).toHaveLength(1);
  });

  it('reads the audience it remembers, without listing', async () => {
    const { fake, client } = setup();
    const known = fake.addAudience('Champions (renamed in Ads Manager)');
    expect(await client.ensureAudience('Champions', known.id)).toEqual({
      id: known.id,
      name: 'Champions',
      created: false,
    });
    expect(fake.requests.map((r) => [r.method, r.path, r.query.fields])).toEqual([
      [
        'GET',
        `/v25.0/${known.id}`,
        'id,name,account_id,subtype,operation_status,delivery_status,approximate_count_lower_bound,approximate_count_upper_bound,description',
      ],
    ]);
  });

  it('when the remembered audience is gone, uses the one of that name, else creates one, and says to resync', async () => {
    const { fake, client, logs } = setup();
    const gone = fake.addAudience('Champions', { deleted: true });
    const created = await client.ensureAudience('Champions', gone.id);
    expect(created).toMatchObject({ name: 'Champions', created: true });
    expect(created.id).not.toBe(gone.id);
    expect(logs.join('\n')).toMatch(/run a full resync \(sync --full\)/);

    const again = await client.ensureAudience('Champions', '999');
    expect(again).toEqual({ id: created.id, name: 'Champions', created: false });
    expect(fake.byName('Champions')).toHaveLength(1);
  });

  it("creates the audience carrying the state's epoch, reads the epoch back, and stamps a new one in place", async () => {
    const { fake, client } = setup();
    const remote = await client.ensureAudience('Champions', undefined, '0a1b2c3d4e5f');
    expect(remote).toEqual({ id: remote.id, name: 'Champions', created: true, epoch: '0a1b2c3d4e5f' });
    expect(fake.audiences.get(remote.id)!.description).toBe(
      'Managed by audience-sync: members follow a segment (audience-sync epoch 0a1b2c3d4e5f)',
    );
    // Found by name (a state that lost the id) and by id, the audience says whose it is.
    const other = setup({}, fake).client;
    expect(await other.ensureAudience('Champions', undefined, 'ffffffffffff')).toMatchObject({
      id: remote.id,
      created: false,
      epoch: '0a1b2c3d4e5f',
    });
    expect(await other.ensureAudience('Champions', remote.id)).toMatchObject({ epoch: '0a1b2c3d4e5f' });

    // An audience made by hand (or before marks existed) has no epoch; the stamp keeps its description.
    const old = fake.addAudience('Loyal', { description: 'Our loyal customers' });
    expect(await other.ensureAudience('Loyal', old.id)).toEqual({
      id: old.id,
      name: 'Loyal',
      created: false,
    });
    const mark = fake.requests.length;
    await other.stamp!({ id: old.id, name: 'Loyal' }, '123456abcdef');
    await other.stamp!({ id: old.id, name: 'Loyal' }, 'fedcba654321');
    expect(fake.requests.slice(mark).map((r) => [r.method, r.path, r.query, r.body])).toEqual([
      [
        'POST',
        `/v25.0/${old.id}`,
        { access_token: TOKEN },
        { description: 'Our loyal customers (audience-sync epoch 123456abcdef)' },
      ],
      [
        'POST',
        `/v25.0/${old.id}`,
        { access_token: TOKEN },
        { description: 'Our loyal customers (audience-sync epoch fedcba654321)' },
      ],
    ]);
    expect(await other.ensureAudience('Loyal', old.id)).toMatchObject({ epoch: 'fedcba654321' });
  });

  it("puts the configured description before the epoch's mark", async () => {
    const { fake, client } = setup({ description: 'RFM segment' });
    const remote = await client.ensureAudience('Champions', undefined, 'abcabcabcabc');
    expect(fake.audiences.get(remote.id)!.description).toBe('RFM segment (audience-sync epoch abcabcabcabc)');
  });

  it('fails on a flagged audience (operation_status 471) with what to do', async () => {
    const { fake, client } = setup();
    const flagged = fake.addAudience('Diabetes', { operation_status: { code: 471, description: 'Flagged' } });
    const error = await failure(client.ensureAudience('Diabetes', flagged.id));
    expect(error.kind).toBe('permanent');
    expect(error.message).toMatch(/flagged.*471.*Resolve or appeal.*Ads Manager/);
    expect((await failure(client.ensureAudience('Diabetes'))).message).toMatch(/flagged/);
  });

  it('does not create when the list fails, and classifies the SDK error', async () => {
    const { fake, client } = setup();
    fake.tokenValid = false;
    const error = await failure(client.ensureAudience('Champions'));
    expect(error.kind).toBe('permanent');
    expect(error.message).toMatch(
      /listing the audiences of act_1234567890 failed: the access token is not valid/,
    );
    expect(error.message).toMatch(/code 190\/463/);
    expect(fake.edge('customaudiences', 'POST')).toHaveLength(0);
  });

  it('retries an HTML error page the SDK cannot parse', async () => {
    const { fake, client } = setup();
    fake.failNext(() => true, 502, '<html><body>Bad Gateway</body></html>', { 'content-type': 'text/html' });
    const error = await failure(client.ensureAudience('Champions'));
    expect(error.kind).toBe('retryable');
    expect(error.message).toMatch(/error page/);
  });

  it("gives the SDK's requests a deadline: an account listing that never answers fails, retryable", async () => {
    // Another host than the fake Graph's, which answers at once.
    const { config } = setup({ endpoint: 'https://graph.slow.test' });
    const log = createLogger({ level: 'silent' });
    // An answer held for a minute, against a client whose requests may take 0.2 s.
    nock(config.endpoint)
      .get(/\/act_1234567890\/customaudiences/)
      .delay(60_000)
      .reply(200, { data: [] });
    const error = await failure(new MetaClient(config, log, 200).ensureAudience('Champions'));
    expect(error.kind).toBe('retryable');
    expect(error.message).toMatch(/listing the audiences of act_1234567890 failed: .*timed out after 0\.2 s/);
    expect(error.message).not.toContain(TOKEN);
  });

  it('keeps no global state: no default API, no crash reporter handler', async () => {
    const handlers = process.listenerCount('uncaughtException');
    const { client } = setup();
    await client.ensureAudience('Champions');
    expect(FacebookAdsApi.getDefaultApi()).toBeUndefined();
    expect(process.listenerCount('uncaughtException')).toBe(handlers);
  });
});

describe('meta /users (fetch, JSON bodies)', () => {
  async function withAudience(extra: Record<string, unknown> = {}) {
    const s = setup(extra);
    const audience = s.fake.addAudience('Champions');
    return { ...s, audience, remote: { id: audience.id, name: audience.name } };
  }

  it('adds with POST: schema in order, hashes, "" for unknown fields, the token only in the query', async () => {
    const { fake, client, remote } = await withAudience();
    const outcome = await client.add(remote, [member(mary)]);
    expect(outcome).toEqual({ status: 'confirmed', report: { received: 1, invalid: 0 } });
    const [request] = fake.requests;
    expect(request).toMatchObject({
      method: 'POST',
      path: `/v25.0/${remote.id}/users`,
      query: { access_token: TOKEN },
      body: { payload: { schema: ['EMAIL', 'PHONE', 'FN', 'LN', 'ZIP', 'COUNTRY'], data: [MARY_ROW] } },
    });
    expect(Object.keys(request!.query)).toEqual(['access_token']);
    expect(Object.keys(request!.body as object)).toEqual(['payload']);
    expect(request!.headers['content-type']).toMatch(/application\/json/);
    expect(fake.audiences.get(remote.id)!.identifiers.has(`EMAIL=${MARY_ROW[0]}`)).toBe(true);
  });

  it('removes with DELETE and the same JSON body (never the payload in the query string)', async () => {
    const { fake, client, remote } = await withAudience();
    await client.add(remote, [member(mary)]);
    await client.remove(remote, [member(mary)]);
    const del = fake.edge('users', 'DELETE');
    expect(del).toHaveLength(1);
    expect(del[0]!.query).toEqual({ access_token: TOKEN });
    expect(del[0]!.body).toEqual({ payload: { schema: SLOTS, data: [MARY_ROW] } });
    expect(fake.audiences.get(remote.id)!.identifiers.size).toBe(0);
  });

  it('sends EXTERN_ID and MADID in plaintext', async () => {
    const schema: SchemaKey[] = ['EXTERN_ID', 'EMAIL', 'MADID'];
    const { fake, client, remote } = await withAudience({ schema });
    const madid = '6D92078A-8246-4BA4-AE5B-76104861E7DC';
    await client.add(remote, [
      member({ external_id: 'cust-0042', email: 'mary@example.com', madid }, schema),
    ]);
    expect(fake.requests[0]!.body).toEqual({
      payload: { schema, data: [['cust-0042', MARY_ROW[0], madid]] },
    });
  });

  it('skips and counts members with no field for the schema; sends nothing when none is left', async () => {
    const { fake, client, remote } = await withAudience({ schema: ['PHONE', 'EMAIL'] });
    const empty: Member = { key: Buffer.alloc(8, 9), slots: [undefined, undefined] };
    const outcome = await client.add(remote, [empty, member(mary, ['PHONE', 'EMAIL']), empty]);
    expect(outcome).toEqual({
      status: 'confirmed',
      rejected: [
        { index: 0, reason: 'no identifier for the configured schema' },
        { index: 2, reason: 'no identifier for the configured schema' },
      ],
      report: { received: 1, invalid: 0 },
    });
    expect((fake.requests[0]!.body as { payload: { data: unknown[] } }).payload.data).toHaveLength(1);
    expect(await client.remove(remote, [empty])).toEqual({
      status: 'confirmed',
      rejected: [{ index: 0, reason: 'no identifier for the configured schema' }],
    });
    expect(fake.requests).toHaveLength(1);
  });

  it("puts Meta's accounting in the report, with reasons but never the invalid entries", async () => {
    const { fake, client, remote } = await withAudience();
    fake.failNext(() => true, 200, {
      audience_id: remote.id,
      session_id: '77',
      num_received: 2,
      num_invalid_entries: 1,
      invalid_entry_samples: {
        [MARY_ROW[1]!]: 'Invalid format for PHONE',
        'bob@example.com': 'bob@example.com',
      },
    });
    const outcome = await client.add(remote, [member(mary), member({ email: 'bob@example.com' })]);
    expect(outcome).toEqual({
      status: 'confirmed',
      report: { received: 2, invalid: 1, invalidSamples: ['Invalid format for PHONE'] },
    });
    expect(reasonsOf([{ reason: 'Bad hash' }, 'deadbeefdeadbeefdeadbeef'])).toEqual(['Bad hash']);
  });
});

describe('meta replace: one /usersreplace session', () => {
  it('splits into batches with one session id, batch_seq from 1 and last_batch_flag on the last', async () => {
    const { fake, client } = setup({ batch_size: 3 });
    const a = fake.addAudience('Champions');
    const remote = { id: a.id, name: a.name };
    await client.add(remote, [member({ email: 'old@example.com' })]);
    const members = Array.from({ length: 7 }, (_, i) => member({ email: `p${i}@example.com` }));
    const outcome = await client.replace!(remote, members);
    expect(outcome).toEqual({ status: 'confirmed', report: { received: 7, invalid: 0 } });
    const sent = fake.edge('usersreplace', 'POST');
    expect(sent.map((r) => (r.body as { payload: { data: unknown[] } }).payload.data.length)).toEqual([
      3, 3, 1,
    ]);
    const sessions = sent.map((r) => (r.body as { session: Record<string, unknown> }).session);
    const id = sessions[0]!.session_id;
    expect(Number.isSafeInteger(id) && (id as number) > 0).toBe(true);
    expect(sessions).toEqual([
      { session_id: id, batch_seq: 1, last_batch_flag: false, estimated_num_total: 7 },
      { session_id: id, batch_seq: 2, last_batch_flag: false, estimated_num_total: 7 },
      { session_id: id, batch_seq: 3, last_batch_flag: true, estimated_num_total: 7 },
    ]);
    expect(sent.every((r) => Object.keys(r.query).join() === 'access_token')).toBe(true);
    const emails = [...fake.audiences.get(a.id)!.identifiers].filter((i) => i.startsWith('EMAIL='));
    expect(emails.sort()).toEqual(members.map((_, i) => `EMAIL=${h(`p${i}@example.com`)}`).sort());
  });

  it('empties the audience with one empty last batch when there is no one', async () => {
    const { fake, client } = setup();
    const a = fake.addAudience('Champions');
    await client.add({ id: a.id, name: a.name }, [member(mary)]);
    await client.replace!({ id: a.id, name: a.name }, []);
    const [request] = fake.edge('usersreplace');
    expect(request!.body).toMatchObject({
      payload: { schema: SLOTS, data: [] },
      session: { batch_seq: 1, last_batch_flag: true, estimated_num_total: 0 },
    });
    expect(fake.audiences.get(a.id)!.identifiers.size).toBe(0);
  });

  it('sends nothing to empty an audience it has just created', async () => {
    const { fake, client } = setup();
    const remote = await client.ensureAudience('Champions', undefined, 'abcabcabcabc');
    expect(await client.replace!(remote, [])).toEqual({ status: 'confirmed' });
    expect(fake.edge('usersreplace')).toEqual([]);
  });

  it('says what to do when Meta refuses to empty an audience with a replace of no members', async () => {
    const { fake, client } = setup();
    fake.refuseEmptyReplace = true;
    const a = fake.addAudience('Champions');
    await client.add({ id: a.id, name: a.name }, [member(mary)]);
    const error = await failure(client.replace!({ id: a.id, name: a.name }, []));
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain(`audience 'Champions' (${a.id}) must be emptied`);
    expect(error.message).toMatch(/Delete the audience in Ads Manager.*the next sync creates it again/);
    expect(error.message).toMatch(/code 100/);
    // Any other failure stays what it is.
    fake.failNext(() => true, 400, FakeGraph.error(190, 'Session has expired', 463));
    expect((await failure(client.replace!({ id: a.id, name: a.name }, []))).message).toMatch(
      /access token is not valid/,
    );
  });

  it('throws when a batch fails midway, and a retry starts a new session', async () => {
    const { fake, client } = setup({ batch_size: 2 });
    const a = fake.addAudience('Champions');
    const remote = { id: a.id, name: a.name };
    const members = Array.from({ length: 5 }, (_, i) => member({ email: `p${i}@example.com` }));
    fake.failNext(
      (r) => (r.body as { session?: { batch_seq: number } }).session?.batch_seq === 2,
      500,
      FakeGraph.error(2, 'Service temporarily unavailable', undefined, { is_transient: true }),
    );
    const error = await failure(client.replace!(remote, members));
    expect(error.kind).toBe('retryable');
    expect(error.message).toMatch(/batch 2 of 3 \(session \d+; a retry starts a new session\)/);
    await client.replace!(remote, members);
    const sessions = fake
      .edge('usersreplace')
      .map((r) => (r.body as { session: { session_id: number } }).session);
    expect(sessions.map((s) => s.session_id).filter((v, i, all) => all.indexOf(v) === i)).toHaveLength(2);
    expect([...fake.audiences.get(a.id)!.identifiers].filter((i) => i.startsWith('EMAIL='))).toHaveLength(5);
  });
});

describe('meta errors', () => {
  const users = (r: { path: string }) => r.path.endsWith('/users');

  it.each([
    [
      400,
      FakeGraph.error(613, 'Calls to this api have exceeded the rate limit.'),
      {},
      'rate_limited',
      /throttling act_1234567890.*waiting 7 s/,
      7000,
    ],
    [
      400,
      FakeGraph.error(80003, 'There have been too many calls to this ad-account.'),
      {
        'x-business-use-case-usage': JSON.stringify({
          [ACCOUNT]: [{ type: 'custom_audience', call_count: 100, estimated_time_to_regain_access: 3 }],
        }),
      },
      'rate_limited',
      /waiting 180 s/,
      180_000,
    ],
    [
      400,
      FakeGraph.error(17, 'User request limit reached'),
      { 'retry-after': '12' },
      'rate_limited',
      /code 17/,
      12_000,
    ],
    [
      400,
      FakeGraph.error(4, 'Application request limit reached'),
      { 'x-ad-account-usage': '{"acc_id_util_pct":100,"reset_time_duration":45}' },
      'rate_limited',
      /code 4\b/,
      45_000,
    ],
    [429, 'Too Many Requests', {}, 'rate_limited', /throttling/, 7000],
    [
      400,
      FakeGraph.error(190, 'Error validating access token: Session has expired', 463),
      {},
      'permanent',
      /access token is not valid.*code 190\/463.*new system-user token/,
      undefined,
    ],
    [
      403,
      FakeGraph.error(200, '(#200) Permissions error'),
      {},
      'permanent',
      /permission denied on act_1234567890.*ads_management/,
      undefined,
    ],
    [
      403,
      FakeGraph.error(294, 'Managing advertisements requires the extended permission ads_management'),
      {},
      'permanent',
      /permission denied.*Assign assets/,
      undefined,
    ],
    [
      400,
      FakeGraph.error(2663, 'Terms of service has not been accepted'),
      {},
      'permanent',
      /terms of service are not accepted.*https:\/\/business\.facebook\.com\/ads\/manage\/customaudiences\/tos\/\?act=1234567890/,
      undefined,
    ],
    [400, FakeGraph.error(100, 'Invalid parameter', 2655), {}, 'permanent', /terms of service/, undefined],
    [
      400,
      FakeGraph.error(100, 'Invalid parameter', 1_713_230),
      {},
      'permanent',
      /flagged by Meta.*471/,
      undefined,
    ],
    [
      400,
      FakeGraph.error(100, 'Custom audience deleted', 1_487_366),
      {},
      'permanent',
      /deleted on Meta.*sync --full/,
      undefined,
    ],
    [400, FakeGraph.error(100, 'Audience not shared', 1_487_301), {}, 'permanent', /not shared/, undefined],
    [
      400,
      FakeGraph.error(2650, 'Failed to update the custom audience'),
      {},
      'permanent',
      /could not update the audience/,
      undefined,
    ],
    [
      400,
      FakeGraph.error(100, '(#100) Invalid parameter'),
      {},
      'permanent',
      /adding 1 members to audience 'Champions' \(\d+\) failed: HTTP 400, code 100: \(#100\) Invalid parameter, fbtrace_id AbCdEfGh123/,
      undefined,
    ],
    [500, FakeGraph.error(1, 'An unknown error occurred'), {}, 'retryable', /temporary error/, undefined],
    [
      400,
      FakeGraph.error(2, 'Service temporarily unavailable', undefined, { is_transient: true }),
      {},
      'retryable',
      /temporary/,
      undefined,
    ],
    [
      502,
      '<!DOCTYPE html><html><body>502 Bad Gateway</body></html>',
      { 'content-type': 'text/html' },
      'retryable',
      /error page/,
      undefined,
    ],
    [
      200,
      '<html>captive portal</html>',
      { 'content-type': 'text/html' },
      'retryable',
      /error page/,
      undefined,
    ],
    [413, '<html>Request Entity Too Large</html>', {}, 'permanent', /lower batch_size/, undefined],
  ] as const)('HTTP %i %j → %s', async (status, body, headers, kind, message, wait) => {
    const { fake, client } = setup();
    const a = fake.addAudience('Champions');
    fake.failNext(users, status, body, headers);
    const error = await failure(client.add({ id: a.id, name: a.name }, [member(mary)]));
    expect(error.kind).toBe(kind);
    expect(error.message).toMatch(message);
    expect(error.options.retryAfterMs).toBe(wait);
  });

  it("throttled without a delay from Meta and no throttle_wait_seconds: the core's short backoff", async () => {
    const { fake, client } = setup({ throttle_wait_seconds: undefined });
    const a = fake.addAudience('Champions');
    fake.failNext(users, 429, 'Too Many Requests', {});
    const error = await failure(client.add({ id: a.id, name: a.name }, [member(mary)]));
    expect(error.kind).toBe('rate_limited');
    expect(error.options.retryAfterMs).toBeUndefined();
    expect(retryDelay(error, 0, DEFAULT_RETRY, () => 1)).toBe(1_000);
    fake.failNext(users, 400, FakeGraph.error(17, 'User request limit reached'), { 'retry-after': '1' });
    const named = await failure(client.add({ id: a.id, name: a.name }, [member(mary)]));
    expect(retryDelay(named, 3)).toBe(1_000);
    // A server error that says when to come back is honoured too.
    fake.failNext(users, 503, FakeGraph.error(2, 'Service temporarily unavailable'), { 'retry-after': '4' });
    const unavailable = await failure(client.add({ id: a.id, name: a.name }, [member(mary)]));
    expect(unavailable).toMatchObject({ kind: 'retryable', options: { retryAfterMs: 4_000 } });
  });

  it('retries a connection that fails', async () => {
    const { client } = setup();
    nock.cleanAll(); // no fake: the connection itself fails
    nock('https://graph.facebook.com')
      .post(/\/users/)
      .query(true)
      .replyWithError('socket hang up');
    const error = await failure(client.add({ id: '55', name: 'Champions' }, [member(mary)]));
    expect(error.message).toMatch(/no answer from the Graph API.*socket hang up/);
    expect(error.kind).toBe('retryable');
  });

  it('never lets the token out: not in messages, causes or logs, even when Meta echoes it', async () => {
    const { fake, client, logs } = setup();
    const a = fake.addAudience('Champions');
    const echo = FakeGraph.error(
      190,
      `Malformed access token ${TOKEN} in https://x/?access_token=${TOKEN}&a=1`,
    );
    fake.failNext(users, 400, echo);
    fake.failNext((r) => r.method === 'GET', 400, echo);
    const errors = [
      await failure(client.add({ id: a.id, name: a.name }, [member(mary)])),
      await failure(client.ensureAudience('Other')),
      await failure(client.stats({ id: 'nope', name: 'Nope' })),
    ];
    for (const error of errors) {
      expect(error.message).toMatch(/access token is not valid|does not exist/);
      expect(inspect(error, { depth: 10 })).not.toContain(TOKEN);
      expect(JSON.stringify(error.options)).not.toContain(TOKEN);
    }
    expect(errors[0]!.message).toContain('access_token=[redacted]');
    const checks = await (async () => {
      fake.tokenValid = false;
      return client.check();
    })();
    expect(JSON.stringify(checks)).not.toContain(TOKEN);
    expect(logs.join('\n')).not.toContain(TOKEN);
  });
});

describe('meta check and stats', () => {
  it('checks the token, the ad account and the terms without side effects', async () => {
    const { fake, client } = setup();
    expect(await client.check()).toEqual([
      { name: 'token', ok: true, detail: 'valid, for audience-sync 100077' },
      { name: 'ad account', ok: true, detail: 'act_1234567890 (Shop ads) is reachable' },
      { name: 'terms of service', ok: true, detail: 'Custom Audience terms accepted' },
      { name: 'Graph API version', ok: true, detail: 'v25.0' },
    ]);
    expect(fake.requests.map((r) => [r.method, r.path, r.query.fields])).toEqual([
      ['GET', '/v25.0/me', 'id,name'],
      ['GET', `/v25.0/act_${ACCOUNT}`, 'name,account_status,tos_accepted'],
    ]);
  });

  it('names the terms link, a closed account and a bad token', async () => {
    const { fake, client } = setup();
    fake.tosAccepted = false;
    fake.accountStatus = 101;
    const checks = await client.check();
    expect(checks.map((c) => c.ok)).toEqual([true, false, false, true]);
    expect(checks[1]!.detail).toMatch(/is closed/);
    expect(checks[2]!.detail).toContain(
      'https://business.facebook.com/ads/manage/customaudiences/tos/?act=1234567890',
    );
    fake.tokenValid = false;
    const bad = await client.check();
    expect(bad.map((c) => c.ok)).toEqual([false, false, false, true]);
    expect(bad[0]!.detail).toMatch(/access token is not valid/);
    expect(bad[2]!.detail).toMatch(/not checked/);
  });

  it('reports the lower bound as the size, and warns under 100 and when not counted', async () => {
    const { fake, client } = setup();
    const big = fake.addAudience('Big', {
      approximate_count_lower_bound: 2300,
      approximate_count_upper_bound: 2700,
    });
    expect(await client.stats({ id: big.id, name: 'Big' })).toEqual({ size: 2300, warnings: [] });
    const unread = fake.addAudience('Unread', {});
    expect(await client.stats({ id: unread.id, name: 'Unread' })).toEqual({
      size: undefined,
      warnings: ['Meta has not counted this audience yet (it can take up to 24 hours)'],
    });
  });

  it("reads operation_status and delivery_status: a flagged or undeliverable audience is a problem, in Meta's words", async () => {
    const { fake, client } = setup();
    const counted = { approximate_count_lower_bound: 2300, approximate_count_upper_bound: 2700 };
    const statsOf = async (name: string, extra: Parameters<FakeGraph['addAudience']>[1]) => {
      const a = fake.addAudience(name, { ...counted, ...extra });
      return client.stats({ id: a.id, name });
    };
    // Normal codes: no problem.
    expect(
      await statsOf('Normal', {
        operation_status: { code: 200, description: 'Normal' },
        delivery_status: { code: 200, description: 'This audience is ready for use.' },
      }),
    ).toEqual({ size: 2300, warnings: [] });
    // Meta's own text for a flagged audience (the 2025 restriction), the token it might echo redacted.
    const flagged = await statsOf('Flagged', {
      operation_status: {
        code: 471,
        description:
          "The custom audience or lookalike is blocked because it suggests the use of information (e.g., health, financial) not allowed under Meta's terms, and is restricted from running ads. " +
          `Token ${TOKEN}`,
      },
    });
    expect(flagged.problems).toHaveLength(1);
    expect(flagged.problems![0]).toContain(
      'flagged by Meta (operation_status 471: The custom audience or lookalike is blocked',
    );
    expect(flagged.problems![0]).toContain('Ads Manager → Audiences');
    expect(flagged.problems![0]).not.toContain(TOKEN);
    expect(flagged.problems![0]).toContain('[redacted]');
    // Delivery that is not ready, and any other operation status from 400 up.
    expect(
      await statsOf('Small', {
        approximate_count_lower_bound: 40,
        delivery_status: { code: 300, description: 'This audience is too small to use.' },
      }),
    ).toEqual({
      size: 40,
      warnings: ['Meta counts about 40 people: it recommends at least 100 for ads to deliver'],
      problems: ['Meta delivery_status 300: This audience is too small to use.'],
    });
    expect(
      (await statsOf('Failed', { operation_status: { code: 412, description: 'Audience update failed' } }))
        .problems,
    ).toEqual(['Meta operation_status 412: Audience update failed']);
    // An operation in progress is a warning, not a problem.
    expect(await statsOf('Updating', { operation_status: { code: 300, description: 'Updating' } })).toEqual({
      size: 2300,
      warnings: ['Meta operation_status 300: Updating'],
    });
  });
});

describe('meta restricted categories', () => {
  it('warns before making an audience whose name or description suggests health or financial status', async () => {
    const fake = new FakeGraph();
    const { client, logs } = setup({}, fake);
    await client.ensureAudience('RFM: Champions');
    await client.ensureAudience("RFM: Can't Lose Them");
    const messages = (lines: string[]) => lines.map((l) => (JSON.parse(l) as { msg: string }).msg).join('\n');
    expect(messages(logs)).not.toMatch(/flags custom audiences/);
    await client.ensureAudience('Diabetes care buyers');
    expect(messages(logs)).toContain(
      `Meta audience 'Diabetes care buyers': its name suggests a health condition ("Diabetes"): rename it (audiences.list[].name)`,
    );
    // Made all the same: it is a warning.
    expect(
      fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/customaudiences')).length,
    ).toBe(3);
    const described = setup({ description: 'Customers with a high income' }, new FakeGraph());
    await described.client.ensureAudience('RFM: Loyal Customers');
    expect(messages(described.logs)).toContain(
      `its description suggests a financial status ("high income"): change the destination's description setting`,
    );
  });
});

describe('meta Graph API version', () => {
  it('an expired version fails the check and every run warns, naming the setting and the version to set', async () => {
    // v24.0 expired on 2026-11-10: this holds on any later day.
    const { client, logs } = setup(
      { api_version: 'v24.0' },
      new FakeGraph('https://graph.facebook.com', 'v24.0'),
    );
    const fix = 'set api_version: v25.0 (or leave it out for the newest version this release knows)';
    expect(logs.join('\n')).toContain(`Graph API v24.0 expired on 2026-11-10: ${fix}`);
    expect((await client.check()).at(-1)).toEqual({
      name: 'Graph API version',
      ok: false,
      detail: `Graph API v24.0 expired on 2026-11-10: ${fix}`,
    });
  });
});

describe('meta endpoint and API version override', () => {
  it('sends every call, SDK and fetch, to the configured base URL and version', async () => {
    const fake = new FakeGraph('http://graph.local.test:8080', 'v99.0');
    const { client } = setup({ endpoint: 'http://graph.local.test:8080/', api_version: 'v99.0' }, fake);
    const remote = await client.ensureAudience('Champions');
    await client.add(remote, [member(mary)]);
    await client.replace!(remote, [member(mary)]);
    await client.stats(remote);
    await client.check();
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /v99.0/act_1234567890/customaudiences',
      'POST /v99.0/act_1234567890/customaudiences',
      `POST /v99.0/${remote.id}/users`,
      `POST /v99.0/${remote.id}/usersreplace`,
      `GET /v99.0/${remote.id}`,
      'GET /v99.0/me',
      'GET /v99.0/act_1234567890',
    ]);
  });
});
