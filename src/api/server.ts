import { statSync } from 'node:fs';
import { BlockList, isIPv6 } from 'node:net';
import fastifyCookie from '@fastify/cookie';
import fastifySwagger from '@fastify/swagger';
import { Queue } from 'bullmq';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  adminJobFor,
  enqueueAdmin,
  jobStatus,
  UnknownName,
  type DestinationAction,
} from '../../jobs/admin.js';
import { adminAudit } from '../privacy/audit.js';
import { auditApi, registerPrivacyRoutes } from './privacy.js';
import {
  parseRecentCursor,
  parseRunCursor,
  recentRuns,
  runsPage,
  type RunRecord,
} from '../../jobs/history.js';
import { ADMIN_QUEUE, keys, queuePrefix, SYNC_QUEUE } from '../../jobs/queues.js';
import { scheduledRuns } from '../../jobs/schedules.js';
import { audiencesOf, type AudienceSpec } from '../audience/audiences.js';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import type { Config, HttpConfig, Role } from '../config/schema.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { redisWhere } from '../redis-url.js';
import { createRedis, type RedisClient } from '../redis-client.js';
import { ALL_CODES, buildSegmentMap, type SegmentMap } from '../segment/maps.js';
import { audienceHealth } from '../health/audience.js';
import { audienceHealthSchema } from '../health/schema.js';
import {
  getSnapshot,
  latestSnapshot,
  listSnapshots,
  segmentSample,
  movementSample,
  movementBetween,
  movementSchema,
  sourceIdOf,
  NEW,
  GONE,
} from '../history/snapshots.js';
import { registerConsole, wantsPage } from './console.js';
import type { ConnectorRegistry } from '../sync/prepare.js';
import { registerQueueBoard } from './queue-board.js';
import {
  checkPassword,
  LoginLimiter,
  proxyCsrf,
  sameToken,
  Sessions,
  tokenPrincipal,
  type Principal,
} from './auth.js';
import {
  actionSchema,
  audiencesQuerySchema,
  audiencesSchema,
  destinationsSchema,
  errorSchema,
  healthSchema,
  jobSchema,
  loginSchema,
  movementQuerySchema,
  segmentsQuerySchema,
  segmentSampleSchema,
  movementSampleSchema,
  movementSampleQuerySchema,
  segmentsSchema,
  snapshotsQuerySchema,
  snapshotsSchema,
  resyncSchema,
  revokedSchema,
  runsQuerySchema,
  runsSchema,
  recentRunsQuerySchema,
  recentRunsSchema,
  schedulesSchema,
  sessionSchema,
  type ApiErrorBody,
} from './schemas.js';

/**
 * The HTTP API (`audience-sync serve`, or `worker --http-port`): one more front door beside the CLI,
 * calling the same core functions. JSON under /api/v1, described by /api/v1/openapi.json.
 */

export const SESSION_COOKIE = 'audience_sync_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface ApiOptions {
  configFile: string;
  /** The connectors this build has (the composition root's registry: `connectors/index.ts`). */
  connectors: ConnectorRegistry;
  log: Logger;
  port?: number | undefined;
  /** Default 127.0.0.1: this machine only. */
  host?: string | undefined;
}

export interface RunningApi {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/** An answer other than 2xx, with what to do about it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: { hint?: string; allowed?: readonly string[]; retryAfter?: number } = {},
  ) {
    super(message);
  }
}

/** The 404 of a history read before anything was scored. */
const noSnapshotYet = () =>
  new ApiError(404, 'not_found', 'no snapshot yet: nothing has been scored', {
    hint: 'run `audience-sync sync`, a worker, or `audience-sync backfill`',
  });

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route: `public` needs no login, `viewer` any logged-in user, `operator` operators only. */
    access?: 'public' | Role;
  }
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** The config, read again when its file changes: users and tokens removed from it stop working at once. */
class LiveConfig {
  private loaded: LoadedConfig;
  private stamp: string;
  private derived = new WeakMap<Config, AudienceSpec[]>();
  private maps = new WeakMap<Config, SegmentMap>();

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {
    this.loaded = loadConfig(file);
    this.stamp = this.stampOf();
  }

