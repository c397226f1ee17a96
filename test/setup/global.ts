import type { TestProject } from 'vitest/node';
import { startPostgres, startRedis, type Service } from '../../app/local/services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
    redisUrl: string;
  }
}

/**
 * One PostgreSQL and one Redis for the whole run; tests keep apart by table names and key prefixes. The Redis is
 * configured as production should be (append-only file, noeviction), so workers run on it as they would there.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const services: Service[] = [];
  const stopAll = () => Promise.all(services.map((s) => s.stop()));
  try {
    const [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
    services.push(postgres, redis);
    project.provide('postgresUrl', postgres.url);
    project.provide('redisUrl', redis.url);
  } catch (error) {
    await stopAll();
    throw error;
  }
  return async () => {
    await stopAll();
  };
}
