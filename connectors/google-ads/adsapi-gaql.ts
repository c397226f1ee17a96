import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { classify, type AdsFailure, readRestError } from './adsapi-errors.js';
import { TIMEOUT_MS, type GoogleAdsConfig } from './config.js';
import { request } from '../http.js';
import type { GoogleOAuth } from './oauth.js';

/** The Google Ads API version of google-ads-api 24, for REST paths and gRPC package names alike. */
export const ADS_API_VERSION = 'v24';

const searchPage = z.object({
  results: z.array(z.record(z.string(), z.unknown())).default([]),
  nextPageToken: z.string().optional(),
});

/**
 * GAQL over REST with our own `fetch` (`POST {ads_rest}/v24/customers/{id}/googleAds:search`):
 * google-ads-api sends GAQL over HTTP/1.1 to a fixed host with its own token refresh, so the endpoint
 * and token URL overrides would not hold through it.
 */
export class Gaql {
  constructor(
    private readonly config: GoogleAdsConfig,
    private readonly oauth: GoogleOAuth,
  ) {}

  /** Every row of every page, as Google's JSON (camelCase, int64 as strings); `what` names the query in errors. */
  async search(what: string, query: string): Promise<Record<string, unknown>[]> {
    const url = `${this.config.endpoints.ads_rest.replace(/\/$/, '')}/${ADS_API_VERSION}/customers/${this.config.customer_id}/googleAds:search`;
    const rows: Record<string, unknown>[] = [];
    let pageToken: string | undefined;
    let renewed = false;
    for (;;) {
      const token = await this.oauth.accessToken();
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        'developer-token': this.config.developer_token ?? '',
        'content-type': 'application/json',
        accept: 'application/json',
      };
      if (this.config.login_customer_id) headers['login-customer-id'] = this.config.login_customer_id;
      const response = await request(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(pageToken ? { query, pageToken } : { query }),
        timeoutMs: TIMEOUT_MS.adsRest,
      });
      if (!response.answered)
        throw new ConnectorError(
          `Google Ads API ${what} failed: ${response.reason} (${url}); retrying`,
          'retryable',
        );
      let body: unknown;
      try {
        body = JSON.parse(response.body);
      } catch {
        body = undefined;
      }
      if (!response.ok) {
        const failed = readRestError(response.status, body, response.headers.get('retry-after'));
        // An access token that expired before our margin said so: renewed once, the page asked again.
        if (!renewed && tokenRefused(failed)) {
          renewed = true;
          this.oauth.invalidate();
          continue;
        }
        throw failure(this.oauth, what, failed);
      }
      const page = searchPage.safeParse(body);
      if (!page.success)
        throw new ConnectorError(
          `Google Ads API ${what}: unexpected search response from ${url}: check endpoints.ads_rest`,
          'permanent',
        );
      rows.push(...page.data.results);
      pageToken = page.data.nextPageToken || undefined;
      if (!pageToken) return rows;
    }
  }
}

/** Google refused the call's access token (expired, invalid): a new one may pass. */
export function tokenRefused(failed: AdsFailure): boolean {
  return (
    failed.status === 'UNAUTHENTICATED' ||
    failed.status === '401' ||
    failed.errors.some((e) => e.code.startsWith('OAUTH_TOKEN'))
  );
}

/** The failure as a ConnectorError; a refused access token is dropped so the next attempt gets a new one. */
export function failure(oauth: GoogleOAuth, what: string, failed: AdsFailure): ConnectorError {
  if (tokenRefused(failed)) oauth.invalidate();
  return classify(what, failed);
}
