/**
 * The Redis Cluster scenario end to end: `audience-sync worker` processes (the product's own, `dist/app/cli`)
 * take one resync job per audience and sync a first run of every audience to a wire-level fake of Meta's
 * Graph API in another process (`meta.js serve`, which only counts rows), with Meta's schema cut to EMAIL
 * (five keys need about 4.5 GB per worker at 10 M customers). Measured from outside: the time from the
 * requests to the last job's end, each worker's peak RSS (VmHWM), the longest event-loop stall each run
 * logged, the least time left on the jobs' locks and the audiences' leases (sampled every 50 ms on the
 * queue's server), Redis memory per member on each server, and a digest of every audience's state.
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { audiencesOf } from '../src/audience/audiences.js';
import { configSchema } from '../src/config/schema.js';
import { recordLength } from '../src/record/records.js';
import { StateStore } from '../src/record/store.js';
import type { RedisClient } from '../src/redis-client.js';
import { DEFAULT_SEGMENT_CODES } from '../src/segment/maps.js';
import { RUNTIME } from './runtime.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, '../app/cli/bin.js');
const TOKEN = 'EAAB-bench-token-0123456789';
const PREFIX = 'bench-cw';
const LEASE_SECONDS = 30;
/** More `node` options for the workers, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to see where a stall goes. */
const WORKER_NODE_ARGS = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** Meta's schema the workers send (the bench's scores carry email, phone and country), e.g. `EMAIL,PHONE,COUNTRY`. */
const SCHEMA = (process.env.BENCH_META_SCHEMA ?? 'EMAIL').split(',').map((key) => key.trim());
/** More `audience-sync worker` options, e.g. `--concurrency 1`. */
const WORKER_ARGS = (process.env.BENCH_WORKER_ARGS ?? '').split(' ').filter(Boolean);

/** A process's memory figure from the kernel (`VmRSS`: now, `VmHWM`: its peak), in MB. */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) / 1024;
}

export interface WorkersRun {
  seconds: number;
  /** Each worker's peak RSS, runs, reads of the source (the rest took a read), longest stall. */
  workers: { maxRssMb: number; runs: number; reads: number; longestStallMs: number }[];
  minLockMs: number;
  minLeaseMs: number;
  rows: number;
  bytesPerMember: number[];
  digests: Record<string, string>;
}

/**
 * `workers` processes on the Redis `env` names (`servers`: its masters' URLs; `client` reads the states),
 * syncing the scores in `csv`, an audience a job.
 */
