import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { redact, registerSecret } from '../../src/redact.js';
import { TIMEOUT_MS, type GoogleAdsConfig } from './config.js';
import { request } from '../http.js';
import { retryAfterMs } from '../../src/push/retry.js';

/**
 * OAuth 2.0 access tokens from the configured refresh token, for both upload paths' REST calls.
 * Tokens, refresh tokens and client secrets never appear in messages or logs: each is registered for
 * redaction (the token endpoint may echo the request in its `error_description`).
 */

export const DATA_MANAGER_SCOPE = 'https://www.googleapis.com/auth/datamanager';
export const ADWORDS_SCOPE = 'https://www.googleapis.com/auth/adwords';

/** Renew this long before Google's `expires_in` runs out, so a token never expires mid-request. */
const EXPIRY_MARGIN_MS = 60_000;

const tokenResponse = z.object({ access_token: z.string().min(1), expires_in: z.coerce.number().positive() });
const tokenError = z.object({ error: z.string(), error_description: z.string().optional() });

const HOW_TO_RENEW =
  'create a new one with the same OAuth client and the scope of your path (OAuth 2.0 Playground with "Use your own ' +
  'OAuth credentials", or `gcloud auth application-default login --client-id-file=<client.json> --scopes=<scope>`; ' +
  'an OAuth app in "Testing" status issues refresh tokens that expire after 7 days: publish it) and set GOOGLE_REFRESH_TOKEN';

export class GoogleOAuth {
  private cached: { token: string; expiresAt: number } | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    private readonly config: Pick<
      GoogleAdsConfig,
      'client_id' | 'client_secret' | 'refresh_token' | 'endpoints'
    >,
    private readonly options: { scope?: string } = {},
  ) {
    registerSecret(config.client_secret);
    registerSecret(config.refresh_token);
  }

  /** A valid access token: cached until shortly before it expires; concurrent callers share one exchange. */
  async accessToken(): Promise<string> {
    if (this.cached && Date.now() < this.cached.expiresAt) return this.cached.token;
    this.inflight ??= this.exchange().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Forgets the cached token (after a 401, the next call exchanges again). */
  invalidate(): void {
    this.cached = undefined;
  }

  private async exchange(): Promise<string> {
    const url = this.config.endpoints.token_url;
    const body = new URLSearchParams({
      grant_type: 'refresh_token',
      client_id: this.config.client_id,
      client_secret: this.config.client_secret,
      refresh_token: this.config.refresh_token,
    });
    if (this.options.scope) body.set('scope', this.options.scope);
    const response = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body,
      timeoutMs: TIMEOUT_MS.tokenExchange,
    });
    if (!response.answered)
      throw new ConnectorError(
        `OAuth token exchange at ${url} failed: ${response.reason}; retrying`,
        'retryable',
      );
    const json = parseJson(response.body);
    if (response.ok) {
      const parsed = tokenResponse.safeParse(json);
      if (!parsed.success)
        throw new ConnectorError(
          `OAuth token exchange at ${url} answered ${response.status} without an access_token and expires_in: check endpoints.token_url`,
          'permanent',
        );
      const { access_token, expires_in } = parsed.data;
      registerSecret(access_token);
      this.cached = {
        token: access_token,
        expiresAt: Date.now() + Math.max(0, expires_in * 1000 - EXPIRY_MARGIN_MS),
      };
      return access_token;
    }
    const error = tokenError.safeParse(json);
    const code = error.success ? error.data.error : undefined;
    // Google's words, redacted before they are cut short (a cut secret would no longer be recognised).
    const description =
      error.success && error.data.error_description
        ? ` (${redact(error.data.error_description).slice(0, 300)})`
        : '';
    if (code === 'invalid_grant')
      throw new ConnectorError(
        `Google OAuth refused the refresh token: invalid_grant${description}. The refresh token has expired or was revoked: ${HOW_TO_RENEW}`,
        'permanent',
      );
    if (code === 'invalid_client' || code === 'unauthorized_client')
      throw new ConnectorError(
        `Google OAuth refused the OAuth client: ${code}${description}. Check client_id and client_secret ` +
          '(GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET): they must be the OAuth client the refresh token was created with',
        'permanent',
      );
    if (code === 'invalid_scope')
      throw new ConnectorError(
        `Google OAuth refused the scope ${this.options.scope ?? ''}${description}: the refresh token was not granted it; ${HOW_TO_RENEW}`,
        'permanent',
      );
    if (response.status >= 500 || response.status === 429) {
      const wait = retryAfterMs(response.headers.get('retry-after'));
      throw new ConnectorError(
        `OAuth token exchange at ${url} answered ${response.status}; retrying`,
        response.status === 429 ? 'rate_limited' : 'retryable',
        wait === undefined ? {} : { retryAfterMs: wait },
      );
    }
    throw new ConnectorError(
      `OAuth token exchange at ${url} answered ${response.status}${code ? ` ${code}` : ''}${description}: check client_id, client_secret, refresh_token and endpoints.token_url`,
      'permanent',
    );
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
