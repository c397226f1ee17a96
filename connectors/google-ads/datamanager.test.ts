import { createHash } from 'node:crypto';
import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConnectorError, type Check, type ConnectorClient, type Member } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RETRY, retryDelay } from '../../src/push/retry.js';
import { checksOf, type Destination } from '../../src/sync/run.js';
import { googleAdsConfigSchema, type GoogleAdsConfig } from './config.js';
import { DataManagerClient } from './datamanager.js';
import { IDENTIFIER_GROUPS, SLOTS } from './identifiers.js';
import { identify } from './identify.js';
import { googleAdsConnector } from './index.js';
import { slotBuffers } from '../../src/identify/types.js';

const DM = 'https://datamanager.test';
const TOKEN_URL = 'https://oauth.test/token';
const PARENT = '/v1/accountTypes/GOOGLE_ADS/accounts/1234567890';
const log = createLogger({ level: 'silent', json: true });

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function configOf(extra: Record<string, unknown> = {}): GoogleAdsConfig {
  return googleAdsConfigSchema.parse({
    type: 'google_ads',
    customer_id: '123-456-7890',
    client_id: 'client-id.apps.googleusercontent.com',
    client_secret: 'very-secret',
    refresh_token: '1//refresh-token-value',
    endpoints: { data_manager: DM, token_url: TOKEN_URL },
    ...extra,
  });
}

function clientOf(extra: Record<string, unknown> = {}): ConnectorClient {
  return googleAdsConnector.create(configOf(extra), { destination: 'google', baseDir: '.', log });
}

/** `check` as the core runs it: the declared consent settings first, then the client's rows. */
function checkOf(extra: Record<string, unknown> = {}): Promise<Check[]> {
  const destination = { name: 'google', connector: googleAdsConnector, config: configOf(extra) };
  return checksOf(destination as unknown as Destination, clientOf(extra));
}

/** The consent settings' row, which also refuses every run of the destination while it is not ok. */
const consentOf = (extra: Record<string, unknown> = {}) =>
  googleAdsConnector.consent!(configOf(extra), 'google')!.check;

/** The token exchange, exactly as Google's token endpoint expects it. */
function oauthOk(times = 1) {
  return nock('https://oauth.test')
    .post('/token', {
      grant_type: 'refresh_token',
      client_id: 'client-id.apps.googleusercontent.com',
      client_secret: 'very-secret',
      refresh_token: '1//refresh-token-value',
      scope: 'https://www.googleapis.com/auth/datamanager',
    })
    .matchHeader('content-type', 'application/x-www-form-urlencoded')
    .times(times)
    .reply(200, { access_token: 'ya29.access', expires_in: 3599, token_type: 'Bearer' });
}

const dm = () => nock(DM).matchHeader('authorization', 'Bearer ya29.access');

function member(person: Record<string, string>, config = configOf()): Member {
  const id = identify(person, config);
  if ('skip' in id) throw new Error(`test person skipped: ${id.skip}`);
  return { key: Buffer.alloc(8), slots: slotBuffers(id.slots) };
}

const audience = { id: '555', name: 'Champions' };
const destination = {
  operatingAccount: { accountType: 'GOOGLE_ADS', accountId: '1234567890' },
  productDestinationId: '555',
};
const ingestHead = {
  destinations: [destination],
  encoding: 'HEX',
  termsOfService: { customerMatchTermsOfServiceStatus: 'ACCEPTED' },
};
/** Each member added says its own EU consents (Data Manager's `AudienceMember.consent`). */
const granted = { adUserData: 'CONSENT_GRANTED', adPersonalization: 'CONSENT_GRANTED' };
const emailOnly = (email: string) => ({ userData: { userIdentifiers: [{ emailAddress: sha(email) }] } });
const emailAdded = (email: string) => ({ ...emailOnly(email), consent: granted });

async function rejection(promise: Promise<unknown>): Promise<ConnectorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  return error as ConnectorError;
}

