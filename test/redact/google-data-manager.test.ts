import type { Server } from 'node:http';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { FakeDataManager } from '../../connectors/google-ads/fixtures/fake-datamanager.js';
import { bridge, ISSUED, killChildren, runRedacted } from './harness.js';

/**
 * Issue 14, case 4, on the Data Manager path (the default): Google's OAuth token endpoint, and the API
 * behind it, echo the credentials they were sent. Through every command, nothing of the client secret,
 * the refresh token or the access token may reach the screen, a log or Redis; the messages still name
 * what to fix.
 */

const redisUrl = inject('redisUrl');
const DM = 'https://datamanager.echo.test';
const TOKEN = 'https://oauth2.echo.test/token';
const ACCOUNT = '1234567890';
const servers: Server[] = [];
let fake: FakeDataManager;
let block = '';

beforeAll(async () => {
  fake = new FakeDataManager(DM, TOKEN, ACCOUNT, ISSUED.dataManager);
  fake.install();
  fake.echoCredentials = true;
  const [api, token] = await Promise.all([bridge(DM), bridge(new URL(TOKEN).origin)]);
  servers.push(api!.server, token!.server);
  block = `    type: google_ads
    customer_id: "${ACCOUNT}"
    client_id: 1234-echo.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    default_country: US
    endpoints: { data_manager: ${api!.url}, token_url: ${token!.url}/token }`;
});
afterAll(() => {
  killChildren();
  for (const s of servers) s.close();
  nock.cleanAll();
});
afterEach(() => {
  fake.tokenError = undefined;
  fake.refuse = undefined;
});

/** Members whose first identifier's hash starts with 0: about one in sixteen. */
const unlucky = (m: { userData: { userIdentifiers: { emailAddress?: string; phoneNumber?: string }[] } }) => {
  const first = m.userData.userIdentifiers[0];
  return (first?.emailAddress ?? first?.phoneNumber ?? '').startsWith('0');
};

describe('Google Data Manager: secrets echoed by Google never leave the process', () => {
  it('the token endpoint repeats client_secret and refresh_token in error_description', async () => {
    fake.tokenError = 'invalid_grant';
    // The echo went through and was redacted; the message still says what to do.
    const text = await runRedacted({ redisUrl, destination: 'google', block });
    expect(text).toContain('invalid_grant');
    expect(text).toContain('Received grant_type=refresh_token');
    expect(text).toContain('set GOOGLE_REFRESH_TOKEN');
  });

  it('API errors repeat the access token and the request', async () => {
    fake.refuse = (r) => {
      const denied: [number, { error: Record<string, unknown> }] = [
        403,
        {
          error: { code: 403, status: 'PERMISSION_DENIED', message: 'The caller does not have permission' },
        },
      ];
      // The check's probe, the stats of a list, and every status poll.
      if (r.method === 'GET' && r.query.get('pageSize') === '1') return denied;
      if (r.method === 'GET' && /\/userLists\/\d+$/.test(r.path)) return denied;
      if (r.path.endsWith('requestStatus:retrieve')) return denied;
      if (r.path.endsWith('audienceMembers:ingest')) {
        const members = (r.body as { audienceMembers: Parameters<typeof unlucky>[0][] }).audienceMembers;
        const fieldViolations = members.flatMap((m, i) =>
          unlucky(m) ? [{ field: `audience_members[${i}].user_data`, description: 'Invalid hash' }] : [],
        );
        if (fieldViolations.length > 0)
          return [400, { error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ fieldViolations }] } }];
      }
      return undefined;
    };
    const text = await runRedacted({ redisUrl, destination: 'google', block });
    expect(text).toContain('PERMISSION_DENIED');
    // Google's reason for each refused member is kept, without the token.
    expect(text).toContain('Invalid hash');
  });
});
