import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { redact } from '../../src/redact.js';
import { retryAfterMs } from '../../src/push/retry.js';
import type { NoAnswer } from '../http.js';

/**
 * Graph API failures, from the SDK (`FacebookRequestError`, or the `SyntaxError` it throws when an error
 * page is not JSON) or from our own `fetch`, classified for the core's retries with the fix in the
 * message. The SDK's errors carry the request URL with the access token: nothing of them is kept but
 * the status, Meta's error object and the throttling headers. Their texts reach only `classify`'s
 * `ConnectorError`, which redacts them; Meta's own words are redacted once more in `describe`, before the cut.
 */

const graphError = z.looseObject({
  message: z.string().optional(),
  type: z.string().optional(),
  code: z.number().optional(),
  error_subcode: z.number().optional(),
  error_user_title: z.string().optional(),
  error_user_msg: z.string().optional(),
  is_transient: z.boolean().optional(),
  fbtrace_id: z.string().optional(),
});
export type GraphError = z.infer<typeof graphError>;

/** What went wrong with one Graph call, whichever way it was made. */
export interface GraphFailure {
  /** HTTP status; undefined when no answer came, or the SDK lost it. */
  status: number | undefined;
  /** Meta's `error` object, when the body was Graph JSON. */
  error: GraphError | undefined;
  /** The body was not JSON (an HTML page from a proxy or Meta's front end). */
  notJson: boolean;
  /** No answer at all: connection refused, reset, timed out. */
  network: string | undefined;
  headers: Record<string, string>;
}

const sdkRequestError = z.object({
  name: z.literal('FacebookRequestError'),
  message: z.string().optional(),
  status: z.number().nullable().optional(),
  response: z.unknown(),
  headers: z.unknown(),
});

/** The failure inside whatever an SDK call threw. */
export function failureOfSdk(thrown: unknown): GraphFailure {
  const sdk = sdkRequestError.safeParse(thrown);
  if (sdk.success) {
    const error = graphError.safeParse(sdk.data.response);
    const status = sdk.data.status ?? undefined;
    return {
      status,
      error: error.success && error.data.code !== undefined ? error.data : undefined,
      notJson: false,
      // The SDK names a request that got no answer this way (axios' own error is dropped).
      network: status === undefined ? (sdk.data.message ?? 'no response') : undefined,
      headers: headerRecord(sdk.data.headers),
    };
  }
  // The SDK parses error bodies with JSON.parse, which throws on an HTML page: the status is lost.
  if (thrown instanceof SyntaxError)
    return { status: undefined, error: undefined, notJson: true, network: undefined, headers: {} };
  const text = thrown instanceof Error ? thrown.message : String(thrown);
  return { status: undefined, error: undefined, notJson: false, network: text, headers: {} };
}

/** A request of ours that got no answer. */
export function failureOfNoAnswer(got: NoAnswer): GraphFailure {
  return { status: undefined, error: undefined, notJson: false, network: got.reason, headers: {} };
}

/** The failure of a `fetch` answer that was not 2xx. */
export function failureOfResponse(status: number, headers: Headers, text: string): GraphFailure {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const body = z.object({ error: graphError }).safeParse(json);
  const record: Record<string, string> = {};
  headers.forEach((value, name) => (record[name.toLowerCase()] = value));
  return {
    status,
    error: body.success ? body.data.error : undefined,
    notJson: json === undefined,
    network: undefined,
    headers: record,
  };
}

function headerRecord(headers: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers && typeof headers === 'object')
    for (const [name, value] of Object.entries(headers as Record<string, unknown>))
      if (typeof value === 'string') out[name.toLowerCase()] = value;
  return out;
}

const THROTTLED = new Set([4, 17, 32, 613, 80003]);
/** Business-use-case rate limits (80003 is the custom audience one). */
const isBucLimit = (code: number) => code >= 80_000 && code <= 80_014;

const has = (error: GraphError | undefined, n: number) =>
  error !== undefined && (error.code === n || error.error_subcode === n);

/** The audience or object is not there (deleted, or never in reach of this token). */
export function isMissing(failure: GraphFailure): boolean {
  const { error } = failure;
  return (
    failure.status === 404 || has(error, 1_487_366) || (error?.code === 100 && error.error_subcode === 33)
  );
}

export function isThrottled(failure: GraphFailure): boolean {
  const code = failure.error?.code;
  return failure.status === 429 || (code !== undefined && (THROTTLED.has(code) || isBucLimit(code)));
}

