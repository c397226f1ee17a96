import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { errors } from 'google-ads-api';
import { z } from 'zod';

/**
 * A loopback Google Ads API (v24) for tests: the real service definitions from google-ads-node's
 * protos.json, served over TLS by grpc-js. It records every request with its headers, keeps user lists
 * and offline user data jobs in memory (a run job applies its operations to its list), validates what
 * Google validates (job order, separate add/remove jobs, nothing after run, overlapping calls), and can
 * answer with injected errors and partial failures. Like Google, it refuses to run a job while another job
 * on the same list is RUNNING (CONCURRENT_MODIFICATION). GAQL (REST) is answered by `search`, served by nock.
 * `echoCredentials` makes every error (and partial failure) repeat the credentials the call brought, as
 * services that echo their input do, for the redaction tests.
 */

const VERSION = 'v24';
export const FAILURE_KEY = `google.ads.googleads.${VERSION}.errors.googleadsfailure-bin`;
const FAILURE_TYPE_URL = `type.googleapis.com/google.ads.googleads.${VERSION}.errors.GoogleAdsFailure`;

const userIdentifier = z.object({
  hashed_email: z.string().optional(),
  hashed_phone_number: z.string().optional(),
  address_info: z
    .object({
      hashed_first_name: z.string().optional(),
      hashed_last_name: z.string().optional(),
      country_code: z.string().optional(),
      postal_code: z.string().optional(),
    })
    .optional(),
});
const userData = z.object({ user_identifiers: z.array(userIdentifier).default([]) });
const operation = z.object({
  create: userData.optional(),
  remove: userData.optional(),
  remove_all: z.boolean().optional(),
});
export type FakeOperation = z.infer<typeof operation>;
export type FakeUserIdentifier = z.infer<typeof userIdentifier>;

const createJobRequest = z.object({
  customer_id: z.string(),
  job: z.object({
    type: z.string(),
    customer_match_user_list_metadata: z.object({
      user_list: z.string(),
      consent: z
        .object({ ad_user_data: z.string().optional(), ad_personalization: z.string().optional() })
        .optional(),
    }),
  }),
});
const addOperationsRequest = z.object({
  resource_name: z.string(),
  enable_partial_failure: z.boolean().optional(),
  operations: z.array(operation).default([]),
});
const runJobRequest = z.object({ resource_name: z.string() });
const mutateUserListsRequest = z.object({
  customer_id: z.string(),
  operations: z.array(
    z.object({
      create: z
        .object({
          name: z.string(),
          description: z.string().optional(),
          membership_life_span: z.union([z.string(), z.number()]).optional(),
          crm_based_user_list: z
            .object({ upload_key_type: z.string().optional(), data_source_type: z.string().optional() })
            .optional(),
        })
        .optional(),
      update: z
        .object({
          resource_name: z.string(),
          name: z.string().optional(),
          description: z.string().optional(),
        })
        .optional(),
      update_mask: z.object({ paths: z.array(z.string()).default([]) }).optional(),
    }),
  ),
});

export type CreateJobRequest = z.infer<typeof createJobRequest>;
export type AddOperationsRequest = z.infer<typeof addOperationsRequest>;
export type MutateUserListsRequest = z.infer<typeof mutateUserListsRequest>;

export type FakeCall =
  | { method: 'CreateOfflineUserDataJob'; request: CreateJobRequest; headers: Record<string, string> }
  | {
      method: 'AddOfflineUserDataJobOperations';
      request: AddOperationsRequest;
      headers: Record<string, string>;
    }
  | { method: 'RunOfflineUserDataJob'; request: { resource_name: string }; headers: Record<string, string> }
  | { method: 'MutateUserLists'; request: MutateUserListsRequest; headers: Record<string, string> };
export type FakeMethod = FakeCall['method'];

/** One `GoogleAdsError` as `GoogleAdsFailure.fromObject` takes it: `{ error_code: { database_error: 'CONCURRENT_MODIFICATION' } }`. */
export interface FakeAdsError {
  error_code: Record<string, string>;
  message: string;
  location?: { field_path_elements: { field_name: string; index?: number }[] };
  details?: { quota_error_details?: { retry_delay?: { seconds: number } } };
}

