import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request, requestBytes, type NoAnswer } from './http.js';

/** A token of Meta's shape, and one no pattern knows: neither may reach a failure's reason. */
const TOKENS = ['EAABsbCS1iHgBAxyz0123456789abcdef', 'plain-opaque-value-42'];
const query = `?access_token=${TOKENS[0]}&appsecret_proof=${TOKENS[1]}`;

const servers: Server[] = [];

async function serve(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A port on which nothing listens: one a server had a moment ago. */
async function closedPort(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return `http://127.0.0.1:${port}`;
}

function expectNoToken(failure: NoAnswer): void {
  for (const token of TOKENS) expect(JSON.stringify(failure)).not.toContain(token);
  expect(failure.reason).not.toContain('access_token');
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

describe('connectors/http request', () => {
  it('a server that never answers: no answer, a timeout, said in seconds', async () => {
    const base = await serve(() => {});
    const got = await request(`${base}/users${query}`, { method: 'POST', body: '{}', timeoutMs: 200 });
    expect(got).toEqual({ answered: false, reason: 'timed out after 0.2 s', timeout: true, code: undefined });
    expectNoToken(got as NoAnswer);
  });

  it('an answer that stops half way is no answer either', async () => {
    const base = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"partial":');
      res.socket?.destroy();
    });
    const got = await request(`${base}/users${query}`, { timeoutMs: 10_000 });
    expect(got).toMatchObject({ answered: false, timeout: false, code: 'UND_ERR_SOCKET' });
    expectNoToken(got as NoAnswer);
  });

  it('a refused connection: its code, in words', async () => {
    const base = await closedPort();
    const got = await request(`${base}/users${query}`, { timeoutMs: 10_000 });
    expect(got).toEqual({
      answered: false,
      reason: 'connection refused (ECONNREFUSED)',
      timeout: false,
      code: 'ECONNREFUSED',
    });
    expectNoToken(got as NoAnswer);
  });

  it('a URL fetch cannot use: the reason holds none of it', async () => {
    const got = await request(`http://[127.0.0.1/users${query}`, { timeoutMs: 10_000 });
    expect(got).toMatchObject({ answered: false, timeout: false });
    expectNoToken(got as NoAnswer);
  });

  it('a 500 is an answer: status, headers and body as the server sent them', async () => {
    let seen: { method?: string | undefined; url?: string | undefined; body: string } = { body: '' };
    const base = await serve((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, body };
        res.writeHead(500, { 'content-type': 'application/json', 'retry-after': '7' });
        res.end('{"error":{"message":"Internal error","code":2}}');
      });
    });
    const got = await request(`${base}/v1/users?x=1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
      timeoutMs: 10_000,
    });
    expect(got).toMatchObject({
      answered: true,
      status: 500,
      ok: false,
      body: '{"error":{"message":"Internal error","code":2}}',
    });
    expect(got.answered && got.headers.get('retry-after')).toBe('7');
    expect(seen).toEqual({ method: 'PUT', url: '/v1/users?x=1', body: '{"a":1}' });
  });

  it.each([
    ['text', '{"payload":{}}'],
    ['bytes', Buffer.from('{"payload":{}}')],
  ])(
    'a request with a body (%s) is not sent on to where a redirect points: no answer, saying so',
    async (_kind, body) => {
      let elsewhere = 0;
      const other = await serve((_req, res) => {
        elsewhere++;
        res.end('{}');
      });
      const base = await serve((_req, res) => {
        res.writeHead(307, { location: `${other}/users${query}` });
        res.end();
      });
      const got = await request(`${base}/users${query}`, { method: 'POST', body, timeoutMs: 10_000 });
      expect(got).toMatchObject({ answered: false, timeout: false });
      expect((got as NoAnswer).reason).toBe(
        'redirected to another address, where a request with a body is not sent (check the endpoint)',
      );
      expectNoToken(got as NoAnswer);
      expect(elsewhere).toBe(0);
    },
  );

  it('a body of bytes arrives as sent, with its length and headers, not chunked', async () => {
    // 3 MB of a pattern no byte of which is where another request's would be.
    const body = Buffer.alloc(3_000_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >>> 11)) & 0xff;
    let seen: { headers: Record<string, unknown>; body: Buffer } | undefined;
    const base = await serve((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        seen = { headers: req.headers, body: Buffer.concat(chunks) };
        res.end('{}');
      });
    });
    const got = await request(`${base}/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-extra': 'kept' },
      body,
      timeoutMs: 10_000,
    });
    expect(got).toMatchObject({ answered: true, status: 200, body: '{}' });
    expect(seen!.body.equals(body)).toBe(true);
    expect(seen!.headers).toMatchObject({
      'content-length': '3000000',
      'content-type': 'application/json',
      'x-extra': 'kept',
    });
    expect(seen!.headers['transfer-encoding']).toBeUndefined();
  });

  it('bytes come back as sent', async () => {
    const bytes = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x80]);
    const base = await serve((_req, res) => res.end(bytes));
    const got = await requestBytes(`${base}/results.tar.gz`, { timeoutMs: 10_000 });
    expect(got).toMatchObject({ answered: true, status: 200, ok: true });
    expect(got.answered && got.body.equals(bytes)).toBe(true);
  });

  it("the caller's own cancellation is thrown as it is, not taken for a failed request", async () => {
    const base = await serve(() => {});
    const stop = new AbortController();
    const pending = request(`${base}/users`, { timeoutMs: 10_000, signal: stop.signal });
    const reason = new Error('run cancelled');
    stop.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });
});
