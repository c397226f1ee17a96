import { createServer, type Server } from 'node:http';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../src/redis-client.js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ConfigError } from '../src/errors.js';
import type { AudienceResult } from '../src/sync/run.js';

/** How long a probe or a scrape waits for Redis: an answer later than that is no answer. */
const REDIS_WAIT_MS = 1000;

export type Health = { ok: true } | { ok: false; reason: string };

/** The promise's value, or `late` once `ms` have passed (the promise is left to settle unobserved). */
function within<T, L>(promise: Promise<T>, ms: number, late: L): Promise<T | L> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(late), ms);
    promise.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

/** Prometheus metrics of a worker, served at /metrics, with /healthz for probes. */
export class Metrics {
  readonly registry = new Registry();
  private readonly runs = new Counter({
    name: 'audience_sync_runs_total',
    help: 'Audience runs by destination and outcome',
    labelNames: ['destination', 'outcome'],
    registers: [this.registry],
  });
  private readonly members = new Counter({
    name: 'audience_sync_members_total',
    help: 'Members added, removed or rejected by the platform',
    labelNames: ['destination', 'change'],
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: 'audience_sync_run_duration_seconds',
    help: 'Duration of one destination run',
    labelNames: ['destination'],
    buckets: [1, 5, 15, 60, 300, 900, 3600],
    registers: [this.registry],
  });
  private readonly redisUp = new Gauge({
    name: 'audience_sync_redis_up',
    help: 'Whether Redis answered a PING within 1 s at this scrape (1) or not (0)',
    registers: [this.registry],
  });
  private readonly queueJobs = new Gauge({
    name: 'audience_sync_queue_jobs',
    help: 'Jobs per queue and state (absent while Redis does not answer)',
    labelNames: ['queue', 'state'],
    registers: [this.registry],
  });

  /** `redis` is the worker's own connection: health is whether the worker can reach Redis. */
  constructor(
    private readonly queues: readonly Queue[],
    private readonly redis: RedisClient,
  ) {}

  recordRun(destination: string, results: readonly AudienceResult[], seconds: number): void {
    for (const r of results) {
      this.runs.inc({ destination, outcome: r.error ? 'failed' : 'ok' });
      this.members.inc({ destination, change: 'added' }, r.added);
      this.members.inc({ destination, change: 'removed' }, r.removed);
      this.members.inc({ destination, change: 'rejected' }, r.rejected);
    }
    this.duration.observe({ destination }, seconds);
  }

  /** Healthy when Redis answers a PING within a second; the reason names the state, never an address. */
  async health(): Promise<Health> {
    // A connection that is not ready would queue the PING until Redis returns: answer at once instead.
    if (this.redis.status !== 'ready') return { ok: false, reason: `connection ${this.redis.status}` };
    try {
      const answered = await within(this.redis.ping(), REDIS_WAIT_MS, undefined);
      return answered === undefined ? { ok: false, reason: 'no answer to PING within 1 s' } : { ok: true };
    } catch (error) {
      // Redis's error replies start with a code (LOADING, NOAUTH, …); the rest is not repeated.
      const code = /^[A-Z]{3,}\b/.exec((error as Error).message)?.[0];
      return { ok: false, reason: `PING failed${code ? ` (${code})` : ''}` };
    }
  }

  /** The metrics text; queue counts only when Redis gives them in time, so a scrape never hangs. */
  async scrape(): Promise<string> {
    const health = await this.health();
    this.redisUp.set(health.ok ? 1 : 0);
    this.queueJobs.reset();
    if (health.ok) {
      const counts = await within(
        Promise.all(this.queues.map((q) => q.getJobCounts('waiting', 'active', 'delayed', 'failed'))),
        REDIS_WAIT_MS,
        undefined,
      ).catch(() => undefined);
      counts?.forEach((byState, i) => {
        for (const [state, n] of Object.entries(byState))
          this.queueJobs.set({ queue: this.queues[i]!.name, state }, n);
      });
    }
    return this.registry.metrics();
  }

  /** Serves /metrics and /healthz on host:port (port 0 picks a free one); resolves to where it listens. */
  async serve(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number; server: Server }> {
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new ConfigError(
        `metrics port '${port}' is not a port number`,
        'set --metrics-port (or METRICS_PORT) to a number from 0 to 65535',
      );
    const server = createServer((req, res) => {
      const headers = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
      if (req.url === '/healthz') {
        void this.health().then((h) =>
          h.ok
            ? res.writeHead(200, headers).end('ok\n')
            : res.writeHead(503, headers).end(`redis: ${h.reason}\n`),
        );
        return;
      }
      if (req.url !== '/metrics') {
        res.writeHead(404, headers).end('not found: try /metrics or /healthz\n');
        return;
      }
      this.scrape().then(
        (text) => res.writeHead(200, { ...headers, 'content-type': this.registry.contentType }).end(text),
        () => res.writeHead(500, headers).end('metrics could not be collected\n'),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new ConfigError(
            `cannot serve metrics on ${host}:${port}: ${error.code ?? error.message}`,
            error.code === 'EADDRINUSE'
              ? 'another process uses this port: choose another with --metrics-port (or METRICS_PORT)'
              : 'set --metrics-host (or METRICS_HOST) to an address of this machine, e.g. 127.0.0.1, or 0.0.0.0 for every interface',
          ),
        ),
      );
      server.listen(port, host, resolve);
    });
    return { host, port: (server.address() as { port: number }).port, server };
  }
}
