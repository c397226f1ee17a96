import { afterAll, expect, it } from 'vitest';
import { errorSchema, destinationsSchema } from '../../src/api/schemas.js';
import { startRedis, type Service } from '../../app/local/services.js';
import { killAll, until } from '../jobs/procs.js';
import { Client, makeSetup, serve, TOKENS, USERS } from './harness.js';

/** A Redis of its own, stopped under the running server: 503 with a clear error, /healthz still answers, and back after. */

let redis: Service | undefined;
afterAll(async () => {
  killAll();
  await redis?.stop();
});

it('answers 503 while Redis is down, keeps answering /healthz, and serves again once Redis is back', async () => {
  redis = await startRedis();
  const setup = await makeSetup({ customers: 50 });
  const server = await serve(['serve', '--port', '0'], setup.dir, redis.url);
  const client = new Client(server.url);
  const token = { token: TOKENS.viewer };
  expect((await client.call('GET', '/api/v1/destinations', token)).status).toBe(200);
  const port = Number(new URL(redis.url).port);

  await redis.stop();
  for (const [method, url, options] of [
    ['GET', '/api/v1/destinations', token],
    ['GET', '/api/v1/schedules', token],
    ['POST', '/api/v1/destinations/local/pause', { token: TOKENS.operator }],
    ['POST', '/api/v1/session', { body: { name: 'vera', password: USERS.vera.password } }],
  ] as const) {
    const r = await client.call(method, url, options);
    expect(r.status, `${method} ${url}`).toBe(503);
    const body = errorSchema.parse(r.json);
    expect(body.error).toBe('redis_unavailable');
    expect(body.message).toMatch(/Redis at REDIS_URL \(redis:\/\/127\.0\.0\.1:\d+\) cannot be reached/);
  }
  const health = await client.call('GET', '/healthz');
  expect(health.status).toBe(200);
  expect(health.json).toEqual({ ok: true, redis: 'unavailable' });
  expect(server.proc.child.exitCode).toBeNull();

  redis = await startRedis({ port });
  const back = await until('the API to reach Redis again', async () => {
    const r = await client.call('GET', '/api/v1/destinations', token);
    return r.status === 200 ? r : undefined;
  });
  expect(destinationsSchema.parse(back.json).destinations[0]?.name).toBe('local');
  await server.proc.waitFor(/cannot be reached.*answering 503 until it is back/);
  await server.proc.waitFor(/Redis is back/);
});
