import { randomInt } from 'node:crypto';
import { AdAccount, CustomAudience, FacebookAdsApi } from 'facebook-nodejs-business-sdk';
import { z } from 'zod';
import type {
  AudienceStats,
  BatchOutcome,
  Check,
  ConnectorClient,
  Member,
  PlatformReport,
  Rejection,
  RemoteAudience,
} from '../../src/connector.js';
import { ConnectorError } from '../../src/connector.js';
import { epochOf, withEpoch } from '../../src/epoch-mark.js';
import type { Logger } from '../../src/log.js';
import { redact, registerSecret } from '../../src/redact.js';
import type { MetaConfig } from './config.js';
import {
  classify,
  failureOfNoAnswer,
  failureOfResponse,
  failureOfSdk,
  isMissing,
  tosLink,
  type FailureContext,
} from './errors.js';
import { request } from '../http.js';
import { usersBody } from './identifiers.js';
import { restrictedWarning } from './policy.js';
import { versionNotice } from './versions.js';

/**
 * The Graph API, per ad account. Audiences and the ad account go through the SDK; member uploads go
 * through `fetch` with JSON bodies, because the SDK puts a DELETE's payload in the query string.
 */

/**
 * The SDK's API object with its own base URL and version: the SDK reads both from static getters
 * (process-wide), so this instance builds full URLs itself and hands them to the SDK's `call`, which
 * takes a string path as the URL. No `init()`, no default API, no crash reporter.
 */
class ScopedApi extends FacebookAdsApi {
  constructor(
    token: string,
    private readonly base: string,
    private readonly timeoutMs: number,
  ) {
    super(token, 'en_US', false);
  }

  override call<T>(
    method: string,
    path: string | string[],
    params: Record<string, unknown> = {},
    files: Record<string, unknown> = {},
    multipart = false,
  ): Promise<T> {
    // A string is already a URL (the `paging.next` of a list page).
    if (typeof path === 'string') return this.deadline(super.call<T>(method, path, params, files, multipart));
    const inBody = method === 'POST' || method === 'PUT';
    const query = FacebookAdsApi._encodeParams(
      inBody ? { access_token: this.accessToken } : { ...params, access_token: this.accessToken },
    );
    const url = `${this.base}/${path.map((p) => p.replace(/^\/+/, '')).join('/')}?${query}`;
    return this.deadline(super.call<T>(method, url, inBody ? params : {}, files, multipart));
  }