beforeEach(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

describe('the connector definition', () => {
  it('uses the Data Manager API by default and the Google Ads API when asked', () => {
    const config = configOf({ batch_size: 500 });
    expect(config.api).toBe('data_manager');
    expect(clientOf()).toBeInstanceOf(DataManagerClient);
    const ads = clientOf({ api: 'ads_api', developer_token: 'dev-token' });
    expect(ads).not.toBeInstanceOf(DataManagerClient);
    expect(googleAdsConnector.batchSize(config)).toBe(500);
    // The Google Ads API path sends a job of several requests at once: one job runs on a list at a time.
    const adsApi = configOf({ api: 'ads_api', developer_token: 'dev', batch_size: 500 });
    expect(googleAdsConnector.batchSize(adsApi)).toBe(100_000);
    expect(googleAdsConnector.batchSize({ ...adsApi, job_members: 2_000 })).toBe(2_000);
    expect(googleAdsConnector.final(config)).toBe(false);
    expect(googleAdsConnector.slots(config)).toEqual(SLOTS);
    expect(googleAdsConnector.identifierGroups!(config)).toBe(IDENTIFIER_GROUPS);
  });

  it('takes the token URL as token_url, since the config loader treats keys ending in token as secrets', () => {
    expect(configOf({ endpoints: { token_url: 'https://sandbox.test/token' } }).endpoints).toEqual({
      data_manager: 'https://datamanager.googleapis.com',
      token_url: 'https://sandbox.test/token',
      ads_rest: 'https://googleads.googleapis.com',
    });
  });
});

describe('identify', () => {
  it('hashes per Google rules, sends the address unhashed with its names, and keeps only configured identifiers', () => {
    const person = {
      email: ' John.Doe+news@GoogleMail.com ',
      phone: '(800) 555-0100',
      first_name: 'Dr. John',
      last_name: "O'Doe Jr.",
      country: 'us',
      postal_code: '94045-1234',
    };
    const all = identify(person, configOf());
    expect('slots' in all && slotBuffers(all.slots).map((s) => s?.toString('hex'))).toEqual([
      sha('johndoe@googlemail.com'),
      sha('+18005550100'),
      sha('john'),
      sha('odoe'),
      expect.any(String),
    ]);
    const emailOnlyConfig = configOf({ identifiers: ['email'] });
    const one = identify(person, emailOnlyConfig);
    expect('slots' in one && one.slots.map((s) => s !== undefined)).toEqual([
      true,
      false,
      false,
      false,
      false,
    ]);
    expect(identify({ phone: '(800) 555-0100', country: 'US' }, emailOnlyConfig)).toEqual({
      skip: 'no usable identifier',
    });
  });

  it('reads consent per customer from a column and skips anyone without both grants, naming the purpose', () => {
    const config = configOf({
      consent: { ad_user_data: { column: 'ads_ok' }, ad_personalization: { column: 'perso_ok' } },
    });
    const a = { email: 'a@example.com' };
    expect('slots' in identify({ ...a, ads_ok: ' Yes ', perso_ok: 'y' }, config)).toBe(true);
    expect('slots' in identify({ ...a, ads_ok: 'TRUE', perso_ok: '1' }, config)).toBe(true);
    expect(identify({ ...a, ads_ok: 'no', perso_ok: 'yes' }, config)).toEqual({
      skip: 'consent not granted (ad_user_data)',
    });
    expect(identify({ ...a, ads_ok: 'yes', perso_ok: '' }, config)).toEqual({
      skip: 'consent not granted (ad_personalization)',
    });
    // Neither: the first purpose Google checks is the one named.
    expect(identify(a, config)).toEqual({ skip: 'consent not granted (ad_user_data)' });
    const denied = configOf({ consent: { ad_user_data: 'granted', ad_personalization: 'denied' } });
    expect(identify(a, denied)).toEqual({ skip: 'consent not granted (ad_personalization)' });
    // Unset: everyone granted, except on an EEA account, where nobody is (its runs are refused anyway).
    expect('slots' in identify(a, configOf())).toBe(true);
    expect(identify(a, configOf({ eea: true }))).toEqual({ skip: 'consent not granted (ad_user_data)' });
  });
});

describe('Data Manager uploads', () => {
  it('exchanges the refresh token once and sends hashed identifiers, consent and the destination', async () => {
    const token = oauthOk();
    const ingest = dm()
      .post('/v1/audienceMembers:ingest', {
        ...ingestHead,
        audienceMembers: [
          {
            userData: {
              userIdentifiers: [
                { emailAddress: sha('johndoe@gmail.com') },
                { phoneNumber: sha('+18005550100') },
                {
                  address: {
                    givenName: sha('john'),
                    familyName: sha('doe'),
                    regionCode: 'US',
                    postalCode: '94045',
                  },
                },
              ],
            },
            consent: granted,
          },
          { userData: { userIdentifiers: [{ phoneNumber: sha('+442079460000') }] }, consent: granted },
        ],
      })
      .matchHeader('content-type', 'application/json')
      .reply(200, { requestId: 'req-1' });
    const remove = dm()
      .post('/v1/audienceMembers:remove', {
        destinations: [destination],
        encoding: 'HEX',
        audienceMembers: [emailOnly('gone@example.com')],
      })
      .reply(200, { requestId: 'req-2' });
    const client = clientOf();
    const john = member({
      email: 'John.Doe+ads@gmail.com',
      phone: '+1 800 555 0100',
      first_name: 'John',
      last_name: 'Doe',
      country: 'US',
      postal_code: '94045',
    });
    const uk = member({ phone: '020 7946 0000', country: 'GB' });
    expect(await client.add(audience, [john, uk])).toEqual({
      status: 'pending',
      token: 'req-1',
      rejected: [],
    });
    expect(await client.remove(audience, [member({ email: 'gone@example.com' })])).toEqual({
      status: 'pending',
      token: 'req-2',
      rejected: [],
    });
    expect(token.isDone() && ingest.isDone() && remove.isDone()).toBe(true);
  });

  it('sends at most batch_size members per request and names the manager account', async () => {
    oauthOk();
    const login = { accountType: 'GOOGLE_ADS', accountId: '9999999999' };
    const dest = { ...destination, loginAccount: login };
    const sizes: number[] = [];
    const scope = dm()
      .post('/v1/audienceMembers:ingest', (body: { destinations: unknown; audienceMembers: unknown[] }) => {
        expect(body.destinations).toEqual([dest]);
        sizes.push(body.audienceMembers.length);
        return true;
      })
      .times(3)
      .reply(200, () => ({ requestId: `req-${sizes.length}` }));
    const client = clientOf({ batch_size: 2, login_customer_id: '999-999-9999' });
    const members = ['a', 'b', 'c', 'd', 'e'].map((n) => member({ email: `${n}@example.com` }));
    const outcome = await client.add(audience, members);
    expect(sizes).toEqual([2, 2, 1]);
    expect(outcome).toEqual({ status: 'pending', token: 'req-1,req-2,req-3', rejected: [] });
    expect(scope.isDone()).toBe(true);
  });

  it('maps field violations to the members they name and sends the others again', async () => {
    oauthOk();
    const members = ['a', 'b', 'c'].map((n) => member({ email: `${n}@example.com` }));
    const scope = dm()
      .post(
        '/v1/audienceMembers:ingest',
        (b: { audienceMembers: unknown[] }) => b.audienceMembers.length === 3,
      )
      .reply(400, {
        error: {
          code: 400,
          status: 'INVALID_ARGUMENT',
          message: 'Request contains an invalid argument.',
          details: [
            {
              '@type': 'type.googleapis.com/google.rpc.BadRequest',
              fieldViolations: [
                {
                  field: 'audience_members[1].user_data.user_identifiers[0]',
                  description: 'The hex encoding is invalid.',
                  reason: 'INVALID_HEX_ENCODING',
                },
              ],
            },
          ],
        },
      })
      .post('/v1/audienceMembers:ingest', {
        ...ingestHead,
        audienceMembers: [emailAdded('a@example.com'), emailAdded('c@example.com')],
      })
      .reply(200, { requestId: 'req-ok' });
    const outcome = await clientOf().add(audience, members);
    expect(outcome).toEqual({
      status: 'pending',
      token: 'req-ok',
      rejected: [{ index: 1, reason: 'INVALID_HEX_ENCODING' }],
    });
    expect(scope.isDone()).toBe(true);
  });

  it('stops with the field and reason when the whole request is invalid', async () => {
    oauthOk();
    dm()
      .post('/v1/audienceMembers:ingest')
      .reply(400, {
        error: {
          code: 400,
          status: 'INVALID_ARGUMENT',
          details: [
            {
              fieldViolations: [
                { field: 'destinations[0].product_destination_id', reason: 'INVALID_USER_LIST_ID' },
              ],
            },
          ],
        },
      });
    const error = await rejection(clientOf().add(audience, [member({ email: 'a@example.com' })]));
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('destinations[0].product_destination_id: INVALID_USER_LIST_ID');
  });

  it("waits out 429 for Retry-After seconds, or the core's short backoff when Google does not say", async () => {
    oauthOk();
    const body = { error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Quota exceeded' } };
    dm().post('/v1/audienceMembers:ingest').reply(429, body, { 'Retry-After': '7' });
    dm().post('/v1/audienceMembers:remove').reply(429, body);
    const client = clientOf();
    const first = await rejection(client.add(audience, [member({ email: 'a@example.com' })]));
    expect(first).toMatchObject({ kind: 'rate_limited', options: { retryAfterMs: 7000 } });
    const second = await rejection(client.remove(audience, [member({ email: 'a@example.com' })]));
    expect(second).toMatchObject({ kind: 'rate_limited' });
    expect(second.options.retryAfterMs).toBeUndefined();
    expect(retryDelay(first, 0)).toBe(7_000);
    expect(retryDelay(second, 0, DEFAULT_RETRY, () => 1)).toBe(1_000);
    expect(second.message).toContain('300 requests per minute');
  });

  it('retries 5xx, network failures and concurrent modification', async () => {
    oauthOk();
    dm()
      .post('/v1/audienceMembers:ingest')
      .reply(503, { error: { code: 503, status: 'UNAVAILABLE' } }, { 'Retry-After': '3' });
    dm()
      .post('/v1/audienceMembers:ingest')
      .reply(409, {
        error: { code: 409, status: 'ABORTED', details: [{ reason: 'CONCURRENT_MODIFICATION' }] },
      });
    dm().post('/v1/audienceMembers:ingest').replyWithError({ code: 'ECONNRESET', message: 'socket hang up' });
    const client = clientOf();
    const waits: (number | undefined)[] = [];
    for (let i = 0; i < 3; i++) {
      const error = await rejection(client.add(audience, [member({ email: 'a@example.com' })]));
      expect(error.kind).toBe('retryable');
      waits.push(error.options.retryAfterMs);
    }
    // A Retry-After on a 503 is honoured too; without one the core's backoff decides.
    expect(waits).toEqual([3_000, undefined, undefined]);
  });

  it('says how to enable the API on PERMISSION_DENIED', async () => {
    oauthOk();
    dm()
      .post('/v1/audienceMembers:ingest')
      .reply(403, {
        error: {
          code: 403,
          status: 'PERMISSION_DENIED',
          message: 'Data Manager API has not been used in project 42 before or it is disabled.',
          details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'SERVICE_DISABLED' }],
        },
      });
    dm()
      .post('/v1/audienceMembers:ingest')
      .reply(403, {
        error: { code: 403, status: 'PERMISSION_DENIED', message: 'The caller does not have permission' },
      });
    const client = clientOf();
    const disabled = await rejection(client.add(audience, [member({ email: 'a@example.com' })]));
    expect(disabled.kind).toBe('permanent');
    expect(disabled.message).toContain('gcloud services enable datamanager.googleapis.com');
    const noAccess = await rejection(client.add(audience, [member({ email: 'a@example.com' })]));
    expect(noAccess.message).toContain('cannot reach account 123-456-7890');
    expect(noAccess.message).toContain('login_customer_id');
  });

  it('says what to do when the account cannot use Customer Match', async () => {
    oauthOk();
    dm()
      .post('/v1/audienceMembers:ingest')
      .reply(400, {
        error: {
          code: 400,
          status: 'INVALID_ARGUMENT',
          details: [
            {
              '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
              reason: 'TERMS_AND_CONDITIONS_NOT_SIGNED',
            },
          ],
        },
      });
    const error = await rejection(clientOf().add(audience, [member({ email: 'a@example.com' })]));
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('cannot upload Customer Match lists yet');
    expect(error.message).toContain('Accept the Customer Match terms');
  });

  it('renews the token once on 401, then reports the credentials', async () => {
    oauthOk(2);
    dm()
      .post('/v1/audienceMembers:ingest')
      .times(2)
      .reply(401, { error: { code: 401, status: 'UNAUTHENTICATED' } });
    const error = await rejection(clientOf().add(audience, [member({ email: 'a@example.com' })]));
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('refused a newly issued access token');
    // The refresh worked: the refresh token is not what to fix.
    expect(error.message).not.toMatch(/refresh.token|GOOGLE_REFRESH_TOKEN/i);
    expect(nock.isDone()).toBe(true);
  });

  it('an access token that expires between two calls is renewed once and the next call goes on', async () => {
    nock('https://oauth.test')
      .post('/token')
      .reply(200, { access_token: 'ya29.first', expires_in: 3599 })
      .post('/token')
      .reply(200, { access_token: 'ya29.second', expires_in: 3599 });
    nock(DM)
      .matchHeader('authorization', 'Bearer ya29.first')
      .post('/v1/audienceMembers:ingest')
      .reply(200, { requestId: 'r1' })
      .post('/v1/audienceMembers:remove')
      .reply(401, { error: { code: 401, status: 'UNAUTHENTICATED', message: 'token expired' } });
    nock(DM)
      .matchHeader('authorization', 'Bearer ya29.second')
      .post('/v1/audienceMembers:remove')
      .reply(200, { requestId: 'r2' });
    const client = clientOf();
    expect(await client.add(audience, [member({ email: 'a@example.com' })])).toMatchObject({ token: 'r1' });
    expect(await client.remove(audience, [member({ email: 'b@example.com' })])).toMatchObject({
      token: 'r2',
    });
    expect(nock.isDone()).toBe(true);
  });
});

