import type { common } from 'google-ads-api';
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
import { redact, registerSecret } from '../../src/redact.js';
import { describe } from './adsapi-errors.js';
import { Gaql } from './adsapi-gaql.js';
import type { AdsGrpc, Consent, JobOperation } from './adsapi-grpc.js';
import { signalOf, type ConsentSignal } from '../../src/identify/consent.js';
import type { GoogleAdsConfig } from './config.js';
import { epochOf, withEpoch } from '../../src/epoch-mark.js';
import { userIdentifiers } from './identifiers.js';
import { ADWORDS_SCOPE, GoogleOAuth } from './oauth.js';

/**
 * The Google Ads API path (allowlisted developer tokens only since April 2026): each upload is an
 * OfflineUserDataJob — create → addOperations (sequentially, partial failure on) → run — and is pending
 * until a later GAQL poll finds the job SUCCESS or FAILED. Adds and removes go in separate jobs; a full
 * resync is one job starting with `remove_all`. Calls on one list never overlap (one writer per list), and
 * one job runs on a list at a time: a job made while another is at work is left to start, still pending,
 * when a later poll finds the list free (Google refuses a second job with CONCURRENT_MODIFICATION).
 */

/** Google serves a Customer Match list only from this many active members. */
const SERVING_MINIMUM = 100;

export function createAdsApiClient(config: GoogleAdsConfig, context: ConnectorContext): ConnectorClient {
  return new AdsApiClient(config, context);
}

const userListRow = z.object({
  userList: z.object({
    resourceName: z.string(),
    name: z.string().optional(),
    description: z.string().optional(),
    type: z.string().optional(),
    sizeForSearch: z.coerce.number().optional(),
    sizeForDisplay: z.coerce.number().optional(),
    matchRatePercentage: z.number().optional(),
    eligibleForSearch: z.boolean().optional(),
    membershipStatus: z.string().optional(),
  }),
});
type UserListRow = z.infer<typeof userListRow>['userList'];

const jobRow = z.object({
  offlineUserDataJob: z.object({ status: z.string().optional(), failureReason: z.string().optional() }),
});