export async function workersRun(
  csv: string,
  workers: number,
  env: NodeJS.ProcessEnv,
  servers: string[],
  client: RedisClient,
): Promise<WorkersRun> {
  const fake = fork(path.join(here, 'meta.js'), ['serve'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = () => new Promise<Record<string, unknown>>((resolve) => fake.once('message', resolve));
  const { origin } = (await ask()) as { origin: string };
  const dir = path.join(
    path.dirname(csv),
    `workers-${workers}${env.MALLOC_MMAP_THRESHOLD_ === '' ? '-malloc' : ''}`,
  );
  mkdirSync(dir, { recursive: true });
  const yaml = `source: { type: csv, path: ${csv} }
scoring: { analysis_date: "2026-01-01" }
destinations:
  meta:
    type: meta
    ad_account_id: "1234567890"
    access_token: "\${BENCH_META_TOKEN}"
    endpoint: ${origin}
    schema: [${SCHEMA.join(', ')}]
sync: { redis_prefix: ${PREFIX}, lease_seconds: ${LEASE_SECONDS} }
`;
  writeFileSync(path.join(dir, 'audience-sync.yaml'), yaml);
  const config = configSchema.parse({
    source: { type: 'csv', path: csv },
    destinations: { meta: { type: 'meta', ad_account_id: '1', access_token: 'x', endpoint: origin } },
  });
  const audiences = audiencesOf(config, Object.keys(DEFAULT_SEGMENT_CODES)).map((a) => a.name);
  const { REDIS_URL: _url, REDIS_CLUSTER_NODES: _nodes, ...rest } = process.env;
  // An empty value leaves the variable out (`MALLOC_MMAP_THRESHOLD_: ''`: glibc's default malloc).
  const childEnv = Object.fromEntries(
    Object.entries({ ...rest, ...env, BENCH_META_TOKEN: TOKEN, LOG_LEVEL: 'info', CI: 'true' }).filter(
      ([, value]) => value !== undefined && value !== '',
    ),
  );
  const servers_ = servers.map((url) => new Redis(url));
  const used = () =>
    Promise.all(servers_.map(async (c) => Number(/used_memory:(\d+)/.exec(await c.info('memory'))![1])));
  const before = await used();

  const procs: { child: ChildProcess; log: string }[] = [];
  try {
    for (let w = 0; w < workers; w++) {
      const child = spawn(
        process.execPath,
        [...WORKER_NODE_ARGS, ...RUNTIME, BIN, 'worker', '--allow-volatile-redis', ...WORKER_ARGS],
        { cwd: dir, env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const proc = { child, log: '' };
      procs.push(proc);
      await new Promise<void>((resolve, reject) => {
        child.stderr!.on('data', (d: Buffer) => {
          proc.log += d.toString();
          if (proc.log.includes('"msg":"worker started"')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`worker exited ${code}:\n${proc.log.slice(-2000)}`)));
      });
    }
    // The locks' and leases' time to live, from this process (its event loop is free), on every server.
    let minLockMs = Infinity;
    let minLeaseMs = Infinity;
    let sampling = true;
    /** Each worker's RSS over time (written beside its log, to set against the log's stages). */
    const rss: string[][] = procs.map(() => []);
    const sampler = (async () => {
      while (sampling) {
        procs.forEach(({ child }, w) => {
          rss[w]!.push(`${Date.now()} ${Math.round(statusMb(child.pid!, 'VmRSS'))}`);
        });
        for (const c of servers_) {
          for (const key of await c.keys(`{${PREFIX}}:sync:*:lock`)) {
            const ttl = await c.pttl(key);
            if (ttl >= 0) minLockMs = Math.min(minLockMs, ttl);
          }
          for (const key of await c.keys(`{${PREFIX}}:lease:*`)) {
            const ttl = await c.pttl(key);
            if (ttl >= 0) minLeaseMs = Math.min(minLeaseMs, ttl);
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const started = performance.now();
    await Promise.all(
      audiences.map(
        (audience) =>
          new Promise<void>((resolve, reject) => {
            const cli = spawn(
              process.execPath,
              [BIN, 'resync', '--destination', 'meta', '--audience', audience, '--wait'],
              { cwd: dir, env: { ...childEnv, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] },
            );
            let err = '';
            cli.stderr!.on('data', (d: Buffer) => (err += d.toString()));
            cli.once('exit', (code) =>
              code === 0 ? resolve() : reject(new Error(`resync of ${audience} exited ${code}: ${err}`)),
            );
          }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    sampling = false;
    await sampler;
    procs.forEach(({ log }, w) => {
      writeFileSync(path.join(dir, `worker-${w}.log`), log);
      writeFileSync(path.join(dir, `worker-${w}.rss`), rss[w]!.join('\n') + '\n');
    });
    const after = await used();
    const peaks = procs.map(({ child }) => statusMb(child.pid!, 'VmHWM'));
    fake.send('counts');
    const { rows } = (await ask()) as { rows: number };
    const digests: Record<string, string> = {};
    const store = new StateStore(client, PREFIX);
    for (const name of audiences) {
      const digest = createHash('sha256');
      for await (const packed of store.audience('meta', name).ordered())
        for (let at = 0; at < packed.length; at += recordLength(packed, at))
          digest.update(packed.subarray(at, at + recordLength(packed, at)));
      digests[name] = digest.digest('hex').slice(0, 16);
    }
    return {
      seconds,
      workers: procs.map(({ log }, w) => {
        const stalls = [...log.matchAll(/"longestStallMs":(\d+)/g)].map((m) => Number(m[1]));
        return {
          maxRssMb: peaks[w]!,
          runs: [...log.matchAll(/"msg":"synced meta"/g)].length,
          reads: [...log.matchAll(/read and scored the source/g)].length,
          longestStallMs: Math.max(0, ...stalls),
        };
      }),
      minLockMs,
      minLeaseMs,
      rows,
      bytesPerMember: after.map((a, i) => (a - before[i]!) / rows),
      digests,
    };
  } finally {
    await Promise.all(
      procs.map(
        ({ child }) =>
          new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve(undefined);
            child.once('exit', resolve);
            child.kill('SIGTERM');
          }),
      ),
    );
    fake.kill();
    for (const c of servers_) {
      await c.flushall();
      c.disconnect();
    }
  }
}
