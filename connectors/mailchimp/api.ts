import { createRequire } from 'node:module';
import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { retryAfterMs } from '../../src/push/retry.js';
import { redact, registerSecret } from '../../src/redact.js';

/**
 * The Mailchimp SDK, one `ApiClient` per account (the package's default export is a process-wide
 * singleton), with every error turned into a `ConnectorError` whose text holds neither the API key nor
 * an email: superagent's errors carry the request (`response.req._header`, Authorization included) and
 * are never passed on; only their status, body and code are read.
 */

type Call = Promise<unknown>;

/** The parts of the SDK this connector calls (the package ships no types for `ApiClient`). */
export interface Sdk {
  basePath: string;
  timeout: number;
  setConfig(config: { apiKey: string }): void;
  ping: { get(): Call };
  lists: {
    getList(listId: string, opts?: { fields?: string[] }): Call;
    listSegments(
      listId: string,
      opts: { type: 'static'; count: number; offset?: number; fields?: string[] },
    ): Call;
    getSegment(listId: string, segmentId: string): Call;
    getSegmentMembersList(
      listId: string,
      segmentId: string,
      opts: {
        count: number;
        offset?: number;
        fields?: string[];
        include_cleaned?: boolean;
        include_transactional?: boolean;
        include_unsubscribed?: boolean;
      },
    ): Call;
    createSegment(listId: string, body: { name: string; static_segment: string[] }): Call;
    batchSegmentMembers(
      body: { members_to_add?: string[]; members_to_remove?: string[] },
      listId: string,
      segmentId: string,
    ): Call;
    setListMember(listId: string, hash: string, body: { email_address: string; status_if_new: string }): Call;
    getListMember(listId: string, hash: string, opts?: { fields?: string[] }): Call;
    deleteListMember(listId: string, hash: string): Call;
    deleteListMemberPermanent(listId: string, hash: string): Call;
    updateListMemberTags(
      listId: string,
      hash: string,
      body: { tags: { name: string; status: 'active' | 'inactive' }[]; is_syncing?: boolean },
    ): Call;
  };
  batches: {
    start(body: { operations: WireOperation[] }): Call;
    status(batchId: string): Call;
  };
}

/** One operation of a `/batches` job, as Mailchimp takes it (the body is a JSON string). */
export interface WireOperation {
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  operation_id: string;
  body?: string;
  params?: Record<string, string>;
}

const require = createRequire(import.meta.url);
const ApiClient = require('@mailchimp/mailchimp_marketing/src/ApiClient') as new () => Sdk;

export function createSdk(apiKey: string, basePath: string): Sdk {
  registerSecret(apiKey);
  const sdk = new ApiClient();
  // A full base path and no `server`: the SDK would otherwise replace the first "server" in every URL.
  sdk.basePath = basePath;
  sdk.setConfig({ apiKey });
  return sdk;
}

/** At most `limit` calls in flight; the others wait their turn. */
export class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** An HTTP answer Mailchimp gave: a success, or a failure that concerns the request's members. */
export interface Answer {
  status: number;
  body: unknown;
}

const problemSchema = z.looseObject({
  title: z.string().optional(),
  detail: z.string().optional(),
});

/** Title and detail of a Mailchimp problem document, if the body is one. */
export function problemOf(body: unknown): { title?: string | undefined; detail?: string | undefined } {
  const parsed = problemSchema.safeParse(body);
  return parsed.success ? { title: parsed.data.title, detail: parsed.data.detail } : {};
}

