import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { actionSchema, errorSchema, sessionSchema } from '../../src/api/schemas.js';
import { killAll } from '../jobs/procs.js';
import { Client, makeSetup, serve, USERS } from './harness.js';

/**
 * A trusted reverse proxy (the test itself, at 127.0.0.1): its user header logs users in and its
 * X-Forwarded-Proto makes cookies Secure. The same headers from an address not configured are ignored.
 */

let trusted: Client;
let untrusted: Client;

beforeAll(async () => {
  const [a, b] = await Promise.all([
    makeSetup({
      customers: 50,
      http: '  trust_proxy: { addresses: [127.0.0.1/8, "::1"], user_header: X-Forwarded-User }',
    }),
    makeSetup({
      customers: 50,
      http: '  trust_proxy: { addresses: [10.9.9.9], user_header: X-Forwarded-User }',
    }),
  ]);
  trusted = new Client((await serve(['serve', '--port', '0'], a.dir, inject('redisUrl'))).url);
  untrusted = new Client((await serve(['serve', '--port', '0'], b.dir, inject('redisUrl'))).url);
});

afterAll(() => killAll());

const as = (user: string) => ({ headers: { 'x-forwarded-user': user } });

it("logs in the proxy's user with their configured role, and refuses a user not configured", async () => {
  const me = sessionSchema.parse((await trusted.call('GET', '/api/v1/session', as('otto'))).json);
  expect(me).toMatchObject({ user: 'otto', role: 'operator', via: 'proxy' });
  expect(me.csrf_token).toBeDefined();
  const stranger = await trusted.call('GET', '/api/v1/destinations', as('mallory'));
  expect(stranger.status).toBe(403);
  expect(errorSchema.parse(stranger.json).message).toMatch(/'mallory' is not in http.users/);

  // A proxy login is sent by the browser by itself: actions need the CSRF token too.
  const forged = await trusted.call('POST', '/api/v1/destinations/local/check', as('otto'));
  expect(forged.status).toBe(403);
  expect(errorSchema.parse(forged.json).error).toBe('csrf');
  const ok = await trusted.call('POST', '/api/v1/destinations/local/check', {
    headers: { 'x-forwarded-user': 'otto', 'x-csrf-token': me.csrf_token! },
  });
  expect(ok.status).toBe(202);
  actionSchema.parse(ok.json);
});

it('ignores the user header from an address that is not the configured proxy', async () => {
  const r = await untrusted.call('GET', '/api/v1/destinations', as('otto'));
  expect(r.status).toBe(401);
});

it('sets Secure on the session cookie when the trusted proxy says the request came over https', async () => {
  const login = (client: Client) =>
    client.call('POST', '/api/v1/session', {
      body: { name: 'vera', password: USERS.vera.password },
      headers: { 'x-forwarded-proto': 'https' },
    });
  const secure = (await login(trusted)).headers.find(([k]) => k === 'set-cookie')![1];
  expect(secure).toMatch(/; Secure/);
  const plain = (await login(untrusted)).headers.find(([k]) => k === 'set-cookie')![1];
  expect(plain).not.toMatch(/Secure/);
});