/** A GAQL string literal: backslashes and quotes escaped. */
export function gaqlString(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** One member as a `UserData`: each identifier its own `UserIdentifier` (email and phone are a oneof). */
export function userData(slots: Member['slots']): common.IUserData {
  return {
    user_identifiers: userIdentifiers(slots).map((id) => {
      if ('emailAddress' in id) return { hashed_email: id.emailAddress };
      if ('phoneNumber' in id) return { hashed_phone_number: id.phoneNumber };
      return {
        address_info: {
          hashed_first_name: id.address.givenName,
          hashed_last_name: id.address.familyName,
          country_code: id.address.regionCode,
          postal_code: id.address.postalCode,
        },
      };
    }),
  };
}

export class AdsApiClient implements ConnectorClient {
  private readonly gaql: Gaql;
  private readonly oauth: GoogleOAuth;
  /** The gRPC side, loaded at its first use: lookups, polls and stats never load the SDK. */
  private grpcClient: Promise<AdsGrpc> | undefined;
  /** The tail of each list's call chain: calls on one list run one after another. */
  private readonly lists = new Map<string, Promise<unknown>>();
  /** Descriptions of the lists this client found or made, by resource name: `stamp` changes only the mark. */
  private readonly descriptions = new Map<string, string>();
  /** Per list, the job this client started or saw at work: the list's next job waits until it is done. */
  private readonly running = new Map<string, string>();

  constructor(
    private readonly config: GoogleAdsConfig,
    private readonly context: ConnectorContext,
  ) {
    this.oauth = new GoogleOAuth(config, { scope: ADWORDS_SCOPE });
    this.gaql = new Gaql(config, this.oauth);
    registerSecret(config.developer_token);
  }

  async check(): Promise<Check[]> {
    const checks: Check[] = [];
    try {
      await this.oauth.accessToken();
      checks.push({
        name: 'oauth',
        ok: true,
        detail: 'the refresh token gives an access token (scope adwords)',
      });
    } catch (error) {
      checks.push({ name: 'oauth', ok: false, detail: messageOf(error) });
      return checks;
    }
    const customer = `customer ${this.config.customer_id}${this.config.login_customer_id ? ` through manager ${this.config.login_customer_id}` : ''}`;
    try {
      await this.gaql.search('customer check', 'SELECT customer.id FROM customer LIMIT 1');
      checks.push({ name: 'developer token', ok: true, detail: 'accepted by the Google Ads API' });
      checks.push({ name: 'customer access', ok: true, detail: `${customer} is reachable` });
    } catch (error) {
      const message = messageOf(error);
      if (/DEVELOPER_TOKEN/.test(message))
        checks.push({ name: 'developer token', ok: false, detail: message });
      else {
        checks.push({ name: 'developer token', ok: true, detail: 'accepted by the Google Ads API' });
        checks.push({ name: 'customer access', ok: false, detail: `${customer}: ${message}` });
      }
    }
    return checks;
  }

  async ensureAudience(
    name: string,
    knownId?: string,
    epoch?: string,
  ): Promise<RemoteAudience & { created: boolean; epoch?: string | undefined }> {
    if (knownId) {
      const [known] = await this.findLists(`user_list.resource_name = ${gaqlString(knownId)}`);
      if (known) return this.found(known, name);
      this.context.log.warn(
        { destination: this.context.destination, audience: name },
        `the Customer Match list remembered for '${name}' is gone from customer ${this.config.customer_id}; finding or creating it by name`,
      );
    }
    const existing = await this.findByName(name);
    if (existing) return this.found(existing, name);
    const base = this.baseDescription();
    const description = epoch ? withEpoch(base, epoch) : base;
    try {
      const grpc = await this.grpc();
      const created = await grpc.createUserList(name, description);
      this.descriptions.set(created, description);
      return { id: created, name, created: true, epoch };
    } catch (error) {
      // Created by an earlier attempt that crashed before its id was remembered: use that list.
      if (error instanceof ConnectorError && error.message.includes('NAME_ALREADY_USED')) {
        const found = await this.findByName(name);
        if (found) return this.found(found, name);
      }
      throw error;
    }
  }

  /** Writes the state's epoch into the list's description (a user list update), keeping the rest of it. */
  async stamp(audience: RemoteAudience, epoch: string): Promise<void> {
    const description = withEpoch(this.descriptions.get(audience.id) ?? this.baseDescription(), epoch);
    await this.serial(audience.id, async () =>
      (await this.grpc()).describeUserList(audience.id, description),
    );
    this.descriptions.set(audience.id, description);
  }

  private found(list: UserListRow, name: string): RemoteAudience & { created: false; epoch?: string } {
    this.descriptions.set(list.resourceName, list.description?.trim() || this.baseDescription());
    const epoch = epochOf(list.description);
    return { id: list.resourceName, name, created: false, ...(epoch ? { epoch } : {}) };
  }

  private baseDescription(): string {
    return `Managed by audience-sync (destination ${this.context.destination}): members follow a segment`;
  }

  add(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.upload(audience, members, 'create', false);
  }

  remove(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.upload(audience, members, 'remove', false);
  }

  replace(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.upload(audience, members, 'create', true);
  }

  /** The job's state; a job still waiting to start (PENDING: every job we record is filled) starts when its list is free. */
  poll(audience: RemoteAudience, token: string): Promise<PollOutcome> {
    return this.serial(audience.id, async () => {
      const job = await this.job(token);
      if (!job)
        return {
          status: 'failed',
          reason: `upload job ${token} for '${audience.name}' is not on customer ${this.config.customer_id}`,
        };
      const { status, failureReason } = job;
      if (status === 'SUCCESS' || status === 'FAILED') {
        if (this.running.get(audience.id) === token) this.running.delete(audience.id);
        return status === 'SUCCESS'
          ? { status: 'done' }
          : {
              status: 'failed',
              reason: `upload job failed: ${failureReason ? redact(failureReason) : 'no reason given'}`,
            };
      }
      if (status === 'PENDING') await this.start(audience.id, token);
      else this.running.set(audience.id, token);
      return { status: 'processing' };
    });
  }

  private async job(token: string) {
    const rows = await this.gaql.search(
      `status of upload job ${token}`,
      'SELECT offline_user_data_job.status, offline_user_data_job.failure_reason FROM offline_user_data_job ' +
        `WHERE offline_user_data_job.resource_name = ${gaqlString(token)}`,
    );
    const row = rows[0] ? jobRow.safeParse(rows[0]) : undefined;
    return row?.success ? row.data.offlineUserDataJob : undefined;
  }

  /** Starts the job unless another one is at work on the list; then a later poll starts it. */
  private async start(list: string, job: string): Promise<void> {
    const before = this.running.get(list);
    if (before) {
      const status = (await this.job(before))?.status;
      if (status === 'RUNNING' || status === 'PENDING') return;
      this.running.delete(list);
    }
    if ((await (await this.grpc()).runJob(job)) === 'started') this.running.set(list, job);
  }

  async stats(audience: RemoteAudience): Promise<AudienceStats> {
    const [list] = await this.findLists(`user_list.resource_name = ${gaqlString(audience.id)}`);
    if (!list)
      throw new ConnectorError(
        `the Customer Match list ${audience.id} ('${audience.name}') is not on customer ${this.config.customer_id}; the next sync recreates it`,
        'permanent',
      );
    const warnings: string[] = [];
    const size = list.sizeForSearch ?? list.sizeForDisplay;
    if (size !== undefined && size < SERVING_MINIMUM)
      warnings.push(
        `'${audience.name}' has ${size} matched members: Google serves a Customer Match list only from ${SERVING_MINIMUM}`,
      );
    if (list.eligibleForSearch === false)
      warnings.push(
        `'${audience.name}' is not eligible for Search campaigns (too few members or account policy)`,
      );
    if (list.membershipStatus === 'CLOSED')
      warnings.push(`'${audience.name}' is closed: it no longer takes members`);
    return {
      size,
      matchRate: list.matchRatePercentage !== undefined ? list.matchRatePercentage / 100 : undefined,
      warnings,
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.lists.values());
    if (this.grpcClient) await (await this.grpcClient.catch(() => undefined))?.close();
  }

  private grpc(): Promise<AdsGrpc> {
    this.grpcClient ??= import('./adsapi-grpc.js').then(
      ({ AdsGrpc }) => new AdsGrpc({ config: this.config, oauth: this.oauth, baseDir: this.context.baseDir }),
    );
    // A failed construction (unreadable CA file) is not cached: the next call tries again.
    this.grpcClient.catch(() => (this.grpcClient = undefined));
    return this.grpcClient;
  }

  /** One job: create → add operations in ≤ batch_size requests, one after another → run. */
  private upload(
    audience: RemoteAudience,
    members: readonly Member[],
    kind: 'create' | 'remove',
    removeAll: boolean,
  ): Promise<BatchOutcome> {
    return this.serial(audience.id, async () => {
      const grpc = await this.grpc();
      const operations: JobOperation[] = members.map((m) => ({ [kind]: userData(m.slots) }));
      if (removeAll) operations.unshift({ remove_all: true });
      const job = await grpc.createJob(audience.id, this.consent());

      const rejected = new Map<number, string>();
      const offset = removeAll ? 1 : 0;
      for (let at = 0; at < operations.length; at += this.config.batch_size) {
        const refused = await grpc.addOperations(job, operations.slice(at, at + this.config.batch_size));
        for (const error of refused) {
          const index = error.operationIndex === undefined ? undefined : at + error.operationIndex - offset;
          if (index === -1)
            throw new ConnectorError(
              `Google Ads API refused remove_all for ${audience.id}: ${describe([error])}; the full resync was not run`,
              'permanent',
            );
          if (index === undefined || index < 0 || index >= members.length)
            throw new ConnectorError(
              `Google Ads API partial failure for ${job} names no member: ${describe([error])}; the job was not run`,
              'permanent',
            );
          if (!rejected.has(index))
            rejected.set(index, error.message ? `${error.code}: ${error.message}` : error.code);
        }
      }

      try {
        await this.start(audience.id, job);
      } catch (error) {
        // The job is whole: a passing failure to start it (or to learn whether it started) leaves it to a
        // later poll, which starts it or finds it started, rather than to a retry in a new job.
        if (!(error instanceof ConnectorError) || error.kind === 'permanent') throw error;
        this.context.log.warn(
          { destination: this.context.destination, audience: audience.name },
          `${error.message}; the job is left for a later run to start`,
        );
      }
      const list: Rejection[] = [...rejected].map(([index, reason]) => ({ index, reason }));
      return { status: 'pending', token: job, ...(list.length > 0 ? { rejected: list } : {}) };
    });
  }

  /** Per-customer consent is applied by `identify` (people without it are not sent): the job says granted. */
  private consent(): Consent {
    const status = (signal: ConsentSignal | undefined) =>
      signal === undefined || signal === 'denied' ? ('DENIED' as const) : ('GRANTED' as const);
    return {
      ad_user_data: status(signalOf(this.config, 'ad_user_data')),
      ad_personalization: status(signalOf(this.config, 'ad_personalization')),
    };
  }

  private serial<T>(list: string, call: () => Promise<T>): Promise<T> {
    const previous = this.lists.get(list) ?? Promise.resolve();
    const next = previous.then(call, call);
    const tail = next.catch(() => undefined);
    this.lists.set(list, tail);
    void tail.then(() => {
      if (this.lists.get(list) === tail) this.lists.delete(list);
    });
    return next;
  }

  private async findLists(where: string): Promise<UserListRow[]> {
    const rows = await this.gaql.search(
      'user list search',
      'SELECT user_list.resource_name, user_list.name, user_list.description, user_list.type, ' +
        'user_list.size_for_search, user_list.size_for_display, user_list.match_rate_percentage, ' +
        `user_list.eligible_for_search, user_list.membership_status FROM user_list WHERE ${where}`,
    );
    return rows.flatMap((row) => {
      const parsed = userListRow.safeParse(row);
      return parsed.success ? [parsed.data.userList] : [];
    });
  }

  /** The CRM-based list with exactly this name; another kind of list with it is an error the user must fix. */
  private async findByName(name: string): Promise<UserListRow | undefined> {
    const [list] = await this.findLists(`user_list.name = ${gaqlString(name)}`);
    if (!list) return undefined;
    if (list.type !== undefined && list.type !== 'CRM_BASED')
      throw new ConnectorError(
        `customer ${this.config.customer_id} already has a ${list.type} list named '${name}', not a Customer Match list: ` +
          'rename that list in Google Ads, or rename the audience',
        'permanent',
      );
    return list;
  }
}

function messageOf(error: unknown): string {
  return redact(error instanceof Error ? error.message : String(error));
}
