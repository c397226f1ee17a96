import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';

/**
 * Local servers from Debian's packages for tests, benchmarks and the quick start: PostgreSQL and Redis on private ports and
 * private data directories, started here and stopped when done.
 */

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function postgresBin(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0)
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql (or set PG_BIN)',
    );
  return path.join(root, versions[0]!, 'bin');
}

export interface Service {
  url: string;
  stop(): Promise<void>;
}

/** initdb refuses root, so as root the server runs as the `postgres` user. */
export async function startPostgres(): Promise<Service> {
  const bin = postgresBin();
  const dir = mkdtempSync(path.join(tmpdir(), 'audience-sync-pg-'));
  const asRoot = userInfo().uid === 0;
  const run = (cmd: string, args: string[]) =>
    asRoot
      ? execFileSync('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args], { stdio: 'pipe' })
      : execFileSync(path.join(bin, cmd), args, { stdio: 'pipe' });
  if (asRoot) {
    const ids = execFileSync('id', ['-u', 'postgres']).toString().trim();
    const gids = execFileSync('id', ['-g', 'postgres']).toString().trim();
    chownSync(dir, Number(ids), Number(gids));
  }
  const data = path.join(dir, 'data');
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
  const port = await freePort();
  run('pg_ctl', [
    '-D',
    data,
    '-l',
    path.join(dir, 'server.log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
    'start',
  ]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A server's certificate and key (PEM files); the certificate is also the one CA its peers trust. */
export interface RedisTls {
  certFile: string;
  keyFile: string;
}

/** redis.conf directives for TLS on every link: clients (not asked for certificates), replicas, the bus. */
function tlsDirectives(tls: RedisTls): Record<string, string> {
  return {
    'tls-cert-file': tls.certFile,
    'tls-key-file': tls.keyFile,
    'tls-ca-cert-file': tls.certFile,
    'tls-auth-clients': 'no',
    'tls-replication': 'yes',
  };
}

/** `redis-cli`'s arguments to reach a server of these (TLS, trusting its certificate), or none. */
function cliTls(tls: RedisTls | undefined): string[] {
  return tls ? ['--tls', '--cacert', tls.certFile] : [];
}

/**
 * A private redis-server, configured as production should be (append-only file, `maxmemory-policy noeviction`)
 * unless `volatile`. With `persist`, its data stays in `dir` for the next start (and is synced every second).
 */
export async function startRedis(
  options: {
    dir?: string;
    persist?: boolean;
    port?: number;
    /** No persistence at all: what a Redis that forgets everything when it restarts looks like. */
    volatile?: boolean;
    /** More redis.conf directives, e.g. `{ requirepass: '…' }`, arguments as a list where there are several. */
    config?: Record<string, string | string[]>;
    /** TLS only on the port (`rediss://`), to clients, replicas and the cluster bus alike. */
    tls?: RedisTls;
  } = {},
): Promise<Service> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'audience-sync-redis-'));
  const directives: Record<string, string | string[]> = {
    ...(options.tls
      ? { port: '0', 'tls-port': String(port), ...tlsDirectives(options.tls) }
      : { port: String(port) }),
    bind: '127.0.0.1',
    dir,
    save: '',
    ...(options.volatile
      ? { appendonly: 'no' }
      : {
          appendonly: 'yes',
          appendfsync: options.persist ? 'everysec' : 'no',
          'maxmemory-policy': 'noeviction',
        }),
    ...options.config,
  };
  let child: ChildProcess;
  try {
    child = spawn(
      'redis-server',
      Object.entries(directives).flatMap(([k, v]) => [`--${k}`, ...(Array.isArray(v) ? v : [v])]),
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } catch {
    throw new Error('redis-server not found: apt-get install redis-server');
  }
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start within 10 s')), 10_000);
    let output = '';
    child.once('error', () => reject(new Error('redis-server not found: apt-get install redis-server')));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}) at start:\n${output.slice(-2000)}`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (chunk.toString().includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      if (!options.persist) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A local Redis Cluster (`startRedisCluster`): its nodes, for REDIS_CLUSTER_NODES, and each node's server. */
export interface ClusterService {
  /** `127.0.0.1:port,…`, masters first. */
  nodes: string;
  ports: number[];
  /** Each node's server by port (a test stops one to fail it over). */
  servers: Map<number, Service>;
  stop(): Promise<void>;
}

/**
 * A Redis Cluster of private redis-servers on loopback (`masters` of them, each with `replicas`), made
 * with `redis-cli --cluster create`, and ready when every node says `cluster_state:ok`, knows every other
 * and every replica is in step with its master. Nodes persist as production should (append-only file,
 * noeviction); a node's cluster bus is its port + 10000.
 */
export async function startRedisCluster(
  options: {
    masters?: number;
    replicas?: number;
    tls?: RedisTls;
    /**
     * Each node tells clients it is `<name>:<port>` (a host name, as behind NAT or in containers), not its
     * address: a client reaches it only through a NAT map (REDIS_CLUSTER_NAT).
     */
    announceHostname?: (port: number) => string;
  } = {},
): Promise<ClusterService> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  const ports = await clusterPorts(masters * (1 + replicas));
  const servers = new Map<number, Service>();
  const stop = async () => {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  };
  try {
    for (const port of ports)
      servers.set(
        port,
        await startRedis({
          port,
          config: {
            'cluster-enabled': 'yes',
            'cluster-config-file': 'nodes.conf',
            'cluster-node-timeout': '3000',
            'cluster-announce-ip': '127.0.0.1',
            ...(options.tls ? { 'tls-cluster': 'yes' } : {}),
            ...(options.announceHostname
              ? {
                  'cluster-announce-hostname': options.announceHostname(port),
                  'cluster-preferred-endpoint-type': 'hostname',
                }
              : {}),
          },
          ...(options.tls ? { tls: options.tls } : {}),
        }),
      );
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    const tls = cliTls(options.tls);
    execFileSync(
      'redis-cli',
      [...tls, '--cluster', 'create', ...nodes, '--cluster-replicas', String(replicas), '--cluster-yes'],
      { stdio: 'pipe', timeout: 120_000 },
    );
    // Joined once every node sees every slot served and every replica is attached to its master and in step
    // with it (redis-cli waits for the join only; a replica that never synced could not take over).
    const ask = (port: number, ...args: string[]) =>
      execFileSync('redis-cli', [...tls, '-p', String(port), ...args], { encoding: 'utf8' });
    const deadline = Date.now() + 120_000;
    const ready = (port: number) => {
      const info = ask(port, 'cluster', 'info');
      if (!/cluster_state:ok/.test(info) || !new RegExp(`cluster_known_nodes:${ports.length}\\b`).test(info))
        return false;
      const attached = ask(port, 'cluster', 'nodes').match(/ (myself,)?slave /g)?.length ?? 0;
      if (attached !== masters * replicas) return false;
      const role = ask(port, 'info', 'replication');
      return !/role:slave/.test(role) || /master_link_status:up/.test(role);
    };
    for (const port of ports)
      while (!ready(port)) {
        if (Date.now() > deadline)
          throw new Error(
            `Redis Cluster node ${port} did not become ready:\n${ask(port, 'cluster', 'nodes')}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    return {
      nodes: nodes.map((n) => (options.tls ? `rediss://${n}` : n)).join(','),
      ports,
      servers,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Free loopback ports whose cluster bus port (+10000) is free too. */
async function clusterPorts(count: number): Promise<number[]> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
  const ports: number[] = [];
  for (let tries = 0; ports.length < count; tries++) {
    if (tries > 1000) throw new Error('no free ports for a Redis Cluster between 20000 and 30000');
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (!ports.includes(port) && (await free(port)) && (await free(port + 10_000))) ports.push(port);
  }
  return ports;
}

/** A local master with a replica, watched by a Sentinel (`startRedisSentinel`). */
export interface SentinelService {
  /** The Sentinel's `host:port`, for REDIS_SENTINELS. */
  sentinels: string;
  /** The name it knows the master by (REDIS_URL `redis://<name>`). */
  name: string;
  /** The master's and the replica's servers, by port (a test kills the master to fail it over). */
  servers: Map<number, Service>;
  /** The port of the master the Sentinel names now. */
  master(): number;
  stop(): Promise<void>;
}

/**
 * A master and one replica (persisting as production should), and one Sentinel watching them (quorum 1,
 * the master taken as down after a second): ready once the replica is in step and the Sentinel knows it.
 */
export async function startRedisSentinel(
  name = 'mymaster',
  options: { tls?: RedisTls } = {},
): Promise<SentinelService> {
  const servers = new Map<number, Service>();
  let sentinel: ChildProcess | undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'audience-sync-sentinel-'));
  const stop = async () => {
    if (sentinel && sentinel.exitCode === null && sentinel.signalCode === null) {
      const exited = new Promise((resolve) => sentinel!.once('exit', resolve));
      sentinel.kill('SIGTERM');
      await exited;
    }
    await Promise.all([...servers.values()].map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  const ask = (port: number, ...args: string[]) =>
    execFileSync('redis-cli', [...cliTls(options.tls), '-p', String(port), ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const tls = options.tls ? { tls: options.tls } : {};
  const until = async (what: string, ready: () => boolean) => {
    for (const deadline = Date.now() + 60_000; !ready();) {
      if (Date.now() > deadline) throw new Error(`Redis Sentinel setup: ${what} within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  try {
    const master = await freePort();
    servers.set(master, await startRedis({ port: master, ...tls }));
    const replica = await freePort();
    servers.set(
      replica,
      await startRedis({ port: replica, config: { replicaof: ['127.0.0.1', String(master)] }, ...tls }),
    );
    await until('no replica in step', () =>
      /master_link_status:up/.test(ask(replica, 'info', 'replication')),
    );
    const port = await freePort();
    // A Sentinel rewrites its config file: one of its own.
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        ...(options.tls
          ? [
              'port 0',
              `tls-port ${port}`,
              ...Object.entries(tlsDirectives(options.tls)).map((d) => d.join(' ')),
            ]
          : [`port ${port}`]),
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master} 1`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 10000`,
      ].join('\n') + '\n',
    );
    sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    await until('the Sentinel did not answer', () => {
      try {
        return ask(port, 'ping').trim() === 'PONG';
      } catch {
        return false;
      }
    });
    await until('the Sentinel did not find the replica', () =>
      ask(port, 'sentinel', 'replicas', name).includes(String(replica)),
    );
    return {
      sentinels: `${options.tls ? 'rediss://' : ''}127.0.0.1:${port}`,
      name,
      servers,
      master: () => Number(ask(port, 'sentinel', 'get-master-addr-by-name', name).trim().split('\n')[1]),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
