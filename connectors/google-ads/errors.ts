import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { redact } from '../../src/redact.js';
import { retryAfterMs } from '../../src/push/retry.js';

/**
 * Data Manager API (REST) errors: the `google.rpc.Status` body Google sends, classified for the core's
 * retries, with the fix in the message. Google's texts are redacted as they are read (a body may echo
 * the request and its token); identifiers are hashes at most.
 */

const fieldViolation = z.object({
  field: z.string().optional(),
  description: z.string().optional(),
  reason: z.string().optional(),
});

const errorBody = z.object({
  error: z.object({
    code: z.number().optional(),
    status: z.string().optional(),
    message: z.string().optional(),
    details: z
      .array(
        z.looseObject({
          reason: z.string().optional(),
          fieldViolations: z.array(fieldViolation).optional(),
        }),
      )
      .optional(),
  }),
});

export type FieldViolation = z.infer<typeof fieldViolation>;

export interface ApiError {
  httpStatus: number;
  status: string | undefined;
  message: string;
  /** Every `ErrorInfo.reason` and field violation reason in the details. */
  reasons: string[];
  fieldViolations: FieldViolation[];
}

/** Reads Google's error body (or whatever came instead: a proxy's HTML page), its texts redacted. */
export function parseApiError(httpStatus: number, text: string): ApiError {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = errorBody.safeParse(json);
  if (!parsed.success)
    return {
      httpStatus,
      status: undefined,
      message: redact(text).slice(0, 200).replace(/\s+/g, ' ').trim(),
      reasons: [],
      fieldViolations: [],
    };
  const { status, message, details = [] } = parsed.data.error;
  const fieldViolations = details
    .flatMap((d) => d.fieldViolations ?? [])
    .map((v) => (v.description ? { ...v, description: redact(v.description) } : v));
  const reasons = [
    ...details.flatMap((d) => (d.reason ? [d.reason] : [])),
    ...fieldViolations.flatMap((v) => (v.reason ? [v.reason] : [])),
  ];
  return { httpStatus, status, message: redact(message ?? ''), reasons, fieldViolations };
}

/** `audience_members[3].user_data…` or `audienceMembers[3]…` → 3. */
export function memberIndex(field: string | undefined): number | undefined {
  const match = /audience_?members\[(\d+)\]/i.exec(field ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The member indexes a 400 names, when every violation names a member; otherwise undefined. */
export function rejectedMembers(error: ApiError): Map<number, string> | undefined {
  if (error.httpStatus !== 400 || error.fieldViolations.length === 0) return undefined;
  const rejected = new Map<number, string>();
  for (const v of error.fieldViolations) {
    const index = memberIndex(v.field);
    if (index === undefined) return undefined;
    if (!rejected.has(index)) rejected.set(index, v.reason || v.description || 'INVALID_ARGUMENT');
  }
  return rejected;
}

/** What the core should do about a failed Data Manager call, with the fix in the message. */
export function classify(
  error: ApiError,
  context: { what: string; customerId: string; retryAfter?: string | null },
): ConnectorError {
  const { httpStatus, status, reasons } = error;
  const said = describe(error);
  const at = `Data Manager API ${context.what} for Google Ads account ${context.customerId}`;
  const wait = retryAfterMs(context.retryAfter);
  const after = wait === undefined ? {} : { retryAfterMs: wait };
  if (httpStatus === 429 || status === 'RESOURCE_EXHAUSTED')
    return new ConnectorError(
      `${at} was rate limited (${said}); the Cloud project allows 300 requests per minute and 100,000 per day`,
      'rate_limited',
      after,
    );
  if (reasons.includes('CONCURRENT_MODIFICATION') || status === 'ABORTED')
    return new ConnectorError(
      `${at} collided with another change to the list (${said}); retrying`,
      'retryable',
      after,
    );
  if (
    httpStatus >= 500 ||
    status === 'UNAVAILABLE' ||
    status === 'INTERNAL' ||
    status === 'DEADLINE_EXCEEDED'
  )
    return new ConnectorError(`${at} failed on Google's side (${said}); retrying`, 'retryable', after);
  if (httpStatus === 401 || status === 'UNAUTHENTICATED')
    return new ConnectorError(
      `${at}: Google refused a newly issued access token (${said}). Check that client_id is an OAuth client of ` +
        "the Cloud project where the Data Manager API is enabled, and that endpoints.token_url is Google's token endpoint",
      'permanent',
    );
  const eligibility = reasons.find((r) =>
    /TERMS_AND_CONDITIONS|NOT_ELIGIBLE|CUSTOMER_MATCH.*NOT_ALLOWED/.test(r),
  );
  if (eligibility)
    return new ConnectorError(
      `${at} was refused (${said}): the account cannot upload Customer Match lists yet. Accept the Customer ` +
        'Match terms in Google Ads (Tools → Shared library → Audience manager → Customer lists) and check the ' +
        'account meets the Customer Match requirements (policy compliance, payment history, spend): ' +
        'https://support.google.com/google-ads/answer/6379332',
      'permanent',
    );
  if (httpStatus === 403 || status === 'PERMISSION_DENIED') {
    if (reasons.includes('SERVICE_DISABLED'))
      return new ConnectorError(
        `${at} was refused (${said}): the Data Manager API is not enabled in the OAuth client's Cloud project. ` +
          'Enable it (https://console.cloud.google.com/apis/library/datamanager.googleapis.com, or ' +
          '`gcloud services enable datamanager.googleapis.com`) and run again a few minutes later',
        'permanent',
      );
    if (reasons.includes('ACCESS_TOKEN_SCOPE_INSUFFICIENT'))
      return new ConnectorError(
        `${at} was refused (${said}): the refresh token was not granted the scope ` +
          'https://www.googleapis.com/auth/datamanager; create one with that scope and set GOOGLE_REFRESH_TOKEN',
        'permanent',
      );
    return new ConnectorError(
      `${at} was refused (${said}): the Google user of the refresh token cannot reach account ` +
        `${context.customerId}. Give them access to it, or set login_customer_id to the manager account they reach ` +
        'it through; if the message names the API or the project instead, enable the Data Manager API in the ' +
        "OAuth client's Cloud project (https://console.cloud.google.com/apis/library/datamanager.googleapis.com)",
      'permanent',
    );
  }
  if (httpStatus === 404 || status === 'NOT_FOUND')
    return new ConnectorError(`${at}: not found (${said})`, 'permanent');
  const fields = error.fieldViolations
    .map((v) => `${v.field ?? '?'}: ${v.reason ?? ''}${v.description ? ` (${v.description})` : ''}`)
    .join('; ');
  return new ConnectorError(`${at} was rejected (${said})${fields ? `: ${fields}` : ''}`, 'permanent');
}

function describe(error: ApiError): string {
  const parts = [String(error.httpStatus)];
  if (error.status) parts.push(error.status);
  const reasons = [...new Set(error.reasons)].slice(0, 3);
  if (reasons.length) parts.push(reasons.join(', '));
  if (error.message) parts.push(error.message.slice(0, 300));
  return parts.join(' ');
}