  /**
   * The SDK's requests (axios, with no timeout of its own) get the deadline ours have: one that never
   * answers fails, retryable, instead of holding the run. The request itself is left to the socket.
   */
  private deadline<T>(call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${this.timeoutMs / 1000} s`)),
        this.timeoutMs,
      );
    });
    return Promise.race([call, late]).finally(() => clearTimeout(timer));
  }
}

const status = z.looseObject({ code: z.number(), description: z.string().optional() });
const audienceInfo = z.looseObject({
  id: z.coerce.string(),
  name: z.string().optional(),
  account_id: z.coerce.string().optional(),
  subtype: z.string().optional(),
  operation_status: status.optional(),
  delivery_status: status.optional(),
  approximate_count_lower_bound: z.number().optional(),
  approximate_count_upper_bound: z.number().optional(),
  description: z.string().optional(),
});
type AudienceInfo = z.infer<typeof audienceInfo>;
const AUDIENCE_FIELDS = [
  'id',
  'name',
  'account_id',
  'subtype',
  'operation_status',
  'delivery_status',
  'approximate_count_lower_bound',
  'approximate_count_upper_bound',
  'description',
];

const usersResponse = z.looseObject({
  audience_id: z.coerce.string().optional(),
  session_id: z.coerce.string().optional(),
  num_received: z.number().optional(),
  num_invalid_entries: z.number().optional(),
  invalid_entry_samples: z.unknown().optional(),
});

const adAccountInfo = z.looseObject({
  name: z.string().optional(),
  account_status: z.number().optional(),
  tos_accepted: z.record(z.string(), z.number()).optional(),
});

/** Meta's `account_status` values that stop custom audience work. */
const CLOSED_ACCOUNT: Record<number, string> = { 2: 'disabled', 100: 'pending closure', 101: 'closed' };
/** `operation_status` of an audience Meta flagged (restricted content): it takes no uploads. */
const FLAGGED = 471;
/** `operation_status` and `delivery_status` codes from this one up mean the audience cannot serve as it stands. */
const UNUSABLE_FROM = 400;
/** Meta recommends at least this many people for an audience to deliver. */
const MIN_AUDIENCE = 100;
const REQUEST_TIMEOUT_MS = 120_000;
const EMPTY_ROW = 'no identifier for the configured schema';
/** What an audience's description says when the config gives none. */
const DEFAULT_DESCRIPTION = 'Managed by audience-sync: members follow a segment';

/** Reads the data of an SDK object (its fields are getters over `_data`). */
function dataOf(object: unknown): unknown {
  const exportAll = (object as { exportAllData?: () => unknown } | null)?.exportAllData;
  return typeof exportAll === 'function' ? exportAll.call(object) : object;
}

export class MetaClient implements ConnectorClient {
  private readonly api: ScopedApi;
  private readonly account: AdAccount;
  private readonly base: string;
  private readonly timeoutMs: number;
  /** Descriptions of the audiences this client found or made, by id: `stamp` changes only the mark. */
  private readonly descriptions = new Map<string, string>();
  /** Audiences this client created: empty, so an empty replace of one has nothing to do. */
  private readonly created = new Set<string>();

  constructor(
    private readonly config: MetaConfig,
    private readonly log: Logger,
    /** How long a request may take, its answer included (shorter in tests). */
    timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    registerSecret(config.access_token);
    this.base = `${config.endpoint}/${config.api_version}`;
    this.api = new ScopedApi(config.access_token, this.base, timeoutMs);
    this.timeoutMs = timeoutMs;
    this.account = new AdAccount(`act_${config.ad_account_id}`, {}, undefined, this.api);
    // The SDK counts the id given to the constructor as a change, and would post it with every create.
    this.account.clearHistory();
    const notice = versionNotice(config.api_version, new Date());
    if (notice) log.warn(notice.text);
  }

  async check(): Promise<Check[]> {
    const checks: Check[] = [];
    try {
      const me = z
        .looseObject({ id: z.coerce.string(), name: z.string().optional() })
        .parse(
          await this.sdk("reading the token's user", () =>
            this.api.call('GET', ['me'], { fields: 'id,name' }),
          ),
        );
      checks.push({ name: 'token', ok: true, detail: `valid, for ${me.name ?? 'user'} ${me.id}` });
    } catch (error) {
      checks.push({ name: 'token', ok: false, detail: messageOf(error) });
    }
    const account = `act_${this.config.ad_account_id}`;
    try {
      const info = adAccountInfo.parse(
        dataOf(
          await this.sdk(`reading ad account ${account}`, () =>
            this.account.get(['name', 'account_status', 'tos_accepted']),
          ),
        ),
      );
      const closed = info.account_status !== undefined ? CLOSED_ACCOUNT[info.account_status] : undefined;
      checks.push({
        name: 'ad account',
        ok: closed === undefined,
        detail: closed
          ? `${account} (${info.name ?? ''}) is ${closed}: custom audiences cannot be updated; use an active ad account`
          : `${account} (${info.name ?? ''}) is reachable`,
      });
      const accepted = info.tos_accepted?.custom_audience_tos === 1;
      checks.push({
        name: 'terms of service',
        ok: accepted,
        detail: accepted
          ? 'Custom Audience terms accepted'
          : `the Custom Audience terms are not accepted for ${account}: open ${tosLink(this.config.ad_account_id)} ` +
            'as an admin of the ad account and accept them',
      });
    } catch (error) {
      checks.push({ name: 'ad account', ok: false, detail: messageOf(error) });
      checks.push({
        name: 'terms of service',
        ok: false,
        detail: 'not checked: the ad account is not reachable',
      });
    }
    const notice = versionNotice(this.config.api_version, new Date());
    checks.push({
      name: 'Graph API version',
      ok: !notice?.expired,
      detail: notice?.text ?? `${this.config.api_version}`,
    });
    return checks;
  }

  async ensureAudience(
    name: string,
    knownId?: string,
    epoch?: string,
  ): Promise<RemoteAudience & { created: boolean; epoch?: string | undefined }> {
    if (knownId) {
      const known = await this.readKnown(name, knownId);
      if (known) {
        this.assertUsable(known, name);
        return this.found(known, name);
      }
    }
    // Listed before created: a run that crashed after creating finds its audience instead of a twin.
    const found = await this.findByName(name);
    const lost = knownId
      ? `; members audience-sync recorded there are not in the new one: run a full resync (sync --full)`
      : '';
    if (found) {
      this.assertUsable(found, name);
      if (knownId)
        this.log.warn(
          { audience: name, id: found.id },
          `using Meta audience ${found.id} named '${name}'${lost}`,
        );
      return this.found(found, name);
    }
    const base = this.config.description ?? DEFAULT_DESCRIPTION;
    const description = epoch ? withEpoch(base, epoch) : base;
    const flagged = restrictedWarning(name, base);
    if (flagged) this.log.warn({ audience: name }, flagged);
    const created = z.object({ id: z.coerce.string() }).safeParse(
      await this.sdk(`creating audience '${name}' in act_${this.config.ad_account_id}`, () =>
        this.account.createCustomAudience([], {
          name,
          subtype: 'CUSTOM',
          customer_file_source: this.config.customer_file_source,
          description,
        }),
      ),
    );
    if (!created.success)
      throw new ConnectorError(
        `Meta: creating audience '${name}' returned no audience id; retrying`,
        'retryable',
      );
    if (knownId)
      this.log.warn(
        { audience: name, id: created.data.id },
        `created Meta audience ${created.data.id}${lost}`,
      );
    this.descriptions.set(created.data.id, description);
    this.created.add(created.data.id);
    return { id: created.data.id, name, created: true, epoch };
  }

  /** Writes the state's epoch into the audience's description, keeping the rest of its text. */
  async stamp(audience: RemoteAudience, epoch: string): Promise<void> {
    const description = withEpoch(
      this.descriptions.get(audience.id) ?? this.config.description ?? DEFAULT_DESCRIPTION,
      epoch,
    );
    await this.sdk(`marking audience '${audience.name}' (${audience.id}) with the sync's epoch`, () =>
      this.api.call('POST', [audience.id], { description }),
    );
    this.descriptions.set(audience.id, description);
  }

  private found(info: AudienceInfo, name: string): RemoteAudience & { created: false; epoch?: string } {
    const description = info.description?.trim() || this.config.description || DEFAULT_DESCRIPTION;
    this.descriptions.set(info.id, description);
    const epoch = epochOf(info.description);
    return { id: info.id, name, created: false, ...(epoch ? { epoch } : {}) };
  }

  async add(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.update('POST', audience, members);
  }

  async remove(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.update('DELETE', audience, members);
  }

  /**
   * The audience becomes exactly these members: one `/usersreplace` session, batch by batch. A failure
   * midway throws, and the core's retry starts a new session from the first batch.
   */
  async replace(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    const schema = this.config.schema;
    const rejected: Rejection[] = [];
    const kept = members.filter((m, index) => {
      if (schema.some((_, c) => m.slots[c])) return true;
      rejected.push({ index, reason: EMPTY_ROW });
      return false;
    });
    // A list this client just created is empty: nothing to replace it with is nothing to do.
    if (kept.length === 0 && this.created.has(audience.id))
      return { status: 'confirmed', ...(rejected.length ? { rejected } : {}) };
    const sessionId = randomInt(1, 2 ** 48);
    const size = this.config.batch_size;
    // No members: one empty last batch, so the session still empties the audience.
    const batches = Math.max(1, Math.ceil(kept.length / size));
    let report: PlatformReport = {};
    for (let seq = 1; seq <= batches; seq++) {
      const { body, rows } = usersBody(kept.slice((seq - 1) * size, seq * size), schema, {
        session_id: sessionId,
        batch_seq: seq,
        last_batch_flag: seq === batches,
        estimated_num_total: kept.length,
      });
      const response = await this.send(
        'POST',
        'usersreplace',
        audience,
        body,
        rows,
        `replacing the members of audience '${audience.name}' (${audience.id}), batch ${seq} of ${batches} ` +
          `(session ${sessionId}; a retry starts a new session)`,
      ).catch((error: unknown) => {
        throw kept.length === 0 ? emptyReplaceRefused(error, audience) : error;
      });
      report = addReport(report, response);
    }
    this.created.delete(audience.id);
    return { status: 'confirmed', ...(rejected.length ? { rejected } : {}), report };
  }

  async stats(audience: RemoteAudience): Promise<AudienceStats> {
    const info = await this.read(audience.id, `reading audience '${audience.name}' (${audience.id})`);
    const lower = info.approximate_count_lower_bound;
    // Meta gives a range; the lower bound is what it promises.
    const size = lower !== undefined && lower >= 0 ? lower : undefined;
    const warnings: string[] = [];
    if (size === undefined)
      warnings.push('Meta has not counted this audience yet (it can take up to 24 hours)');
    else if (size < MIN_AUDIENCE)
      warnings.push(
        `Meta counts about ${size} people: it recommends at least ${MIN_AUDIENCE} for ads to deliver`,
      );
    const op = info.operation_status;
    if (op && op.code !== 200 && op.code < UNUSABLE_FROM)
      warnings.push(`Meta operation_status ${op.code}: ${redact(op.description ?? '')}`.trim());
    const problems = statusProblems(info);
    return { size, warnings, ...(problems.length > 0 ? { problems } : {}) };
  }

  private async update(
    method: 'POST' | 'DELETE',
    audience: RemoteAudience,
    members: readonly Member[],
  ): Promise<BatchOutcome> {
    const { body, rows, empty } = usersBody(members, this.config.schema);
    // Members with no field for the schema are not sent.
    const rejected = empty.map((index): Rejection => ({ index, reason: EMPTY_ROW }));
    if (rows === 0) return { status: 'confirmed', rejected };
    const verb = method === 'POST' ? 'adding' : 'removing';
    if (method === 'POST') this.created.delete(audience.id);
    const response = await this.send(
      method,
      'users',
      audience,
      body,
      rows,
      `${verb} ${rows} members ${method === 'POST' ? 'to' : 'from'} audience '${audience.name}' (${audience.id})`,
    );
    return { status: 'confirmed', ...(rejected.length ? { rejected } : {}), report: addReport({}, response) };
  }

  /** One `/users` or `/usersreplace` request of `rows` rows: JSON body (`usersBody`), the token only in the query string. */
  private async send(
    method: 'POST' | 'DELETE',
    edge: 'users' | 'usersreplace',
    audience: RemoteAudience,
    body: Buffer,
    rows: number,
    what: string,
  ): Promise<z.infer<typeof usersResponse>> {
    const url = `${this.base}/${audience.id}/${edge}?access_token=${encodeURIComponent(this.config.access_token)}`;
    const response = await request(url, {
      method,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body,
      timeoutMs: this.timeoutMs,
    });
    if (!response.answered) throw classify(failureOfNoAnswer(response), this.context(what));
    if (!response.ok)
      throw classify(failureOfResponse(response.status, response.headers, response.body), this.context(what));
    let json: unknown;
    try {
      json = JSON.parse(response.body);
    } catch {
      // A 200 that is not JSON is a proxy's page, not Meta's acceptance.
      throw classify(failureOfResponse(response.status, response.headers, response.body), this.context(what));
    }
    const parsed = usersResponse.safeParse(json);
    if (!parsed.success)
      throw new ConnectorError(`Meta: ${what} returned an unexpected answer; retrying`, 'retryable');
    this.log.debug(
      {
        audience: audience.name,
        id: audience.id,
        edge,
        method,
        rows,
        received: parsed.data.num_received,
        invalid: parsed.data.num_invalid_entries,
      },
      `Meta ${edge} ${method}: ${rows} rows`,
    );
    return parsed.data;
  }

  /** The audience remembered from an earlier run, or undefined when it is gone from this ad account. */
  private async readKnown(name: string, id: string): Promise<AudienceInfo | undefined> {
    const what = `reading audience '${name}' (${id})`;
    let info: AudienceInfo;
    try {
      info = audienceInfo.parse(
        dataOf(await new CustomAudience(id, {}, undefined, this.api).get(AUDIENCE_FIELDS)),
      );
    } catch (error) {
      if (error instanceof z.ZodError)
        throw new ConnectorError(`Meta: ${what} returned an unexpected answer; retrying`, 'retryable');
      const failure = failureOfSdk(error);
      if (!isMissing(failure)) throw classify(failure, this.context(what));
      this.log.warn({ audience: name, id }, `Meta audience ${id} for '${name}' is gone (deleted on Meta?)`);
      return undefined;
    }
    if (info.account_id !== undefined && info.account_id !== this.config.ad_account_id) {
      this.log.warn(
        { audience: name, id, account: info.account_id },
        `Meta audience ${id} for '${name}' is in ad account ${info.account_id}, not act_${this.config.ad_account_id}`,
      );
      return undefined;
    }
    return info;
  }

  private async read(id: string, what: string): Promise<AudienceInfo> {
    const data = dataOf(
      await this.sdk(what, () => new CustomAudience(id, {}, undefined, this.api).get(AUDIENCE_FIELDS)),
    );
    const parsed = audienceInfo.safeParse(data);
    if (!parsed.success)
      throw new ConnectorError(`Meta: ${what} returned an unexpected answer; retrying`, 'retryable');
    return parsed.data;
  }

  /** The ad account's customer-list audience of that exact name (the oldest, if several), through every page. */
  private async findByName(name: string): Promise<AudienceInfo | undefined> {
    const what = `listing the audiences of act_${this.config.ad_account_id}`;
    const matches: AudienceInfo[] = [];
    let page = await this.sdk(what, async () =>
      this.account.getCustomAudiences(['id', 'name', 'subtype', 'operation_status', 'description'], {
        limit: 500,
      }),
    );
    for (;;) {
      for (const item of page) {
        const info = audienceInfo.safeParse(dataOf(item));
        if (info.success && info.data.name === name && (info.data.subtype ?? 'CUSTOM') === 'CUSTOM')
          matches.push(info.data);
      }
      if (!page.hasNext()) break;
      const current = page;
      page = await this.sdk(what, () => current.next() as Promise<typeof current>);
    }
    matches.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
    if (matches.length > 1)
      this.log.warn(
        { audience: name, ids: matches.map((m) => m.id) },
        `${matches.length} Meta audiences are named '${name}'; using the oldest, ${matches[0]!.id}`,
      );
    return matches[0];
  }

  private assertUsable(info: AudienceInfo, name: string): void {
    if (info.operation_status?.code !== FLAGGED) return;
    throw new ConnectorError(
      `Meta: audience '${name}' (${info.id}) is flagged by Meta (operation_status 471: ` +
        `${info.operation_status.description ?? 'restricted'}) and takes no uploads. Resolve or appeal the ` +
        'restriction in Ads Manager → Audiences, or rename the audience in the config to create a new one',
      'permanent',
    );
  }

  private async sdk<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw classify(failureOfSdk(error), this.context(what));
    }
  }

  private context(what: string): FailureContext {
    return {
      what,
      account: this.config.ad_account_id,
      ...(this.config.throttle_wait_seconds !== undefined
        ? { throttleWaitMs: this.config.throttle_wait_seconds * 1000 }
        : {}),
    };
  }
}

