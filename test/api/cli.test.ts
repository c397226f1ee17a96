import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import argon2 from 'argon2';
import { afterAll, expect, inject, it } from 'vitest';
import { destinationsSchema } from '../../src/api/schemas.js';
import { BIN, killAll } from '../jobs/procs.js';
import { Client, makeSetup, serve, TOKENS } from './harness.js';

/** The commands around the API: hash-password, tokens create, and the API inside a worker. */

afterAll(() => killAll());

const cli = (args: string[], input?: string) =>
  spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'warn' },
    ...(input !== undefined ? { input } : {}),
  });

it('hash-password prints an argon2id hash of the password read from stdin', async () => {
  const r = cli(['hash-password'], 'a long enough password\n');
  expect(r.status, r.stderr).toBe(0);
  const hash = r.stdout.trim();
  expect(hash).toMatch(/^\$argon2id\$/);
  expect(await argon2.verify(hash, 'a long enough password')).toBe(true);
  expect(await argon2.verify(hash, 'a long enough password\n')).toBe(false);
  expect(r.stdout + r.stderr).not.toContain('a long enough password');
  const short = cli(['hash-password'], 'short\n');
  expect(short.status).toBe(2);
  expect(short.stderr).toMatch(/at least 10/);
});

it('tokens create prints a new token once and the SHA-256 hash to put in http.tokens', () => {
  const r = cli(['tokens', 'create', '--name', 'ci', '--role', 'operator', '--json']);
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { name: string; role: string; token: string; token_hash: string };
  expect(out).toMatchObject({ name: 'ci', role: 'operator' });
  expect(out.token.length).toBeGreaterThanOrEqual(40);
  expect(out.token_hash).toBe(`sha256:${createHash('sha256').update(out.token).digest('hex')}`);
  const again = JSON.parse(cli(['tokens', 'create', '--name', 'ci', '--json']).stdout) as typeof out;
  expect(again.token).not.toBe(out.token);
  expect(again.role).toBe('viewer');
  expect(cli(['tokens', 'create', '--name', 'ci', '--role', 'admin']).status).toBe(2);
});

it('worker --http-port serves the same API beside the worker', async () => {
  const setup = await makeSetup({ customers: 50 });
  const { proc, url } = await serve(['worker', '--http-port', '0'], setup.dir, inject('redisUrl'));
  await proc.waitFor(/"msg":"worker started"/);
  const client = new Client(url);
  expect((await client.call('GET', '/api/v1/destinations')).status).toBe(401);
  const r = await client.call('GET', '/api/v1/destinations', { token: TOKENS.viewer });
  expect(destinationsSchema.parse(r.json).destinations[0]?.name).toBe('local');
  proc.child.kill('SIGTERM');
  expect(await proc.exited).toBe(0);
});
