import { Cluster, Redis } from 'ioredis';
import {
  redisCluster,
  redisSentinel,
  redisTarget,
  type RedisTarget,
  type SentinelTarget,
} from './redis-url.js';

/**
 * A connection to the setup's Redis: one server (REDIS_URL), a master that Sentinels watch
 * (REDIS_SENTINELS, with REDIS_URL naming the master) or a Redis Cluster (REDIS_CLUSTER_NODES).
 * Code that takes one never sends a command or transaction over keys of different hash slots: a Cluster
 * refuses it (CROSSSLOT).
 */
export type RedisClient = Redis | Cluster;

/** How a process wants its connection to behave, whatever Redis it is. */
export interface ClientSettings {
  lazyConnect?: boolean;
  /** false: a command while disconnected fails at once instead of waiting. */
  enableOfflineQueue?: boolean;
  /** null: a command waits out any outage (a worker); a number: it fails after that many reconnections. */
  maxRetriesPerRequest?: number | null;
  connectTimeout?: number;
  /** Milliseconds to the next connection attempt, or null to give up. */
  retryStrategy?: (times: number) => number | null;
}

/** A connection from the environment: a Cluster client when REDIS_CLUSTER_NODES is set, else one server's. */
export function createRedis(settings: ClientSettings = {}): RedisClient {
  const cluster = redisCluster();
  if (!cluster) return new Redis(serverOptions(settings));
  const { nodes, natMap, ...auth } = cluster;
  const { lazyConnect, enableOfflineQueue, retryStrategy, ...perNode } = settings;
  return new Cluster(nodes, {
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(retryStrategy ? { clusterRetryStrategy: retryStrategy } : {}),
    ...(natMap ? { natMap } : {}),
    // ioredis's ready check asks one node of its choice for CLUSTER INFO, which can be a node that just
    // died; failing, it reconnects, and a `connect()` under a retry strategy that gives up never settles.
    // Commands find the live nodes themselves (MOVED, and slots refreshed on errors).
    enableReadyCheck: false,
    redisOptions: { ...auth, ...perNode },
  });
}

/** What `serverOptions` gives: options both ioredis and BullMQ take. */
export type ServerOptions = (RedisTarget | SentinelTarget) &
  ClientSettings & {
    failoverDetector?: boolean;
    reconnectOnError?: (error: Error) => 2 | false;
    sentinelRetryStrategy?: (times: number) => number | null;
  };

/**
 * ioredis's options for one server (REDIS_URL) or for the master Sentinels watch (REDIS_SENTINELS), with
 * `settings`; a ConfigError where the environment is wrong (both REDIS_SENTINELS and REDIS_CLUSTER_NODES, …).
 */
export function serverOptions(settings: ClientSettings = {}): ServerOptions {
  const sentinel = redisSentinel();
  if (!sentinel) return { ...redisTarget(), ...settings };
  return {
    ...sentinel,
    ...settings,
    // Told by the Sentinels when the master changes (+switch-master), the client reconnects to the new one.
    failoverDetector: true,
    // A master demoted to a replica refuses writes (READONLY) until the client reconnects to the new one.
    reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false),
    // The Sentinels are asked where the master is at each connection: a process that gives up on an
    // unreachable Redis gives up on unreachable Sentinels too.
    ...(settings.retryStrategy ? { sentinelRetryStrategy: settings.retryStrategy } : {}),
  };
}

/**
 * The servers to run a keyless command on to reach every key (SCAN): the one Redis, or a Cluster's masters
 * (a Cluster client sends a keyless command to one node of its choice).
 */
export function serversOf(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}