/** An error the fake answers a call with: a gRPC status, with a GoogleAdsFailure in the trailers. */
export interface InjectedError {
  code: grpc.status;
  errors?: FakeAdsError[];
  details?: string;
}

export interface FakeList {
  resourceName: string;
  name: string;
  description?: string | undefined;
  type: string;
  membershipLifeSpan: number | undefined;
  /** Identifiers on the list (`email:<hex>`, `phone:<hex>`, `address:<first>:<last>:<CC>:<postal>`). */
  identifiers: Set<string>;
  /** What GAQL reports for the list; absent fields are null, as before Google computed them. */
  stats: {
    sizeForSearch?: number;
    sizeForDisplay?: number;
    matchRatePercentage?: number;
    eligibleForSearch?: boolean;
  };
}

export interface FakeJob {
  resourceName: string;
  userList: string;
  consent: { ad_user_data?: string | undefined; ad_personalization?: string | undefined } | undefined;
  operations: FakeOperation[];
  status: 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILED';
  failureReason?: string;
  /** addOperations calls in flight: more than one at a time is Google's CONCURRENT_MODIFICATION. */
  inFlight: number;
}

/** The identifiers one `UserIdentifier` stands for on a list. */
export function identifierKey(id: FakeUserIdentifier): string {
  if (id.hashed_email) return `email:${id.hashed_email}`;
  if (id.hashed_phone_number) return `phone:${id.hashed_phone_number}`;
  const a = id.address_info ?? {};
  return `address:${a.hashed_first_name ?? ''}:${a.hashed_last_name ?? ''}:${a.country_code ?? ''}:${a.postal_code ?? ''}`;
}

const adsFailure = (list: FakeAdsError[]): Buffer =>
  Buffer.from(errors.GoogleAdsFailure.encode(errors.GoogleAdsFailure.fromObject({ errors: list })).finish());

function serviceError(injected: InjectedError): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (injected.errors) metadata.set(FAILURE_KEY, adsFailure(injected.errors));
  const details = injected.details ?? injected.errors?.map((e) => e.message).join('; ') ?? 'error';
  return Object.assign(new Error(details), { code: injected.code, details, metadata, injected });
}

/** What a call's metadata says of its credentials, as an echoing service would repeat it. */
export function echoOf(headers: Record<string, string>): string {
  const auth = headers.authorization ?? '';
  return (
    ` (call with authorization: ${auth}, developer-token: ${headers['developer-token'] ?? ''}; ` +
    `access token ${auth.replace(/^Bearer /, '')}, developer token ${headers['developer-token'] ?? ''})`
  );
}

/** The same error with the echo appended to its text and to each GoogleAdsError's message. */
function withEcho(error: grpc.ServiceError, echo: string): grpc.ServiceError {
  const injected = (error as { injected?: InjectedError }).injected;
  if (!injected)
    return Object.assign(new Error(`${error.details}${echo}`), {
      ...error,
      details: `${error.details}${echo}`,
    });
  return serviceError({
    ...injected,
    ...(injected.details !== undefined ? { details: `${injected.details}${echo}` } : {}),
    ...(injected.errors
      ? { errors: injected.errors.map((e) => ({ ...e, message: `${e.message}${echo}` })) }
      : {}),
  });
}

const adsError = (category: string, code: string, message: string): InjectedError => ({
  code: grpc.status.INVALID_ARGUMENT,
  errors: [{ error_code: { [category]: code }, message }],
});

type Handler = (request: unknown, headers: Record<string, string>) => unknown;

