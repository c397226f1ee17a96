import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { redact } from '../../src/redact.js';
import { retryAfterMs } from '../../src/push/retry.js';

/**
 * Google Ads API errors, from the gRPC path (a `GoogleAdsFailure` decoded by google-ads-api, or a bare
 * gRPC status) and from our REST GAQL calls (the same failure as JSON), reduced to one shape and
 * classified for the core's retries. No SDK import here: the SDK loads only when a gRPC call is made.
 * Messages are built here from codes and Google's own texts, redacted as they are read (a text may echo the
 * call's credentials): the raw SDK errors carry call metadata and are never passed on.
 */

/** One `GoogleAdsError`: its code as `category`/`code` (`database_error`/`CONCURRENT_MODIFICATION`). */
export interface AdsError {
  category: string;
  code: string;
  message: string;
  /** `location.field_path_elements`: the operation index the error is about, for partial failures. */
  operationIndex?: number | undefined;
  retryDelayMs?: number | undefined;
}

/** What failed: the decoded errors, plus the transport's status when there is one. */
export interface AdsFailure {
  errors: AdsError[];
  /** gRPC status name (`RESOURCE_EXHAUSTED`) or HTTP status (`429`). */
  status?: string | undefined;
  /** Short transport-level text when no GoogleAdsError came (connection refused, TLS). */
  detail?: string | undefined;
  /** A REST answer's `Retry-After`, in milliseconds. */
  retryAfterMs?: number | undefined;
}

const duration = z
  .union([
    z.string(), // REST JSON: "30s"
    z.object({ seconds: z.union([z.string(), z.number()]).optional(), nanos: z.number().optional() }),
  ])
  .optional();

/** Keys are snake_case from protobuf `toObject`, camelCase from REST JSON: both are read. */
const adsErrorShape = z.object({
  error_code: z.record(z.string(), z.unknown()).optional(),
  errorCode: z.record(z.string(), z.unknown()).optional(),
  message: z.string().optional(),
  location: z
    .looseObject({
      field_path_elements: z
        .array(z.object({ field_name: z.string().optional(), index: z.number().optional() }))
        .optional(),
      fieldPathElements: z
        .array(z.object({ fieldName: z.string().optional(), index: z.number().optional() }))
        .optional(),
    })
    .optional(),
  details: z
    .looseObject({
      quota_error_details: z.looseObject({ retry_delay: duration }).optional(),
      quotaErrorDetails: z.looseObject({ retryDelay: duration }).optional(),
    })
    .optional(),
});
const failureShape = z.object({ errors: z.array(adsErrorShape).default([]) });

const snake = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function durationMs(value: z.infer<typeof duration>): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    const seconds = Number.parseFloat(value);
    return Number.isFinite(seconds) ? Math.round(seconds * 1000) : undefined;
  }
  const seconds = Number(value.seconds ?? 0) + (value.nanos ?? 0) / 1e9;
  return seconds > 0 ? Math.round(seconds * 1000) : undefined;
}

/** Reads a failure already turned into a plain object (REST JSON detail, or protobuf `toObject`). */
export function readFailureObject(value: unknown): AdsError[] {
  const parsed = failureShape.safeParse(value);
  if (!parsed.success) return [];
  return parsed.data.errors.map((e) => {
    const [category = 'unknown_error', code = 'UNKNOWN'] =
      Object.entries(e.error_code ?? e.errorCode ?? {})
        .filter(([, v]) => typeof v === 'string' || typeof v === 'number')
        .map(([k, v]) => [snake(k), String(v)])[0] ?? [];
    const path =
      e.location?.field_path_elements?.map((p) => ({ name: p.field_name, index: p.index })) ??
      e.location?.fieldPathElements?.map((p) => ({ name: p.fieldName, index: p.index })) ??
      [];
    const operationIndex = path.find((p) => p.name === 'operations')?.index;
    const retry = durationMs(
      e.details?.quota_error_details?.retry_delay ?? e.details?.quotaErrorDetails?.retryDelay,
    );
    return { category, code, message: redact(e.message ?? ''), operationIndex, retryDelayMs: retry };
  });
}

