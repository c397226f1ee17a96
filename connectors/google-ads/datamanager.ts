import { z } from 'zod';
import type {
  AudienceStats,
  BatchOutcome,
  Check,
  ConnectorClient,
  ConnectorContext,
  Member,
  PollOutcome,
  Rejection,
  RemoteAudience,
} from '../../src/connector.js';
import { ConnectorError } from '../../src/connector.js';
import { redact } from '../../src/redact.js';
import { TIMEOUT_MS, type GoogleAdsConfig } from './config.js';
import { request } from '../http.js';
import { epochOf, withEpoch } from '../../src/epoch-mark.js';
import { classify, parseApiError, rejectedMembers, type ApiError } from './errors.js';
import { userIdentifiers } from './identifiers.js';
import { DATA_MANAGER_SCOPE, GoogleOAuth } from './oauth.js';

/**
 * The Data Manager API path (REST, the default): Customer Match lists are `userLists` of the Google Ads
 * account, members go in with `audienceMembers:ingest` and out with `audienceMembers:remove` (all at once
 * with `audienceMembers:removeAll` after a lost state), and each request is processed later: batches are
 * pending until `requestStatus:retrieve` says SUCCESS.
 */

/** What a list this connector creates says about itself, before the epoch's mark. */
const DESCRIPTION = 'Customer Match list kept equal to a segment by audience-sync';
/** A list serves ads only with at least this many matched users. */
const SERVING_MINIMUM = 100;

const userListSchema = z.looseObject({
  name: z.string().optional(),
  id: z.string().optional(),
  displayName: z.string().optional(),
  description: z.string().optional(),
  membershipStatus: z.string().optional(),
  closingReason: z.string().optional(),
  sizeInfo: z
    .object({
      displayNetworkMembersCount: z.coerce.number().optional(),
      searchNetworkMembersCount: z.coerce.number().optional(),
    })
    .optional(),
  targetNetworkInfo: z
    .object({ eligibleForDisplay: z.boolean().optional(), eligibleForSearch: z.boolean().optional() })
    .optional(),
  ingestedUserListInfo: z
    .looseObject({
      uploadKeyTypes: z.array(z.string()).optional(),
      contactIdInfo: z.looseObject({ matchRatePercentage: z.coerce.number().optional() }).optional(),
    })
    .optional(),
});
type UserList = z.infer<typeof userListSchema>;

const listResponse = z.object({
  userLists: z.array(userListSchema).optional(),
  nextPageToken: z.string().optional(),
});
const requestIdResponse = z.object({ requestId: z.string().min(1) });
const statusResponse = z.object({
  requestStatusPerDestination: z
    .array(
      z.looseObject({
        requestStatus: z.string().optional(),
        errorInfo: z
          .object({
            errorCounts: z
              .array(z.object({ reason: z.string().optional(), recordCount: z.coerce.number().optional() }))
              .optional(),
          })
          .optional(),
        audienceMembersIngestionStatus: z
          .object({
            userDataIngestionStatus: z.object({ uploadMatchRateRange: z.string().optional() }).optional(),
          })
          .optional(),
      }),
    )
    .optional(),
});

/** An `AudienceMember` of an ingest or remove request; `consent` is the member's own (ingest only). */
interface AudienceMemberBody {
  userData: { userIdentifiers: unknown[] };
  consent?: { adUserData: 'CONSENT_GRANTED'; adPersonalization: 'CONSENT_GRANTED' };
}
const GRANTED = { adUserData: 'CONSENT_GRANTED', adPersonalization: 'CONSENT_GRANTED' } as const;

type Sent<T> = { ok: true; data: T } | { ok: false; error: ApiError; retryAfter: string | null };

export function createDataManagerClient(config: GoogleAdsConfig, context: ConnectorContext): ConnectorClient {
  return new DataManagerClient(config, context);
}

export class DataManagerClient implements ConnectorClient {
  private readonly oauth: GoogleOAuth;
  private readonly base: string;
  private readonly parent: string;
  /** The last upload match rate Google reported per list (`MATCH_RATE_RANGE_61_TO_70`), for stats. */
  private readonly matchRanges = new Map<string, string>();
  /** Descriptions of the lists this client found or made, by id: `stamp` changes only the mark. */
  private readonly descriptions = new Map<string, string>();

  constructor(
    private readonly config: GoogleAdsConfig,
    private readonly context: ConnectorContext,
  ) {
    this.oauth = new GoogleOAuth(config, { scope: DATA_MANAGER_SCOPE });
    this.base = `${config.endpoints.data_manager.replace(/\/+$/, '')}/v1`;
    this.parent = `accountTypes/GOOGLE_ADS/accounts/${config.customer_id}`;
  }