export class FakeGoogleAds {
  readonly calls: FakeCall[] = [];
  readonly lists = new Map<string, FakeList>();
  readonly jobs = new Map<string, FakeJob>();
  /** Errors for the next calls of a method, in order (one per call). */
  readonly failures = new Map<FakeMethod, InjectedError[]>();
  /** Operations refused as a partial failure: return the error's code and message, or undefined to accept. */
  rejectOperation:
    ((op: FakeOperation) => { category: string; code: string; message: string } | undefined) | undefined;
  /** `on-run`: a run job is applied and SUCCESS at once; `manual`: it stays RUNNING until `finishJobs`. */
  finish: 'on-run' | 'manual' = 'on-run';
  /**
   * Fault injection: a matching AddOfflineUserDataJobOperations call takes the first half of its operations
   * into the job, a matching RunOfflineUserDataJob starts its job; then the call fails UNAVAILABLE, as
   * grpc-js reports a connection lost before the answer.
   */
  cutMidBatch: ((call: { method: FakeMethod; list: string }) => boolean) | undefined;
  /** The calls cut off that way. */
  readonly cutOff: { method: FakeMethod; list: string; job: string }[] = [];
  /** Jobs refused at run because another job of their list was RUNNING. */
  readonly refusedRuns: string[] = [];
  /** Errors and partial failures repeat the call's credentials (gRPC metadata; REST headers in rest.ts). */
  echoCredentials = false;
  /** While set, every token exchange (rest.ts) is refused with this OAuth error (`invalid_grant`). */
  tokenError: string | undefined;
  /** Access tokens past their lifetime: gRPC calls and GAQL searches bringing one get `OAUTH_TOKEN_EXPIRED`. */
  readonly expiredTokens = new Set<string>();
  /** While set, GAQL searches it returns an answer for (HTTP status, REST error body) get that answer. */
  refuseSearch: ((query: string) => [number, Record<string, unknown>] | undefined) | undefined;
  readonly customerId: string;
  private nextId = 1000;

  private constructor(
    private readonly server: grpc.Server,
    readonly port: number,
    customerId: string,
  ) {
    this.customerId = customerId;
  }