/**
 * Why Meta will not serve the audience, from its `operation_status` and `delivery_status`, with Meta's code
 * and text (redacted): a flagged audience (471), any other operation status from 400 up, and a delivery
 * status other than 200 (ready). Operation statuses under 400 are normal or work in progress (warnings).
 */
export function statusProblems(info: Pick<AudienceInfo, 'operation_status' | 'delivery_status'>): string[] {
  const problems: string[] = [];
  const said = (s: { code: number; description?: string | undefined }) =>
    s.description?.trim() ? `: ${redact(s.description.trim())}` : '';
  const op = info.operation_status;
  if (op?.code === FLAGGED)
    problems.push(
      `flagged by Meta (operation_status 471${said(op)}): it takes no uploads and serves no new campaigns; ` +
        'resolve or appeal it in Ads Manager → Audiences, or rename the audience in the config to create a new one',
    );
  else if (op && op.code >= UNUSABLE_FROM) problems.push(`Meta operation_status ${op.code}${said(op)}`);
  const delivery = info.delivery_status;
  if (delivery && delivery.code !== 200)
    problems.push(`Meta delivery_status ${delivery.code}${said(delivery)}`);
  return problems;
}

/**
 * Meta's refusal of a replace with no members (an invalid parameter: Meta does not document an empty
 * replace), as what to do about it; any other failure as it is.
 */