  private stampOf(): string {
    const s = statSync(this.file, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  }

  get(): LoadedConfig {
    let stamp: string;
    try {
      stamp = this.stampOf();
    } catch {
      return this.loaded; // moved away for a moment (an editor saving): the last good one
    }
    if (stamp !== this.stamp) {
      this.stamp = stamp;
      try {
        this.loaded = loadConfig(this.file);
        this.log.info(`config ${this.file} changed: reloaded`);
      } catch (error) {
        this.log.error(
          `config ${this.file} changed but does not load; keeping the last good one: ${describeError(error)}`,
        );
      }
    }
    return this.loaded;
  }

  segmentMap(config: Config): SegmentMap {
    let m = this.maps.get(config);
    if (!m) this.maps.set(config, (m = buildSegmentMap(config.segments)));
    return m;
  }

  audiences(config: Config): AudienceSpec[] {
    let a = this.derived.get(config);
    if (!a) this.derived.set(config, (a = audiencesOf(config, this.segmentMap(config).names)));
    return a;
  }
}

/** Addresses (and CIDR ranges) of the trusted proxy, as a matcher. */
function proxyMatcher(http: HttpConfig): (address: string | undefined) => boolean {
  const list = new BlockList();
  for (const entry of http.trust_proxy?.addresses ?? []) {
    const [address, bits] = entry.split('/');
    const type = isIPv6(address!) ? 'ipv6' : 'ipv4';
    if (bits !== undefined) list.addSubnet(address!, Number(bits), type);
    else list.addAddress(address!, type);
  }
  return (address) => {
    if (!address) return false;
    const plain = address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
    return list.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
  };
}

/** A Redis error that means it cannot be reached (or answered too late): 503, not 500. */
function isRedisDown(error: unknown, redis: RedisClient): boolean {
  if (redis.status !== 'ready') return true;
  const message = error instanceof Error ? error.message : '';
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|MaxRetriesPerRequest|max retries per request/i.test(
    message,
  );
}

const redisDown = () =>
  new ApiError(
    503,
    'redis_unavailable',
    `Redis at ${redisWhere()} cannot be reached; the API answers again once it is back`,
    {
      hint: 'start redis-server, or set REDIS_URL to the Redis the workers use',
    },
  );

function toRun(r: RunRecord) {
  return {
    run: r.run,
    at: r.at,
    full: r.full,
    reason: r.reason,
    outcome: r.outcome,
    segment_size: r.segmentSize ?? null,
    members: r.members ?? null,
    planned_adds: r.plannedAdds ?? null,
    planned_removes: r.plannedRemoves ?? null,
    added: r.added,
    removed: r.removed,
    unchanged: r.unchanged ?? null,
    waiting: r.waiting ?? null,
    pending: r.pending ?? null,
    skipped: r.skipped ?? null,
    rejected: r.rejected,
    rejected_reasons: r.rejectedReasons,
    failed: r.failed,
    in_flight: r.inFlight,
    duration_ms: r.durationMs,
    error: r.error ?? null,
    error_kind: r.errorKind ?? null,
    held: r.held ?? null,
    replaced: r.replaced ?? null,
    policy: r.policy ?? [],
    platform_report: r.platform
      ? {
          ...(r.platform.received !== undefined ? { received: r.platform.received } : {}),
          ...(r.platform.invalid !== undefined ? { invalid: r.platform.invalid } : {}),
          ...(r.platform.invalidSamples ? { invalid_samples: r.platform.invalidSamples } : {}),
        }
      : null,
    platform_size: r.stats?.size ?? null,
    platform_counts: r.stats?.counts ?? null,
    match_rate: r.stats?.matchRate ?? null,
  };
}

/** The common error answers of a route, for its schema and the OpenAPI document. */
function answers<T extends z.ZodType>(ok: T, status = 200) {
  return {
    [status]: ok,
    400: errorSchema,
    401: errorSchema,
    403: errorSchema,
    404: errorSchema,
    429: errorSchema,
    503: errorSchema,
  } as const;
}

/** Trend points a segment list carries at most (400 retained snapshots by default). */
const TREND_POINTS = 1000;

const SECURITY: { [scheme: string]: string[] }[] = [{ session: [] }, { bearer: [] }];

/** Builds the API (routes, auth, OpenAPI) without listening; `redis` is shared by every request. */
export async function buildApi(options: ApiOptions): Promise<{ app: FastifyInstance; redis: RedisClient }> {
  const live = new LiveConfig(options.configFile, options.log);
  const start = live.get().config;
  const prefix = queuePrefix(start.sync.redis_prefix);
  const trustedProxy = (address: string | undefined) => proxyMatcher(live.get().config.http)(address);

  // Fails fast while Redis is away (503) and reconnects in the background.
  const redis = createRedis({
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let down = false;
  let closing = false;
  const lost = (why: string) => {
    if (!down && !closing)
      options.log.warn(`Redis at ${redisWhere()} cannot be reached (${why}); answering 503 until it is back`);
    down = true;
  };
  redis.on('error', (error: Error) => lost(error.message));
  redis.on('close', () => lost('connection closed'));
  redis.on('ready', () => {
    if (down) options.log.info('Redis is back');
    down = false;
  });
  const sessions = new Sessions(redis, prefix);
  const limiter = new LoginLimiter(redis, prefix);
  // Made once Redis is ready: a queue made while Redis is away never gets ready.
  const queues = new Map<string, Queue>();
  const queue = (name: typeof ADMIN_QUEUE | typeof SYNC_QUEUE) => {
    if (redis.status !== 'ready') throw redisDown();
    let q = queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: redis, prefix });
      q.on('error', () => undefined);
      queues.set(name, q);
    }
    return q;
  };