  async check(): Promise<Check[]> {
    const checks: Check[] = [];
    try {
      await this.oauth.accessToken();
      checks.push({
        name: 'oauth',
        ok: true,
        detail: `refresh token exchanged at ${this.config.endpoints.token_url}`,
      });
    } catch (error) {
      checks.push({ name: 'oauth', ok: false, detail: redact((error as Error).message) });
      return checks;
    }
    try {
      await this.call('list user lists', 'GET', `/${this.parent}/userLists`, listResponse, {
        query: { pageSize: '1' },
      });
      checks.push({
        name: 'account',
        ok: true,
        detail: `Google Ads account ${this.account()} reachable through the Data Manager API${
          this.config.login_customer_id ? ` (logged in through manager ${this.config.login_customer_id})` : ''
        }`,
      });
    } catch (error) {
      checks.push({ name: 'account', ok: false, detail: redact((error as Error).message) });
    }
    return checks;
  }

  async ensureAudience(
    name: string,
    knownId?: string,
    epoch?: string,
  ): Promise<RemoteAudience & { created: boolean; epoch?: string | undefined }> {
    if (knownId) {
      const found = await this.send(
        'get user list',
        'GET',
        `/${this.parent}/userLists/${knownId}`,
        userListSchema,
      );
      if (found.ok) return this.found(knownId, name, found.data);
      if (found.error.httpStatus !== 404) throw this.classify(found, `get user list ${knownId}`);
      this.context.log.warn(
        { destination: this.context.destination, audience: name },
        `user list ${knownId} no longer exists in account ${this.account()}: looking it up by name`,
      );
    }
    const existing = await this.findByName(name);
    if (existing) return this.found(existing.id, name, existing.list);
    const description = epoch ? withEpoch(DESCRIPTION, epoch) : DESCRIPTION;
    const created = await this.send('create user list', 'POST', `/${this.parent}/userLists`, userListSchema, {
      body: {
        displayName: name,
        description,
        membershipDuration: `${this.config.membership_days * 86_400}s`,
        ingestedUserListInfo: { uploadKeyTypes: ['CONTACT_ID'] },
      },
    });
    if (created.ok) {
      const id = listId(created.data);
      if (!id)
        throw new ConnectorError(
          `Data Manager API created user list '${name}' in account ${this.account()} but answered without its id`,
          'retryable',
        );
      this.descriptions.set(id, description);
      return { id, name, created: true, epoch };
    }
    // Another run created it meanwhile: use that one rather than a second list.
    if (created.error.httpStatus === 409 || created.error.status === 'ALREADY_EXISTS') {
      const raced = await this.findByName(name);
      if (raced) return this.found(raced.id, name, raced.list);
    }
    throw this.classify(created, `create user list '${name}'`);
  }

  /** Writes the state's epoch into the list's description (`userLists.patch`), keeping the rest of it. */
  async stamp(audience: RemoteAudience, epoch: string): Promise<void> {
    const description = withEpoch(this.descriptions.get(audience.id) ?? DESCRIPTION, epoch);
    await this.call(
      `mark user list ${audience.id} with the sync's epoch`,
      'PATCH',
      `/${this.parent}/userLists/${audience.id}`,
      userListSchema,
      { query: { updateMask: 'description' }, body: { description } },
    );
    this.descriptions.set(audience.id, description);
  }

  /**
   * Empties the list (`audienceMembers:removeAll`), processed later like an upload: the core adds the
   * members once Google says it is done, so the list is never short while our state says it is full.
   */
  async removeAll(audience: RemoteAudience): Promise<BatchOutcome> {
    const { requestId } = await this.call(
      'remove all audience members',
      'POST',
      '/audienceMembers:removeAll',
      requestIdResponse,
      { body: { destinations: [this.destination(audience)] } },
    );
    return { status: 'pending', token: requestId };
  }

  private found(
    id: string,
    name: string,
    list: UserList,
  ): RemoteAudience & { created: false; epoch?: string } {
    this.descriptions.set(id, list.description?.trim() || DESCRIPTION);
    const epoch = epochOf(list.description);
    return { id, name, created: false, ...(epoch ? { epoch } : {}) };
  }

  async add(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.upload('ingest', audience, members);
  }

  async remove(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.upload('remove', audience, members);
  }