/** Milliseconds to wait after throttling: `Retry-After`, else Meta's usage headers, else the fallback if any. */
export function throttleWaitMs(failure: GraphFailure, fallbackMs?: number): number | undefined {
  const retryAfter = retryAfterMs(failure.headers['retry-after']);
  if (retryAfter !== undefined) return retryAfter;
  // {"<account>": [{"type": "custom_audience", "estimated_time_to_regain_access": <minutes>, …}]}
  const buc = parseJson(failure.headers['x-business-use-case-usage']);
  let minutes = 0;
  if (buc && typeof buc === 'object')
    for (const entries of Object.values(buc))
      if (Array.isArray(entries))
        for (const e of entries) {
          const m = z.object({ estimated_time_to_regain_access: z.number() }).safeParse(e);
          if (m.success) minutes = Math.max(minutes, m.data.estimated_time_to_regain_access);
        }
  if (minutes > 0) return minutes * 60_000;
  // {"acc_id_util_pct": 100, "reset_time_duration": <seconds>}
  const account = z
    .object({ reset_time_duration: z.number() })
    .safeParse(parseJson(failure.headers['x-ad-account-usage']));
  if (account.success && account.data.reset_time_duration > 0) return account.data.reset_time_duration * 1000;
  return fallbackMs;
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export interface FailureContext {
  /** What was attempted, for whom: `adding 500 members to audience 'Champions' (2385…)`. */
  what: string;
  /** The ad account number (no `act_`). */
  account: string;
  /** `throttle_wait_seconds`; without it the core's backoff decides (src/push/retry.ts). */
  throttleWaitMs?: number;
}

export const tosLink = (account: string) =>
  `https://business.facebook.com/ads/manage/customaudiences/tos/?act=${account}`;

/** What the core should do about a failed Graph call, with the fix in the message. */
export function classify(failure: GraphFailure, context: FailureContext): ConnectorError {
  const { error, status } = failure;
  const at = `Meta: ${context.what} failed`;
  const said = describe(failure);
  const account = `act_${context.account}`;
  // A retryable failure that says when to come back (a 503's Retry-After) is retried then.
  const make = (
    text: string,
    kind: ConnectorError['kind'],
    wait = kind === 'retryable' ? retryAfterMs(failure.headers['retry-after']) : undefined,
  ) =>
    new ConnectorError(text, kind, {
      ...(wait !== undefined ? { retryAfterMs: wait } : {}),
      // Only what helps to debug: never the SDK error itself (its URL holds the token).
      cause: { status, code: error?.code, subcode: error?.error_subcode, fbtrace_id: error?.fbtrace_id },
    });

  if (failure.network !== undefined)
    return make(`${at}: no answer from the Graph API (${failure.network}); retrying`, 'retryable');
  if (isThrottled(failure)) {
    const wait = throttleWaitMs(failure, context.throttleWaitMs);
    return make(
      `${at}: Meta is throttling ${account} (${said}); waiting${wait === undefined ? '' : ` ${Math.ceil(wait / 1000)} s`}. Meta limits custom ` +
        'audience calls per ad account and hour: if this keeps happening, sync less often or fewer audiences',
      'rate_limited',
      wait,
    );
  }
  if (status === 413 || status === 414)
    return make(`${at}: the request was too large (${said}); lower batch_size`, 'permanent');
  if (failure.notJson || error === undefined) {
    if (failure.notJson || (status !== undefined && status >= 500))
      return make(`${at}: Meta answered with an error page (${said}); retrying`, 'retryable');
  }
  if (has(error, 190) || error?.code === 102)
    return make(
      `${at}: the access token is not valid (${said}). It expired, was revoked, or its user changed password: ` +
        'create a new system-user token (Business Settings → Users → System users → Generate new token, with ' +
        'ads_management) and set the environment variable access_token refers to',
      'permanent',
    );
  if (has(error, 2663) || has(error, 2655))
    return make(
      `${at}: the Custom Audience terms of service are not accepted for ${account} (${said}). Open ` +
        `${tosLink(context.account)} as an admin of the ad account, accept them, and run again`,
      'permanent',
    );
  if (has(error, 1_713_230))
    return make(
      `${at}: the audience is flagged by Meta (operation_status 471) and takes no uploads (${said}). Resolve ` +
        'or appeal the restriction in Ads Manager → Audiences, or rename the audience in the config to create a new one',
      'permanent',
    );
  if (has(error, 1_487_366))
    return make(
      `${at}: the audience was deleted on Meta (${said}). The next sync creates it again; then run a full ` +
        'resync (sync --full) so it gets every member',
      'permanent',
    );
  if (has(error, 1_487_301))
    return make(
      `${at}: the audience is not shared with ${account} or this token's user (${said}). Share it with the ` +
        'ad account in Business Settings, or remove its id from the state by renaming the audience',
      'permanent',
    );
  if (has(error, 2650))
    return make(
      `${at}: Meta could not update the audience (${said}). Check the audience in Ads Manager → Audiences ` +
        '(it may be in use by a lookalike being built, or restricted) and run again',
      'permanent',
    );
  if (error?.code === 10 || (error?.code !== undefined && error.code >= 200 && error.code <= 299))
    return make(
      `${at}: permission denied on ${account} (${said}). Give the token's system user the ads_management ` +
        'permission and assign the ad account to it (Business Settings → Users → System users → Assign assets, ' +
        'with Manage campaigns)',
      'permanent',
    );
  if (
    error?.is_transient ||
    error?.code === 1 ||
    error?.code === 2 ||
    (status !== undefined && status >= 500)
  )
    return make(`${at}: a temporary error on Meta's side (${said}); retrying`, 'retryable');
  return make(`${at}: ${said}`, 'permanent');
}

/** `HTTP 400, code 100/1713230: message (user message), fbtrace_id …`: Meta's words, for support. */
function describe(failure: GraphFailure): string {
  const { error, status } = failure;
  const parts: string[] = [];
  if (status !== undefined) parts.push(`HTTP ${status}`);
  if (failure.notJson) parts.push('not JSON');
  if (error?.code !== undefined)
    parts.push(`code ${error.code}${error.error_subcode !== undefined ? `/${error.error_subcode}` : ''}`);
  const text = [error?.message, error?.error_user_msg].filter(Boolean).join(' — ');
  const head = parts.join(', ');
  const trace = error?.fbtrace_id ? `, fbtrace_id ${error.fbtrace_id}` : '';
  // Redacted before the cut: a cut secret would no longer be recognised.
  return `${head}${text ? `: ${redact(text).slice(0, 400)}` : ''}${trace}` || 'no details';
}