const GRPC_STATUS = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

const grpcError = z.object({ code: z.number(), details: z.string().optional() });

/** A bare gRPC error (no GoogleAdsFailure in its trailers): its status name and text. */
export function readGrpcStatus(error: unknown): AdsFailure {
  const bare = grpcError.safeParse(error);
  if (bare.success)
    return {
      errors: [],
      status: GRPC_STATUS[bare.data.code] ?? String(bare.data.code),
      // Google's status text or a connection error; redacted before it is cut short.
      detail: bare.data.details === undefined ? undefined : redact(bare.data.details).slice(0, 300),
    };
  return {
    errors: [],
    detail: error instanceof Error ? redact(error.message).slice(0, 300) : 'unknown error',
  };
}

/** A REST error body (`{ error: { status, message, details: [GoogleAdsFailure] } }`) and its `Retry-After`. */
export function readRestError(
  httpStatus: number,
  body: unknown,
  retryAfter: string | null = null,
): AdsFailure {
  const wait = retryAfterMs(retryAfter);
  const parsed = z
    .object({
      error: z.object({
        status: z.string().optional(),
        message: z.string().optional(),
        details: z.array(z.unknown()).optional(),
      }),
    })
    .safeParse(body);
  if (!parsed.success) return { errors: [], status: String(httpStatus), retryAfterMs: wait };
  const { status, message, details = [] } = parsed.data.error;
  return {
    errors: details.flatMap(readFailureObject),
    status: httpStatus === 429 ? '429' : (status ?? String(httpStatus)),
    detail: message === undefined ? undefined : redact(message).slice(0, 300),
    retryAfterMs: wait,
  };
}

const DATA_MANAGER_FIX =
  'This developer token cannot upload Customer Match through the Google Ads API: since April 2026 only tokens that ' +
  'were already uploading are allowlisted. Set `api: data_manager` on this destination (the default) and enable ' +
  'the Data Manager API in the Cloud project of the OAuth client; its refresh token needs the scope ' +
  'https://www.googleapis.com/auth/datamanager';

/** The fix for codes a user must act on; the key is `category.CODE`. */
const FIXES: Record<string, string> = {
  'not_allowlisted_error.CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE': DATA_MANAGER_FIX,
  'authorization_error.DEVELOPER_TOKEN_NOT_APPROVED':
    'the developer token has test-account access only: apply for Basic or Standard access in the API Center of ' +
    'the Google Ads manager account, or use a test account',
  'authorization_error.DEVELOPER_TOKEN_PROHIBITED':
    'the developer token may not be used with this Cloud project: use the token of the manager account linked to ' +
    'the Cloud project of the OAuth client',
  'authorization_error.DEVELOPER_TOKEN_NOT_ON_ALLOWLIST':
    'the developer token is not allowlisted for this feature: use `api: data_manager`',
  'authentication_error.DEVELOPER_TOKEN_INVALID':
    'the developer token is not valid: copy it again from the API Center (GOOGLE_ADS_DEVELOPER_TOKEN)',
  'authorization_error.USER_PERMISSION_DENIED':
    'the OAuth user has no access to this customer: if access goes through a manager account, set ' +
    'login_customer_id to that manager account; otherwise grant the user access to the account',
  'authorization_error.INVALID_LOGIN_CUSTOMER_ID_SERVING_CUSTOMER_ID_COMBINATION':
    'login_customer_id is not a manager of customer_id: fix login_customer_id (or leave it out)',
  'authorization_error.CUSTOMER_NOT_ENABLED':
    'the Google Ads account is not enabled (cancelled, suspended or setup unfinished): finish its setup or use another customer_id',
  'authorization_error.MISSING_TOS': 'accept the Google Ads API terms of service for this account',
  'authentication_error.CUSTOMER_NOT_FOUND':
    'customer_id does not exist: check it (10 digits, no dashes needed)',
  'authentication_error.NOT_ADS_USER':
    'the Google account behind the refresh token has no Google Ads access: create the refresh token with a user of the account',
  'authentication_error.OAUTH_TOKEN_REVOKED':
    'the OAuth access was revoked: create a new refresh token and set GOOGLE_REFRESH_TOKEN',
  'authentication_error.OAUTH_TOKEN_DISABLED':
    'the OAuth access is disabled: create a new refresh token and set GOOGLE_REFRESH_TOKEN',
  'offline_user_data_job_error.CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS':
    'the account has not accepted the Customer Match terms: accept them in Google Ads (Tools > Shared library > ' +
    'Audience manager, when creating a customer list)',
  'user_list_error.ADVERTISER_NOT_ON_ALLOWLIST_FOR_USING_UPLOADED_DATA':
    'the account is not eligible for Customer Match (it needs a good policy history and payment history): ' +
    'see https://support.google.com/google-ads/answer/6299717',
  'user_list_error.CAN_NOT_MUTATE_SENSITIVE_USERLIST':
    'the list is marked sensitive by Google and cannot be changed through the API',
};

