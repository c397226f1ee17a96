import { createServer, type Server } from 'node:http';
import type { Queue } from 'bullmq';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AudienceResult } from '../src/sync/run.js';

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

  constructor(queues: readonly Queue[]) {
    new Gauge({
      name: 'audience_sync_queue_jobs',
      help: 'Jobs per queue and state',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      async collect() {
        for (const q of queues) {
          const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed');
          for (const [state, n] of Object.entries(counts)) this.set({ queue: q.name, state }, n);
        }
      },
    });
  }

  recordRun(destination: string, results: readonly AudienceResult[], seconds: number): void {
    for (const r of results) {
      this.runs.inc({ destination, outcome: r.error ? 'failed' : 'ok' });
      this.members.inc({ destination, change: 'added' }, r.added);
      this.members.inc({ destination, change: 'removed' }, r.removed);
      this.members.inc({ destination, change: 'rejected' }, r.rejected);
    }
    this.duration.observe({ destination }, seconds);
  }

  /** Serves /metrics and /healthz on the port (0 picks a free one); resolves to the bound port. */
  async serve(port: number, host = '0.0.0.0'): Promise<{ port: number; server: Server }> {
    const server = createServer((req, res) => {
      if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      }
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text))
        .catch((error: Error) => res.writeHead(500).end(error.message));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    return { port: (server.address() as { port: number }).port, server };
  }
}
