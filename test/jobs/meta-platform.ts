import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { inject } from 'vitest';
import { FakeGraph, rowIdentifiers } from '../../connectors/meta/fixtures/fake-graph.js';
import { toRow } from '../../connectors/meta/identifiers.js';
import { metaConnector } from '../../connectors/meta/index.js';
import type { MetaConfig } from '../../connectors/meta/config.js';
import { prepareSync } from '../../src/sync/prepare.js';
import { identifiedMembers, makeShop } from '../sync/harness.js';

/**
 * The Meta fake behind a local HTTP server, and a shop whose worker and CLI processes sync to it: for tests
 * of worker processes against a platform over real HTTP.
 */
const BIN = path.resolve('dist/app/cli/bin.js');
export const TOKEN = 'EAAB-worker-token-0123456789';
const children: ChildProcess[] = [];
const servers: Server[] = [];

/** Kills the processes and closes the servers these helpers started (for `afterAll`). */
export function stopAll(): void {
  for (const c of children) c.kill('SIGKILL');
  for (const s of servers) s.close();
}

/** A held request: `reached` once one arrives, answered only after `release()`. */
export interface Gate {
  reached: Promise<void>;
  release(): void;
}

export async function platform() {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fake = new FakeGraph(origin, 'v25.0', '1234567890', TOKEN);
  // Per audience id, requests in flight now and at most.
  const inFlight = new Map<string, number>();
  const most = new Map<string, number>();
  let overall = 0;
  let mostOverall = 0;
  let gate:
    { match: (method: string, url: string) => boolean; open: Promise<void>; reach: () => void } | undefined;
  server.on('request', (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const held = gate?.match(req.method!, req.url!) ? gate : undefined;
      if (held) {
        gate = undefined;
        held.reach();
      }
      void (held?.open ?? Promise.resolve()).then(() => {
        const audience = new URL(req.url!, origin).pathname.split('/')[2] ?? '';
        inFlight.set(audience, (inFlight.get(audience) ?? 0) + 1);
        most.set(audience, Math.max(most.get(audience) ?? 0, inFlight.get(audience)!));
        mostOverall = Math.max(mostOverall, ++overall);
        const [status, answer, headers] = fake.handle(req.method!, req.url!, body, req.headers);
        // A little latency, so that overlapping runs would show.
        setTimeout(() => {
          inFlight.set(audience, inFlight.get(audience)! - 1);
          overall--;
          res.writeHead(status, { 'content-type': 'application/json', ...headers });
          res.end(JSON.stringify(answer));
        }, 15);
      });
    });
  });
  /** Holds the next request that `match`es until the gate is released (requests after it go on). */
  const hold = (match: (method: string, url: string) => boolean): Gate => {
    let reach = () => {};
    let release = () => {};
    const reached = new Promise<void>((resolve) => (reach = resolve));
    const open = new Promise<void>((resolve) => (release = resolve));
    gate = { match, open, reach };
    return { reached, release };
  };
  return { origin, fake, most, mostOverall: () => mostOverall, hold };
}

/**
 * A shop of 600 customers syncing to the Meta fake at `origin`; its processes reach the test Redis, or the
 * Redis that `redisEnv` names (REDIS_CLUSTER_NODES for a Cluster).
 */
export async function metaShop(origin: string, inFlight = 1, redisEnv: NodeJS.ProcessEnv = {}) {
  const shop = await makeShop({ customers: 600, sync: 'max_removal_share: 1' });
  const config = path.join(shop.dir, 'audience-sync.yaml');
  writeFileSync(
    config,
    `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
destinations:
  meta:
    type: meta
    ad_account_id: "1234567890"
    access_token: \${META_ACCESS_TOKEN}
    endpoint: ${origin}
    batch_size: 20
    requests_in_flight: ${inFlight}
    throttle_wait_seconds: 1
sync: { redis_prefix: ${shop.prefix}, lease_seconds: 2 }
`,
  );
  const { REDIS_URL: _url, REDIS_CLUSTER_NODES: _nodes, ...rest } = process.env;
  const env = {
    ...rest,
    CI: 'true',
    ...(Object.keys(redisEnv).length > 0 ? redisEnv : { REDIS_URL: inject('redisUrl') }),
    LOG_LEVEL: 'warn',
    META_ACCESS_TOKEN: TOKEN,
  };
  const worker = () => {
    const child = spawn(process.execPath, [BIN, 'worker'], { cwd: shop.dir, env, stdio: 'ignore' });
    children.push(child);
    return child;
  };
  const cli = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: shop.dir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => resolve({ code, out }));
    });
  // Each audience's identifiers as Meta should hold them: its segment's members, identified for Meta.
  const expected = async () => {
    process.env.META_ACCESS_TOKEN = TOKEN;
    const prepared = await prepareSync(config, {
      meta: metaConnector,
    });
    const meta = prepared.destinations[0]!.config as MetaConfig;
    const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
      metaConnector.identify(person, meta),
    );
    return new Map(
      [...members]
        .filter(([, byId]) => byId.size > 0)
        .map(([name, byId]) => [
          name,
          new Set(
            [...byId.values()].flatMap((slots) => rowIdentifiers(meta.schema, toRow(slots, meta.schema))),
          ),
        ]),
    );
  };
  return { shop, env, worker, cli, expected };
}

/** What the fake holds: each live audience's identifiers, by name. */
export const onPlatform = (fake: FakeGraph) =>
  new Map(
    [...fake.audiences.values()]
      .filter((a) => !a.deleted && a.identifiers.size > 0)
      .map((a) => [a.name, new Set(a.identifiers)]),
  );