function emptyReplaceRefused(error: unknown, audience: RemoteAudience): unknown {
  const cause = error instanceof ConnectorError ? (error.cause as { code?: unknown } | undefined) : undefined;
  if (!(error instanceof ConnectorError) || error.kind !== 'permanent' || cause?.code !== 100) return error;
  return new ConnectorError(
    `Meta: audience '${audience.name}' (${audience.id}) must be emptied (its segment has no members, and ` +
      'audience-sync does not know who the audience holds) but Meta refused a replace with no members ' +
      `(${error.message}). Delete the audience in Ads Manager → Audiences (the next sync creates it again, ` +
      'empty), or run again once the segment has members',
    'permanent',
    { cause: error.cause },
  );
}

function messageOf(error: unknown): string {
  return redact(error instanceof Error ? error.message : String(error));
}

/** Meta's accounting of a request added to what the call has so far; samples are reasons only. */
function addReport(report: PlatformReport, response: z.infer<typeof usersResponse>): PlatformReport {
  const out: PlatformReport = {
    received: (report.received ?? 0) + (response.num_received ?? 0),
    invalid: (report.invalid ?? 0) + (response.num_invalid_entries ?? 0),
  };
  const samples = [...(report.invalidSamples ?? []), ...reasonsOf(response.invalid_entry_samples)];
  if (samples.length > 0) out.invalidSamples = [...new Set(samples)].slice(0, 10);
  return out;
}

/**
 * The reasons in `invalid_entry_samples` (a map of entry → reason, or a list of `{ reason }`), never the
 * entries: a text that looks like a hash or an email is dropped whatever field it came in; the rest is
 * redacted.
 */
export function reasonsOf(samples: unknown): string[] {
  const values: unknown[] = Array.isArray(samples)
    ? samples.map((s) => (s && typeof s === 'object' ? (s as Record<string, unknown>).reason : undefined))
    : samples && typeof samples === 'object'
      ? Object.values(samples)
      : [];
  return values
    .filter((v): v is string => typeof v === 'string' && v.length > 0 && !/[0-9a-f]{16,}|@/i.test(v))
    .map(redact);
}
