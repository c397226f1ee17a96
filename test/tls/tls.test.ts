import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { localhostCertificate } from '../../connectors/google-ads/grpc-fake/cert.js';
import {
  startRedis,
  startRedisCluster,
  startRedisSentinel,
  type RedisTls,
  type Service,
} from '../../app/local/services.js';
import { BIN, killAll, run } from '../jobs/procs.js';
import { expectedAudiences, fileAudiences, makeShop } from '../sync/harness.js';

/**
 * Redis over TLS only (`rediss://`), as managed services offer it: one server, a Cluster (its bus and
 * replicas on TLS too) and a master watched by a Sentinel (the Sentinel reached over TLS, and reaching the
 * master over TLS). The servers' certificate is trusted through Node's NODE_EXTRA_CA_CERTS, as an operator
 * with a private CA would; without it, a command fails naming the certificate and the variable.
 */
let certificate: ReturnType<typeof localhostCertificate>;
let tls: RedisTls;
const stops: (() => Promise<void>)[] = [];
beforeAll(() => {
  certificate = localhostCertificate();
  tls = { certFile: certificate.certFile, keyFile: certificate.keyFile };
});
afterAll(async () => {
  killAll();
  await Promise.all(stops.map((stop) => stop()));
  rmSync(certificate.dir, { recursive: true, force: true });
});

/** The environment of a command against `redis` alone (none of the suite's own Redis). */
function envOf(redis: Record<string, string>, trusted = true): NodeJS.ProcessEnv {
  const {
    REDIS_URL: _url,
    REDIS_CLUSTER_NODES: _nodes,
    REDIS_SENTINELS: _sentinels,
    NODE_EXTRA_CA_CERTS: _ca,
    ...rest
  } = process.env;
  return {
    ...rest,
    CI: 'true',
    LOG_LEVEL: 'warn',
    ...redis,
    ...(trusted ? { NODE_EXTRA_CA_CERTS: certificate.certFile } : {}),
  };
}

function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env, encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A shop synced, then its status read, over `redis`: the audiences are exact. */
async function syncsOver(redis: Record<string, string>, seed: number) {
  const shop = await makeShop({ seed, sync: 'max_removal_share: 1' });
  const env = envOf(redis);
  const synced = cli(['sync', '--json'], shop.dir, env);
  expect([0, 3], synced.stderr).toContain(synced.code);
  expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  const status = cli(['status', '--json'], shop.dir, env);
  expect(status.code, status.stderr).toBe(0);
  return { shop, env };
}

describe('Redis over TLS', () => {
  it('one server (rediss://): sync and status; an untrusted certificate is named, with its fix', async () => {
    const server: Service = await startRedis({ tls });
    stops.push(() => server.stop());
    expect(server.url).toMatch(/^rediss:/);
    const { shop } = await syncsOver({ REDIS_URL: server.url }, 41);
    const untrusted = cli(['status'], shop.dir, envOf({ REDIS_URL: server.url }, false));
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate/i);
    expect(untrusted.stderr).toMatch(/does not trust .*NODE_EXTRA_CA_CERTS=/);
    // TLS asked of a server without it.
    const plain = inject('redisUrl').replace(/^redis:/, 'rediss:');
    const noTls = cli(['status'], shop.dir, envOf({ REDIS_URL: plain }));
    expect(noTls.code).not.toBe(0);
    expect(noTls.stderr).toMatch(/if that Redis does not take TLS, write redis:\/\/ instead of rediss:\/\//);
  });

  it('a Cluster whose nodes speak TLS only: sync, status, and a worker’s resync', async () => {
    const cluster = await startRedisCluster({ masters: 3, tls });
    stops.push(() => cluster.stop());
    expect(cluster.nodes).toMatch(/^rediss:\/\//);
    const { shop, env } = await syncsOver({ REDIS_CLUSTER_NODES: cluster.nodes }, 42);
    const worker = run(['worker'], { cwd: shop.dir, env: { ...env, LOG_LEVEL: 'info' } });
    await worker.waitFor(/"msg":"worker started"/);
    shop.editCustomers((cells, header, r) => {
      if (r % 4 === 1) cells[header.indexOf('opted_out')] = 'true';
    });
    const resync = cli(['resync', '--destination', 'local', '--wait'], shop.dir, env);
    expect(resync.code, `${resync.stderr}\nworker: ${worker.stderr()}`).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });

  it('a master watched by a Sentinel, both over TLS: sync and status', async () => {
    const sentinel = await startRedisSentinel('secure', { tls });
    stops.push(() => sentinel.stop());
    await syncsOver({ REDIS_SENTINELS: sentinel.sentinels, REDIS_URL: `rediss://${sentinel.name}` }, 43);
  });
});