const EMAIL = /[^\s"'<>()[\],;:]+@[^\s"'<>()[\],;:]+/g;

/** Text from Mailchimp (or an error) safe for logs, errors and run records: no secret, no email. */
export function scrub(text: string): string {
  // Redacted before the emails go (a `user:key@host` is no email) and before it is cut short.
  return redact(text).replace(EMAIL, '<email>').slice(0, 300);
}

/** What a failed SDK call tells: an HTTP status with its body and Retry-After, or a network error code. */
interface Failure {
  status?: number | undefined;
  body?: unknown;
  retryAfter?: string | undefined;
  code?: string | undefined;
  timeout?: boolean;
}

const failureSchema = z.looseObject({
  status: z.number().optional(),
  code: z.string().optional(),
  timeout: z.unknown().optional(),
  response: z
    .looseObject({
      status: z.number().optional(),
      body: z.unknown().optional(),
      headers: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});

function failureOf(error: unknown): Failure {
  const parsed = failureSchema.safeParse(error);
  if (!parsed.success) return {};
  const { status, code, timeout, response } = parsed.data;
  const retryAfter = response?.headers?.['retry-after'];
  return {
    status: status ?? response?.status,
    body: response?.body,
    retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
    code,
    timeout: timeout !== undefined,
  };
}

/** Mailchimp's Retry-After, when it sends one; without it the core's backoff decides (src/push/retry.ts). */
function waitOf(retryAfter: string | undefined): { retryAfterMs?: number } {
  const wait = retryAfterMs(retryAfter);
  return wait === undefined ? {} : { retryAfterMs: wait };
}

export interface Context {
  listId: string;
  baseUrl: string;
  dataCentre: string | undefined;
}

/**
 * The failure of a whole call (rate limit, server error, bad key, wrong data centre), or undefined when
 * the answer concerns the request's members (400, 404 …) and the caller decides what it means.
 */
export function callFailure(
  answer: { status: number; body: unknown; retryAfter?: string | undefined },
  what: string,
  ctx: Context,
): ConnectorError | undefined {
  const { status } = answer;
  const { title, detail } = problemOf(answer.body);
  const said = scrub([title, detail].filter(Boolean).join(': ') || `HTTP ${status}`);
  if (status === 429)
    return new ConnectorError(
      `Mailchimp rate limit on ${what} (429: ${said})`,
      'rate_limited',
      waitOf(answer.retryAfter),
    );
  // A 403 without a problem document is Mailchimp shedding load at high volume, not a permission.
  if (status === 403 && !detail)
    return new ConnectorError(
      `Mailchimp overloaded on ${what} (bare 403)`,
      'rate_limited',
      waitOf(answer.retryAfter),
    );
  if (status === 401)
    return new ConnectorError(
      `Mailchimp rejected the API key on ${what} (401 ${said}): check MAILCHIMP_API_KEY — the whole key, ` +
        `with its data-centre suffix (${ctx.dataCentre ? `-${ctx.dataCentre}, so ${ctx.baseUrl}` : 'none found'})`,
      'permanent',
    );
  if (status === 403)
    return new ConnectorError(
      `Mailchimp refused ${what} (403 ${said}): the API key's user needs access to audience ${ctx.listId}`,
      'permanent',
    );
  if (status >= 500 || status === 0)
    return new ConnectorError(
      `Mailchimp failed on ${what} (${status} ${said})`,
      'retryable',
      waitOf(answer.retryAfter),
    );
  return undefined;
}

/** An SDK error as a `ConnectorError`, or as the answer it carries when that concerns the members. */
export function answerOrThrow(error: unknown, what: string, ctx: Context): Answer {
  const f = failureOf(error);
  if (f.status !== undefined && f.status > 0) {
    const answer = { status: f.status, body: f.body, retryAfter: f.retryAfter };
    const failure = callFailure(answer, what, ctx);
    if (failure) throw failure;
    return { status: f.status, body: f.body };
  }
  throw networkError(f, error, what, ctx);
}

function networkError(f: Failure, error: unknown, what: string, ctx: Context): ConnectorError {
  const host = (() => {
    try {
      return new URL(ctx.baseUrl).host;
    } catch {
      return ctx.baseUrl;
    }
  })();
  if (f.code === 'ENOTFOUND')
    return new ConnectorError(
      `cannot reach Mailchimp for ${what}: ${host} does not resolve. The data centre comes from the API key's ` +
        `suffix (${ctx.dataCentre ?? 'none'}): check MAILCHIMP_API_KEY, or the destination's endpoint`,
      'permanent',
    );
  if (f.code || f.timeout)
    return new ConnectorError(
      `cannot reach Mailchimp at ${host} for ${what} (${f.timeout ? 'timeout' : f.code})`,
      'retryable',
    );
  const message = error instanceof Error ? error.message : String(error);
  return new ConnectorError(`Mailchimp ${what} failed: ${scrub(message)}`, 'permanent');
}

/** Runs one SDK call: its result, or the answer of a failure that concerns the members; throws the rest. */
export async function answer(call: () => Call, what: string, ctx: Context): Promise<Answer> {
  try {
    return { status: 200, body: await call() };
  } catch (error) {
    if (error instanceof ConnectorError) throw error;
    return answerOrThrow(error, what, ctx);
  }
}

/** Parses what Mailchimp answered with the shape this connector relies on, naming the call on a mismatch. */
export function parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new ConnectorError(
    `unexpected answer from Mailchimp to ${what}: ${issue ? `${issue.path.join('.') || '(body)'} ${issue.code}` : 'invalid'}`,
    'retryable',
  );
}
