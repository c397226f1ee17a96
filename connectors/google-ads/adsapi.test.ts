import { rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConnectorError, type Member } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RETRY, retryDelay } from '../../src/push/retry.js';
import { createAdsApiClient } from './adsapi.js';
import { googleAdsConfigSchema, type GoogleAdsConfig } from './config.js';
import { localhostCertificate } from './grpc-fake/cert.js';
import {
  FAKE_ACCESS_TOKEN,
  FAKE_REST,
  FAKE_TOKEN_URL,
  serveRest,
  type FakeSearch,
} from './grpc-fake/rest.js';
import { FakeGoogleAds, identifierKey } from './grpc-fake/server.js';
import { identify } from './identifiers.js';
import { slotBuffers } from '../../src/identify/types.js';

/**
 * The Google Ads API path against a loopback gRPC server built from google-ads-node's protos (TLS with a
 * self-signed localhost certificate, trusted through `endpoints.ads_api.ca_file`), with GAQL and OAuth
 * over nock. Every assertion is on what reached the wire.
 */

const log = createLogger({ level: 'silent' });
const tls = localhostCertificate();
let fake: FakeGoogleAds;
let rest: { searches: FakeSearch[]; tokenRequests: URLSearchParams[] };

beforeAll(async () => {
  fake = await FakeGoogleAds.start(tls);
});
afterAll(async () => {
  await fake.close();
  rmSync(tls.dir, { recursive: true, force: true });
});
beforeEach(() => {
  fake.reset();
  nock.disableNetConnect();
  nock.enableNetConnect(/^(localhost|127\.0\.0\.1)(:\d+)?$/);
  rest = serveRest(fake);
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

function config(overrides: Record<string, unknown> = {}): GoogleAdsConfig {
  return googleAdsConfigSchema.parse({
    type: 'google_ads',
    api: 'ads_api',
    customer_id: '123-456-7890',
    login_customer_id: '111-222-3333',
    client_id: 'client-id.apps.googleusercontent.com',
    client_secret: 'client-secret',
    refresh_token: '1//refresh-token',
    developer_token: 'dev-token-abc',
    batch_size: 2,
    endpoints: {
      token_url: FAKE_TOKEN_URL,
      ads_rest: FAKE_REST,
      ads_api: { host: 'localhost', port: fake.port, ca_file: tls.certFile },
    },
    ...overrides,
  });
}

const client = (overrides: Record<string, unknown> = {}) =>
  createAdsApiClient(config(overrides), { destination: 'google', baseDir: '/', log });

const hex = (text: string) => createHash('sha256').update(text).digest('hex');

/** A member as the core builds it, through the connector's own identifier rules. */
function member(id: string, person: Parameters<typeof identify>[0]): Member {
  const identified = identify(person, { defaultCountry: 'US' });
  if ('skip' in identified) throw new Error(`test person ${id} skipped: ${identified.skip}`);
  return {
    key: createHash('sha256').update(id).digest().subarray(0, 8),
    slots: slotBuffers(identified.slots),
  };
}

const ada = member('c1', {
  email: 'Ada.Lovelace+ads@gmail.com',
  phone: '(415) 555-0100',
  first_name: 'Ada',
  last_name: 'Lovelace',
  country: 'US',
  postal_code: '94045-1234',
});
const bob = member('c2', { email: 'bob@example.com' });
const cy = member('c3', { phone: '+44 20 7946 0958' });

describe('uploads (OfflineUserDataJob)', () => {
  it('add: one job with the list and consent, operations in batch_size requests, partial failure on, then run', async () => {
    const list = fake.addList('VIP');
    const outcome = await client().add({ id: list.resourceName, name: 'VIP' }, [ada, bob, cy]);

    const [create, ...rest_] = fake.calls;
    expect(create).toMatchObject({
      method: 'CreateOfflineUserDataJob',
      request: {
        customer_id: '1234567890',
        job: {
          type: 'CUSTOMER_MATCH_USER_LIST',
          customer_match_user_list_metadata: {
            user_list: list.resourceName,
            consent: { ad_user_data: 'GRANTED', ad_personalization: 'GRANTED' },
          },
        },
      },
    });
    expect(rest_.map((c) => c.method)).toEqual([
      'AddOfflineUserDataJobOperations',
      'AddOfflineUserDataJobOperations',
      'RunOfflineUserDataJob',
    ]);
    const job = [...fake.jobs.keys()][0]!;
    const adds = fake.callsOf('AddOfflineUserDataJobOperations');
    expect(adds.map((c) => c.request.resource_name)).toEqual([job, job]);
    expect(adds.map((c) => c.request.enable_partial_failure)).toEqual([true, true]);
    expect(adds.map((c) => c.request.operations.length)).toEqual([2, 1]);
    expect(fake.callsOf('RunOfflineUserDataJob')[0]!.request).toEqual({ resource_name: job });

    // Each identifier is its own UserIdentifier; hashes in hex, country and postal code in clear.
    expect(adds[0]!.request.operations[0]).toEqual({
      create: {
        user_identifiers: [
          { hashed_email: hex('adalovelace@gmail.com') },
          { hashed_phone_number: hex('+14155550100') },
          {
            address_info: {
              hashed_first_name: hex('ada'),
              hashed_last_name: hex('lovelace'),
              country_code: 'US',
              postal_code: '94045',
            },
          },
        ],
      },
    });
    expect(adds[0]!.request.operations[1]).toEqual({
      create: { user_identifiers: [{ hashed_email: hex('bob@example.com') }] },
    });
    expect(adds[1]!.request.operations[0]).toEqual({
      create: { user_identifiers: [{ hashed_phone_number: hex('+442079460958') }] },
    });

    // Headers on every gRPC call: our access token, the developer token, the manager account.
    for (const call of fake.calls)
      expect(call.headers).toMatchObject({
        authorization: `Bearer ${FAKE_ACCESS_TOKEN}`,
        'developer-token': 'dev-token-abc',
        'login-customer-id': '1112223333',
      });
    expect(rest.tokenRequests).toHaveLength(1);
    expect(rest.tokenRequests[0]!.get('refresh_token')).toBe('1//refresh-token');
    expect(rest.tokenRequests[0]!.get('scope')).toBe('https://www.googleapis.com/auth/adwords');

    expect(outcome).toEqual({ status: 'pending', token: job });
    expect(list.identifiers).toEqual(
      new Set(
        adds.flatMap((c) =>
          c.request.operations.flatMap((o) => o.create!.user_identifiers.map(identifierKey)),
        ),
      ),
    );
  });

  it('remove goes in its own job with remove operations', async () => {
    const list = fake.addList('VIP', [`email:${hex('bob@example.com')}`, `phone:${hex('+442079460958')}`]);
    const c = client();
    await c.add({ id: list.resourceName, name: 'VIP' }, [ada]);
    const outcome = await c.remove({ id: list.resourceName, name: 'VIP' }, [bob, cy]);

    expect(fake.jobs.size).toBe(2);
    const [addJob, removeJob] = [...fake.jobs.values()];
    expect(addJob!.operations.every((o) => o.create && !o.remove)).toBe(true);
    expect(removeJob!.operations).toEqual([
      { remove: { user_identifiers: [{ hashed_email: hex('bob@example.com') }] } },
      { remove: { user_identifiers: [{ hashed_phone_number: hex('+442079460958') }] } },
    ]);
    expect(outcome).toEqual({ status: 'pending', token: removeJob!.resourceName });
    expect(fake.calls.map((c) => c.method)).toEqual([
      'CreateOfflineUserDataJob',
      'AddOfflineUserDataJobOperations',
      'RunOfflineUserDataJob',
      'CreateOfflineUserDataJob',
      'AddOfflineUserDataJobOperations',
      'RunOfflineUserDataJob',
    ]);
    expect([...list.identifiers].some((k) => k.includes(hex('bob@example.com')))).toBe(false);
  });

  it('replace: one job whose first operation is remove_all, the creates after it, run last', async () => {
    const list = fake.addList('VIP', [`email:${hex('old@example.com')}`]);
    const outcome = await client().replace!({ id: list.resourceName, name: 'VIP' }, [ada, bob, cy]);

    expect(fake.jobs.size).toBe(1);
    const adds = fake.callsOf('AddOfflineUserDataJobOperations');
    expect(adds.map((c) => c.request.operations.length)).toEqual([2, 2]);
    expect(adds[0]!.request.operations[0]).toEqual({ remove_all: true });
    expect(
      adds
        .flatMap((c) => c.request.operations)
        .slice(1)
        .every((o) => o.create),
    ).toBe(true);
    expect(fake.calls.at(-1)!.method).toBe('RunOfflineUserDataJob');
    expect(outcome.status).toBe('pending');
    expect([...list.identifiers].some((k) => k.includes(hex('old@example.com')))).toBe(false);
    expect(list.identifiers.has(`email:${hex('bob@example.com')}`)).toBe(true);
  });

  it('consent from the config: denied is sent as DENIED; a column is applied per person by identify', async () => {
    const list = fake.addList('VIP');
    await client({ consent: { ad_user_data: 'granted', ad_personalization: 'denied' } }).add(
      { id: list.resourceName, name: 'VIP' },
      [bob],
    );
    await client({ consent: { ad_user_data: { column: 'consent' }, ad_personalization: 'granted' } }).add(
      { id: list.resourceName, name: 'VIP' },
      [bob],
    );
    expect(
      fake
        .callsOf('CreateOfflineUserDataJob')
        .map((c) => c.request.job.customer_match_user_list_metadata.consent),
    ).toEqual([
      { ad_user_data: 'GRANTED', ad_personalization: 'DENIED' },
      { ad_user_data: 'GRANTED', ad_personalization: 'GRANTED' },
    ]);
  });

  it('calls on one list never overlap: parallel batches are serialised', async () => {
    const list = fake.addList('VIP');
    const c = client({ batch_size: 1 });
    const audience = { id: list.resourceName, name: 'VIP' };
    const outcomes = await Promise.all([c.add(audience, [ada, bob]), c.add(audience, [cy])]);
    expect(outcomes.map((o) => o.status)).toEqual(['pending', 'pending']);
    const [first, second] = [...fake.jobs.keys()];
    // The second job starts after the first ran: no interleaving, no CONCURRENT_MODIFICATION.
    expect(
      fake.calls.map((c) => `${c.method}:${'resource_name' in c.request ? c.request.resource_name : ''}`),
    ).toEqual([
      'CreateOfflineUserDataJob:',
      `AddOfflineUserDataJobOperations:${first}`,
      `AddOfflineUserDataJobOperations:${first}`,
      `RunOfflineUserDataJob:${first}`,
      'CreateOfflineUserDataJob:',
      `AddOfflineUserDataJobOperations:${second}`,
      `RunOfflineUserDataJob:${second}`,
    ]);
  });
});

describe('partial failures and errors', () => {
  it('maps partial failures back to the members by operation index, across requests', async () => {
    const list = fake.addList('VIP');
    const bad = new Set([hex('bob@example.com'), hex('+442079460958')]);
    fake.rejectOperation = (op) =>
      op.create?.user_identifiers.some((id) => bad.has(id.hashed_email ?? id.hashed_phone_number ?? ''))
        ? {
            category: 'offline_user_data_job_error',
            code: 'INVALID_SHA256_FORMAT',
            message: 'The SHA256 encoded value is malformed.',
          }
        : undefined;
    const outcome = await client().add({ id: list.resourceName, name: 'VIP' }, [ada, bob, cy]);
    expect(outcome).toEqual({
      status: 'pending',
      token: [...fake.jobs.keys()][0],
      rejected: [
        { index: 1, reason: 'INVALID_SHA256_FORMAT: The SHA256 encoded value is malformed.' },
        { index: 2, reason: 'INVALID_SHA256_FORMAT: The SHA256 encoded value is malformed.' },
      ],
    });
    expect(list.identifiers).toEqual(
      new Set(
        fake.jobs
          .values()
          .next()
          .value!.operations.flatMap((o) => o.create!.user_identifiers.map(identifierKey)),
      ),
    );
    expect([...list.identifiers].some((k) => bad.has(k.split(':')[1]!))).toBe(false);
  });

  it('replace: partial failure indexes skip the remove_all operation', async () => {
    const list = fake.addList('VIP');
    fake.rejectOperation = (op) =>
      op.create?.user_identifiers[0]?.hashed_email === hex('bob@example.com')
        ? { category: 'offline_user_data_job_error', code: 'INVALID_SHA256_FORMAT', message: 'malformed' }
        : undefined;
    const outcome = await client().replace!({ id: list.resourceName, name: 'VIP' }, [ada, bob, cy]);
    expect(outcome.rejected).toEqual([{ index: 1, reason: 'INVALID_SHA256_FORMAT: malformed' }]);
  });

  it('CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE: permanent, naming api: data_manager', async () => {
    const list = fake.addList('VIP');
    fake.failNext('CreateOfflineUserDataJob', {
      code: grpc.status.PERMISSION_DENIED,
      errors: [
        {
          error_code: { not_allowlisted_error: 'CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE' },
          message: 'Customer is not allowlisted for accessing this feature.',
        },
      ],
    });
    const error = await client()
      .add({ id: list.resourceName, name: 'VIP' }, [bob])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectorError);
    expect((error as ConnectorError).kind).toBe('permanent');
    expect((error as ConnectorError).message).toContain('CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE');
    expect((error as ConnectorError).message).toContain('api: data_manager');
    expect((error as ConnectorError).message).toContain('https://www.googleapis.com/auth/datamanager');
    expect(fake.callsOf('RunOfflineUserDataJob')).toHaveLength(0);
  });

  it('RESOURCE_EXHAUSTED: rate limited with the retry delay Google gives, else the core backoff', async () => {
    const list = fake.addList('VIP');
    const audience = { id: list.resourceName, name: 'VIP' };
    fake.failNext('AddOfflineUserDataJobOperations', {
      code: grpc.status.RESOURCE_EXHAUSTED,
      errors: [
        {
          error_code: { quota_error: 'RESOURCE_TEMPORARILY_EXHAUSTED' },
          message: 'Too many requests. Retry in 17 seconds.',
          details: { quota_error_details: { retry_delay: { seconds: 17 } } },
        },
      ],
    });
    const c = client();
    const first = await c.add(audience, [bob]).catch((e: unknown) => e);
    expect(first).toMatchObject({ kind: 'rate_limited', options: { retryAfterMs: 17_000 } });
    fake.failNext('CreateOfflineUserDataJob', {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: 'Quota exceeded',
    });
    const second = (await c.add(audience, [bob]).catch((e: unknown) => e)) as ConnectorError;
    expect(second).toMatchObject({ kind: 'rate_limited' });
    expect(second.options.retryAfterMs).toBeUndefined();
    expect(retryDelay(second, 0, DEFAULT_RETRY, () => 1)).toBe(1_000);
    expect(second.message).toContain('RESOURCE_EXHAUSTED');

    // Refused at its start, a job is whole: it waits, pending, and a later poll starts it (no second job).
    fake.failNext('RunOfflineUserDataJob', {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: 'Quota exceeded',
    });
    const jobs = fake.jobs.size;
    const third = await c.add(audience, [bob]);
    expect(fake.jobs.size).toBe(jobs + 1);
    const job = [...fake.jobs.values()].at(-1)!;
    expect(third).toEqual({ status: 'pending', token: job.resourceName });
    expect(job.status).toBe('PENDING');
    expect(await c.poll!(audience, job.resourceName)).toEqual({ status: 'processing' });
    expect(job.status).toBe('SUCCESS');
  });

  it('GAQL 429: waits the Retry-After Google sends (1 s), else the core backoff', async () => {
    nock.cleanAll();
    const limit = {
      error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Too many requests' },
    };
    nock(FAKE_REST)
      .post(/googleAds:search$/)
      .reply(429, limit, { 'Retry-After': '1' })
      .post(/googleAds:search$/)
      .reply(429, limit);
    rest = serveRest(fake);
    const c = client();
    const first = (await c.stats({ id: 'x', name: 'VIP' }).catch((e: unknown) => e)) as ConnectorError;
    expect(first).toMatchObject({ kind: 'rate_limited', options: { retryAfterMs: 1_000 } });
    expect(retryDelay(first, 0)).toBe(1_000);
    const second = (await c.stats({ id: 'x', name: 'VIP' }).catch((e: unknown) => e)) as ConnectorError;
    expect(second.kind).toBe('rate_limited');
    expect(second.options.retryAfterMs).toBeUndefined();
    expect(retryDelay(second, 0, DEFAULT_RETRY, () => 0)).toBe(500);
    // A 503 that says when to come back is retried then.
    nock.cleanAll();
    nock(FAKE_REST)
      .post(/googleAds:search$/)
      .reply(503, { error: { code: 503, status: 'UNAVAILABLE' } }, { 'Retry-After': '5' });
    rest = serveRest(fake);
    const third = (await c.stats({ id: 'x', name: 'VIP' }).catch((e: unknown) => e)) as ConnectorError;
    expect(third).toMatchObject({ kind: 'retryable', options: { retryAfterMs: 5_000 } });
  });

  it('OAuth 429: waits the Retry-After of the token endpoint', async () => {
    nock.cleanAll();
    nock(new URL(FAKE_TOKEN_URL).origin)
      .post(new URL(FAKE_TOKEN_URL).pathname)
      .reply(429, { error: 'rate_limit_exceeded' }, { 'Retry-After': '2' });
    rest = serveRest(fake);
    const error = (await client()
      .stats({ id: 'x', name: 'VIP' })
      .catch((e: unknown) => e)) as ConnectorError;
    expect(error).toMatchObject({ kind: 'rate_limited', options: { retryAfterMs: 2_000 } });
  });

  it('CONCURRENT_MODIFICATION at run (another job at work on the list): the job waits, pending, and a later poll starts it', async () => {
    const list = fake.addList('VIP');
    const audience = { id: list.resourceName, name: 'VIP' };
    fake.failNext('RunOfflineUserDataJob', {
      code: grpc.status.ABORTED,
      errors: [
        {
          error_code: { database_error: 'CONCURRENT_MODIFICATION' },
          message: 'Multiple requests were attempting to modify the same resource at once.',
        },
      ],
    });
    const c = client();
    // No retry, no second job: the filled job is the pending upload.
    const outcome = await c.add(audience, [ada, bob]);
    expect(fake.jobs.size).toBe(1);
    const job = [...fake.jobs.values()][0]!;
    expect(outcome).toEqual({ status: 'pending', token: job.resourceName });
    expect(job).toMatchObject({ status: 'PENDING' });
    expect(job.operations).toHaveLength(2);
    expect(await c.poll!(audience, job.resourceName)).toEqual({ status: 'processing' });
    expect(fake.callsOf('RunOfflineUserDataJob').map((call) => call.request.resource_name)).toEqual([
      job.resourceName,
      job.resourceName,
    ]);
    expect(await c.poll!(audience, job.resourceName)).toEqual({ status: 'done' });
    expect(fake.jobs.size).toBe(1);
  });

  it('a job made while another runs on the list is not started beside it: a poll starts it once the list is free', async () => {
    const list = fake.addList('VIP');
    const audience = { id: list.resourceName, name: 'VIP' };
    fake.finish = 'manual';
    const c = client();
    const first = await c.add(audience, [ada]);
    const second = await c.remove(audience, [bob]);
    if (first.status !== 'pending' || second.status !== 'pending') throw new Error('expected pending');
    expect(fake.jobs.get(first.token)!.status).toBe('RUNNING');
    expect(fake.jobs.get(second.token)!.status).toBe('PENDING');
    // Google is still at work on the first: the second waits, without a refused start.
    expect(await c.poll!(audience, second.token)).toEqual({ status: 'processing' });
    expect(fake.callsOf('RunOfflineUserDataJob')).toHaveLength(1);
    fake.finishJobs();
    expect(await c.poll!(audience, first.token)).toEqual({ status: 'done' });
    expect(await c.poll!(audience, second.token)).toEqual({ status: 'processing' });
    expect(fake.jobs.get(second.token)!.status).toBe('RUNNING');
    fake.finishJobs();
    expect(await c.poll!(audience, second.token)).toEqual({ status: 'done' });
    expect(fake.refusedRuns).toEqual([]);
  });

  it('UNAVAILABLE: retryable at once, with no hidden retries inside the SDK (the core owns retries)', async () => {
    const list = fake.addList('VIP');
    fake.failNext('CreateOfflineUserDataJob', {
      code: grpc.status.UNAVAILABLE,
      details: 'backend unavailable',
    });
    const error = await client()
      .add({ id: list.resourceName, name: 'VIP' }, [bob])
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'retryable' });
    expect((error as Error).message).toContain('UNAVAILABLE');
    // A hidden retry would have made a second call (and the fake answers a second call).
    expect(fake.callsOf('CreateOfflineUserDataJob')).toHaveLength(1);
  });

  it('an access token that expires between two calls is renewed once and every path goes on (gRPC, GAQL)', async () => {
    nock.cleanAll();
    let issued = 0;
    rest = serveRest(fake, () => [200, { access_token: `ya29.token-${++issued}`, expires_in: 3600 }]);
    const list = fake.addList('VIP');
    const c = client();
    const audience = await c.ensureAudience('VIP');
    expect(audience.id).toBe(list.resourceName);
    // Google says the first token expired (before our own margin did): the next gRPC call is refused.
    fake.expiredTokens.add('ya29.token-1');
    const added = await c.add(audience, [bob]);
    expect(added.status).toBe('pending');
    expect(rest.tokenRequests).toHaveLength(2);
    const methods = fake.calls.map((call) => `${call.method} ${call.headers.authorization}`);
    expect(methods).toEqual([
      'CreateOfflineUserDataJob Bearer ya29.token-1',
      'CreateOfflineUserDataJob Bearer ya29.token-2',
      'AddOfflineUserDataJobOperations Bearer ya29.token-2',
      'RunOfflineUserDataJob Bearer ya29.token-2',
    ]);
    expect(fake.jobs.size).toBe(1);
    // Then the second expires before a GAQL poll: renewed once more, and the poll answers.
    fake.expiredTokens.add('ya29.token-2');
    if (added.status !== 'pending') throw new Error('expected pending');
    expect(await c.poll!(audience, added.token)).toEqual({ status: 'done' });
    expect(rest.tokenRequests).toHaveLength(3);
    expect(rest.searches.slice(-2).map((s) => s.headers.authorization)).toEqual([
      'Bearer ya29.token-2',
      'Bearer ya29.token-3',
    ]);
  });

  it('a token refused even when just renewed: permanent, once renewed, without blaming the refresh token', async () => {
    nock.cleanAll();
    let issued = 0;
    rest = serveRest(fake, () => [200, { access_token: `ya29.token-${++issued}`, expires_in: 3600 }]);
    for (let n = 1; n <= 5; n++) fake.expiredTokens.add(`ya29.token-${n}`);
    const list = fake.addList('VIP');
    const error = (await client()
      .add({ id: list.resourceName, name: 'VIP' }, [bob])
      .catch((e: unknown) => e)) as ConnectorError;
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('OAUTH_TOKEN_EXPIRED');
    expect(error.message).not.toMatch(/refresh.token|GOOGLE_REFRESH_TOKEN/i);
    expect(rest.tokenRequests).toHaveLength(2);
    expect(fake.callsOf('CreateOfflineUserDataJob')).toHaveLength(2);
    const search = (await client()
      .stats({ id: list.resourceName, name: 'VIP' })
      .catch((e: unknown) => e)) as ConnectorError;
    expect(search.kind).toBe('permanent');
    expect(search.message).not.toMatch(/refresh.token|GOOGLE_REFRESH_TOKEN/i);
    expect(rest.tokenRequests).toHaveLength(4);
  });

  it('an expired refresh token: permanent, says how to renew it, and no gRPC call is made', async () => {
    nock.cleanAll();
    rest = serveRest(fake, () => [
      400,
      { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' },
    ]);
    const list = fake.addList('VIP');
    const error = await client()
      .add({ id: list.resourceName, name: 'VIP' }, [bob])
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'permanent' });
    expect((error as Error).message).toContain('invalid_grant');
    expect((error as Error).message).toContain('GOOGLE_REFRESH_TOKEN');
    expect(fake.calls).toHaveLength(0);
  });

  it('error messages carry no tokens', async () => {
    const list = fake.addList('VIP');
    fake.failNext('CreateOfflineUserDataJob', {
      code: grpc.status.PERMISSION_DENIED,
      errors: [
        {
          error_code: { authorization_error: 'DEVELOPER_TOKEN_NOT_APPROVED' },
          message: 'The developer token is only approved for use with test accounts.',
        },
      ],
    });
    const error = (await client()
      .add({ id: list.resourceName, name: 'VIP' }, [bob])
      .catch((e: unknown) => e)) as ConnectorError;
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('Basic or Standard access');
    const everything = JSON.stringify({ message: error.message, cause: error.cause, options: error.options });
    for (const secret of [FAKE_ACCESS_TOKEN, 'dev-token-abc', '1//refresh-token', 'client-secret'])
      expect(everything).not.toContain(secret);
  });
});

