import { rmSync } from 'node:fs';
import type { Server } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { localhostCertificate } from '../../connectors/google-ads/grpc-fake/cert.js';
import { FAKE_REST, FAKE_TOKEN_URL, serveRest } from '../../connectors/google-ads/grpc-fake/rest.js';
import { FakeGoogleAds } from '../../connectors/google-ads/grpc-fake/server.js';
import { bridge, ISSUED, killChildren, runRedacted } from './harness.js';

/**
 * Issue 14, case 4, on the Google Ads API path: the token endpoint, GAQL over REST and the gRPC services
 * echo the credentials they were sent (client secret, refresh token, developer token, access token).
 * Through every command, nothing of them may reach the screen, a log or Redis; the messages still name
 * what to fix.
 */

const redisUrl = inject('redisUrl');
const ACCOUNT = '1234567890';
const servers: Server[] = [];
const tls = localhostCertificate();
let fake: FakeGoogleAds;
let block = '';

beforeAll(async () => {
  fake = await FakeGoogleAds.start(tls, ACCOUNT);
  serveRest(fake, () => [200, { access_token: ISSUED.adsApi, expires_in: 3600 }]);
  const [rest, token] = await Promise.all([bridge(FAKE_REST), bridge(new URL(FAKE_TOKEN_URL).origin)]);
  servers.push(rest!.server, token!.server);
  block = `    type: google_ads
    api: ads_api
    customer_id: "${ACCOUNT}"
    client_id: 1234-echo.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    developer_token: \${GOOGLE_ADS_DEVELOPER_TOKEN}
    default_country: US
    endpoints:
      token_url: ${token!.url}${new URL(FAKE_TOKEN_URL).pathname}
      ads_rest: ${rest!.url}
      ads_api: { host: localhost, port: ${fake.port}, ca_file: ${tls.certFile} }`;
});
afterAll(async () => {
  killChildren();
  for (const s of servers) s.close();
  nock.cleanAll();
  await fake.close();
  rmSync(tls.dir, { recursive: true, force: true });
});
afterEach(() => fake.reset());

const refused = (status: 'UNAUTHENTICATED' | 'PERMISSION_DENIED', code: Record<string, string>) =>
  [
    status === 'UNAUTHENTICATED' ? 401 : 403,
    {
      error: {
        status,
        message: 'Request failed',
        details: [{ errors: [{ errorCode: code, message: 'The request was refused' }] }],
      },
    },
  ] as [number, Record<string, unknown>];

describe('Google Ads API: secrets echoed by Google never leave the process', () => {
  it('the token endpoint repeats client_secret and refresh_token in error_description', async () => {
    fake.echoCredentials = true;
    fake.tokenError = 'invalid_grant';
    const text = await runRedacted({ redisUrl, destination: 'google', block });
    expect(text).toContain('invalid_grant');
    expect(text).toContain('Received grant_type=refresh_token');
    expect(text).toContain('set GOOGLE_REFRESH_TOKEN');
  });

  it('gRPC and GAQL errors repeat the developer token and the access token', async () => {
    fake.echoCredentials = true;
    fake.refuseSearch = (query) => {
      // The check's probe, and every poll of an upload job.
      if (/FROM customer\b/.test(query))
        return refused('UNAUTHENTICATED', { authenticationError: 'DEVELOPER_TOKEN_INVALID' });
      if (/FROM offline_user_data_job\b/.test(query))
        return refused('PERMISSION_DENIED', { authorizationError: 'USER_PERMISSION_DENIED' });
      return undefined;
    };
    // About one member in sixteen is refused, in a partial failure.
    fake.rejectOperation = (op) =>
      op.create?.user_identifiers[0]?.hashed_email?.startsWith('0')
        ? { category: 'offline_user_data_job_error', code: 'INVALID_SHA256_FORMAT', message: 'Not a hash' }
        : undefined;
    // The first list cannot be created.
    fake.failNext('MutateUserLists', {
      code: grpc.status.PERMISSION_DENIED,
      errors: [
        {
          error_code: { authorization_error: 'USER_PERMISSION_DENIED' },
          message: "User doesn't have permission",
        },
      ],
    });
    const text = await runRedacted({ redisUrl, destination: 'google', block });
    expect(text).toContain('USER_PERMISSION_DENIED');
    expect(text).toContain('GOOGLE_ADS_DEVELOPER_TOKEN');
    expect(text).toContain('Not a hash');
  });
});
