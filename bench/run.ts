/**
 * `npm run bench -- [--only score-csv,streaming,score-postgres,plan,push,workers,meta,checkpoint,history,cluster,cluster-workers]
 *   [--customers 1000000] [--plan-customers 10000000] [--push-customers 100000] [--workers-customers 2000000]
 *   [--meta-customers 1000000] [--checkpoint-members 1000000] [--history-customers 10000000]
 *   [--cluster-customers 10000000] [--cluster-workers-customers 10000000] [--cluster-workers-setups single,cluster]`
 *
 * Generates the data, then runs each scenario in a child process and prints wall time, throughput,
 * peak RSS and ratios: scoring (1), plan (2) and state size (4), push efficiency (3), workers (5), and
 * the end-to-end aim with Meta's five keys (meta).
 * Figures on a shared machine are noisy: compare ratios within one run.
 */
import { execFileSync, spawn } from 'node:child_process';
import { Cluster, Redis } from 'ioredis';
import { rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { generateShop } from '../src/example/generate.js';
import { startPostgres, startRedis, startRedisCluster } from '../app/local/services.js';
import { writeScores } from './scores.js';
import { redisCpu, tempDir } from './util.js';
import { workersRun, type WorkersRun } from './cluster-workers.js';
import { RUNTIME, RUNTIME_ENV } from './runtime.js';

const { values } = parseArgs({
  options: {
    customers: { type: 'string', default: '1000000' },
    'plan-customers': { type: 'string', default: '10000000' },
    'push-customers': { type: 'string', default: '100000' },
    'workers-customers': { type: 'string', default: '2000000' },
    'meta-customers': { type: 'string', default: '1000000' },
    'checkpoint-members': { type: 'string', default: '1000000' },
    'history-customers': { type: 'string', default: '10000000' },
    'cluster-customers': { type: 'string', default: '10000000' },
    'cluster-workers-customers': { type: 'string', default: '10000000' },
    /**
     * Which of the end-to-end setups to run: `single` (1 worker, one Redis), `cluster` (2 workers, a Cluster),
     * `single-default-malloc` (1 worker, one Redis, without the product's malloc setting).
     */
    'cluster-workers-setups': { type: 'string', default: 'single,cluster' },
    'orders-per-customer': { type: 'string', default: '5' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const customers = Number(values.customers);
const planCustomers = Number(values['plan-customers']);
const ordersPerCustomer = Number(values['orders-per-customer']);
const only = values.only?.split(',');
// Every scenario's process runs with the product's environment (a value set here already is kept).
for (const [name, value] of Object.entries(RUNTIME_ENV)) process.env[name] ??= value;
const here = path.dirname(fileURLToPath(import.meta.url));
const want = (name: string) => !only || only.includes(name);

interface Row {
  scenario: string;
  customers: number;
  rows: number;
  seconds: number;
  maxRssMb: number;
}
const results: Row[] = [];

function child(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Omit<Row, 'scenario'> {
  const out = execFileSync(process.execPath, [...RUNTIME, path.join(here, script), ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

function report(row: Row): void {
  results.push(row);
  console.error(
    `${row.scenario.padEnd(28)} ${row.customers.toLocaleString('en-US').padStart(11)} customers ${row.rows.toLocaleString('en-US').padStart(12)} rows ${row.seconds.toFixed(2).padStart(7)} s ${Math.round(
      row.customers / row.seconds,
    )
      .toLocaleString('en-US')
      .padStart(10)} customers/s ${Math.round(row.rows / row.seconds)
      .toLocaleString('en-US')
      .padStart(11)} rows/s ${Math.round(row.maxRssMb).toLocaleString('en-US').padStart(6)} MB peak RSS`,
  );
}

/** Runs a scenario script with a Redis of its own (its URL last on the command line): its JSON line. */
async function withRedis(script: string, args: string[], heapMb: number): Promise<Record<string, unknown>> {
  const redis = await startRedis();
  try {
    return JSON.parse(
      execFileSync(
        process.execPath,
        [...RUNTIME, `--max-old-space-size=${heapMb}`, path.join(here, script), ...args, redis.url],
        { encoding: 'utf8', maxBuffer: 1 << 24 },
      ),
    ) as Record<string, unknown>;
  } finally {
    await redis.stop();
  }
}

const dir = tempDir('audience-sync-bench-');
try {
  console.error(
    `bench in ${dir} (${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GB, Node ${process.version})`,
  );
  let started = performance.now();
  const shop = ['score-csv', 'streaming', 'score-postgres', 'history'].some(want)
    ? await generateShop(path.join(dir, 'shop'), {
        customers,
        seed: 7,
        ordersPerCustomer,
        analysisDate: '2026-01-01',
      })
    : undefined;
  if (shop)
    console.error(
      `generated ${customers.toLocaleString('en-US')} customers with ${shop.orders.toLocaleString('en-US')} orders in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );

  if (want('score-csv')) {
    report({
      scenario: 'score csv (quantile)',
      ...child('score.js', ['csv', shop!.files.orders, 'quantile']),
    });
    report({ scenario: 'score csv (ntile)', ...child('score.js', ['csv', shop!.files.orders, 'ntile']) });
  }
  if (want('streaming')) {
    // The same customers with twice the orders: peak memory must stay about the same.
    const doubled = await generateShop(path.join(dir, 'shop2x'), {
      customers,
      seed: 7,
      ordersPerCustomer: ordersPerCustomer * 2,
      analysisDate: '2026-01-01',
    });
    report({
      scenario: 'score csv, 2x orders',
      ...child('score.js', ['csv', doubled.files.orders, 'quantile']),
    });
    rmSync(path.join(dir, 'shop2x'), { recursive: true, force: true });
  }
  if (want('score-postgres')) {
    const postgres = await startPostgres();
    try {
      const client = new pg.Client({ connectionString: postgres.url });
      await client.connect();
      started = performance.now();
      await client.query('CREATE TABLE orders (customer_id text, order_date date, amount numeric(12,2))');
      await client.end();
      execFileSync('psql', [
        postgres.url,
        '-q',
        '-c',
        `\\copy orders FROM '${shop!.files.orders}' WITH (FORMAT csv, HEADER true)`,
      ]);
      console.error(`loaded PostgreSQL in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      report({
        scenario: 'score postgres (quantile)',
        ...child('score.js', ['postgres', 'orders', 'quantile'], { BENCH_PG_URL: postgres.url }),
      });
    } finally {
      await postgres.stop();
    }
  }
  if (want('history')) {
    // Backfill reads the source once: 12 monthly dates against one scoring run of the same file.
    const one = child('backfill.js', ['score', shop!.files.orders]);
    report({ scenario: 'history: one scoring run', ...one });
    const redis = await startRedis();
    try {
      const all = child('backfill.js', ['backfill', shop!.files.orders, redis.url]);
      report({ scenario: 'history: backfill 12 months', ...all, rows: one.rows });
      console.error(
        `history-backfill: 12 monthly dates in ${(all.seconds / one.seconds).toFixed(2)}x one scoring run (target <= 3x)`,
      );
    } finally {
      await redis.stop();
    }
  }
  let plan: Record<string, number> | undefined;
  if (want('plan')) {
    started = performance.now();
    const first = path.join(dir, 'scores-day1.csv');
    const second = path.join(dir, 'scores-day2.csv');
    const { changed } = await writeScores(first, second, planCustomers);
    console.error(
      `generated scores for ${planCustomers.toLocaleString('en-US')} customers (${changed.toLocaleString('en-US')} changed the next day) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    plan = (await withRedis('plan.js', [first, second], 4096)) as Record<string, number>;
    const p = plan;
    const n = (v: number | undefined) => (v ?? 0).toLocaleString('en-US');
    const rate = (s: number | undefined) => n(Math.round((p.customers ?? 0) / (s ?? 1)));
    const ratio = (s: number | undefined) => ((s ?? 0) / (p.yardstickSeconds ?? 1)).toFixed(2);
    console.error(
      `plan (identify + diff), ${n(p.customers)} customers, ${p.audiences} audiences on one destination, ${n(p.identifiers)} identifiers:\n` +
        `  first run (all ${n(p.adds)} adds): ${p.firstSeconds?.toFixed(2)} s, ${rate(p.firstSeconds)} customers/s, ${ratio(p.firstSeconds)}x the yardstick\n` +
        `  next day (1 % changed: ${n(p.changes)} changes, ${n(p.unchanged)} unchanged): ${p.secondSeconds?.toFixed(2)} s, ${rate(p.secondSeconds)} customers/s, ${ratio(p.secondSeconds)}x the yardstick\n` +
        `  yardstick (crypto.hash sha256 of the first run's normalised strings, one thread): ${p.yardstickSeconds?.toFixed(2)} s\n` +
        `  reading the scores: ${p.loadSeconds?.toFixed(2)} s, ${p.reloadSeconds?.toFixed(2)} s; writing the state: ${p.stateSeconds?.toFixed(2)} s\n` +
        `  peak RSS: ${n(Math.round(p.maxRssFirstMb ?? 0))} MB through the first run (reading included), ${n(Math.round(p.maxRssMb ?? 0))} MB for the whole scenario (two days, writing the state)\n` +
        `state size (Redis used_memory after the first run's state): ${((p.stateBytes ?? 0) / (p.adds || 1)).toFixed(1)} bytes per member; ` +
        `${(((p.stateBytes ?? 0) - 32 * (p.storedHashes ?? 0)) / (p.adds || 1)).toFixed(1)} beyond the 32-byte identifier hashes removals need ` +
        `(${((p.storedHashes ?? 0) / (p.adds || 1)).toFixed(2)} per member)`,
    );
  }
  let history: Record<string, unknown> | undefined;
  if (want('history')) {
    const n = Number(values['history-customers']);
    const first = path.join(dir, 'scores-history-day1.csv');
    const second = path.join(dir, 'scores-history-day2.csv');
    // A day's churn: 1 % of customers arrive and 0.2 % leave (within the default movement capacity, 5 %).
    await writeScores(first, second, n, { arriving: 0.01, leaving: 0.002 });
    try {
      history = await withRedis('history.js', [first, second], 6144);
    } finally {
      rmSync(first, { force: true });
      rmSync(second, { force: true });
    }
    const h = history as {
      customers: number;
      scoreSeconds: number;
      firstRecordSeconds: number;
      inlineSeconds: number;
      threads: boolean;
      nextScoreSeconds: number;
      nextRecordSeconds: number;
      moved: number;
      historyBytes: number;
      snapshotBytes: number;
      readMs: Record<string, number>;
      apiMs: Record<string, number>;
      maxRssMb: number;
    };
    const share = (record: number, score: number) => `${((record / score) * 100).toFixed(1)} %`;
    console.error(
      `history, ${h.customers.toLocaleString('en-US')} customers:\n` +
        `  first snapshot: scoring ${h.scoreSeconds.toFixed(2)} s, recording ${h.firstRecordSeconds.toFixed(2)} s (+${share(h.firstRecordSeconds, h.scoreSeconds)})${h.threads ? ', keys made on a thread while reading' : ', no thread (one core?)'}\n` +
        `  the same per-customer work on the main thread alone: ${h.inlineSeconds.toFixed(2)} s (+${share(h.inlineSeconds, h.scoreSeconds)})\n` +
        `  next day (movement counted, ${h.moved.toLocaleString('en-US')} moved): scoring ${h.nextScoreSeconds.toFixed(2)} s, recording ${h.nextRecordSeconds.toFixed(2)} s (+${share(h.nextRecordSeconds, h.nextScoreSeconds)})\n` +
        `  Redis memory after two snapshots (MEMORY USAGE of every history key): ${(h.historyBytes / h.customers).toFixed(2)} bytes per customer in all; one snapshot ${h.snapshotBytes.toLocaleString('en-US')} bytes\n` +
        `  reads with 400 snapshots (median of 21): ${Object.entries(h.readMs)
          .map(([k, v]) => `${k} ${v.toFixed(1)} ms`)
          .join(', ')}\n` +
        `  the same through the HTTP API (real HTTP, bearer token): ${Object.entries(h.apiMs)
          .map(([k, v]) => `${k} ${v.toFixed(1)} ms`)
          .join(', ')}\n` +
        `  peak RSS ${Math.round(h.maxRssMb).toLocaleString('en-US')} MB`,
    );
  }
  let workers: Record<string, unknown> | undefined;
  if (want('workers')) {
    const n = Number(values['workers-customers']);
    const csv = path.join(dir, 'scores-workers.csv');
    await writeScores(csv, path.join(dir, 'scores-workers-next.csv'), n);
    const redis = await startRedis();
    type Part = {
      audiences: number;
      members: number;
      readSeconds: number;
      planSeconds: number;
      seconds: number;
    };
    // One core per process, identification inline: a process stands in for a one-core machine.
    const pinned = (core: number, ...args: string[]) =>
      new Promise<Part>((resolve, reject) => {
        const child = spawn(
          'taskset',
          ['-c', String(core), process.execPath, ...RUNTIME, path.join(here, 'workers.js'), ...args],
          { env: { ...process.env, AUDIENCE_SYNC_THREADS: '0' }, stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) =>
          code === 0
            ? resolve(JSON.parse(out.trim().split('\n').pop()!) as Part)
            : reject(new Error(`workers.js exited ${code}`)),
        );
      });
    // Redis is not pinned: alone, a process leaves it the other core; two processes share both with it.
    const info = new Redis(redis.url);
    const redisSeconds = async <T>(run: () => Promise<T>): Promise<[T, number]> => {
      const before = redisCpu(await info.info('cpu'));
      const done = await run();
      return [done, redisCpu(await info.info('cpu')) - before];
    };
    try {
      const [one, redisOne] = await redisSeconds(() => pinned(0, csv, redis.url, '0', '1'));
      const [two, redisTwo] = await redisSeconds(() =>
        Promise.all([pinned(0, csv, redis.url, '0', '2'), pinned(1, csv, redis.url, '1', '2')]),
      );
      const wall = Math.max(...two.map((t) => t.seconds));
      const plan = Math.max(...two.map((t) => t.planSeconds));
      // The control: the same fixed CPU work alone and twice at once, one process per core.
      const spinOne = (await pinned(0, 'spin')).seconds;
      const spinTwo = Math.max(
        ...(await Promise.all([pinned(0, 'spin'), pinned(1, 'spin')])).map((t) => t.seconds),
      );
      workers = { customers: n, one, two, spinOne, spinTwo, redisOne, redisTwo };
      console.error(
        `workers (${n.toLocaleString('en-US')} customers, 11 audiences, plan + state, each process pinned to one core):\n` +
          `  one process, all audiences: ${one.seconds.toFixed(2)} s (reading ${one.readSeconds.toFixed(2)} s, planning ${one.planSeconds.toFixed(2)} s)\n` +
          `  two processes, distinct audiences: ${wall.toFixed(2)} s (planning ${plan.toFixed(2)} s): ` +
          `${(one.seconds / wall).toFixed(2)}x one overall, ${(one.planSeconds / plan).toFixed(2)}x on the planning (each process reads the whole source)\n` +
          `  control, pure CPU work (SHA-256 of short strings) twice at once on the two cores: ${((2 * spinOne) / spinTwo).toFixed(2)}x one\n` +
          `  Redis's CPU (not pinned, on the same two cores): ${redisOne.toFixed(2)} s for one process, ${redisTwo.toFixed(2)} s for two`,
      );
    } finally {
      info.disconnect();
      await redis.stop();
    }
  }
  let meta: Record<string, number> | undefined;
  if (want('meta')) {
    const n = Number(values['meta-customers']);
    const csv = path.join(dir, 'scores-meta.csv');
    await writeScores(csv, path.join(dir, 'scores-meta-next.csv'), n, { names: true });
    const redis = await startRedis();
    try {
      meta = JSON.parse(
        execFileSync(process.execPath, [...RUNTIME, path.join(here, 'meta.js'), csv, redis.url], {
          encoding: 'utf8',
          maxBuffer: 1 << 24,
        })
          .trim()
          .split('\n')
          .pop()!,
      ) as Record<string, number>;
    } finally {
      await redis.stop();
    }
    const m = meta;
    console.error(
      `end to end, Meta's five keys (${m.customers!.toLocaleString('en-US')} customers from CSV to a local fake Graph API in another process, ${m.requests} upload requests):\n` +
        `  ${m.seconds!.toFixed(2)} s, ${Math.round(m.customers! / m.seconds!).toLocaleString('en-US')} customers/s, ${(m.seconds! / m.yardstickSeconds!).toFixed(2)}x the yardstick (${m.yardstickSeconds!.toFixed(2)} s for ${m.strings!.toLocaleString('en-US')} strings); peak RSS ${Math.round(m.maxRssMb!).toLocaleString('en-US')} MB\n` +
        `  reading ${m.readSeconds!.toFixed(2)} s, identify + diff ${m.planSeconds!.toFixed(2)} s, push + state ${m.pushSeconds!.toFixed(2)} s; CPU ${m.cpuSeconds!.toFixed(2)} s (all threads)\n` +
        `  on the same cores: the fake platform ${m.fakeCpuSeconds!.toFixed(2)} s of CPU, Redis ${m.redisCpuSeconds!.toFixed(2)} s`,
    );
  }
  let checkpoint: Record<string, number> | undefined;
  if (want('checkpoint')) {
    checkpoint = (await withRedis('checkpoint.js', [values['checkpoint-members']!], 4096)) as Record<
      string,
      number
    >;
    const c = checkpoint;
    console.error(
      `checkpoint of a first sync, ${c.members!.toLocaleString('en-US')} members with five identifiers: ${c.firstSeconds!.toFixed(2)} s ` +
        `(CPU ${c.firstCpuSeconds!.toFixed(2)} s, ${c.firstFaults!.toLocaleString('en-US')} page faults); the next day's, a tenth changed: ${c.nextSeconds!.toFixed(2)} s; peak RSS ${Math.round(c.maxRssMb!).toLocaleString('en-US')} MB`,
    );
  }
  let push: Record<string, number | string>[] | undefined;
  if (want('push')) {
    const redis = await startRedis();
    try {
      push = (
        JSON.parse(
          execFileSync(
            process.execPath,
            [...RUNTIME, path.join(here, 'push.js'), values['push-customers']!, redis.url],
            {
              encoding: 'utf8',
              maxBuffer: 1 << 24,
            },
          ),
        ) as { push: Record<string, number | string>[] }
      ).push;
    } finally {
      await redis.stop();
    }
    console.error(
      `push efficiency (${Number(values['push-customers']).toLocaleString('en-US')} customers, upload requests: sent / minimal):`,
    );
    for (const r of push)
      console.error(
        `  ${String(r.run).padEnd(18)} ${String(r.platform).padEnd(26)} +${String(r.added).padStart(7)} -${String(r.removed).padStart(6)}  add ${r.addRequests}/${r.minimalAddRequests}  remove ${r.removeRequests}/${r.minimalRemoveRequests}` +
          (r.perMemberRequests !== undefined
            ? `  untag by hash ${r.perMemberRequests} (members whose email is gone)`
            : '') +
          (r.errors ? `  errors: ${String(r.errors)}` : ''),
      );
  }
  let cluster: Record<string, unknown> | undefined;
  if (want('cluster')) {
    const n = Number(values['cluster-customers']);
    const csv = path.join(dir, 'scores-cluster.csv');
    await writeScores(csv, path.join(dir, 'scores-cluster-next.csv'), n);
    const single = await startRedis({ volatile: true });
    const nodes = await startRedisCluster({ masters: 3, replicas: 0 });
    try {
      const one = await clusterRun(csv, 1, { REDIS_URL: single.url }, [single.url]);
      const two = await clusterRun(
        csv,
        2,
        { REDIS_CLUSTER_NODES: nodes.nodes },
        nodes.ports.map((port) => `redis://127.0.0.1:${port}`),
      );
      const same = JSON.stringify(sorted(one.digests)) === JSON.stringify(sorted(two.digests));
      cluster = { customers: n, one, two, sameAudiences: same };
      const line = (name: string, r: ClusterRun) =>
        `  ${name}: ${r.seconds.toFixed(1)} s; peak RSS ${r.processes.map((p) => `${Math.round(p.maxRssMb)} MB`).join(', ')}; ` +
        `longest stall ${Math.max(...r.processes.map((p) => p.longestStallMs))} ms; least time left of 30,000 ms: lease ${r.minLeaseMs} ms, job lock ${r.minLockMs} ms; ` +
        `Redis ${r.bytesPerMember.map((b) => b.toFixed(1)).join(' + ')} bytes per member; largest share of one audience on one server ${(100 * r.largestShare).toFixed(1)} %`;
      console.error(
        `Redis Cluster (${n.toLocaleString('en-US')} customers, 11 audiences: read, plan and state of a first sync, as a BullMQ job holding a lease):
` +
          `${line('1 process, single Redis   ', one)}
${line('2 processes, 3-master Cluster', two)}
` +
          `  the same audiences on both: ${same ? 'yes' : 'NO'}`,
      );
    } finally {
      await single.stop();
      await nodes.stop();
    }
  }
  let clusterWorkers: Record<string, unknown> | undefined;
  if (want('cluster-workers')) {
    const n = Number(values['cluster-workers-customers']);
    const csv = path.join(dir, 'scores-cluster-workers.csv');
    await writeScores(csv, path.join(dir, 'scores-cluster-workers-next.csv'), n);
    const single = await startRedis({ volatile: true });
    const nodes = await startRedisCluster({ masters: 3, replicas: 0 });
    const onSingle = new Redis(single.url);
    const onCluster = new Cluster(nodes.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      const setups = values['cluster-workers-setups'].split(',');
      const one = setups.includes('single')
        ? await workersRun(csv, 1, { REDIS_URL: single.url }, [single.url], onSingle)
        : undefined;
      const two = setups.includes('cluster')
        ? await workersRun(
            csv,
            2,
            { REDIS_CLUSTER_NODES: nodes.nodes },
            nodes.ports.map((port) => `redis://127.0.0.1:${port}`),
            onCluster,
          )
        : undefined;
      // The worker as the product runs it, but with glibc's default malloc: what the runtime setting saves.
      const plain = setups.includes('single-default-malloc')
        ? await workersRun(
            csv,
            1,
            { REDIS_URL: single.url, MALLOC_MMAP_THRESHOLD_: '' },
            [single.url],
            onSingle,
          )
        : undefined;
      const same =
        one && two ? JSON.stringify(sorted(one.digests)) === JSON.stringify(sorted(two.digests)) : undefined;
      clusterWorkers = { customers: n, one, two, plain, sameAudiences: same };
      const line = (name: string, r: WorkersRun | undefined) =>
        !r
          ? ''
          : `\n  ${name}: ${r.seconds.toFixed(1)} s, ${r.rows.toLocaleString('en-US')} rows sent; peak RSS ${r.workers.map((w) => `${Math.round(w.maxRssMb)} MB (${w.runs} runs, ${w.reads} read${w.reads === 1 ? '' : 's'})`).join(', ')}; ` +
            `longest stall ${Math.max(...r.workers.map((w) => w.longestStallMs))} ms; least time left of 30,000 ms: lease ${r.minLeaseMs} ms, job lock ${r.minLockMs} ms; ` +
            `Redis ${r.bytesPerMember.map((b) => b.toFixed(1)).join(' + ')} bytes per member`;
      console.error(
        `audience-sync workers end to end (${n.toLocaleString('en-US')} customers, 11 resyncs of one audience each, to a Meta fake, schema ${process.env.BENCH_META_SCHEMA ?? 'EMAIL'}):` +
          line('1 worker, single Redis      ', one) +
          line('2 workers, 3-master Cluster', two) +
          line("1 worker, glibc's default malloc", plain) +
          (same === undefined ? '' : `\n  the same audiences on both: ${same ? 'yes' : 'NO'}`),
      );
    } finally {
      onSingle.disconnect();
      onCluster.disconnect();
      await single.stop();
      await nodes.stop();
    }
  }
  process.stdout.write(
    JSON.stringify({
      customers,
      ordersPerCustomer,
      node: process.version,
      results,
      plan,
      push,
      workers,
      meta,
      checkpoint,
      history,
      cluster,
      clusterWorkers,
    }) + '\n',
  );
} finally {
  if (!values.keep) rmSync(dir, { recursive: true, force: true });
}

interface ClusterProcess {
  audiences: number;
  members: number;
  seconds: number;
  maxRssMb: number;
  longestStallMs: number;
  digests: Record<string, string>;
}

interface ClusterRun {
  seconds: number;
  processes: ClusterProcess[];
  digests: Record<string, string>;
  /** Redis memory the states took on each server, per member synced. */
  bytesPerMember: number[];
  /** The largest share of one audience's buckets (MEMORY USAGE) that one server holds. */
  largestShare: number;
  /** The least time to live seen on a process's lease (sampled every 50 ms). */
  minLeaseMs: number;
  /** The least time to live seen on a process's BullMQ job lock (sampled every 50 ms). */
  minLockMs: number;
}

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));
}

/** `parts` processes of `cluster.js` at once on the Redis `env` names; `servers`: its masters' URLs. */
async function clusterRun(
  csv: string,
  parts: number,
  env: NodeJS.ProcessEnv,
  servers: string[],
): Promise<ClusterRun> {
  const clients = servers.map((url) => new Redis(url));
  const used = () =>
    Promise.all(clients.map(async (c) => Number(/used_memory:(\d+)/.exec(await c.info('memory'))![1])));
  const before = await used();
  // The leases' and the jobs' locks' time to live, from this process (its event loop is free): the least
  // seen while held (a key on another master answers MOVED, taken as absent).
  let minLeaseMs = Infinity;
  let minLockMs = Infinity;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const c of clients)
        for (let p = 0; p < parts; p++) {
          const ttl = await c.pttl(`bench-cluster:lease:${p}`).catch(() => -2);
          if (ttl >= 0) minLeaseMs = Math.min(minLeaseMs, ttl);
          const lock = await c.pttl(`{bench-cluster}:part-${p}:run:lock`).catch(() => -2);
          if (lock >= 0) minLockMs = Math.min(minLockMs, lock);
        }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  const { REDIS_URL: _url, REDIS_CLUSTER_NODES: _nodes, ...rest } = process.env;
  const started = performance.now();
  const processes = await Promise.all(
    Array.from(
      { length: parts },
      (_, p) =>
        new Promise<ClusterProcess>((resolve, reject) => {
          const child = spawn(
            process.execPath,
            [...RUNTIME, path.join(here, 'cluster.js'), csv, String(p), String(parts)],
            { env: { ...rest, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
          );
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.on('exit', (code) =>
            code === 0
              ? resolve(JSON.parse(out.trim().split('\n').pop()!) as ClusterProcess)
              : reject(new Error(`cluster.js ${p} of ${parts} exited ${code}`)),
          );
        }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  sampling = false;
  await sampler;
  const after = await used();
  const members = processes.reduce((a, p) => a + p.members, 0);
  // Each audience's buckets by server: the tag before the shard's number names the audience.
  const byAudience = new Map<string, number[]>();
  for (const [i, c] of clients.entries())
    for (const key of await c.keys('bench-cluster:{*.*}:b:*')) {
      const tag = key.slice(key.indexOf('{') + 1, key.indexOf('.'));
      const bytes = byAudience.get(tag) ?? clients.map(() => 0);
      bytes[i]! += (await c.memory('USAGE', key)) ?? 0;
      byAudience.set(tag, bytes);
    }
  const largestShare = Math.max(
    ...[...byAudience.values()].map((bytes) => Math.max(...bytes) / bytes.reduce((a, b) => a + b, 0)),
  );
  for (const c of clients) {
    await c.flushall();
    c.disconnect();
  }
  return {
    seconds,
    processes,
    digests: Object.assign({}, ...processes.map((p) => p.digests)) as Record<string, string>,
    bytesPerMember: after.map((a, i) => (a - before[i]!) / members),
    largestShare,
    minLeaseMs,
    minLockMs,
  };
}
