import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Customer, enums, errors, services } from 'google-ads-api';
import * as adsNode from 'google-ads-node';
import { grpc } from 'google-gax';
import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import { readFailureObject, readGrpcStatus, type AdsError, type AdsFailure } from './adsapi-errors.js';
import { ADS_API_VERSION, failure, tokenRefused } from './adsapi-gaql.js';
import { TIMEOUT_MS, type GoogleAdsConfig } from './config.js';
import type { GoogleOAuth } from './oauth.js';

/**
 * The gRPC wire of the Google Ads API path (mutations and service methods), loaded only when a gRPC call
 * is made (the SDK takes most of a second and ~200 MB to load). Calls go through google-ads-api's
 * `Customer`, whose service clients we build ourselves: google-ads-api 24 always dials
 * googleads.googleapis.com:443 with the system CA roots and refreshes tokens at Google's fixed token URL;
 * ours dial `endpoints.ads_api` with its CA file and take their access token from `GoogleOAuth` (so the
 * token URL override holds for every call).
 */

const UNIVERSE_DOMAIN = 'googleapis.com';
const DEFAULT_HOST = `googleads.${UNIVERSE_DOMAIN}`;

/** Service clients google-ads-node exports (`OfflineUserDataJobServiceClient`, …), as we construct them. */
type GaxClientConstructor = new (options: {
  servicePath: string;
  port: number;
  sslCreds: grpc.ChannelCredentials;
  clientConfig: object;
  universeDomain: string;
}) => { close(): Promise<void> };

/** The gRPC methods this connector calls, per service client. */
const METHODS: Record<string, readonly string[]> = {
  OfflineUserDataJobServiceClient: [
    'CreateOfflineUserDataJob',
    'AddOfflineUserDataJobOperations',
    'RunOfflineUserDataJob',
  ],
  UserListServiceClient: ['MutateUserLists'],
};

/**
 * Turns off gax's own retries (up to 10 minutes on UNAVAILABLE): the core's `withRetry` is the one retry
 * loop; and bounds each call.
 */
function noGaxRetries(service: string): object {
  const name = `google.ads.googleads.${ADS_API_VERSION}.services.${service.replace(/Client$/, '')}`;
  const methods = Object.fromEntries(
    (METHODS[service] ?? []).map((m) => [
      m,
      { retry_codes_name: 'none', timeout_millis: TIMEOUT_MS.adsGrpc },
    ]),
  );
  return { interfaces: { [name]: { retry_codes: { none: [] }, methods } } };
}

/** google-ads-api's `Customer`, with service clients on our channel instead of its fixed one. */
class RoutedCustomer extends Customer {
  private readonly clients = new Map<string, { close(): Promise<void> }>();
  private channel: { credentials: grpc.ChannelCredentials; host: string; port: number } | undefined;

  route(channel: { credentials: grpc.ChannelCredentials; host: string; port: number }): this {
    this.channel = channel;
    return this;
  }

  protected override loadService<T>(service: string): T {
    let client = this.clients.get(service);
    if (!client) {
      const { channel } = this;
      const Client: unknown = (adsNode as Record<string, unknown>)[service];
      if (!channel || typeof Client !== 'function')
        throw new Error(`google-ads-node has no service client ${service}`);
      client = new (Client as GaxClientConstructor)({
        servicePath: channel.host,
        port: channel.port,
        sslCreds: channel.credentials,
        clientConfig: noGaxRetries(service),
        // Named, so gax does not ask the Cloud metadata server for it (a stall off Google Cloud).
        universeDomain: UNIVERSE_DOMAIN,
      });
      this.clients.set(service, client);
    }
    return client as T;
  }

  async closeClients(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close().catch(() => undefined)));
    this.clients.clear();
  }
}

export interface AdsGrpcOptions {
  config: GoogleAdsConfig;
  oauth: GoogleOAuth;
  /** Folder of the config file: `endpoints.ads_api.ca_file` is relative to it. */
  baseDir: string;
}

export type Consent = { ad_user_data: 'GRANTED' | 'DENIED'; ad_personalization: 'GRANTED' | 'DENIED' };
export type JobOperation = services.IOfflineUserDataJobOperation;

const created = z.object({ resource_name: z.string().min(1) });
const createdLists = z.object({ results: z.array(created).min(1) });
const addResponse = z.object({
  partial_failure_error: z
    .object({
      details: z.array(z.object({ type_url: z.string(), value: z.instanceof(Uint8Array) })).default([]),
    })
    .nullish(),
});

/** One customer's gRPC calls, each narrowed to what we rely on and with its errors classified. */
export class AdsGrpc {
  private readonly customer: RoutedCustomer;
  private readonly config: GoogleAdsConfig;
  private readonly oauth: GoogleOAuth;

