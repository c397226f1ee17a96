import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  actionSchema,
  auditSchema,
  erasureAcceptedSchema,
  erasuresSchema,
  errorSchema,
} from '../../src/api/schemas.js';
import { killAll } from '../jobs/procs.js';
import { Client, makeSetup, OpenApi, serve, TOKENS } from '../api/harness.js';
import { cli } from '../sync/harness.js';

/**
 * The privacy routes as operators reach them: `audience-sync serve` in its own process, real HTTP and Redis.
 * An erasure is accepted from operators only (CSRF as every action), answers no identifier, and the audit
 * log names who did what, from the API and from the CLI.
 */

let setup: Awaited<ReturnType<typeof makeSetup>>;
let client: Client;
let openapi: OpenApi;
let stop: () => Promise<void>;
const ops = { token: TOKENS.operator };
const viewer = { token: TOKENS.viewer };

beforeAll(async () => {
  setup = await makeSetup();
  const server = await serve(['serve', '--port', '0'], setup.dir, inject('redisUrl'));
  client = new Client(server.url);
  stop = async () => {
    server.proc.child.kill('SIGTERM');
    await server.proc.exited;
  };
  openapi = new OpenApi(
    (await client.call('GET', '/api/v1/openapi.json', viewer)).json as ConstructorParameters<
      typeof OpenApi
    >[0],
  );
});

afterAll(async () => {
  await stop?.();
  killAll();
});

/** A customer's email from the shop. */
function someEmail(): string {
  const [header, ...rows] = readFileSync(path.join(setup.dir, 'shop', 'customers.csv'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(','));
  const col = header!.indexOf('email');
  return rows.map((r) => r[col]!).find((e) => /^[a-z.]+\d*@example\.org$/.test(e))!;
}

describe('erasures and the audit log over HTTP', () => {
  it('takes an erasure from an operator only, with CSRF for a session, and answers no identifier', async () => {
    const email = someEmail();
    const denied = await client.call('POST', '/api/v1/erasures', { ...viewer, body: { email } });
    expect(denied.status).toBe(403);
    expect(openapi.check(denied, errorSchema).error).toBe('forbidden');

    const { cookie, csrf } = await client.login('otto');
    const noCsrf = await client.call('POST', '/api/v1/erasures', { cookie, body: { email } });
    expect(noCsrf.status).toBe(403);
    expect(openapi.check(noCsrf, errorSchema).error).toBe('csrf');

    const empty = await client.call('POST', '/api/v1/erasures', { ...ops, body: {} });
    expect(empty.status).toBe(400);
    const unusable = await client.call('POST', '/api/v1/erasures', {
      ...ops,
      body: { email: 'not-an-address' },
    });
    expect(unusable.status).toBe(400);
    expect(openapi.check(unusable, errorSchema).message).toMatch(/email/);
    expect(unusable.text).not.toContain('not-an-address');

    const badMode = await client.call('POST', '/api/v1/erasures', {
      ...ops,
      body: { email, mailchimp_delete: 'purge' },
    });
    expect(badMode.status).toBe(400);
    expect(openapi.check(badMode, errorSchema).message).toMatch(/mailchimp_delete/);

    const accepted = await client.call('POST', '/api/v1/erasures', {
      cookie,
      csrf,
      body: { email, mailchimp_delete: 'archive' },
    });
    expect(accepted.status).toBe(202);
    const answer = openapi.check(accepted, erasureAcceptedSchema);
    expect(answer.destinations).toEqual(['local']);
    expect(answer.job.id).toMatch(/^admin:forget-/);

    const listed = openapi.check(await client.call('GET', '/api/v1/erasures', ops), erasuresSchema);
    expect(listed.erasures).toHaveLength(1);
    expect(listed.erasures[0]).toMatchObject({
      id: answer.erasure,
      requested_by: 'otto',
      via: 'session',
      given: ['email'],
      mailchimp_delete: 'archive',
      done: false,
    });
    expect(listed.erasures[0]!.receipts).toEqual([
      expect.objectContaining({ destination: 'local', status: 'requested', attempts: 0 }),
    ]);
    for (const seen of client.seen) expect(seen.text.toLowerCase()).not.toContain(email.toLowerCase());
  });

  it('records who resynced, paused and forgot, from the API and from the CLI, for operators to read', async () => {
    const full = await client.call('POST', '/api/v1/destinations/local/resync', {
      ...ops,
      body: { full: true },
    });
    expect(full.status).toBe(202);
    const job = openapi.check(full, actionSchema).job.id;
    expect((await client.call('POST', '/api/v1/destinations/local/pause', ops)).status).toBe(202);
    const resumed = cli(['--config', setup.file, 'resume', '--destination', 'local'], setup.dir);
    expect(resumed.code, resumed.stderr).toBe(0);

    expect((await client.call('GET', '/api/v1/audit', viewer)).status).toBe(403);
    const { audit } = openapi.check(await client.call('GET', '/api/v1/audit', ops), auditSchema);
    // Newest first.
    expect(
      audit.map((a) => [a.action, a.user.split('@')[0] === a.user ? a.user : 'cli-user', a.via]),
    ).toEqual([
      ['resume', 'cli-user', 'cli'],
      ['pause', 'operator-token', 'token'],
      ['full resync', 'operator-token', 'token'],
      ['forget', 'otto', 'session'],
    ]);
    expect(audit[2]).toMatchObject({ destination: 'local', detail: { job } });
    expect(audit.every((a) => Date.parse(a.at) <= Date.now())).toBe(true);

    const printed = cli(['--config', setup.file, 'audit'], setup.dir);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/full resync/);
    const pii = setup.pii();
    for (const text of [JSON.stringify(audit), printed.stdout])
      for (const v of pii) expect(text).not.toContain(v);
  });
});