describe('OAuth failures', () => {
  it('explains an expired refresh token without leaking any secret', async () => {
    nock('https://oauth.test')
      .post('/token')
      .reply(400, { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' });
    const error = await rejection(clientOf().add(audience, [member({ email: 'a@example.com' })]));
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('expired or was revoked');
    expect(error.message).toContain('GOOGLE_REFRESH_TOKEN');
    for (const secret of ['very-secret', '1//refresh-token-value', 'ya29'])
      expect(error.message).not.toContain(secret);
  });

  it('names client_id/client_secret on invalid_client and retries a failing token endpoint', async () => {
    nock('https://oauth.test').post('/token').reply(401, { error: 'invalid_client' });
    nock('https://oauth.test').post('/token').reply(502, 'Bad Gateway');
    const client = clientOf();
    const bad = await rejection(client.add(audience, [member({ email: 'a@example.com' })]));
    expect(bad.kind).toBe('permanent');
    expect(bad.message).toContain('client_id and client_secret');
    const down = await rejection(client.add(audience, [member({ email: 'a@example.com' })]));
    expect(down.kind).toBe('retryable');
  });
});

describe('Data Manager lists', () => {
  const filter = 'display_name = "Champions"';

  it('finds an existing list by name and creates nothing', async () => {
    oauthOk();
    const scope = dm()
      .get(`${PARENT}/userLists`)
      .query({ filter, pageSize: '1000' })
      .reply(200, {
        userLists: [{ name: 'other', id: '1', displayName: 'Champions 2' }],
        nextPageToken: 'p2',
      })
      .get(`${PARENT}/userLists`)
      .query({ filter, pageSize: '1000', pageToken: 'p2' })
      .reply(200, {
        userLists: [{ name: `${PARENT.slice(4)}/userLists/777`, id: '777', displayName: 'Champions' }],
      });
    expect(await clientOf().ensureAudience('Champions')).toEqual({
      id: '777',
      name: 'Champions',
      created: false,
    });
    expect(scope.isDone()).toBe(true);
    expect(nock.pendingMocks()).toEqual([]);
  });

  it('creates a missing list once, with its lifespan and upload key type', async () => {
    oauthOk();
    const scope = dm()
      .get(`${PARENT}/userLists`)
      .query({ filter, pageSize: '1000' })
      .reply(200, {})
      .post(`${PARENT}/userLists`, {
        displayName: 'Champions',
        description:
          'Customer Match list kept equal to a segment by audience-sync (audience-sync epoch 0a1b2c3d4e5f)',
        membershipDuration: `${30 * 86_400}s`,
        ingestedUserListInfo: { uploadKeyTypes: ['CONTACT_ID'] },
      })
      .reply(200, { name: `${PARENT.slice(4)}/userLists/888`, displayName: 'Champions' });
    const created = await clientOf({ membership_days: 30 }).ensureAudience(
      'Champions',
      undefined,
      '0a1b2c3d4e5f',
    );
    expect(created).toEqual({ id: '888', name: 'Champions', created: true, epoch: '0a1b2c3d4e5f' });
    expect(scope.isDone()).toBe(true);
  });

  it("reads the epoch a list carries, and stamps a new one with userLists.patch, keeping the list's text", async () => {
    oauthOk();
    const scope = dm()
      .get(`${PARENT}/userLists/777`)
      .reply(200, {
        id: '777',
        displayName: 'Champions',
        description: 'VIPs (audience-sync epoch aaaaaaaaaaaa)',
      })
      .get(`${PARENT}/userLists`)
      .query({ filter: 'display_name = "Loyal"', pageSize: '1000' })
      .reply(200, { userLists: [{ id: '778', displayName: 'Loyal', description: 'Made by hand' }] })
      .patch(`${PARENT}/userLists/777`, { description: 'VIPs (audience-sync epoch bbbbbbbbbbbb)' })
      .query({ updateMask: 'description' })
      .matchHeader('login-account', 'accountTypes/GOOGLE_ADS/accounts/9999999999')
      .reply(200, { id: '777', displayName: 'Champions' })
      .patch(`${PARENT}/userLists/778`, { description: 'Made by hand (audience-sync epoch bbbbbbbbbbbb)' })
      .query({ updateMask: 'description' })
      .reply(200, { id: '778', displayName: 'Loyal' });
    const client = clientOf({ login_customer_id: '9999999999' });
    const known = await client.ensureAudience('Champions', '777', 'bbbbbbbbbbbb');
    expect(known).toEqual({ id: '777', name: 'Champions', created: false, epoch: 'aaaaaaaaaaaa' });
    const byName = await client.ensureAudience('Loyal', undefined, 'bbbbbbbbbbbb');
    expect(byName).toEqual({ id: '778', name: 'Loyal', created: false });
    await client.stamp!(known, 'bbbbbbbbbbbb');
    await client.stamp!(byName, 'bbbbbbbbbbbb');
    expect(scope.isDone()).toBe(true);
  });

  it('empties a list with audienceMembers:removeAll, pending until its request is done', async () => {
    oauthOk();
    const scope = dm()
      .post('/v1/audienceMembers:removeAll', { destinations: [destination] })
      .reply(200, { requestId: 'req-all' })
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'req-all' })
      .reply(200, { requestStatusPerDestination: [{ requestStatus: 'PROCESSING' }] })
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'req-all' })
      .reply(200, { requestStatusPerDestination: [{ requestStatus: 'SUCCESS' }] });
    const client = clientOf();
    const outcome = await client.removeAll!(audience);
    expect(outcome).toEqual({ status: 'pending', token: 'req-all' });
    expect(await client.poll!(audience, 'req-all')).toEqual({ status: 'processing' });
    expect(await client.poll!(audience, 'req-all')).toEqual({ status: 'done' });
    expect(scope.isDone()).toBe(true);
  });

  it('keeps a remembered list, and looks a deleted one up by name before creating', async () => {
    oauthOk();
    const scope = dm()
      .get(`${PARENT}/userLists/777`)
      .matchHeader('login-account', 'accountTypes/GOOGLE_ADS/accounts/9999999999')
      .reply(200, { id: '777', displayName: 'Champions' })
      .get(`${PARENT}/userLists/666`)
      .reply(404, { error: { code: 404, status: 'NOT_FOUND' } })
      .get(`${PARENT}/userLists`)
      .query({ filter, pageSize: '1000' })
      .reply(200, { userLists: [{ id: '777', displayName: 'Champions' }] });
    const client = clientOf({ login_customer_id: '9999999999' });
    expect(await client.ensureAudience('Champions', '777')).toEqual({
      id: '777',
      name: 'Champions',
      created: false,
    });
    expect(await client.ensureAudience('Champions', '666')).toEqual({
      id: '777',
      name: 'Champions',
      created: false,
    });
    expect(scope.isDone()).toBe(true);
  });

  it('escapes quotes in the name filter and uses the list another run created meanwhile', async () => {
    oauthOk();
    const name = 'The "best" ones';
    const query = { filter: 'display_name = "The \\"best\\" ones"', pageSize: '1000' };
    const scope = dm()
      .get(`${PARENT}/userLists`)
      .query(query)
      .reply(200, {})
      .post(`${PARENT}/userLists`)
      .reply(409, { error: { code: 409, status: 'ALREADY_EXISTS' } })
      .get(`${PARENT}/userLists`)
      .query(query)
      .reply(200, { userLists: [{ id: '999', displayName: name }] });
    expect(await clientOf().ensureAudience(name)).toEqual({ id: '999', name, created: false });
    expect(scope.isDone()).toBe(true);
  });

  it('maps request statuses to poll outcomes', async () => {
    oauthOk();
    const status = (requestStatus: string, extra: Record<string, unknown> = {}) => ({
      requestStatusPerDestination: [{ destination, requestStatus, ...extra }],
    });
    dm()
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r1' })
      .reply(200, status('PROCESSING'))
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r1' })
      .reply(
        200,
        status('SUCCESS', {
          audienceMembersIngestionStatus: {
            userDataIngestionStatus: { recordCount: '2', uploadMatchRateRange: 'MATCH_RATE_RANGE_61_TO_70' },
          },
        }),
      )
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r2' })
      .reply(200, status('PARTIAL_SUCCESS'))
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r3' })
      .reply(
        200,
        status('FAILED', {
          errorInfo: { errorCounts: [{ reason: 'INVALID_USER_LIST_ID', recordCount: '5' }] },
        }),
      )
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r4' })
      .reply(404, { error: { code: 404, status: 'NOT_FOUND' } })
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r5' })
      .reply(200, status('SUCCESS'))
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r6' })
      .reply(200, status('PROCESSING'))
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r7' })
      .reply(503, { error: { code: 503, status: 'UNAVAILABLE' } })
      .get('/v1/requestStatus:retrieve')
      .query({ requestId: 'r8' })
      .reply(403, { error: { code: 403, status: 'PERMISSION_DENIED' } });
    const client = clientOf();
    expect(await client.poll!(audience, 'r1')).toEqual({ status: 'processing' });
    expect(await client.poll!(audience, 'r1')).toEqual({ status: 'done' });
    expect(await client.poll!(audience, 'r2')).toEqual({ status: 'done' });
    expect(await client.poll!(audience, 'r3')).toEqual({
      status: 'failed',
      reason: 'request r3 FAILED: INVALID_USER_LIST_ID ×5',
    });
    expect((await client.poll!(audience, 'r4')).status).toBe('failed');
    expect(await client.poll!(audience, 'r5,r6')).toEqual({ status: 'processing' });
    // A passing failure keeps the batch pending for the next run; a permanent one stops the sync.
    expect(await client.poll!(audience, 'r7')).toEqual({ status: 'processing' });
    await expect(client.poll!(audience, 'r8')).rejects.toThrow('cannot reach account');
    expect(nock.isDone()).toBe(true);
  });

  it('reports the Search size, the match rate and why a list does not serve', async () => {
    oauthOk();
    dm()
      .get(`${PARENT}/userLists/555`)
      .reply(200, {
        id: '555',
        displayName: 'Champions',
        membershipStatus: 'OPEN',
        sizeInfo: { displayNetworkMembersCount: '40', searchNetworkMembersCount: '1200' },
        targetNetworkInfo: { eligibleForDisplay: true, eligibleForSearch: true },
        ingestedUserListInfo: { uploadKeyTypes: ['CONTACT_ID'], contactIdInfo: { matchRatePercentage: 63 } },
      })
      .get(`${PARENT}/userLists/555`)
      .reply(200, { id: '555', displayName: 'Champions', targetNetworkInfo: { eligibleForSearch: false } });
    const client = clientOf();
    expect(await client.stats(audience)).toEqual({
      size: 1200,
      matchRate: 0.63,
      warnings: ['40 members on Display/YouTube: a list serves only from 100 matched users'],
    });
    expect(await client.stats(audience)).toEqual({
      size: undefined,
      matchRate: undefined,
      warnings: [
        'Google has not sized the list yet (up to 24 hours after an upload)',
        'not eligible for Search campaigns',
      ],
    });
  });
});

