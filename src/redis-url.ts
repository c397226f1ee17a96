import { ConfigError } from './errors.js';

/**
 * REDIS_URL, read the same way by every process (workers, CLI commands, the quick start). Its errors
 * name the variable and the form expected, and never show the password.
 */
export const REDIS_URL_FORM = 'redis://[user:password@]host:port[/db] (or rediss://… for TLS)';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Where to connect, as ioredis takes it. */
export interface RedisTarget {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, never>;
}

/** Whether an environment variable holds something (unset and blank are the same). */
const given = (value: string | undefined): value is string => value !== undefined && value.trim() !== '';

/** Parses REDIS_URL (default `redis://127.0.0.1:6379`); a ConfigError (exit 2) names what is wrong. */
export function redisTarget(value: string | undefined = process.env.REDIS_URL): RedisTarget {
  const text = given(value) ? value.trim() : DEFAULT_REDIS_URL;
  return parseRedisUrl(text, 'REDIS_URL', `set REDIS_URL to ${REDIS_URL_FORM}, e.g. redis://127.0.0.1:6379`);
}

export const REDIS_SENTINELS_FORM =
  'host:port,host:port,… (the Sentinels; redis://user:password@host:port or rediss://… where they need a password or TLS)';

/** A master that Redis Sentinels watch, as ioredis takes it: the Sentinels, the master's name and its login. */
export interface SentinelTarget {
  sentinels: { host: string; port: number }[];
  /** The master group's name (`sentinel monitor <name> …`). */
  name: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  sentinelTLS?: Record<string, never>;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, never>;
  enableTLSForSentinelMode?: boolean;
}

/**
 * Parses REDIS_SENTINELS, with REDIS_URL naming the master: `redis://[user:password@]<master name>[/db]` (its
 * host is the name the Sentinels know the master by, as Sidekiq and redis-rb read it); undefined when
 * REDIS_SENTINELS is not set. A ConfigError (exit 2) names what is wrong.
 */
export function redisSentinel(
  value: string | undefined = process.env.REDIS_SENTINELS,
  url: string | undefined = process.env.REDIS_URL,
  cluster: string | undefined = process.env.REDIS_CLUSTER_NODES,
): SentinelTarget | undefined {
  if (!given(value)) return undefined;
  const fix = `set REDIS_SENTINELS to ${REDIS_SENTINELS_FORM}, e.g. 10.0.0.1:26379,10.0.0.2:26379`;
  if (given(cluster)) throw sentinelsAndCluster();
  const master = `set REDIS_URL to redis://[user:password@]<master name>[/db], the name the Sentinels monitor the master by (sentinel monitor <name> …), e.g. redis://mymaster`;
  if (!given(url))
    throw new ConfigError('REDIS_SENTINELS is set but REDIS_URL does not name the master', master);
  const target = parseRedisUrl(url.trim(), 'REDIS_URL', master);
  if (/:\d+(\/|$)/.test(url.trim().replace(/^.*@/, '')))
    throw new ConfigError(
      `REDIS_URL '${masked(url.trim())}' names a port: with REDIS_SENTINELS set, its host is the master's name and the Sentinels say where it is`,
      master,
    );
  const sentinels = list(value).map((entry): RedisTarget =>
    entry.includes('://')
      ? parseRedisUrl(entry, 'REDIS_SENTINELS', fix)
      : hostPort(entry, 'REDIS_SENTINELS', fix),
  );
  if (sentinels.length === 0) throw new ConfigError('REDIS_SENTINELS is set but names no Sentinel', fix);
  const auth = sameAuth(sentinels, 'REDIS_SENTINELS', 'Sentinel');
  return {
    sentinels: sentinels.map(({ host, port }) => ({ host, port })),
    name: target.host,
    ...(auth.username !== undefined ? { sentinelUsername: auth.username } : {}),
    ...(auth.password !== undefined ? { sentinelPassword: auth.password } : {}),
    ...(auth.tls ? { sentinelTLS: {} } : {}),
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.db !== undefined ? { db: target.db } : {}),
    ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
  };
}

const sentinelsAndCluster = () =>
  new ConfigError(
    'both REDIS_SENTINELS and REDIS_CLUSTER_NODES are set: audience-sync uses a master watched by Sentinels or a Redis Cluster, not both',
    'unset the one you do not use',
  );