  constructor({ config, oauth, baseDir }: AdsGrpcOptions) {
    this.config = config;
    this.oauth = oauth;
    const endpoint = config.endpoints.ads_api;
    const ca = endpoint?.ca_file ? readCa(path.resolve(baseDir, endpoint.ca_file)) : null;
    // Per-channel roots and call credentials: nothing process-wide, and the token comes from GoogleOAuth.
    const callCredentials = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
      oauth.accessToken().then(
        (token) => {
          const metadata = new grpc.Metadata();
          metadata.set('authorization', `Bearer ${token}`);
          callback(null, metadata);
        },
        (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
      );
    });
    this.customer = new RoutedCustomer(
      {
        client_id: config.client_id,
        client_secret: config.client_secret,
        developer_token: config.developer_token ?? '',
      },
      {
        customer_id: config.customer_id,
        refresh_token: config.refresh_token,
        ...(config.login_customer_id ? { login_customer_id: config.login_customer_id } : {}),
      },
    ).route({
      credentials: grpc.credentials.combineChannelCredentials(
        grpc.credentials.createSsl(ca),
        callCredentials,
      ),
      host: endpoint?.host ?? DEFAULT_HOST,
      port: endpoint?.port ?? 443,
    });
  }

  /** A CRM-based (Customer Match) user list keyed by contact info; its resource name. */
  async createUserList(name: string, description: string): Promise<string> {
    const response = await this.call(`create the Customer Match list '${name}'`, (customer) =>
      customer.userLists.create([
        {
          name,
          description,
          membership_life_span: this.config.membership_days,
          crm_based_user_list: {
            upload_key_type: enums.CustomerMatchUploadKeyType.CONTACT_INFO,
            data_source_type: enums.UserListCrmDataSourceType.FIRST_PARTY,
          },
        },
      ]),
    );
    return createdLists.parse(response).results[0]!.resource_name;
  }

  /** Sets the list's description (an update whose field mask the SDK builds from the fields given). */
  async describeUserList(userList: string, description: string): Promise<void> {
    const response = await this.call(`update the description of ${userList}`, (customer) =>
      customer.userLists.update([{ resource_name: userList, description }]),
    );
    createdLists.parse(response);
  }

  /** A Customer Match job for the list; its resource name. */
  async createJob(userList: string, consent: Consent): Promise<string> {
    const response = await this.call(`create the upload job for ${userList}`, (customer) =>
      customer.offlineUserDataJobs.createOfflineUserDataJob(
        new services.CreateOfflineUserDataJobRequest({
          customer_id: this.config.customer_id,
          job: {
            type: enums.OfflineUserDataJobType.CUSTOMER_MATCH_USER_LIST,
            customer_match_user_list_metadata: {
              user_list: userList,
              consent: {
                ad_user_data: enums.ConsentStatus[consent.ad_user_data],
                ad_personalization: enums.ConsentStatus[consent.ad_personalization],
              },
            },
          },
        }),
      ),
    );
    return created.parse(response).resource_name;
  }

  /** Adds operations with partial failure on; the refused ones, by index in `operations`. */
  async addOperations(job: string, operations: JobOperation[]): Promise<AdsError[]> {
    const response = await this.call(`add operations to ${job}`, (customer) =>
      customer.offlineUserDataJobs.addOfflineUserDataJobOperations(
        new services.AddOfflineUserDataJobOperationsRequest({
          resource_name: job,
          enable_partial_failure: true,
          operations,
        }),
      ),
    );
    const parsed = addResponse.safeParse(response);
    if (!parsed.success || !parsed.data.partial_failure_error) return [];
    // Service methods leave `partial_failure_error` encoded: its details are serialized GoogleAdsFailures.
    return parsed.data.partial_failure_error.details
      .filter((d) => d.type_url.endsWith('errors.GoogleAdsFailure'))
      .flatMap((d) => readFailure(errors.GoogleAdsFailure.decode(d.value)));
  }

  /** Starts the job; `busy` when Google will not yet, another job on its list being still at work. */
  async runJob(job: string): Promise<'started' | 'busy'> {
    return this.call(
      `run ${job}`,
      async (customer) => {
        await customer.offlineUserDataJobs.runOfflineUserDataJob(
          new services.RunOfflineUserDataJobRequest({ resource_name: job }),
        );
        return 'started' as const;
      },
      (failed) => (failed.errors.some((e) => e.code === 'CONCURRENT_MODIFICATION') ? 'busy' : undefined),
    );
  }

  async close(): Promise<void> {
    await this.customer.closeClients();
  }

  /** One call, its failure classified; `answer` may turn a failure into an answer instead. */
  private async call<T>(
    what: string,
    call: (customer: Customer) => Promise<T>,
    answer?: (failed: AdsFailure) => T | undefined,
    renewed = false,
  ): Promise<T> {
    // Token errors (expired refresh token) surface as GoogleOAuth words them, not as a gRPC metadata failure.
    await this.oauth.accessToken();
    try {
      return await call(this.customer);
    } catch (error) {
      const failed = readGrpcError(error);
      // Google refused the token before the call did anything: once renewed, the same call goes again.
      if (!renewed && tokenRefused(failed)) {
        this.oauth.invalidate();
        return this.call(what, call, answer, true);
      }
      const answered = answer?.(failed);
      if (answered !== undefined) return answered;
      throw failure(this.oauth, what, failed);
    }
  }
}

function readFailure(decoded: errors.GoogleAdsFailure): AdsError[] {
  return readFailureObject(errors.GoogleAdsFailure.toObject(decoded, { enums: String, longs: String }));
}

/** What google-ads-api threw: a `GoogleAdsFailure` it decoded from the trailers, or a bare gRPC error. */
function readGrpcError(error: unknown): AdsFailure {
  if (error instanceof errors.GoogleAdsFailure) return { errors: readFailure(error) };
  return readGrpcStatus(error);
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConnectorError(
      `cannot read endpoints.ads_api.ca_file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}; fix the path (relative to the config file)`,
      'permanent',
    );
  }
}
