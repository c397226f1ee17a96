import nock from 'nock';
import { z } from 'zod';
import { echoOf, type FakeGoogleAds } from './server.js';

/** A GAQL search as the fake received it over REST. */
export interface FakeSearch {
  query: string;
  headers: Record<string, string>;
}

/** Where the REST side of the fake lives: GAQL (`googleAds:search`) and the OAuth token endpoint. */
export const FAKE_REST = 'https://googleads.fake.test';
export const FAKE_TOKEN_URL = 'https://oauth.fake.test/token';
export const FAKE_ACCESS_TOKEN = 'ya29.fake-access-token';

/**
 * Serves the fake's GAQL and an OAuth token endpoint through nock (REST over HTTP/1.1, as Google serves
 * them), recording every search with its headers. `token` answers the refresh-token exchange, unless the
 * fake's `tokenError` refuses it; the fake's `refuseSearch` answers searches it picks. In echo mode
 * (`fake.echoCredentials`) error answers repeat the credentials the request brought.
 */
export function serveRest(
  fake: FakeGoogleAds,
  token: () => [number, Record<string, unknown>] = () => [
    200,
    { access_token: FAKE_ACCESS_TOKEN, expires_in: 3600 },
  ],
): { searches: FakeSearch[]; tokenRequests: URLSearchParams[] } {
  const searches: FakeSearch[] = [];
  const tokenRequests: URLSearchParams[] = [];
  const tokenUrl = new URL(FAKE_TOKEN_URL);
  nock(tokenUrl.origin)
    .persist()
    .post(tokenUrl.pathname)
    .reply((_uri, body) => {
      const raw = typeof body === 'string' ? body : '';
      const sent = new URLSearchParams(raw);
      tokenRequests.push(sent);
      if (!fake.tokenError) return token();
      const echo = fake.echoCredentials
        ? ` Received ${raw} (client_secret "${sent.get('client_secret')}", refresh_token "${sent.get('refresh_token')}")`
        : '';
      return [400, { error: fake.tokenError, error_description: `Bad Request.${echo}` }];
    });
  nock(FAKE_REST)
    .persist()
    .post(/^\/v24\/customers\/\d{10}\/googleAds:search$/)
    .reply(function (_uri, body) {
      const { query } = z.object({ query: z.string() }).parse(body);
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries(this.req.headers)) headers[key] = String(value);
      searches.push({ query, headers });
      if (fake.expired(headers))
        return [
          401,
          {
            error: {
              code: 401,
              status: 'UNAUTHENTICATED',
              message: 'Request had invalid authentication credentials.',
              details: [
                {
                  '@type': 'type.googleapis.com/google.ads.googleads.v24.errors.GoogleAdsFailure',
                  errors: [
                    {
                      errorCode: { authenticationError: 'OAUTH_TOKEN_EXPIRED' },
                      message: 'Authentication of the request failed: the OAuth access token has expired.',
                    },
                  ],
                },
              ],
            },
          },
        ];
      const refused = fake.refuseSearch?.(query);
      if (!refused) return [200, fake.search(query)];
      if (!fake.echoCredentials) return refused;
      const [status, answer] = refused;
      const error = (answer.error ?? {}) as Record<string, unknown>;
      const echo = echoOf(headers);
      const details = Array.isArray(error.details)
        ? (error.details as { errors?: { message?: string }[] }[])
        : [];
      return [
        status,
        {
          error: {
            ...error,
            message: `${String(error.message ?? '')}${echo}`,
            details: details.map((d) => ({
              ...d,
              ...(d.errors
                ? { errors: d.errors.map((e) => ({ ...e, message: `${e.message ?? ''}${echo}` })) }
                : {}),
            })),
          },
        },
      ];
    });
  return { searches, tokenRequests };
}
