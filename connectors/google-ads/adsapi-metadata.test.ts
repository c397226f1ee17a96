import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import nock from 'nock';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { createAdsApiClient } from './adsapi.js';
import { googleAdsConfigSchema } from './config.js';
import { localhostCertificate } from './grpc-fake/cert.js';
import { FAKE_REST, FAKE_TOKEN_URL, serveRest } from './grpc-fake/rest.js';
import { FakeGoogleAds } from './grpc-fake/server.js';

/**
 * The Google Ads API client must not look for the Google Cloud metadata server (google-gax asks it for the
 * universe domain unless told): off Google Cloud that probe stalls the first call for seconds and prints
 * MetadataLookupWarning. The metadata address is pointed at a local server (GCE_METADATA_HOST, read by
 * gcp-metadata at each request) that records whatever reaches it. Its own file: the probe's answer is
 * cached per process.
 */

const tls = localhostCertificate();
const probes: IncomingMessage['url'][] = [];
const metadata = createServer((request, response) => {
  probes.push(request.url);
  response.writeHead(404, { 'metadata-flavor': 'Google' }).end();
});
let fake: FakeGoogleAds;
const saved = { host: process.env.GCE_METADATA_HOST, detection: process.env.METADATA_SERVER_DETECTION };

beforeAll(async () => {
  await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
  process.env.GCE_METADATA_HOST = `127.0.0.1:${(metadata.address() as AddressInfo).port}`;
  delete process.env.METADATA_SERVER_DETECTION;
  fake = await FakeGoogleAds.start(tls);
  nock.disableNetConnect();
  nock.enableNetConnect(/^(localhost|127\.0\.0\.1)(:\d+)?$/);
  serveRest(fake);
});
afterAll(async () => {
  nock.cleanAll();
  nock.enableNetConnect();
  await fake.close();
  await new Promise((resolve) => metadata.close(resolve));
  rmSync(tls.dir, { recursive: true, force: true });
  for (const [key, value] of [
    ['GCE_METADATA_HOST', saved.host],
    ['METADATA_SERVER_DETECTION', saved.detection],
  ] as const)
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
});

it('makes its gRPC calls without a request to the metadata server', async () => {
  const config = googleAdsConfigSchema.parse({
    type: 'google_ads',
    api: 'ads_api',
    customer_id: '123-456-7890',
    client_id: 'client-id.apps.googleusercontent.com',
    client_secret: 'client-secret',
    refresh_token: '1//refresh-token',
    developer_token: 'dev-token',
    endpoints: {
      token_url: FAKE_TOKEN_URL,
      ads_rest: FAKE_REST,
      ads_api: { host: 'localhost', port: fake.port, ca_file: tls.certFile },
    },
  });
  const client = createAdsApiClient(config, {
    destination: 'google',
    baseDir: '/',
    log: createLogger({ level: 'silent' }),
  });
  try {
    const audience = await client.ensureAudience('VIP');
    const outcome = await client.add(audience, [
      { key: Buffer.alloc(8), slots: [Buffer.alloc(32, 1), undefined, undefined, undefined, undefined] },
    ]);
    expect(outcome.status).toBe('pending');
    expect(fake.callsOf('RunOfflineUserDataJob')).toHaveLength(1);
  } finally {
    await client.close?.();
  }
  expect(probes).toEqual([]);
});