describe('lists, polls, stats, check', () => {
  it('ensureAudience finds the list by name, or creates a CRM-based CONTACT_INFO list with the lifespan', async () => {
    const existing = fake.addList("Bob's \\ VIP");
    const c = client({ membership_days: 30 });
    expect(await c.ensureAudience("Bob's \\ VIP")).toEqual({
      id: existing.resourceName,
      name: "Bob's \\ VIP",
      created: false,
    });
    expect(rest.searches[0]!.query).toContain("WHERE user_list.name = 'Bob\\'s \\\\ VIP'");
    expect(rest.searches[0]!.headers).toMatchObject({
      authorization: `Bearer ${FAKE_ACCESS_TOKEN}`,
      'developer-token': 'dev-token-abc',
      'login-customer-id': '1112223333',
    });

    const created = await c.ensureAudience('Champions', undefined, '0a1b2c3d4e5f');
    expect(created).toMatchObject({ created: true, epoch: '0a1b2c3d4e5f' });
    expect(fake.callsOf('MutateUserLists')[0]!.request).toEqual({
      customer_id: '1234567890',
      operations: [
        {
          create: {
            name: 'Champions',
            description:
              'Managed by audience-sync (destination google): members follow a segment (audience-sync epoch 0a1b2c3d4e5f)',
            membership_life_span: '30',
            crm_based_user_list: { upload_key_type: 'CONTACT_INFO', data_source_type: 'FIRST_PARTY' },
          },
        },
      ],
    });
    expect(created.id).toBe(fake.listNamed('Champions')!.resourceName);
    // The remembered id is used as it is, with the epoch its description carries.
    expect(await c.ensureAudience('Champions', created.id)).toEqual({
      id: created.id,
      name: 'Champions',
      created: false,
      epoch: '0a1b2c3d4e5f',
    });
    expect(rest.searches.at(-1)!.query).toMatch(
      /^SELECT user_list.resource_name, user_list.name, user_list.description,/,
    );
    expect(fake.callsOf('MutateUserLists')).toHaveLength(1);
  });

  it("stamp writes the state's epoch into the list's description with an update and its field mask", async () => {
    const made = fake.addList('Loyal');
    made.description = 'Our loyal customers';
    const c = client();
    const found = await c.ensureAudience('Loyal');
    expect(found).toEqual({ id: made.resourceName, name: 'Loyal', created: false });
    await c.stamp!(found, '123456abcdef');
    await c.stamp!(found, 'fedcba654321');
    expect(fake.callsOf('MutateUserLists').map((call) => call.request)).toEqual(
      ['123456abcdef', 'fedcba654321'].map((epoch) => ({
        customer_id: '1234567890',
        operations: [
          {
            update: {
              resource_name: made.resourceName,
              description: `Our loyal customers (audience-sync epoch ${epoch})`,
            },
            update_mask: { paths: ['resource_name', 'description'] },
          },
        ],
      })),
    );
    expect(made.description).toBe('Our loyal customers (audience-sync epoch fedcba654321)');
    expect(await c.ensureAudience('Loyal', made.resourceName)).toMatchObject({ epoch: 'fedcba654321' });
  });

  it('ensureAudience never duplicates: NAME_ALREADY_USED on create means search again and use it', async () => {
    const c = client();
    // The list appears between our search and our create (an earlier attempt that crashed).
    let searched = 0;
    nock.cleanAll();
    rest = serveRest(fake);
    const original = fake.search.bind(fake);
    fake.search = (query) => {
      const answer = original(query);
      if (query.includes('FROM user_list') && searched++ === 0) fake.addList('Champions');
      return answer;
    };
    try {
      const audience = await c.ensureAudience('Champions');
      expect(audience).toEqual({
        id: fake.listNamed('Champions')!.resourceName,
        name: 'Champions',
        created: false,
      });
      expect(fake.lists.size).toBe(1);
      expect(fake.callsOf('MutateUserLists')).toHaveLength(1);
    } finally {
      fake.search = original;
    }
  });

  it('poll: job status by GAQL: RUNNING → processing, SUCCESS → done, FAILED → failed with the reason', async () => {
    const list = fake.addList('VIP');
    fake.finish = 'manual';
    const c = client();
    const audience = { id: list.resourceName, name: 'VIP' };
    const outcome = await c.add(audience, [bob]);
    if (outcome.status !== 'pending') throw new Error('expected pending');
    expect(await c.poll!(audience, outcome.token)).toEqual({ status: 'processing' });
    expect(rest.searches.at(-1)!.query).toBe(
      'SELECT offline_user_data_job.status, offline_user_data_job.failure_reason FROM offline_user_data_job ' +
        `WHERE offline_user_data_job.resource_name = '${outcome.token}'`,
    );
    expect(list.identifiers.size).toBe(0);
    fake.finishJobs();
    expect(await c.poll!(audience, outcome.token)).toEqual({ status: 'done' });
    expect(list.identifiers).toEqual(new Set([`email:${hex('bob@example.com')}`]));

    const failed = await c.add(audience, [cy]);
    if (failed.status !== 'pending') throw new Error('expected pending');
    Object.assign(fake.jobs.get(failed.token)!, { status: 'FAILED', failureReason: 'UNKNOWN' });
    expect(await c.poll!(audience, failed.token)).toEqual({
      status: 'failed',
      reason: 'upload job failed: UNKNOWN',
    });
  });

  it('stats: sizes and match rate, with a warning below the 100-member serving minimum', async () => {
    const list = fake.addList('VIP');
    const audience = { id: list.resourceName, name: 'VIP' };
    const c = client();
    expect(await c.stats(audience)).toEqual({ size: undefined, matchRate: undefined, warnings: [] });
    list.stats = { sizeForSearch: 40, sizeForDisplay: 60, matchRatePercentage: 35, eligibleForSearch: false };
    const stats = await c.stats(audience);
    expect(stats.size).toBe(40);
    expect(stats.matchRate).toBeCloseTo(0.35);
    expect(stats.warnings).toHaveLength(2);
    expect(stats.warnings[0]).toContain('100');
    list.stats = { sizeForSearch: 5000, matchRatePercentage: 61, eligibleForSearch: true };
    expect(await c.stats(audience)).toEqual({ size: 5000, matchRate: 0.61, warnings: [] });
  });

  it('check: OAuth, developer token and customer access, each with a clear message', async () => {
    expect(await client().check()).toEqual([
      { name: 'oauth', ok: true, detail: expect.any(String) },
      { name: 'developer token', ok: true, detail: expect.any(String) },
      { name: 'customer access', ok: true, detail: expect.any(String) },
    ]);
    expect(rest.searches.at(-1)!.query).toBe('SELECT customer.id FROM customer LIMIT 1');

    nock.cleanAll();
    nock(FAKE_REST)
      .post(/googleAds:search$/)
      .reply(403, {
        error: {
          code: 403,
          status: 'PERMISSION_DENIED',
          message: 'The caller does not have permission',
          details: [
            {
              '@type': 'type.googleapis.com/google.ads.googleads.v24.errors.GoogleAdsFailure',
              errors: [
                {
                  errorCode: { authorizationError: 'USER_PERMISSION_DENIED' },
                  message: "User doesn't have permission to access customer.",
                },
              ],
            },
          ],
        },
      });
    rest = serveRest(fake);
    const checks = await client().check();
    expect(checks.find((c) => c.name === 'customer access')).toMatchObject({ ok: false });
    expect(checks.find((c) => c.name === 'customer access')!.detail).toContain('login_customer_id');

    nock.cleanAll();
    rest = serveRest(fake, () => [400, { error: 'invalid_grant' }]);
    expect(await client().check()).toEqual([
      { name: 'oauth', ok: false, detail: expect.stringContaining('invalid_grant') },
    ]);
  });
});