  const app = Fastify({
    logger: false,
    trustProxy: (address: string) => trustedProxy(address),
    // Errors go through our handler; Fastify's own default body limit (1 MB) is far above any request here.
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(fastifyCookie);
  // First: its security headers go on every answer, errors included.
  const sendPage = await registerConsole(
    app,
    options.log,
    async (request) => {
      if (redis.status !== 'ready') throw redisDown();
      return (await authenticate(request)) !== undefined;
    },
    async (page, params) => {
      if (page !== 'segment' || params.segment === undefined) return true;
      const { config } = live.get();
      if (live.segmentMap(config).names.includes(params.segment)) return true;
      const latest = await latestSnapshot(redis, prefix, sourceOf(config));
      return latest?.segments.some((s) => s.segment === params.segment) ?? false;
    },
  );
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'audience-sync',
        version: '1',
        description:
          'Segments, destinations, audiences, runs and schedules of an audience-sync setup, and operator actions. Log in with POST /api/v1/session (a cookie, and a CSRF token to send as X-CSRF-Token on every POST and DELETE) or send Authorization: Bearer <token>.',
      },
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });

  // An empty body (curl -X POST with a JSON content type) reads as no body.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new ApiError(400, 'bad_request', 'the body is not JSON'), undefined);
    }
  });

  const send = (reply: FastifyReply, error: ApiError) => {
    if (error.extra.retryAfter !== undefined)
      void reply.header('retry-after', String(error.extra.retryAfter));
    const body: ApiErrorBody = {
      error: error.code,
      message: error.message,
      ...(error.extra.hint ? { hint: error.extra.hint } : {}),
      ...(error.extra.allowed ? { allowed: [...error.extra.allowed] } : {}),
    };
    return reply.code(error.status).send(body);
  };

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof ApiError) return send(reply, error);
    if (hasZodFastifySchemaValidationErrors(error)) {
      const where = error.validationContext ?? 'request';
      const issues = error.validation.map((v) => {
        const path = v.instancePath.replace(/^\//, '').replaceAll('/', '.');
        return `${where}${path ? `.${path}` : ''}: ${v.message}`;
      });
      const allowed = error.validation.flatMap((v) => {
        const values = (v.params as { issue?: { values?: unknown[]; keys?: string[] } }).issue;
        return (values?.values ?? []).map(String);
      });
      return send(
        reply,
        new ApiError(400, 'bad_request', issues.join('; '), allowed.length ? { allowed } : {}),
      );
    }
    // A date that matches YYYY-MM-DD but is not one (2026-02-31), as the history reads it.
    if (error instanceof RangeError) return send(reply, new ApiError(400, 'bad_request', error.message));
    if (error instanceof UnknownName)
      return send(reply, new ApiError(404, 'not_found', error.message, { allowed: error.known }));
    if (isRedisDown(error, redis)) return send(reply, redisDown());
    const status = (error as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500)
      return send(reply, new ApiError(status, 'bad_request', (error as Error).message));
    // The text may hold anything: it goes to the log (redacted there), not to the caller.
    options.log.error({ url: request.url, method: request.method }, `API error: ${describeError(error)}`);
    return send(reply, new ApiError(500, 'internal', 'internal error; the server log says more'));
  });

  app.setNotFoundHandler((request, reply) =>
    wantsPage(request)
      ? sendPage(reply.code(404), 'not-found')
      : send(
          reply,
          new ApiError(404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`, {
            hint: 'the routes are in /api/v1/openapi.json',
          }),
        ),
  );

  /** Who the request acts as, from a bearer token, a session cookie, or the trusted proxy's header. */
  const authenticate = async (request: FastifyRequest): Promise<Principal | undefined> => {
    const { http } = live.get().config;
    const authorization = request.headers.authorization;
    if (authorization !== undefined) {
      const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
      const principal = token ? tokenPrincipal(http, token) : undefined;
      if (!principal)
        throw new ApiError(
          401,
          'unauthenticated',
          'the bearer token is not one of http.tokens (unknown or revoked)',
          {
            hint: 'send Authorization: Bearer <token> with a token from `audience-sync tokens create` whose hash is in http.tokens',
          },
        );
      return principal;
    }
    const cookie = request.cookies[SESSION_COOKIE];
    if (cookie) {
      const session = await sessions.get(cookie);
      // The role is the config's as it is now: a user removed from it is logged out.
      const user = session && http.users.find((u) => u.name === session.user);
      if (session && user)
        return {
          user: user.name,
          role: user.role,
          via: 'session',
          csrf: session.csrf,
          session: { key: session.key, expiresAt: session.expiresAt },
        };
    }
    const header = http.trust_proxy?.user_header;
    if (header && trustedProxy(request.socket.remoteAddress)) {
      const name = request.headers[header.toLowerCase()];
      if (typeof name === 'string' && name !== '') {
        const role = http.users.find((u) => u.name === name)?.role ?? http.trust_proxy?.default_role;
        if (!role)
          throw new ApiError(403, 'forbidden', `the proxy's user '${name}' is not in http.users`, {
            hint: 'add the user to http.users with a role, or set http.trust_proxy.default_role',
          });
        return { user: name, role, via: 'proxy', csrf: await proxyCsrf(redis, prefix, name) };
      }
    }
    return undefined;
  };

  /** Lets the request through for `access`, or throws the 401/403/503 it gets. */
  const guard = async (
    request: FastifyRequest,
    access: 'public' | Role | undefined,
    csrf: 'token' | 'same-origin' = 'token',
  ) => {
    if (access === undefined || access === 'public') return;
    if (redis.status !== 'ready') throw redisDown();
    const principal = await authenticate(request);
    if (!principal)
      throw new ApiError(401, 'unauthenticated', 'log in first', {
        hint: 'POST /api/v1/session with {"name", "password"} (keep the cookie), or send Authorization: Bearer <token>',
      });
    request.principal = principal;
    // Browsers send cookies (and a proxy's login) by themselves; a forged request cannot read the CSRF token.
    if (!['GET', 'HEAD', 'OPTIONS'].includes(request.method) && principal.via !== 'token') {
      const sent = request.headers[CSRF_HEADER];
      // The queue board's own page cannot send our token: the browser's Fetch Metadata says where it came from.
      const ok =
        csrf === 'same-origin'
          ? request.headers['sec-fetch-site'] === 'same-origin'
          : sameToken(typeof sent === 'string' ? sent : undefined, principal.csrf ?? '');
      if (!ok && csrf === 'same-origin')
        throw new ApiError(403, 'csrf', 'a change to the queues must come from the queue board itself', {
          hint: `open ${request.url.split('?')[0]} in the browser and act there`,
        });
      if (!ok)
        throw new ApiError(403, 'csrf', 'missing or wrong X-CSRF-Token header', {
          hint: 'send the csrf_token from the login answer (or GET /api/v1/session) as the X-CSRF-Token header',
        });
    }
    if (access === 'operator' && principal.role !== 'operator')
      throw new ApiError(
        403,
        'forbidden',
        `this needs the operator role; '${principal.user}' is a ${principal.role}`,
        {
          hint: 'ask for an operator account (http.users or http.tokens with role: operator)',
        },
      );
  };
  app.addHook('onRequest', (request) => guard(request, request.routeOptions.config.access));

  const api = app.withTypeProvider<ZodTypeProvider>();
  const viewer = { access: 'viewer' as const };
  const operator = { access: 'operator' as const };
  const user = (request: FastifyRequest) => request.principal!;

  api.get(
    '/healthz',
    { config: { access: 'public' }, schema: { response: { 200: healthSchema }, hide: true } },
    async () => ({
      ok: true as const,
      redis: redis.status === 'ready' ? ('ready' as const) : ('unavailable' as const),
    }),
  );

  api.get('/api/v1/openapi.json', { config: viewer, schema: { hide: true } }, async () => app.swagger());

  const sessionAnswer = (p: Principal) => ({
    user: p.user,
    role: p.role,
    via: p.via,
    ...(p.csrf ? { csrf_token: p.csrf } : {}),
    ...(p.session ? { expires_at: p.session.expiresAt } : {}),
    time_zone: live.get().config.console.time_zone,
  });

  api.post(
    '/api/v1/session',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Log in: sets the session cookie and answers the CSRF token',
        tags: ['session'],
        body: loginSchema,
        response: answers(sessionSchema),
      },
    },
    async (request, reply) => {
      if (redis.status !== 'ready') throw redisDown();
      const { http } = live.get().config;
      const { name, password } = request.body;
      const wait = await limiter.retryAfter(http.login_limit, name, request.ip);
      if (wait > 0)
        throw new ApiError(
          429,
          'rate_limited',
          `too many failed logins for this user name or from this address; try again in ${wait} s`,
          {
            retryAfter: wait,
            hint: 'http.login_limit sets how many failed logins are allowed',
          },
        );
      const role = await checkPassword(http, name, password);
      if (!role) {
        await limiter.failed(http.login_limit, name, request.ip);
        throw new ApiError(401, 'unauthenticated', 'wrong user name or password');
      }
      await limiter.succeeded(name);
      const session = await sessions.create(name, http.session_hours);
      const secure =
        http.secure_cookies === 'always' || (http.secure_cookies === 'auto' && request.protocol === 'https');
      void reply.setCookie(SESSION_COOKIE, session.id, {
        httpOnly: true,
        sameSite: 'strict',
        secure,
        path: '/',
        maxAge: Math.round(http.session_hours * 3600),
      });
      return {
        user: name,
        role,
        via: 'session' as const,
        csrf_token: session.csrf,
        expires_at: session.expiresAt,
        time_zone: live.get().config.console.time_zone,
      };
    },
  );

  api.get(
    '/api/v1/session',
    {
      config: viewer,
      schema: {
        summary: 'Who is logged in, and the CSRF token',
        tags: ['session'],
        security: SECURITY,
        response: answers(sessionSchema),
      },
    },
    async (request) => sessionAnswer(user(request)),
  );

  api.delete(
    '/api/v1/session',
    {
      config: viewer,
      schema: {
        summary: 'Log out: ends this session',
        tags: ['session'],
        security: SECURITY,
        response: answers(z.null(), 204),
      },
    },
    async (request, reply) => {
      const p = user(request);
      if (!p.session)
        throw new ApiError(
          400,
          'bad_request',
          `a ${p.via === 'token' ? 'bearer token' : 'proxy login'} has no session to end`,
          {
            hint:
              p.via === 'token' ? 'revoke a token by removing it from http.tokens' : 'log out at the proxy',
          },
        );
      await sessions.end(p.user, p.session.key);
      void reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.code(204).send(null);
    },
  );

  api.delete(
    '/api/v1/users/:user/sessions',
    {
      config: operator,
      schema: {
        summary: 'Ends every session of a user (their cookies stop working at once)',
        tags: ['session'],
        security: SECURITY,
        params: z.object({ user: z.string().min(1) }),
        response: answers(revokedSchema),
      },
    },
    async (request) => ({
      user: request.params.user,
      revoked: await sessions.revokeUser(request.params.user),
    }),
  );

  /** The destination's name if the config has it; a 404 naming it and the known ones otherwise. */
  const destinationOf = (config: Config, name: string) => {
    const known = Object.keys(config.destinations);
    if (!known.includes(name)) throw new UnknownName('destination', name, known);
    return name;
  };

  /** The destination and audience if the config has them; a 404 naming the unknown one otherwise. */
  const audienceOf = (config: Config, names: { destination: string; audience: string }) => {
    const destination = destinationOf(config, names.destination);
    const audiences = live
      .audiences(config)
      .filter((a) => a.destinations.includes(destination))
      .map((a) => a.name);
    if (!audiences.includes(names.audience))
      throw new UnknownName('audience', names.audience, audiences, ` on destination '${destination}'`);
    return { destination, audience: names.audience };
  };

  api.get(
    '/api/v1/destinations',
    {
      config: viewer,
      schema: {
        summary: 'Destinations, their audiences, paused or not',
        tags: ['destinations'],
        security: SECURITY,
        response: answers(destinationsSchema),
      },
    },
    async () => {
      const { config } = live.get();
      const names = Object.keys(config.destinations);
      const paused = names.length ? await redis.mget(...names.map((d) => keys.paused(prefix, d))) : [];
      const audiences = live.audiences(config);
      return {
        destinations: names.map((name, k) => ({
          name,
          type: config.destinations[name]!.type,
          paused: paused[k] !== null,
          paused_since: paused[k] ?? null,
          audiences: audiences
            .filter((a) => a.destinations.includes(name))
            .map((a) => ({ name: a.name, segments: [...a.segments] })),
        })),
      };
    },
  );

  api.get(
    '/api/v1/destinations/:destination/audiences/:audience',
    {
      config: viewer,
      schema: {
        summary:
          "An audience's health: expected and confirmed members, the platform's size and match rate, last and next run, divergence",
        tags: ['destinations'],
        security: SECURITY,
        params: z.object({ destination: z.string(), audience: z.string() }),
        response: answers(audienceHealthSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const { destination, audience } = audienceOf(config, request.params);
      return audienceHealth(redis, prefix, config, destination, audience, { queue: queue(SYNC_QUEUE) });
    },
  );

  api.get(
    '/api/v1/audiences',
    {
      config: viewer,
      schema: {
        summary:
          "Every destination audience's health (or only those of one segment): the whole destination-health strip in one request",
        tags: ['destinations'],
        security: SECURITY,
        querystring: audiencesQuerySchema,
        response: answers(audiencesSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const { segment } = request.query;
      if (segment !== undefined) {
        const names = live.segmentMap(config).names;
        if (!names.includes(segment)) throw new UnknownName('segment', segment, names);
      }
      const audiences = live
        .audiences(config)
        .filter((a) => segment === undefined || a.segments.includes(segment));
      const wanted = Object.keys(config.destinations).flatMap((destination) =>
        audiences
          .filter((a) => a.destinations.includes(destination))
          .map((a) => ({ destination, audience: a.name })),
      );
      return {
        audiences: await Promise.all(
          wanted.map((w) =>
            audienceHealth(redis, prefix, config, w.destination, w.audience, { queue: queue(SYNC_QUEUE) }),
          ),
        ),
      };
    },
  );

  api.get(
    '/api/v1/destinations/:destination/audiences/:audience/runs',
    {
      config: viewer,
      schema: {
        summary: "An audience's run history, newest first, a page at a time",
        tags: ['destinations'],
        security: SECURITY,
        params: z.object({ destination: z.string(), audience: z.string() }),
        querystring: runsQuerySchema,
        response: answers(runsSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const { destination, audience } = audienceOf(config, request.params);
      const { cursor, limit } = request.query;
      if (cursor !== undefined && !parseRunCursor(cursor))
        throw new ApiError(400, 'bad_request', 'cursor: not a cursor this API gave', {
          hint: 'pass the next_cursor of the page before, or no cursor for the newest page',
        });
      const page = await runsPage(redis, prefix, destination, audience, { cursor, limit });
      return { runs: page.runs.map(toRun), next_cursor: page.next ?? null };
    },
  );

  api.get(
    '/api/v1/runs',
    {
      config: viewer,
      schema: {
        summary:
          'The runs of every destination audience, newest first (or only failed ones), a page at a time',
        tags: ['destinations'],
        security: SECURITY,
        querystring: recentRunsQuerySchema,
        response: answers(recentRunsSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const { status, cursor, limit } = request.query;
      if (cursor !== undefined && !parseRecentCursor(cursor))
        throw new ApiError(400, 'bad_request', 'cursor: not a cursor this API gave', {
          hint: 'pass the next_cursor of the page before, or no cursor for the newest page',
        });
      const audiences = live
        .audiences(config)
        .flatMap((a) => a.destinations.map((destination) => ({ destination, audience: a.name })));
      const page = await recentRuns(redis, prefix, audiences, { status, cursor, limit });
      return {
        runs: page.runs.map((r) => ({ destination: r.destination, audience: r.audience, ...toRun(r) })),
        next_cursor: page.next ?? null,
      };
    },
  );

  api.get(
    '/api/v1/schedules',
    {
      config: viewer,
      schema: {
        summary: "The config's schedules and when each runs next",
        tags: ['schedules'],
        security: SECURITY,
        response: answers(schedulesSchema),
      },
    },
    async () => {
      const runs = await scheduledRuns(live.get().config, queue(SYNC_QUEUE));
      return {
        schedules: runs.map((s) => ({
          id: s.id,
          destination: s.destination,
          audience: s.audience ?? null,
          cron: s.cron,
          tz: s.tz,
          full: s.full,
          next_run: s.next ? new Date(s.next).toISOString() : null,
        })),
      };
    },
  );

  const jobRef = (q: string, id: string) => ({ id: `${q}:${id}`, url: `/api/v1/jobs/${q}:${id}` });

  const act = async (
    who: Principal,
    action: DestinationAction,
    destination: string,
    body: z.infer<typeof resyncSchema> = {},
  ) => {
    const data = adminJobFor(live.get().config, action, {
      destination,
      audience: body.audience,
      full: body.full,
      allowRemovals: body.allow_removals,
      allowShrink: body.allow_shrink,
    });
    const id = await enqueueAdmin(queue(ADMIN_QUEUE), data);
    await auditApi(redis, live.get().config, adminAudit(who, data, `${ADMIN_QUEUE}:${id}`));
    // Who asked for what: the audit trail of actions taken through the API.
    options.log.info(
      { user: who.user, via: who.via, action, destination, job: `${ADMIN_QUEUE}:${id}` },
      `${who.user} asked for ${action} of ${destination}`,
    );
    return { action, destination, job: jobRef(ADMIN_QUEUE, id) };
  };
  const params = z.object({ destination: z.string() });

  api.post(
    '/api/v1/destinations/:destination/resync',
    {
      config: operator,
      schema: {
        summary: 'Ask the workers for a sync now (as `audience-sync resync`); answers the admin job',
        tags: ['actions'],
        security: SECURITY,
        params,
        body: resyncSchema.optional(),
        response: answers(actionSchema, 202),
      },
    },
    async (request, reply) =>
      reply
        .code(202)
        .send(await act(user(request), 'resync', request.params.destination, request.body ?? {})),
  );

  for (const action of ['pause', 'resume', 'check', 'stats'] as const)
    api.post(
      `/api/v1/destinations/:destination/${action}`,
      {
        config: operator,
        schema: {
          summary:
            action === 'check'
              ? "Test the destination's credentials on a worker (as `check --via-worker`); answers the admin job"
              : action === 'stats'
                ? "Read each audience's size and match rate from the platform now (for its health); answers the admin job"
                : `${action === 'pause' ? 'Pause' : 'Resume'} the destination's syncs (as \`audience-sync ${action}\`); answers the admin job`,
          tags: ['actions'],
          security: SECURITY,
          params,
          response: answers(actionSchema, 202),
        },
      },
      async (request, reply) =>
        reply.code(202).send(await act(user(request), action, request.params.destination)),
    );

  api.get(
    '/api/v1/jobs/:id',
    {
      config: viewer,
      schema: {
        summary:
          'A job an action started (admin:N), or the sync job of a resync (sync:N): its state and result',
        tags: ['actions'],
        security: SECURITY,
        params: z.object({
          id: z
            .string()
            .regex(/^(admin|sync):[^:].*$/, 'expected admin:<id> or sync:<id>, as an action answered'),
        }),
        response: answers(jobSchema),
      },
    },
    async (request) => {
      const [q, ...rest] = request.params.id.split(':');
      const id = rest.join(':');
      const status = await jobStatus(queue(q === 'sync' ? SYNC_QUEUE : ADMIN_QUEUE), id);
      if (!status)
        throw new ApiError(
          404,
          'not_found',
          `no job ${request.params.id} (never was, or removed a day after it ended)`,
        );
      const data = status.data;
      const result = (status.result ?? null) as Record<string, unknown> | null;
      return {
        id: request.params.id,
        queue: q as 'admin' | 'sync',
        name: status.name,
        state: status.state,
        destination: typeof data.destination === 'string' ? data.destination : null,
        audience: typeof data.audience === 'string' ? data.audience : null,
        attempts_made: status.attemptsMade,
        created_at: status.createdAt,
        finished_at: status.finishedAt ?? null,
        failed_reason: status.failedReason ?? null,
        result:
          result === null
            ? null
            : {
                ...(result.syncJobId !== undefined
                  ? { sync_job: jobRef(SYNC_QUEUE, String(result.syncJobId)) }
                  : {}),
                ...pick(result, ['paused', 'resumed', 'skipped'], 'string'),
                ...pick(result, ['audiences', 'added', 'removed', 'rejected'], 'number'),
                ...pick(result, ['full', 'joined'], 'boolean'),
                ...(Array.isArray(result.checks)
                  ? { checks: result.checks as { name: string; ok: boolean; detail: string }[] }
                  : {}),
              },
      };
    },
  );

  const sourceOf = (config: Config) => sourceIdOf(config.source);
  /** The snapshot of `date`, else the last one before it (a bookmarked period need not end on a snapshot). */
  const snapshotAsOf = async (source: string, date: string) =>
    (await getSnapshot(redis, prefix, source, date)) ??
    (await listSnapshots(redis, prefix, source, { to: date, limit: 100_000 })).snapshots.at(-1);

  api.get(
    '/api/v1/segments',
    {
      config: viewer,
      schema: {
        summary: 'Segments: definition (RFM codes and score ranges), size, share, suggested action, trend',
        tags: ['segments'],
        security: SECURITY,
        querystring: segmentsQuerySchema,
        response: answers(segmentsSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const source = sourceOf(config);
      const map = live.segmentMap(config);
      const { to } = request.query;
      const latest = to ? await snapshotAsOf(source, to) : await latestSnapshot(redis, prefix, source);
      if (to && !latest)
        throw new ApiError(404, 'not_found', `no snapshot on or before ${to}`, {
          hint: 'pass a later `to`, or none for the latest snapshot',
        });
      const from =
        request.query.trend_from ??
        (latest
          ? new Date(Date.parse(`${latest.date}T00:00:00Z`) - 365 * 86_400_000).toISOString().slice(0, 10)
          : undefined);
      const trend = latest
        ? (
            await listSnapshots(redis, prefix, source, {
              ...(from ? { from } : {}),
              to: latest.date,
              limit: TREND_POINTS,
            })
          ).snapshots
        : [];
      const codesOf = (k: number) => ALL_CODES.filter((code) => map.byCode[code] === k);
      const range = (codes: number[], digit: (c: number) => number): [number, number] | null =>
        codes.length ? [Math.min(...codes.map(digit)), Math.max(...codes.map(digit))] : null;
      const sizes = trend.map((t) => new Map(t.segments.map((x) => [x.segment, x.customers])));
      return {
        source,
        date: latest?.date ?? null,
        customers: latest?.customers ?? null,
        trend_dates: trend.map((t) => t.date),
        segments: map.names.map((name, k) => {
          const codes = codesOf(k);
          const size = latest?.segments.find((s) => s.segment === name);
          return {
            name,
            action: map.actions[name] ?? null,
            definition: {
              codes,
              recency: range(codes, (c) => Math.floor(c / 100)),
              frequency: range(codes, (c) => Math.floor(c / 10) % 10),
              monetary: range(codes, (c) => c % 10),
            },
            customers: latest ? (size?.customers ?? 0) : null,
            opted_out: latest ? (size?.optedOut ?? 0) : null,
            share: latest && latest.customers > 0 ? (size?.customers ?? 0) / latest.customers : null,
            trend: sizes.map((m) => m.get(name) ?? 0),
          };
        }),
      };
    },
  );

  api.get(
    '/api/v1/segments/:segment/sample',
    {
      config: operator,
      schema: {
        summary: 'Up to 20 customer ids of a segment in the latest snapshot (operators only)',
        tags: ['segments'],
        security: SECURITY,
        params: z.object({ segment: z.string() }),
        response: answers(segmentSampleSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const source = sourceOf(config);
      const latest = await latestSnapshot(redis, prefix, source);
      const known = latest?.segments.map((s) => s.segment) ?? [...live.segmentMap(config).names];
      if (!known.includes(request.params.segment))
        throw new UnknownName('segment', request.params.segment, known);
      const sample = await segmentSample(redis, prefix, source, request.params.segment);
      if (!sample) throw noSnapshotYet();
      return { segment: request.params.segment, date: sample.date, customer_ids: sample.customerIds };
    },
  );

  api.get(
    '/api/v1/movement/sample',
    {
      config: operator,
      schema: {
        summary:
          "Up to 20 customer ids of one cell of the latest snapshot's movement (operators only; customers who left have none)",
        tags: ['segments'],
        security: SECURITY,
        querystring: movementSampleQuerySchema,
        response: answers(movementSampleSchema),
      },
    },
    async (request) => {
      const { config } = live.get();
      const source = sourceOf(config);
      const { from, to } = request.query;
      const latest = await latestSnapshot(redis, prefix, source);
      if (!latest) throw noSnapshotYet();
      const current = latest.segments.map((s) => s.segment);
      if (to === GONE)
        throw new ApiError(400, 'bad_request', "customers who left ('gone') have no ids kept to show", {
          allowed: current,
        });
      if (!current.includes(to)) throw new UnknownName('segment', to, current);
      const earlier = latest.movement.from
        ? await getSnapshot(redis, prefix, source, latest.movement.from)
        : undefined;
      const before = [...(earlier?.segments.map((s) => s.segment) ?? current), NEW];
      if (!before.includes(from)) throw new UnknownName('segment', from, before);
      const sample = await movementSample(redis, prefix, source, { from, to });
      return {
        date: latest.date,
        since: latest.movement.from,
        from,
        to,
        customer_ids: sample && sample.date === latest.date ? sample.customerIds : [],
      };
    },
  );

  api.get(
    '/api/v1/snapshots',
    {
      config: viewer,
      schema: {
        summary:
          'Segment snapshots (sizes, breaks, movement from the one before), oldest first, a page at a time',
        tags: ['segments'],
        security: SECURITY,
        querystring: snapshotsQuerySchema,
        response: answers(snapshotsSchema),
      },
    },
    async (request) => {
      const { from, to, cursor, limit } = request.query;
      const page = await listSnapshots(redis, prefix, sourceOf(live.get().config), {
        ...(from ? { from } : {}),
        ...(to ? { to } : {}),
        ...(cursor ? { cursor } : {}),
        limit,
      });
      return { snapshots: page.snapshots, next_cursor: page.next ?? null };
    },
  );

  api.get(
    '/api/v1/movement',
    {
      config: viewer,
      schema: {
        summary:
          'How many customers moved from each segment to each other between two snapshots (exact: false, with the reason, where it cannot be told)',
        tags: ['segments'],
        security: SECURITY,
        querystring: movementQuerySchema,
        response: answers(movementSchema),
      },
    },
    async (request) => {
      const source = sourceOf(live.get().config);
      const target = request.query.to
        ? await getSnapshot(redis, prefix, source, request.query.to)
        : await latestSnapshot(redis, prefix, source);
      const to = request.query.to ?? target?.date;
      if (!to) throw noSnapshotYet();
      // The snapshot it counted its movement from, else the one before it (whose step then says why it is not exact).
      let from = request.query.from ?? target?.movement.from ?? undefined;
      if (!from) {
        const before = await listSnapshots(redis, prefix, source, { to, limit: 100_000 });
        from = before.snapshots.filter((s) => s.date < to).at(-1)?.date;
        if (!from)
          throw new ApiError(404, 'not_found', `no snapshot before ${to} to count movement from`, {
            hint: 'pass from=YYYY-MM-DD, or backfill history with `audience-sync backfill`',
          });
      }
      return movementBetween(redis, prefix, source, from, to);
    },
  );

  registerPrivacyRoutes(app, {
    redis,
    config: () => live.get().config,
    connectors: options.connectors,
    adminQueue: () => queue(ADMIN_QUEUE),
    badRequest: (message, hint) => new ApiError(400, 'bad_request', message, hint ? { hint } : {}),
    security: SECURITY,
  });

  const board = await registerQueueBoard(app, {
    connection: redis,
    prefix,
    names: [SYNC_QUEUE, ADMIN_QUEUE],
    // Answered here: bull-board's own error handler would make a refusal a 500.
    guard: async (request, reply) => {
      try {
        await guard(request, 'operator', 'same-origin');
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (error.status === 401 && wantsPage(request))
          return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`);
        return send(reply, error);
      }
    },
  });

  app.addHook('onClose', async () => {
    closing = true;
    await board.close();
    await Promise.all([...queues.values()].map((q) => q.close().catch(() => undefined)));
    redis.disconnect();
  });
  return { app, redis };
}

function pick(
  from: Record<string, unknown>,
  names: readonly string[],
  type: 'string' | 'number' | 'boolean',
) {
  return Object.fromEntries(names.filter((n) => typeof from[n] === type).map((n) => [n, from[n]]));
}

/** Builds the API and listens (127.0.0.1 unless told otherwise). */
export async function startApi(options: ApiOptions): Promise<RunningApi> {
  const { app, redis } = await buildApi(options);
  // Ready before the first request when Redis is there; started anyway (answering 503) when it is not.
  if (redis.status !== 'ready')
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 5000);
      function done() {
        clearTimeout(timer);
        redis.off('ready', done).off('error', done);
        resolve();
      }
      redis.once('ready', done).once('error', done);
    });
  const host = options.host ?? '127.0.0.1';
  await app.listen({ port: options.port ?? 8787, host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 8787);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  options.log.info({ host, port }, `HTTP API on ${url}/api/v1 (OpenAPI: ${url}/api/v1/openapi.json)`);
  return { url, host, port, close: () => app.close() };
}
