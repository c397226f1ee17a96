import type { Server } from 'node:http';
import nock from 'nock';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FakeMailchimp } from '../../connectors/mailchimp/fixtures/fake.js';
import { bridge, killChildren, leaksIn, printed, runCommands, SECRETS } from './harness.js';

/**
 * Mailchimp echoing the API key (its problem documents and the segment endpoint's errors repeat the
 * Authorization header and the key in it), through the SDK, whose errors carry the request with its header.
 */

const redisUrl = inject('redisUrl');
const LIST = 'a1b2c3d4e5';
let fake: FakeMailchimp;
let server: Server;
let url: string;

beforeAll(async () => {
  fake = new FakeMailchimp(SECRETS.MAILCHIMP_API_KEY, LIST).install();
  ({ url, server } = await bridge(fake.origin));
});
afterAll(() => {
  killChildren();
  server.close();
  nock.cleanAll();
});

describe('Mailchimp: secrets echoed by the API never leave the process', () => {
  it('the key check, contacts refused one by one and a tag refused all repeat the API key', async () => {
    fake.echoCredentials = true;
    const problem = (status: number, title: string, detail: string) =>
      [
        status,
        { type: 'about:blank', title, status, detail },
        { 'Content-Type': 'application/problem+json' },
      ] as [number, object, Record<string, string>];
    fake.refuse = (r) => {
      if (r.path.endsWith('/ping')) return problem(401, 'API Key Invalid', 'Your API key may be invalid.');
      // About one contact in sixteen cannot be added.
      if (r.method === 'PUT' && /\/members\/0[0-9a-f]+$/.test(r.path))
        return problem(400, 'Invalid Resource', 'The contact could not be added.');
      // A tag remembered from an earlier run.
      if (r.method === 'GET' && /\/segments\/\d+$/.test(r.path))
        return problem(403, 'Forbidden', 'You do not have permission to access this resource.');
      return undefined;
    };
    const collected = await runCommands({
      redisUrl,
      destination: 'mailchimp',
      block: `    type: mailchimp
    api_key: \${MAILCHIMP_API_KEY}
    list_id: ${LIST}
    missing_members: upsert
    endpoint: ${url}/3.0`,
    });
    expect(leaksIn(collected)).toEqual([]);
    const text = printed(collected);
    expect(text).toContain('check MAILCHIMP_API_KEY');
    expect(text).toContain('[redacted]');
    // Mailchimp's reason for each refused contact is kept, without the key.
    expect(text).toContain('The contact could not be added');
  });
});