const RETRYABLE_CODES = new Set([
  'database_error.CONCURRENT_MODIFICATION',
  'internal_error.INTERNAL_ERROR',
  'internal_error.TRANSIENT_ERROR',
  'internal_error.DEADLINE_EXCEEDED',
]);
const RATE_LIMIT_CODES = new Set([
  'quota_error.RESOURCE_EXHAUSTED',
  'quota_error.RESOURCE_TEMPORARILY_EXHAUSTED',
]);
const RETRYABLE_STATUS = new Set([
  'UNAVAILABLE',
  'INTERNAL',
  'DEADLINE_EXCEEDED',
  '500',
  '502',
  '503',
  '504',
]);

/** `CODE: Google's message` for each error, at most three. */
export function describe(list: readonly AdsError[]): string {
  const texts = list.slice(0, 3).map((e) => (e.message ? `${e.code}: ${e.message}` : e.code));
  return texts.join('; ') + (list.length > 3 ? ` (and ${list.length - 3} more)` : '');
}

/** The failure as a ConnectorError: permanent with its fix, retryable, or rate limited with Google's delay. */
export function classify(what: string, failure: AdsFailure): ConnectorError {
  const keys = failure.errors.map((e) => `${e.category}.${e.code}`);
  const text = failure.errors.length > 0 ? describe(failure.errors) : (failure.detail ?? 'no details');
  const status = failure.status ? ` (${failure.status})` : '';
  const base = `Google Ads API ${what} failed${status}: ${text}`;

  const fixKey = keys.find((k) => k in FIXES);
  if (fixKey) return new ConnectorError(`${base}. ${FIXES[fixKey]}`, 'permanent');

  if (
    keys.some((k) => RATE_LIMIT_CODES.has(k)) ||
    failure.status === 'RESOURCE_EXHAUSTED' ||
    failure.status === '429'
  ) {
    const delay =
      failure.retryAfterMs ?? failure.errors.find((e) => e.retryDelayMs !== undefined)?.retryDelayMs;
    return new ConnectorError(
      `${base}; waiting before retrying`,
      'rate_limited',
      delay === undefined ? {} : { retryAfterMs: delay },
    );
  }
  if (keys.some((k) => RETRYABLE_CODES.has(k)) || (failure.status && RETRYABLE_STATUS.has(failure.status)))
    return new ConnectorError(
      keys.includes('database_error.CONCURRENT_MODIFICATION')
        ? `${base}: another job or request is changing the same list; retrying with backoff`
        : `${base}; retrying`,
      'retryable',
      failure.retryAfterMs === undefined ? {} : { retryAfterMs: failure.retryAfterMs },
    );
  if (
    keys.some((k) => k.startsWith('authentication_error.OAUTH_TOKEN')) ||
    failure.status === 'UNAUTHENTICATED'
  )
    return new ConnectorError(
      `${base}. Google refused a newly issued access token: check that client_id is an OAuth client of the ` +
        "Cloud project where the Google Ads API is enabled, and that endpoints.token_url is Google's token endpoint",
      'permanent',
    );
  return new ConnectorError(base, 'permanent');
}