/** A comma-separated list's entries, trimmed, blanks left out. */
function list(text: string): string[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

/**
 * The one login and TLS setting of a list of servers that share them (a Cluster's nodes, the Sentinels),
 * written on one of them or the same on each; a ConfigError where they differ.
 */
function sameAuth(
  servers: { username?: string; password?: string; tls?: Record<string, never> }[],
  variable: string,
  what: string,
): { username?: string; password?: string; tls: boolean } {
  const withAuth = servers.filter((n) => n.username !== undefined || n.password !== undefined);
  const auth = withAuth[0];
  if (withAuth.some((n) => n.username !== auth?.username || n.password !== auth?.password))
    throw new ConfigError(
      `${variable} gives different user names or passwords for different nodes: every ${what} takes the same`,
      'write the user and password on one node (or the same on each)',
    );
  const tls = servers.filter((n) => n.tls !== undefined).length;
  if (tls !== 0 && tls !== servers.length)
    throw new ConfigError(
      `${variable} mixes rediss:// (TLS) and plain nodes: every ${what} is reached with TLS or none is`,
      'write every node as rediss://host:port, or none',
    );
  return {
    ...(auth?.username !== undefined ? { username: auth.username } : {}),
    ...(auth?.password !== undefined ? { password: auth.password } : {}),
    tls: tls > 0,
  };
}

/** One Redis URL, read from `variable`; its errors name the variable, the form and the fix, never the password. */
function parseRedisUrl(text: string, variable: string, fix: string): RedisTarget {
  const bad = (why: string) =>
    new ConfigError(`${variable} '${masked(text)}' is not a Redis URL: ${why}`, fix);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('it does not parse as a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw bad(`it starts with '${url.protocol}' where redis:// or rediss:// is expected`);
  if (!url.hostname) throw bad('it has no host');
  if (url.search || url.hash) throw bad('options after ? or # are not read');
  const path = url.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d+$/.test(path)) throw bad(`'/${path}' is not a database number`);
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    throw bad('its user name or password has a broken %-escape');
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(url.port || 6379),
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(path !== '' ? { db: Number(path) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export const REDIS_CLUSTER_FORM =
  'host:port,host:port,… (some or all of the masters; redis://user:password@host:port or rediss://… where the nodes need a password or TLS)';

/** Where a Redis Cluster is, as ioredis's Cluster takes it: some nodes, and what every node needs. */
export interface ClusterTarget {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  tls?: Record<string, never>;
  /** Addresses the nodes announce, mapped to those this process reaches them at (REDIS_CLUSTER_NAT). */
  natMap?: Record<string, { host: string; port: number }>;
}

/**
 * Parses REDIS_CLUSTER_NODES (and REDIS_CLUSTER_NAT, `announced-host:port=reachable-host:port,…`); undefined
 * when it is not set: the setup uses one Redis (REDIS_URL). A ConfigError (exit 2) names what is wrong.
 */
export function redisCluster(
  value: string | undefined = process.env.REDIS_CLUSTER_NODES,
  nat: string | undefined = process.env.REDIS_CLUSTER_NAT,
  single: string | undefined = process.env.REDIS_URL,
  sentinels: string | undefined = process.env.REDIS_SENTINELS,
): ClusterTarget | undefined {
  if (!given(value)) return undefined;
  if (given(sentinels)) throw sentinelsAndCluster();
  const fix = `set REDIS_CLUSTER_NODES to ${REDIS_CLUSTER_FORM}, e.g. 10.0.0.1:6379,10.0.0.2:6379`;
  if (given(single))
    throw new ConfigError(
      'both REDIS_URL and REDIS_CLUSTER_NODES are set: audience-sync uses either one Redis or one Redis Cluster',
      'unset REDIS_URL to use the Cluster, or REDIS_CLUSTER_NODES to use the single Redis',
    );
  const nodes = list(value).map((entry) => {
    const target: RedisTarget = entry.includes('://')
      ? parseRedisUrl(entry, 'REDIS_CLUSTER_NODES', fix)
      : hostPort(entry, 'REDIS_CLUSTER_NODES', fix);
    if (target.db !== undefined && target.db !== 0)
      throw new ConfigError(
        `REDIS_CLUSTER_NODES '${masked(entry)}' names database ${target.db}: a Redis Cluster has database 0 only`,
        'leave the /db out of the node addresses',
      );
    return target;
  });
  if (nodes.length === 0) throw new ConfigError('REDIS_CLUSTER_NODES is set but names no node', fix);
  const auth = sameAuth(nodes, 'REDIS_CLUSTER_NODES', 'node of a Cluster');
  const natMap = nat?.trim() ? natMapOf(nat) : undefined;
  return {
    nodes: nodes.map(({ host, port }) => ({ host, port })),
    ...(auth.username !== undefined ? { username: auth.username } : {}),
    ...(auth.password !== undefined ? { password: auth.password } : {}),
    ...(auth.tls ? { tls: {} } : {}),
    ...(natMap ? { natMap } : {}),
  };
}

/** `host:port` (`[v6]:port`), with the variable it came from named in its error. */
function hostPort(text: string, variable: string, fix: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:\s/@]+):(\d{1,5})$/.exec(text);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535)
    throw new ConfigError(`${variable} '${masked(text)}' is not host:port`, fix);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port: Number(match[2]) };
}

function natMapOf(text: string): Record<string, { host: string; port: number }> {
  const fix =
    'set REDIS_CLUSTER_NAT to announced-host:port=reachable-host:port pairs, comma-separated (what the nodes announce, then where this process reaches them)';
  const map: Record<string, { host: string; port: number }> = {};
  for (const pair of text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const [from, to, ...rest] = pair.split('=');
    if (from === undefined || to === undefined || rest.length > 0)
      throw new ConfigError(`REDIS_CLUSTER_NAT '${pair}' is not announced=reachable`, fix);
    const announced = hostPort(from.trim(), 'REDIS_CLUSTER_NAT', fix);
    map[`${announced.host}:${announced.port}`] = hostPort(to.trim(), 'REDIS_CLUSTER_NAT', fix);
  }
  return map;
}

