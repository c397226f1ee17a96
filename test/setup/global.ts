import type { TestProject } from 'vitest/node';
import { startPostgres, startRedis, startRedisCluster, type Service } from '../../app/local/services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
    redisUrl: string;
    /** A 3-master Redis Cluster on loopback, for REDIS_CLUSTER_NODES. */
    redisClusterNodes: string;
  }
}

/**
 * One PostgreSQL, one Redis and one Redis Cluster (three masters) for the whole run; tests keep apart by table
 * names and key prefixes. The Redis servers are configured as production should be (append-only file,
 * noeviction), so workers run on them as they would there.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const services: Service[] = [];
  const stopAll = () => Promise.all(services.map((s) => s.stop()));
  try {
    const [postgres, redis, cluster] = await Promise.all([
      startPostgres(),
      startRedis(),
      startRedisCluster({ masters: 3 }),
    ]);
    services.push(postgres, redis, { url: cluster.nodes, stop: cluster.stop });
    project.provide('postgresUrl', postgres.url);
    project.provide('redisUrl', redis.url);
    project.provide('redisClusterNodes', cluster.nodes);
  } catch (error) {
    await stopAll();
    throw error;
  }
  return async () => {
    await stopAll();
  };
}
