import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis as IORedis, type Redis } from 'ioredis';
import { startRedisCluster } from '../../app/local/services.js';
import { durabilityProblems } from '../../jobs/redis-checks.js';
import { decodeRecords, Status } from '../../src/record/records.js';
import { StateStore } from '../../src/record/store.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, makeSetup, TOKENS } from '../api/harness.js';
import { metaShop, onPlatform, platform, stopAll } from '../jobs/meta-platform.js';
import { BIN, killAll, run } from '../jobs/procs.js';
import { queuePrefix } from '../../jobs/queues.js';
import { expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';

/**
 * The commands on a real Redis Cluster (three masters on loopback, REDIS_CLUSTER_NODES): sync, plan,
 * status, schedules, a worker's resyncs and the HTTP API give what they give on one Redis, and a sync
 * after a failover is exact. A command or transaction
 * over keys of different hash slots fails there (CROSSSLOT), so any such command on these paths fails
 * these tests.
 */
const nodes = inject('redisClusterNodes');
const { REDIS_URL: _single, ...rest } = process.env;
const clusterEnv = { ...rest, CI: 'true', REDIS_CLUSTER_NODES: nodes, LOG_LEVEL: 'warn' };
const singleEnv = { ...rest, CI: 'true', REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'warn' };
let cluster: Cluster;
beforeAll(async () => {
  cluster = await readyCluster(nodes.split(',').map((n) => Number(n.split(':')[1])));
});
afterAll(() => {
  killAll();
  stopAll();
  cluster.disconnect();
});

function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv = clusterEnv) {
  // A hang guard (a command waiting on a Cluster that never answers fails the test instead of stalling it).
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env, encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Results = { results: { audience: string; added: number; removed: number; error?: string }[] };

/**
 * Resolves once the Cluster has taken the master on `port` as failed and serves every slot again (until a
 * replica has taken its slots, it answers CLUSTERDOWN).
 */
async function failedOver(ports: readonly number[], port: number): Promise<void> {
  // Every survivor's view: the dead node flagged as failed, the Cluster ok, and no slot's master the dead
  // node (a client asks any node where the slots are; one that has not heard yet sends them to the dead one).
  const settled = async (p: number) => {
    const node = new IORedis({ port: p, lazyConnect: true });
    try {
      await node.connect();
      const info = (await node.cluster('INFO')) as string;
      const nodes = (await node.cluster('NODES')) as string;
      const slots = await node.cluster('SLOTS');
      return (
        /cluster_state:ok/.test(info) &&
        new RegExp(`:${port}@\\d+ \\S*fail`).test(nodes) &&
        slots.every(([, , master]) => master?.[1] !== port)
      );
    } finally {
      node.disconnect();
    }
  };
  const survivors = ports.filter((p) => p !== port);
  for (const deadline = Date.now() + 120_000; ;) {
    if (Date.now() > deadline) throw new Error(`no failover of the master on port ${port} in 120 s`);
    if ((await Promise.all(survivors.map(settled))).every(Boolean)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Kills a master as a crashed machine goes (SIGKILL), and resolves once its replica serves its slots. */
async function killMaster(master: Redis, ports: readonly number[]): Promise<void> {
  const pid = Number(/process_id:(\d+)/.exec(await master.info('server'))![1]);
  process.kill(pid, 'SIGKILL');
  await failedOver(ports, master.options.port!);
}

/**
 * A client of a test's Cluster once it has read where the slots are: before that, its nodes are the
 * startup nodes (replicas among them), whose connections it closes when it learns the slots, failing any
 * command sent to them meanwhile (`Connection is closed`).
 */
async function readyCluster(ports: readonly number[]): Promise<Cluster> {
  const client = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
  if (client.status !== 'ready') await once(client, 'ready');
  return client;
}

/** The keys matching a pattern on each of a Cluster's masters, by master (a test's Cluster holds few keys). */
function keysOnMasters(client: Cluster, pattern: string): Promise<string[][]> {
  return Promise.all(client.nodes('master').map((node) => node.keys(pattern)));
}

describe('on a Redis Cluster', () => {
  it('syncs, plans and tells the status as on one Redis, its audiences spread over the masters', async () => {
    const onCluster = await makeShop({ seed: 21 });
    const onOne = await makeShop({ seed: 21 });
    const first = cli(['sync', '--json'], onCluster.dir);
    expect([0, 3], first.stderr).toContain(first.code);
    const results = (JSON.parse(first.stdout) as Results).results;
    expect(results.filter((r) => r.error)).toEqual([]);
    expect(results.reduce((n, r) => n + r.added, 0)).toBeGreaterThan(0);
    const single = cli(['sync', '--json'], onOne.dir, singleEnv);
    expect([0, 3], single.stderr).toContain(single.code);
    expect(fileAudiences(onCluster.out)).toEqual(fileAudiences(onOne.out));
    expect(fileAudiences(onCluster.out)).toEqual(await expectedAudiences(onCluster.config));

    // Nothing left to do, and nothing the state lost between runs.
    const again = cli(['sync', '--json'], onCluster.dir);
    expect([0, 3], again.stderr).toContain(again.code);
    for (const r of (JSON.parse(again.stdout) as Results).results) {
      expect(r.error, r.audience).toBeUndefined();
      expect([r.audience, r.added, r.removed]).toEqual([r.audience, 0, 0]);
    }
    const plan = cli(['plan'], onCluster.dir);
    expect(plan.code, plan.stderr).toBe(0);
    const status = cli(['status'], onCluster.dir);
    expect(status.code, status.stderr).toBe(0);
    for (const r of results) expect(status.stdout).toContain(r.audience);

    // A later analysis date: a new snapshot with its per-customer segments, and the earlier generation's found
    // (SCAN on every master) and deleted.
    const generations = async () =>
      new Set(
        (await keysOnMasters(cluster, `{${onCluster.prefix}}:snapshots:*:customers:*`))
          .flat()
          .map((k) => k.split(':').at(-2)),
      );
    const before = await generations();
    expect(before.size).toBe(1);
    onCluster.write('2026-02-01');
    const later = cli(['sync', '--json'], onCluster.dir);
    expect([0, 3], later.stderr).toContain(later.code);
    expect(fileAudiences(onCluster.out)).toEqual(await expectedAudiences(onCluster.config));
    const after = await generations();
    expect(after.size).toBe(1);
    expect([...after]).not.toEqual([...before]);

    // Each audience's records are spread over the masters (its shards have hash tags of their own): every
    // master holds some of each audience of 30 members or more (by chance, one would hold none of 30 about
    // once in 200,000 audiences).
    const masters = cluster.nodes('master');
    const byAudience = new Map<string, number[]>();
    for (const [m, node] of masters.entries())
      for (const key of await node.keys(`${onCluster.prefix}:{*.*}:b:*`)) {
        const tag = key.slice(key.indexOf('{') + 1, key.indexOf('.'));
        const members = byAudience.get(tag) ?? masters.map(() => 0);
        for (const packed of Object.values(await node.hgetallBuffer(key)))
          members[m]! += decodeRecords(packed).length;
        byAudience.set(tag, members);
      }
    expect(byAudience.size).toBeGreaterThanOrEqual(results.filter((r) => r.added > 0).length);
    const large = [...byAudience.values()].filter((members) => members.reduce((a, b) => a + b, 0) >= 30);
    expect(large.length).toBeGreaterThan(0);
    for (const members of large)
      expect(members.filter((n) => n > 0).length, JSON.stringify(members)).toBe(masters.length);
  });

  it('runs a worker: schedules, a resync and a full resync, with exact audiences', async () => {
    const shop = await makeShop({ seed: 22 });
    const schedules = cli(['schedules'], shop.dir);
    expect(schedules.code, schedules.stderr).toBe(0);
    const worker = run(['worker'], { cwd: shop.dir, env: { ...clusterEnv, LOG_LEVEL: 'info' } });
    await worker.waitFor(/"msg":"worker started"/);
    for (const args of [['resync'], ['resync', '--full']]) {
      const r = cli([...args, '--destination', 'local', '--wait'], shop.dir);
      expect(r.code, `${args.join(' ')}: ${r.stderr}\nworker: ${worker.stderr()}`).toBe(0);
      expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    }
    // The kernel's account of the process's peak memory, read before it ends.
    const status = readFileSync(`/proc/${worker.child.pid}/status`, 'utf8');
    const hwmMb = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(worker.stderr()).not.toMatch(/CROSSSLOT|same slot/);
    // Each run says how long the event loop was held up (a small shop: well under a second).
    const stalls = [...worker.stderr().matchAll(/"longestStallMs":(\d+)/g)].map((m) => Number(m[1]));
    expect(stalls.length).toBeGreaterThanOrEqual(2);
    // And the process's peak memory so far, as the kernel counts it: growing, and never above its count.
    const peaks = [...worker.stderr().matchAll(/"peakRssMb":(\d+)/g)].map((m) => Number(m[1]));
    expect(peaks).toHaveLength(stalls.length);
    expect(peaks[0]).toBeGreaterThan(30);
    expect(peaks).toEqual([...peaks].sort((a, b) => a - b));
    expect(peaks.at(-1)).toBeLessThanOrEqual(Math.round(hwmMb));
  });

  it("is named by the config's redis: block alone: sync, status and a worker's resync", async () => {
    const shop = await makeShop({ seed: 23, sync: 'max_removal_share: 1' });
    const list = nodes
      .split(',')
      .map((n) => JSON.stringify(n))
      .join(', ');
    appendFileSync(shop.config, `\nredis:\n  cluster_nodes: [${list}]\n`);
    const { REDIS_CLUSTER_NODES: _nodes, ...noRedis } = clusterEnv;
    const synced = cli(['sync', '--json'], shop.dir, noRedis);
    expect([0, 3], synced.stderr).toContain(synced.code);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    expect(await cluster.exists(`${shop.prefix}:dest:local:audiences`)).toBe(1);
    const status = cli(['status', '--json'], shop.dir, noRedis);
    expect(status.code, status.stderr).toBe(0);
    const worker = run(['worker'], { cwd: shop.dir, env: { ...noRedis, LOG_LEVEL: 'info' } });
    await worker.waitFor(/"msg":"worker started"/);
    shop.editCustomers((cells, header, r) => {
      if (r % 3 === 1) cells[header.indexOf('opted_out')] = 'true';
    });
    const resync = cli(['resync', '--destination', 'local', '--wait'], shop.dir, noRedis);
    expect(resync.code, `${resync.stderr}\nworker: ${worker.stderr()}`).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });

  it('reaches nodes that announce host names it cannot resolve through REDIS_CLUSTER_NAT (NAT, containers)', async () => {
    const own = await startRedisCluster({
      masters: 3,
      announceHostname: (port) => `node-${port}.nat.invalid`,
    });
    try {
      // What the nodes tell clients: names only a NAT map turns into addresses.
      const slots = execFileSync('redis-cli', ['-p', String(own.ports[0]), 'cluster', 'slots'], {
        encoding: 'utf8',
      });
      expect(slots).toMatch(/node-\d+\.nat\.invalid/);
      const nat = own.ports.map((p) => `node-${p}.nat.invalid:${p}=127.0.0.1:${p}`).join(',');
      const env = { ...clusterEnv, REDIS_CLUSTER_NODES: own.nodes, REDIS_CLUSTER_NAT: nat };
      const shop = await makeShop({ seed: 24 });
      const synced = cli(['sync', '--json'], shop.dir, env);
      expect([0, 3], synced.stderr).toContain(synced.code);
      expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
      const again = cli(['sync', '--json'], shop.dir, env);
      for (const r of (JSON.parse(again.stdout) as Results).results)
        expect([r.audience, r.added, r.removed]).toEqual([r.audience, 0, 0]);
      // Without the map, the names lead nowhere, and the command says so and what to set.
      const lost = cli(['status'], shop.dir, { ...env, REDIS_CLUSTER_NAT: '' });
      expect(lost.code).not.toBe(0);
      expect(lost.stderr).toMatch(
        /none of the Cluster's masters answers at the addresses the Cluster announces \(node-\d+\.nat\.invalid:\d+/,
      );
      expect(lost.stderr).toMatch(/REDIS_CLUSTER_NAT=announced-host:port=reachable-host:port/);
    } finally {
      await own.stop();
    }
  });

  it('serves the HTTP API: audiences, runs, schedules, segments and a resync request', async () => {
    const setup = await makeSetup();
    const synced = cli(['sync', '--json'], setup.dir);
    expect([0, 3], synced.stderr).toContain(synced.code);
    const server = run(['serve', '--port', '0'], {
      cwd: setup.dir,
      env: { ...clusterEnv, LOG_LEVEL: 'info' },
    });
    const ready = /HTTP API on (http:\/\/[^/]+)\/api\/v1/;
    await server.waitFor(ready);
    const client = new Client(ready.exec(server.stderr())![1]!);
    for (const path of ['/api/v1/audiences', '/api/v1/runs', '/api/v1/schedules', '/api/v1/segments']) {
      const r = await client.call('GET', path, { token: TOKENS.viewer });
      expect(r.status, `${path}: ${r.text}`).toBe(200);
    }
    const audiences = await client.call('GET', '/api/v1/audiences', { token: TOKENS.viewer });
    expect(audiences.text).toContain('RFM: Champions');
    const resync = await client.call('POST', '/api/v1/destinations/local/resync', {
      token: TOKENS.operator,
      body: {},
    });
    expect(resync.status, resync.text).toBe(202);
    const job = (resync.json as { job: { url: string } }).job;
    const followed = await client.call('GET', job.url, { token: TOKENS.viewer });
    expect(followed.status, followed.text).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect(server.stderr()).not.toMatch(/CROSSSLOT|same slot/);
  });

  it("spreads one audience's state over the masters: none holds more than 40 % of it, before or after a rewrite", async () => {
    const store = new StateStore(cluster, `spread-${process.pid}`);
    const state = store.audience('dest', 'Champions');
    const key = (n: number) => createHash('sha256').update(`member ${n}`).digest().subarray(0, 8);
    const records = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => ({
        key: key(from + i),
        status: Status.confirmed,
        upload: 0,
        slots: [Buffer.alloc(32, (from + i) % 251)],
      }));
    const shares = async () => {
      const members = await Promise.all(
        cluster.nodes('master').map(async (node) => {
          let n = 0;
          for (const k of await node.keys(`${store.prefix}:{*.*}:b:*`))
            for (const packed of Object.values(await node.hgetallBuffer(k)))
              n += decodeRecords(packed).length;
          return n;
        }),
      );
      const total = members.reduce((a, b) => a + b, 0);
      return { total, largest: Math.max(...members) / total };
    };
    for (let i = 0; i < 20_000; i += 5000) await state.append(records(i, i + 5000));
    await state.checkpoint();
    expect(await shares()).toMatchObject({ total: 20_000 });
    expect((await shares()).largest).toBeLessThanOrEqual(0.4);
    // Four times as many members: the state is rewritten in more buckets (a new generation) and stays spread.
    for (let i = 20_000; i < 80_000; i += 10_000) await state.append(records(i, i + 10_000));
    await state.checkpoint();
    const after = await shares();
    expect(after.total).toBe(80_000);
    expect(after.largest).toBeLessThanOrEqual(0.4);
    expect(await state.counts()).toEqual({ confirmed: 80_000, addPending: 0, removePending: 0, rejected: 0 });
    expect(await state.lost()).toBe(false);
    let read = 0;
    let last = '';
    for await (const some of state.scan())
      for (const r of some) {
        expect(r.key.toString('hex') > last).toBe(true);
        last = r.key.toString('hex');
        read++;
      }
    expect(read).toBe(80_000);
    await state.startReplace('test');
    expect((await shares()).total).toBe(0);
  });

  it('asks every node whether it keeps its data, and names the nodes that may lose it', async () => {
    await cluster.exists('probe'); // connected: the client knows the Cluster's nodes
    expect(await durabilityProblems(cluster)).toEqual([]);
    // One master that may evict (harmless here: no maxmemory is set), as a node configured apart would.
    const node = cluster.nodes('master')[1]!;
    await node.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      expect(await durabilityProblems(cluster)).toEqual([
        `Redis Cluster node 127.0.0.1:${node.options.port}: maxmemory-policy is allkeys-lru, so it may evict the sync state when memory runs short. Set "maxmemory-policy noeviction" in redis.conf`,
      ]);
    } finally {
      await node.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });

  it('fails over: a master killed (SIGKILL), its replica promoted, the next sync ends with every audience exact', async () => {
    const own = await startRedisCluster({ masters: 3, replicas: 1 });
    const env = { ...clusterEnv, REDIS_CLUSTER_NODES: own.nodes };
    const client = await readyCluster(own.ports);
    try {
      const shop = await makeShop({ seed: 23, sync: 'max_removal_share: 1' });
      const first = cli(['sync', '--json'], shop.dir, env);
      expect([0, 3], first.stderr).toContain(first.code);
      // The master holding the most audience states goes, as a crashed machine does.
      const masters = client.nodes('master');
      const counts = (await keysOnMasters(client, `${shop.prefix}:*`)).map((keys) => keys.length);
      const victim = masters[counts.indexOf(Math.max(...counts))]!;
      expect(Math.max(...counts)).toBeGreaterThan(0);
      await killMaster(victim, own.ports);
      shop.editCustomers((cells, header, r) => {
        if (r % 5 === 1) cells[header.indexOf('email')] = `moved-${r}@example.org`;
        else if (r % 5 === 2) cells[header.indexOf('opted_out')] = 'true';
      });
      const after = cli(['sync', '--json'], shop.dir, env);
      expect([0, 3], after.stderr).toContain(after.code);
      expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
      const again = cli(['sync', '--json'], shop.dir, env);
      for (const r of (JSON.parse(again.stdout) as Results).results)
        expect([r.audience, r.added, r.removed, r.error]).toEqual([r.audience, 0, 0, undefined]);
    } finally {
      client.disconnect();
      await own.stop();
    }
  });

  it('fails over during a run: the master of the queue killed while a worker pushes to Meta, the audiences exact after', async () => {
    const own = await startRedisCluster({ masters: 3, replicas: 1 });
    const client = await readyCluster(own.ports);
    const { origin, fake, hold } = await platform();
    try {
      const {
        shop,
        env,
        cli: send,
        expected,
      } = await metaShop(origin, 1, { REDIS_CLUSTER_NODES: own.nodes });
      const worker = run(['worker'], { cwd: shop.dir, env: { ...env, LOG_LEVEL: 'info' } });
      await worker.waitFor(/"msg":"worker started"/);
      // The run's fifth upload held: the run is under way, its job locked and some of its state written.
      let uploads = 0;
      const gate = hold((method, url) => method === 'POST' && url.includes('/users') && ++uploads === 5);
      const during = send(['resync', '--destination', 'meta', '--wait']);
      await gate.reached;
      // The master serving the queue (its keys share the hash tag of the prefix) goes while the run waits.
      const slot = calculateSlot(queuePrefix(shop.prefix));
      const shards = await client.cluster('SLOTS');
      const port = shards.find(([from, to]) => from <= slot && slot <= to)![2]![1];
      await killMaster(
        client.nodes('master').find((m) => m.options.port === port)!,
        own.ports,
      );
      gate.release();
      // That run may end either way (its job retried, or failed): it must end, and lose nothing.
      const first = await Promise.race([
        during,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`the resync did not end; worker:\n${worker.stderr()}`)), 240_000),
        ),
      ]);
      // Done (its job lost its 2 s lock in the failover and ran again): exact already.
      if (first.code === 0) expect(onPlatform(fake)).toEqual(await expected());
      const after = await send(['resync', '--destination', 'meta', '--wait']);
      expect(after.code, `${first.out}\n${after.out}\nworker:\n${worker.stderr()}`).toBe(0);
      expect(onPlatform(fake)).toEqual(await expected());
      // The worker lived through it.
      expect(await worker.exitWithin(0)).toBe('running');
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      client.disconnect();
      await own.stop();
    }
  });
});