  /** Done when every request of the batch is done; failed when any failed (its members are sent again). */
  async poll(audience: RemoteAudience, token: string): Promise<PollOutcome> {
    let processing = false;
    for (const requestId of token.split(',')) {
      const sent = await this.send(
        'retrieve request status',
        'GET',
        '/requestStatus:retrieve',
        statusResponse,
        {
          query: { requestId },
        },
      );
      if (!sent.ok) {
        if (sent.error.httpStatus === 404)
          return { status: 'failed', reason: `Google no longer knows request ${requestId}` };
        const error = this.classify(sent, `retrieve status of request ${requestId}`);
        // The core does not retry polls: a passing failure leaves the batch pending for the next run.
        if (error.kind === 'permanent') throw error;
        this.context.log.warn(
          { destination: this.context.destination, audience: audience.name },
          error.message,
        );
        processing = true;
        continue;
      }
      const status = sent.data.requestStatusPerDestination?.[0];
      const range = status?.audienceMembersIngestionStatus?.userDataIngestionStatus?.uploadMatchRateRange;
      if (range) this.matchRanges.set(audience.id, range);
      switch (status?.requestStatus) {
        case 'SUCCESS':
        case 'PARTIAL_SUCCESS':
          break;
        case 'FAILED': {
          const counts = (status.errorInfo?.errorCounts ?? [])
            .map((c) => `${c.reason ?? 'UNKNOWN'}${c.recordCount !== undefined ? ` ×${c.recordCount}` : ''}`)
            .join(', ');
          return {
            status: 'failed',
            reason: `request ${requestId} FAILED${counts ? `: ${redact(counts)}` : ''}`,
          };
        }
        default:
          processing = true;
      }
    }
    return processing ? { status: 'processing' } : { status: 'done' };
  }

  /** Size on Google Search (`searchNetworkMembersCount`), the match rate, and why the list may not serve. */
  async stats(audience: RemoteAudience): Promise<AudienceStats> {
    const list = await this.call(
      'get user list',
      'GET',
      `/${this.parent}/userLists/${audience.id}`,
      userListSchema,
    );
    const warnings: string[] = [];
    const search = list.sizeInfo?.searchNetworkMembersCount;
    const display = list.sizeInfo?.displayNetworkMembersCount;
    if (search === undefined && display === undefined)
      warnings.push('Google has not sized the list yet (up to 24 hours after an upload)');
    if (search !== undefined && search < SERVING_MINIMUM)
      warnings.push(`${search} members on Search: a list serves only from ${SERVING_MINIMUM} matched users`);
    if (display !== undefined && display < SERVING_MINIMUM)
      warnings.push(
        `${display} members on Display/YouTube: a list serves only from ${SERVING_MINIMUM} matched users`,
      );
    if (list.targetNetworkInfo?.eligibleForSearch === false)
      warnings.push('not eligible for Search campaigns');
    if (list.targetNetworkInfo?.eligibleForDisplay === false)
      warnings.push('not eligible for Display campaigns');
    if (list.membershipStatus === 'CLOSED')
      warnings.push(
        `the list is closed${list.closingReason ? ` (${redact(list.closingReason)})` : ''}: reopen it in Google Ads`,
      );
    const percentage = list.ingestedUserListInfo?.contactIdInfo?.matchRatePercentage;
    const matchRate =
      percentage !== undefined ? percentage / 100 : rangeMidpoint(this.matchRanges.get(audience.id));
    return { size: search ?? display, matchRate, warnings };
  }

  private async upload(
    op: 'ingest' | 'remove',
    audience: RemoteAudience,
    members: readonly Member[],
  ): Promise<BatchOutcome> {
    const rejected: Rejection[] = [];
    const entries: { index: number; member: AudienceMemberBody }[] = [];
    members.forEach((m, index) => {
      const ids = userIdentifiers(m.slots);
      if (ids.length === 0) rejected.push({ index, reason: 'no usable identifier' });
      // Everyone added has both EU consents granted (`identify` leaves out anyone else): said per member.
      else if (op === 'ingest')
        entries.push({ index, member: { userData: { userIdentifiers: ids }, consent: GRANTED } });
      else entries.push({ index, member: { userData: { userIdentifiers: ids } } });
    });
    const requestIds: string[] = [];
    for (let at = 0; at < entries.length; at += this.config.batch_size) {
      let chunk = entries.slice(at, at + this.config.batch_size);
      // A request naming invalid members is refused whole: send it again without them.
      while (chunk.length > 0) {
        const sent = await this.send(
          `${op} audience members`,
          'POST',
          `/audienceMembers:${op}`,
          requestIdResponse,
          {
            body: this.uploadBody(
              op,
              audience,
              chunk.map((e) => e.member),
            ),
          },
        );
        if (sent.ok) {
          requestIds.push(sent.data.requestId);
          break;
        }
        const named = rejectedMembers(sent.error);
        if (!named || [...named.keys()].some((i) => i >= chunk.length))
          throw this.classify(sent, `${op} ${chunk.length} members into user list ${audience.id}`);
        for (const [i, reason] of named) rejected.push({ index: chunk[i]!.index, reason });
        chunk = chunk.filter((_, i) => !named.has(i));
      }
    }
    rejected.sort((a, b) => a.index - b.index);
    if (requestIds.length === 0) return { status: 'confirmed', rejected };
    return { status: 'pending', token: requestIds.join(','), rejected };
  }