describe('check', () => {
  it('proves the credentials and the account without side effects', async () => {
    oauthOk();
    const scope = dm().get(`${PARENT}/userLists`).query({ pageSize: '1' }).reply(200, { userLists: [] });
    const checks = await checkOf();
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['consent', true],
      ['oauth', true],
      ['account', true],
    ]);
    expect(scope.isDone()).toBe(true);
  });

  it('names each failure: denied consent, an expired token, an unreachable account', async () => {
    nock('https://oauth.test').post('/token').reply(400, { error: 'invalid_grant' });
    const denied = { consent: { ad_user_data: 'denied', ad_personalization: 'granted' } };
    const checks = await checkOf(denied);
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['consent', false],
      ['oauth', false],
    ]);
    expect(checks[0]!.detail).toContain("destinations.google.consent.ad_user_data is 'denied' for everyone");
    expect(checks[1]!.detail).toContain('GOOGLE_REFRESH_TOKEN');
    expect(consentOf(denied)).toMatchObject({
      ok: false,
      detail: expect.stringContaining("'denied' for everyone"),
    });

    oauthOk();
    dm()
      .get(`${PARENT}/userLists`)
      .query({ pageSize: '1' })
      .reply(403, { error: { code: 403, status: 'PERMISSION_DENIED' } });
    const account = (await clientOf().check()).find((c) => c.name === 'account')!;
    expect(account.ok).toBe(false);
    expect(account.detail).toContain('cannot reach account 123-456-7890');
  });

  it('refuses an EEA account whose consent is not written out, on both API paths (test/sync/consent.test.ts: runs)', async () => {
    const message =
      'destinations.google.consent.ad_user_data and destinations.google.consent.ad_personalization must be set ' +
      "for an EEA account (eea: true): 'granted' if every customer consented, or { column: <attribute> }";
    for (const api of ['data_manager', 'ads_api'] as const)
      expect(consentOf({ eea: true, api, developer_token: 'dev-token' })).toMatchObject({
        ok: false,
        detail: expect.stringContaining(message),
      });
    nock('https://oauth.test').post('/token').reply(400, { error: 'invalid_grant' });
    const [consent] = await checkOf({ eea: true });
    expect(consent).toMatchObject({ name: 'consent', ok: false });
    expect(consent!.detail).toContain(message);

    // Written out, even as granted for everyone, it is accepted.
    oauthOk();
    dm().get(`${PARENT}/userLists`).query({ pageSize: '1' }).reply(200, { userLists: [] });
    const checks = await checkOf({
      eea: true,
      consent: { ad_user_data: { column: 'ads_ok' }, ad_personalization: 'granted' },
    });
    expect(checks[0]).toEqual({
      name: 'consent',
      ok: true,
      detail: "ad_user_data from column 'ads_ok', ad_personalization granted (EEA account)",
    });
  });
});