  static async start(tls: { cert: Buffer; key: Buffer }, customerId = '1234567890'): Promise<FakeGoogleAds> {
    const require = createRequire(import.meta.url);
    const protosFile = require.resolve('google-ads-node/build/protos/protos.json');
    const definition = protoLoader.fromJSON(JSON.parse(readFileSync(protosFile, 'utf8')), {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: false,
      arrays: true,
      oneofs: false,
    });
    const pkg = grpc.loadPackageDefinition(definition);
    const serviceOf = (name: string): grpc.ServiceDefinition => {
      let node: unknown = pkg;
      for (const key of ['google', 'ads', 'googleads', VERSION, 'services', name])
        node = node === undefined || node === null ? undefined : (node as Record<string, unknown>)[key];
      const service = (node as { service?: grpc.ServiceDefinition } | undefined)?.service;
      if (!service) throw new Error(`protos.json has no ${name}`);
      return service;
    };

    const server = new grpc.Server();
    const fake: { current?: FakeGoogleAds } = {};
    const unary =
      (method: FakeMethod, handler: () => Handler): grpc.handleUnaryCall<unknown, unknown> =>
      (call, callback) => {
        const headers: Record<string, string> = {};
        for (const [key, value] of Object.entries(call.metadata.getMap()))
          headers[key] = Buffer.isBuffer(value) ? value.toString('base64') : value;
        const self = fake.current!;
        Promise.resolve()
          .then(() => self.intercept(method, call.request, headers))
          .then(() => handler()(call.request, headers))
          .then(
            (response) => callback(null, response),
            (error: unknown) => {
              const failed = isServiceError(error)
                ? error
                : serviceError({ code: grpc.status.INTERNAL, details: String(error) });
              callback(self.echoCredentials ? withEcho(failed, echoOf(headers)) : failed);
            },
          );
      };
    server.addService(serviceOf('OfflineUserDataJobService'), {
      CreateOfflineUserDataJob: unary('CreateOfflineUserDataJob', () => (r) => fake.current!.createJob(r)),
      AddOfflineUserDataJobOperations: unary(
        'AddOfflineUserDataJobOperations',
        () => (r, h) => fake.current!.addOperations(r, h),
      ),
      RunOfflineUserDataJob: unary('RunOfflineUserDataJob', () => (r) => fake.current!.runJob(r)),
    });
    server.addService(serviceOf('UserListService'), {
      MutateUserLists: unary('MutateUserLists', () => (r) => fake.current!.mutateUserLists(r)),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        'localhost:0',
        grpc.ServerCredentials.createSsl(null, [{ private_key: tls.key, cert_chain: tls.cert }], false),
        (error, bound) => (error ? reject(error) : resolve(bound)),
      ),
    );
    fake.current = new FakeGoogleAds(server, port, customerId);
    return fake.current;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  /** Forgets calls, lists, jobs and injected errors between tests. */
  reset(): void {
    this.calls.length = 0;
    this.lists.clear();
    this.jobs.clear();
    this.failures.clear();
    this.rejectOperation = undefined;
    this.finish = 'on-run';
    this.cutMidBatch = undefined;
    this.cutOff.length = 0;
    this.refusedRuns.length = 0;
    this.echoCredentials = false;
    this.tokenError = undefined;
    this.refuseSearch = undefined;
    this.expiredTokens.clear();
  }

  /** Whether the call's bearer token has expired (Google answers UNAUTHENTICATED, OAUTH_TOKEN_EXPIRED). */
  expired(headers: Record<string, string>): boolean {
    return this.expiredTokens.has((headers.authorization ?? '').replace(/^Bearer /, ''));
  }

  /** Answers the next call of `method` with this error (queued: one per call). */
  failNext(method: FakeMethod, error: InjectedError): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), error]);
  }

  addList(name: string, identifiers: string[] = []): FakeList {
    const list: FakeList = {
      resourceName: `customers/${this.customerId}/userLists/${this.nextId++}`,
      name,
      type: 'CRM_BASED',
      membershipLifeSpan: 540,
      identifiers: new Set(identifiers),
      stats: {},
    };
    this.lists.set(list.resourceName, list);
    return list;
  }

  listNamed(name: string): FakeList | undefined {
    return [...this.lists.values()].find((l) => l.name === name);
  }

  callsOf<M extends FakeMethod>(method: M): Extract<FakeCall, { method: M }>[] {
    return this.calls.filter((c): c is Extract<FakeCall, { method: M }> => c.method === method);
  }

  /** Completes every running job (manual mode): applies its operations and reports SUCCESS. */
  finishJobs(): void {
    for (const job of this.jobs.values()) if (job.status === 'RUNNING') this.complete(job);
  }

  /** GAQL, as `googleAds:search` answers it over REST (camelCase JSON, int64 as strings). */
  search(query: string): { results: Record<string, unknown>[] } {
    const from = /\bFROM\s+(\w+)/i.exec(query)?.[1];
    const where = /\bWHERE\s+([\w.]+)\s*=\s*'((?:[^'\\]|\\.)*)'/i.exec(query);
    const value = where?.[2]?.replace(/\\(.)/g, '$1');
    if (from === 'customer')
      return {
        results: [{ customer: { resourceName: `customers/${this.customerId}`, id: this.customerId } }],
      };
    if (from === 'user_list') {
      const lists = [...this.lists.values()].filter((l) =>
        where?.[1] === 'user_list.resource_name'
          ? l.resourceName === value
          : where?.[1] === 'user_list.name'
            ? l.name === value
            : true,
      );
      return {
        results: lists.map((l) => ({
          userList: {
            resourceName: l.resourceName,
            name: l.name,
            ...(l.description !== undefined ? { description: l.description } : {}),
            type: l.type,
            membershipStatus: 'OPEN',
            ...(l.stats.sizeForSearch !== undefined ? { sizeForSearch: String(l.stats.sizeForSearch) } : {}),
            ...(l.stats.sizeForDisplay !== undefined
              ? { sizeForDisplay: String(l.stats.sizeForDisplay) }
              : {}),
            ...(l.stats.matchRatePercentage !== undefined
              ? { matchRatePercentage: l.stats.matchRatePercentage }
              : {}),
            ...(l.stats.eligibleForSearch !== undefined
              ? { eligibleForSearch: l.stats.eligibleForSearch }
              : {}),
          },
        })),
      };
    }
    if (from === 'offline_user_data_job') {
      const job = value ? this.jobs.get(value) : undefined;
      if (!job) return { results: [] };
      return {
        results: [
          {
            offlineUserDataJob: {
              resourceName: job.resourceName,
              status: job.status,
              ...(job.failureReason ? { failureReason: job.failureReason } : {}),
            },
          },
        ],
      };
    }
    throw new Error(`the fake cannot answer GAQL ${query}`);
  }

  private intercept(method: FakeMethod, request: unknown, headers: Record<string, string>): void {
    const parse = {
      CreateOfflineUserDataJob: createJobRequest,
      AddOfflineUserDataJobOperations: addOperationsRequest,
      RunOfflineUserDataJob: runJobRequest,
      MutateUserLists: mutateUserListsRequest,
    }[method];
    this.calls.push({ method, request: parse.parse(request), headers } as FakeCall);
    if (this.expired(headers))
      throw serviceError({
        code: grpc.status.UNAUTHENTICATED,
        errors: [
          {
            error_code: { authentication_error: 'OAUTH_TOKEN_EXPIRED' },
            message: 'Authentication of the request failed: the OAuth access token has expired.',
          },
        ],
      });
    const injected = this.failures.get(method)?.shift();
    if (injected) throw serviceError(injected);
  }

  private mutateUserLists(raw: unknown): unknown {
    const request = mutateUserListsRequest.parse(raw);
    const results = request.operations.map((op) => {
      if (op.update) return this.updateUserList(op.update, op.update_mask?.paths ?? []);
      const create = op.create;
      if (!create)
        throw serviceError(
          adsError('mutate_error', 'RESOURCE_NOT_FOUND', 'only create and update are faked'),
        );
      if (this.listNamed(create.name))
        throw serviceError(
          adsError(
            'user_list_error',
            'NAME_ALREADY_USED',
            'Name is already being used for another user list for the account.',
          ),
        );
      const list = this.addList(create.name);
      list.description = create.description;
      list.membershipLifeSpan =
        create.membership_life_span === undefined ? undefined : Number(create.membership_life_span);
      return { resource_name: list.resourceName };
    });
    return { results };
  }

  /** Like Google: the mask names what changes (the resource name may be in it), and nothing else changes. */
  private updateUserList(
    update: { resource_name: string; name?: string | undefined; description?: string | undefined },
    paths: string[],
  ): { resource_name: string } {
    const list = this.lists.get(update.resource_name);
    if (!list) throw serviceError(adsError('mutate_error', 'RESOURCE_NOT_FOUND', 'Resource was not found.'));
    const fields = paths.filter((p) => p !== 'resource_name');
    if (fields.length === 0)
      throw serviceError(
        adsError(
          'field_mask_error',
          'FIELD_MASK_MISSING',
          'Cannot use empty field mask in update operation.',
        ),
      );
    const unknown = fields.find((p) => p !== 'name' && p !== 'description');
    if (unknown)
      throw serviceError(adsError('field_mask_error', 'FIELD_NOT_FOUND', `fake: cannot update ${unknown}`));
    if (fields.includes('name')) {
      if (!update.name) throw serviceError(adsError('request_error', 'REQUIRED_FIELD_MISSING', 'name'));
      if (update.name !== list.name && this.listNamed(update.name))
        throw serviceError(adsError('user_list_error', 'NAME_ALREADY_USED', 'Name is already being used.'));
      list.name = update.name;
    }
    if (fields.includes('description')) list.description = update.description;
    return { resource_name: list.resourceName };
  }

  private createJob(raw: unknown): unknown {
    const request = createJobRequest.parse(raw);
    const metadata = request.job.customer_match_user_list_metadata;
    if (!this.lists.has(metadata.user_list))
      throw serviceError(
        adsError('offline_user_data_job_error', 'INVALID_USER_LIST_ID', 'The user list ID is invalid.'),
      );
    const job: FakeJob = {
      resourceName: `customers/${request.customer_id}/offlineUserDataJobs/${this.nextId++}`,
      userList: metadata.user_list,
      consent: metadata.consent,
      operations: [],
      status: 'PENDING',
      inFlight: 0,
    };
    this.jobs.set(job.resourceName, job);
    return { resource_name: job.resourceName };
  }

  private async addOperations(raw: unknown, headers: Record<string, string>): Promise<unknown> {
    const request = addOperationsRequest.parse(raw);
    const job = this.jobs.get(request.resource_name);
    if (!job) throw serviceError(adsError('offline_user_data_job_error', 'UNKNOWN', 'No such job.'));
    if (job.status !== 'PENDING')
      throw serviceError(
        adsError('offline_user_data_job_error', 'JOB_ALREADY_STARTED', 'The job has already been started.'),
      );
    if (this.cut('AddOfflineUserDataJobOperations', job)) {
      job.operations.push(...request.operations.slice(0, Math.ceil(request.operations.length / 2)));
      throw serviceError({ code: grpc.status.UNAVAILABLE, details: 'Connection dropped' });
    }
    job.inFlight++;
    try {
      // Overlapping calls on one job are caught here: the fake yields before taking the operations.
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (job.inFlight > 1)
        throw serviceError({
          code: grpc.status.ABORTED,
          errors: [
            {
              error_code: { database_error: 'CONCURRENT_MODIFICATION' },
              message: 'Multiple requests were attempting to modify the same resource at once.',
            },
          ],
        });
      const failures: FakeAdsError[] = [];
      request.operations.forEach((op, index) => {
        const kinds = [op.create && 'create', op.remove && 'remove', op.remove_all && 'remove_all'].filter(
          Boolean,
        );
        if (op.remove_all && (index > 0 || job.operations.length > 0))
          throw serviceError(
            adsError(
              'offline_user_data_job_error',
              'INVALID_OPERATION_ORDER',
              'remove_all must be the first operation of a job.',
            ),
          );
        const previous = job.operations.find((o) => o.create || o.remove);
        if (previous && ((op.create && previous.remove) || (op.remove && previous.create)))
          throw serviceError(
            adsError(
              'offline_user_data_job_error',
              'CONFLICTING_OPERATION',
              'A job cannot both add and remove members.',
            ),
          );
        if (kinds.length !== 1)
          throw serviceError(adsError('request_error', 'REQUIRED_FIELD_MISSING', 'operation is empty'));
        const rejected = this.rejectOperation?.(op);
        if (rejected && request.enable_partial_failure) {
          failures.push({
            error_code: { [rejected.category]: rejected.code },
            message: this.echoCredentials ? `${rejected.message}${echoOf(headers)}` : rejected.message,
            location: { field_path_elements: [{ field_name: 'operations', index }] },
          });
          return;
        }
        if (rejected) throw serviceError(adsError(rejected.category, rejected.code, rejected.message));
        job.operations.push(op);
      });
      if (failures.length === 0) return {};
      return {
        partial_failure_error: {
          code: grpc.status.INVALID_ARGUMENT,
          message: failures.map((f) => f.message).join(', '),
          details: [{ type_url: FAILURE_TYPE_URL, value: adsFailure(failures) }],
        },
      };
    } finally {
      job.inFlight--;
    }
  }

  private runJob(raw: unknown): unknown {
    const request = runJobRequest.parse(raw);
    const job = this.jobs.get(request.resource_name);
    if (!job) throw serviceError(adsError('offline_user_data_job_error', 'UNKNOWN', 'No such job.'));
    if (job.status !== 'PENDING')
      throw serviceError(
        adsError('offline_user_data_job_error', 'JOB_ALREADY_STARTED', 'The job has already been started.'),
      );
    const running = [...this.jobs.values()].some(
      (j) => j !== job && j.userList === job.userList && j.status === 'RUNNING',
    );
    if (running) {
      this.refusedRuns.push(job.resourceName);
      throw serviceError({
        code: grpc.status.ABORTED,
        errors: [
          {
            error_code: { database_error: 'CONCURRENT_MODIFICATION' },
            message: 'Multiple requests were attempting to modify the same resource at once.',
          },
        ],
      });
    }
    const cut = this.cut('RunOfflineUserDataJob', job);
    job.status = 'RUNNING';
    if (this.finish === 'on-run') this.complete(job);
    if (cut) throw serviceError({ code: grpc.status.UNAVAILABLE, details: 'Connection dropped' });
    return { name: `customers/${this.customerId}/operations/${this.nextId++}`, done: false };
  }

  private cut(method: FakeMethod, job: FakeJob): boolean {
    const list = this.lists.get(job.userList)?.name ?? job.userList;
    if (!this.cutMidBatch?.({ method, list })) return false;
    this.cutOff.push({ method, list, job: job.resourceName });
    return true;
  }

  private complete(job: FakeJob): void {
    const list = this.lists.get(job.userList)!;
    for (const op of job.operations) {
      if (op.remove_all) list.identifiers.clear();
      for (const id of op.create?.user_identifiers ?? []) list.identifiers.add(identifierKey(id));
      for (const id of op.remove?.user_identifiers ?? []) list.identifiers.delete(identifierKey(id));
    }
    job.status = 'SUCCESS';
  }
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'number';
}
