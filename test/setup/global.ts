import type { TestProject } from 'vitest/node';
import { startPostgres, type Service } from '../../src/local/services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}

/** One PostgreSQL for the whole run; each test file makes its own tables. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const services: Service[] = [];
  const postgres = await startPostgres();
  services.push(postgres);
  project.provide('postgresUrl', postgres.url);
  return async () => {
    await Promise.all(services.map((s) => s.stop()));
  };
}
