import type { Server } from 'node:http';
import nock from 'nock';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { bridge, killChildren, leaksIn, printed, runCommands, SECRETS } from './harness.js';

/**
 * Meta's Graph API echoing the access token (in its error texts and in its samples of invalid rows), through
 * the SDK's calls (whose errors carry the request URL with the token) and our own `fetch` uploads.
 */

const redisUrl = inject('redisUrl');
const ORIGIN = 'https://graph.echo.test';
const ACCOUNT = '1234567890';
let fake: FakeGraph;
let server: Server;
let url: string;

beforeAll(async () => {
  fake = new FakeGraph(ORIGIN, 'v25.0', ACCOUNT, SECRETS.META_ACCESS_TOKEN);
  ({ url, server } = await bridge(ORIGIN));
});
afterAll(() => {
  killChildren();
  server.close();
  nock.cleanAll();
});

describe('Meta: secrets echoed by the Graph API never leave the process', () => {
  it('token check, audience reads through the SDK and uploads through fetch all repeat the access token', async () => {
    fake.echoCredentials = true;
    const uploaded = new Set<string>();
    fake.refuse = (r) => {
      if (r.path.endsWith('/me'))
        return [400, FakeGraph.error(190, 'Error validating access token: Session has expired', 463)];
      // An audience remembered from an earlier run, read through the SDK.
      if (r.method === 'GET' && /^\/v25\.0\/\d+$/.test(r.path))
        return [403, FakeGraph.error(10, 'Application does not have permission for this action')];
      // The first upload to each audience goes through; the next ones are refused.
      if (r.method === 'POST' && r.path.endsWith('/users')) {
        const audience = r.path.split('/')[2]!;
        if (uploaded.has(audience)) return [400, FakeGraph.error(100, 'Invalid parameter', 2650)];
        uploaded.add(audience);
      }
      return undefined;
    };
    const collected = await runCommands({
      redisUrl,
      destination: 'meta',
      block: `    type: meta
    ad_account_id: "${ACCOUNT}"
    access_token: \${META_ACCESS_TOKEN}
    endpoint: ${url}
    batch_size: 20
    throttle_wait_seconds: 1`,
    });
    expect(leaksIn(collected)).toEqual([]);
    const text = printed(collected);
    expect(text).toContain('the access token is not valid');
    expect(text).toContain('permission denied');
    expect(text).toContain('[redacted]');
    // Meta's samples of invalid rows are kept, without the token.
    expect(text).toContain('Invalid row');
  });
});