/** Where Redis is, for messages: which variable, and its value without users and passwords. */
export function redisWhere(
  value: string | undefined = process.env.REDIS_URL,
  cluster: string | undefined = process.env.REDIS_CLUSTER_NODES,
  sentinels: string | undefined = process.env.REDIS_SENTINELS,
): string {
  if (given(cluster))
    return `the Redis Cluster of REDIS_CLUSTER_NODES (${list(cluster).map(masked).join(', ')})`;
  if (given(sentinels)) {
    const name = given(value) ? /^[a-z]+:\/\/(?:[^@/]*@)?([^/:?#]*)/i.exec(value.trim())?.[1] : undefined;
    return `the master '${name ?? '?'}' (REDIS_URL) of the Sentinels of REDIS_SENTINELS (${list(sentinels)
      .map(masked)
      .join(', ')})`;
  }
  return given(value) ? `REDIS_URL (${masked(value.trim())})` : `${DEFAULT_REDIS_URL} (REDIS_URL is not set)`;
}

/** The URL with what may hold a password hidden: anything before the host's `@`, and options after `?`. */
function masked(text: string): string {
  return text
    .replace(/^(.*?:\/\/)?.*@/, (_all, scheme: string | undefined) => `${scheme ?? ''}***@`)
    .replace(/[?#].*$/, '?…');
}

/**
 * The hint for a Redis that cannot be reached: start it, or point the variable elsewhere; where TLS is asked
 * for, a server without it may be why (it leaves the handshake unanswered: a timeout, or a reset).
 */
export function unreachableHint(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cluster = given(process.env.REDIS_CLUSTER_NODES);
  const variable = cluster
    ? 'REDIS_CLUSTER_NODES'
    : given(process.env.REDIS_SENTINELS)
      ? 'REDIS_SENTINELS'
      : 'REDIS_URL';
  const tls = [process.env.REDIS_URL, process.env.REDIS_CLUSTER_NODES, process.env.REDIS_SENTINELS].some(
    (v) => v?.includes('rediss://'),
  );
  const hint = `start redis-server, or set ${variable}`;
  return tls && /ETIMEDOUT|ECONNRESET|Connection is closed|socket hang up/i.test(message)
    ? `${hint}; if that Redis does not take TLS, write redis:// instead of rediss://`
    : hint;
}

/** Node's codes for a TLS certificate it cannot trust (self-signed, an unknown CA, expired). */
const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
]);

/**
 * What to do about a Redis error that no reconnection fixes (a missing or wrong password, a user without
 * the rights, a TLS certificate not trusted or not for the host, TLS to a server without it, a Cluster node
 * that does not hold our keys); undefined for the rest (an outage, …).
 */
export function redisConfigProblem(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const where = redisWhere();
  const variable = given(process.env.REDIS_CLUSTER_NODES) ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL';
  if (/^NOAUTH\b/.test(message))
    return `Redis at ${where} needs a password (NOAUTH): put it in ${variable}, as redis://:PASSWORD@host:port (or redis://USER:PASSWORD@host:port for an ACL user)`;
  if (/^WRONGPASS\b|invalid password|invalid username-password/i.test(message))
    return `Redis at ${where} rejected the user name or password in ${variable} (WRONGPASS): the password is wrong, or the user is disabled`;
  if (/^NOPERM\b/.test(message))
    return `the Redis user in ${where} lacks a permission (${message.split('\n')[0]}): grant it all commands on the keys of sync.redis_prefix, or use another user`;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /does not match certificate's altnames/i.test(message))
    return `the TLS certificate of Redis at ${where} is not for the host in ${variable} (${message}): write the host name the certificate names`;
  if (
    (typeof code === 'string' && TLS_TRUST_CODES.has(code)) ||
    /self[- ]signed certificate|unable to verify the first certificate|unable to get (local )?issuer certificate|certificate has expired/i.test(
      message,
    )
  )
    return `Redis at ${where} presented a TLS certificate this process does not trust (${message}): give Node the certificate of the CA that signed it, NODE_EXTRA_CA_CERTS=/path/to/ca.pem in the environment of every audience-sync process, or renew an expired certificate`;
  if (/wrong version number|packet length too long|unknown protocol/i.test(message))
    return `Redis at ${where} does not speak TLS (${message}): write redis:// instead of rediss:// in ${variable}`;
  const moved = /^(MOVED|ASK) (\d+) (\S+)/.exec(message);
  if (moved)
    return `Redis at ${where} answered ${moved[1]} ${moved[2]} ${moved[3]}: it is a node of a Redis Cluster (hash slot ${moved[2]} is on ${moved[3]}). For a Cluster, unset REDIS_URL and set REDIS_CLUSTER_NODES to some of its nodes (host:port,host:port)`;
  return undefined;
}