  private destination(audience: RemoteAudience) {
    return {
      operatingAccount: { accountType: 'GOOGLE_ADS', accountId: this.config.customer_id },
      ...(this.config.login_customer_id
        ? { loginAccount: { accountType: 'GOOGLE_ADS', accountId: this.config.login_customer_id } }
        : {}),
      productDestinationId: audience.id,
    };
  }

  private uploadBody(op: 'ingest' | 'remove', audience: RemoteAudience, members: unknown[]) {
    const destination = this.destination(audience);
    if (op === 'remove') return { destinations: [destination], encoding: 'HEX', audienceMembers: members };
    return {
      destinations: [destination],
      encoding: 'HEX',
      termsOfService: { customerMatchTermsOfServiceStatus: 'ACCEPTED' },
      audienceMembers: members,
    };
  }

  /** The list whose display name is exactly `name`, with its id. */
  private async findByName(name: string): Promise<{ id: string; list: UserList } | undefined> {
    let pageToken: string | undefined;
    do {
      const page = await this.call('list user lists', 'GET', `/${this.parent}/userLists`, listResponse, {
        query: {
          filter: `display_name = "${name.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`,
          pageSize: '1000',
          ...(pageToken ? { pageToken } : {}),
        },
      });
      const match = page.userLists?.find((l) => l.displayName === name);
      const id = match && listId(match);
      if (id) return { id, list: match };
      pageToken = page.nextPageToken || undefined;
    } while (pageToken);
    return undefined;
  }

  private async call<T>(
    what: string,
    method: 'GET' | 'POST' | 'PATCH',
    path: string,
    schema: z.ZodType<T>,
    options: { body?: unknown; query?: Record<string, string> } = {},
  ): Promise<T> {
    const sent = await this.send(what, method, path, schema, options);
    if (!sent.ok) throw this.classify(sent, what);
    return sent.data;
  }

  /** One REST call; a 401 gets one fresh token before it counts as a credentials problem. */
  private async send<T>(
    what: string,
    method: 'GET' | 'POST' | 'PATCH',
    path: string,
    schema: z.ZodType<T>,
    options: { body?: unknown; query?: Record<string, string> } = {},
    renewed = false,
  ): Promise<Sent<T>> {
    const url = new URL(`${this.base}${path}`);
    for (const [k, v] of Object.entries(options.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = {
      authorization: `Bearer ${await this.oauth.accessToken()}`,
      accept: 'application/json',
    };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    // userLists calls name the manager account in a header; ingest/remove name it in the destination.
    if (this.config.login_customer_id && path.includes('/userLists'))
      headers['login-account'] = `accountTypes/GOOGLE_ADS/accounts/${this.config.login_customer_id}`;
    const response = await request(url, {
      method,
      headers,
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      timeoutMs: TIMEOUT_MS.dataManager,
    });
    if (!response.answered)
      throw new ConnectorError(
        `Data Manager API ${what} for Google Ads account ${this.account()} failed: ${response.reason}; retrying`,
        'retryable',
      );
    const text = response.body;
    if (response.status === 401 && !renewed) {
      this.oauth.invalidate();
      return this.send(what, method, path, schema, options, true);
    }
    if (!response.ok)
      return {
        ok: false,
        error: parseApiError(response.status, text),
        retryAfter: response.headers.get('retry-after'),
      };
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = undefined;
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw new ConnectorError(
        `Data Manager API ${what} answered ${response.status} with an unexpected body: check endpoints.data_manager (${this.config.endpoints.data_manager})`,
        'permanent',
      );
    return { ok: true, data: parsed.data };
  }

  private classify(sent: Extract<Sent<unknown>, { ok: false }>, what: string): ConnectorError {
    return classify(sent.error, { what, customerId: this.account(), retryAfter: sent.retryAfter });
  }

  private account(): string {
    const id = this.config.customer_id;
    return `${id.slice(0, 3)}-${id.slice(3, 6)}-${id.slice(6)}`;
  }
}

function listId(list: UserList): string | undefined {
  return list.id ?? list.name?.split('/').at(-1);
}

/** `MATCH_RATE_RANGE_61_TO_70` → 0.655; other ranges (not eligible, under 20 %) have no useful midpoint. */
function rangeMidpoint(range: string | undefined): number | undefined {
  const match = /_(\d+)_TO_(\d+)$/.exec(range ?? '');
  return match ? (Number(match[1]) + Number(match[2])) / 200 : undefined;
}
