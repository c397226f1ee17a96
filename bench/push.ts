/**
 * Scenario 3, push efficiency: each platform's connector against its wire-level fake (nock, in this
 * process), counting upload requests per run. A run must send exactly ceil(changes / the platform's
 * largest batch) upload requests per audience and operation, and none when nothing changed.
 * `node dist/bench/push.js <customers> <redisUrl>`; prints a JSON line.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { FakeDataManager } from '../connectors/google-ads/fixtures/fake-datamanager.js';
import { connectors } from '../connectors/index.js';
import { FakeMailchimp } from '../connectors/mailchimp/fixtures/fake.js';
import { FakeGraph } from '../connectors/meta/fixtures/fake-graph.js';
import { generateShop } from '../src/example/generate.js';
import { normalizeEmail } from '../src/identify/normalize.js';
import { createLogger } from '../src/log.js';
import { StateStore } from '../src/record/store.js';
import { prepareSync, syncPrepared } from '../src/sync/prepare.js';
import type { AudienceResult } from '../src/sync/run.js';
import { tempDir } from './util.js';

const [customersArg, redisUrl] = process.argv.slice(2) as [string, string];
const customers = Number(customersArg);
const log = createLogger({ level: 'silent', json: true });
const redis = new Redis(redisUrl);
nock.disableNetConnect();
nock.enableNetConnect(/127\.0\.0\.1|localhost/);

process.env.BENCH_META_TOKEN = 'EAAB-bench-token-0123456789';
process.env.BENCH_GOOGLE_SECRET = 'bench-secret';
process.env.BENCH_GOOGLE_REFRESH = 'bench-refresh';
process.env.BENCH_MAILCHIMP_KEY = '0123456789abcdef0123456789abcdef-us9';

interface Platform {
  name: string;
  /** The platform's largest batch, as the connector is configured here. */
  batch: number;
  destination: string;
  /** Upload requests so far, by operation; `perMember`: Mailchimp's untagging by hash, one call per member. */
  uploads(): { add: number; remove: number; perMember?: number };
}

const dir = tempDir('audience-sync-push-');
const shop = await generateShop(path.join(dir, 'shop'), { customers, seed: 9, analysisDate: '2026-01-01' });
const config = path.join(dir, 'audience-sync.yaml');
writeFileSync(
  config,
  `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
destinations:
  meta: { type: meta, ad_account_id: "1234567890", access_token: "\${BENCH_META_TOKEN}", default_country: US }
  google:
    type: google_ads
    customer_id: "1234567890"
    client_id: bench.apps.googleusercontent.com
    client_secret: \${BENCH_GOOGLE_SECRET}
    refresh_token: \${BENCH_GOOGLE_REFRESH}
  mailchimp: { type: mailchimp, api_key: "\${BENCH_MAILCHIMP_KEY}", list_id: a1b2c3d4e5, batch_operations_threshold: 100000 }
sync: { redis_prefix: bench-push-${process.pid} }
`,
);

const meta = new FakeGraph('https://graph.facebook.com', 'v25.0', '1234567890', process.env.BENCH_META_TOKEN);
const google = new FakeDataManager(
  'https://datamanager.googleapis.com',
  'https://oauth2.googleapis.com/token',
  '1234567890',
);
google.install();
const mailchimp = new FakeMailchimp(process.env.BENCH_MAILCHIMP_KEY!, 'a1b2c3d4e5').install();
mailchimp.batchPolls = 0;
// Tags go on contacts the audience already has (the usual case): every customer is one.
const emailsOf = () =>
  readFileSync(shop.files.customers, 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.split(',')[1])
    .filter((e): e is string => !!e);
for (const email of emailsOf()) {
  const normal = normalizeEmail(email);
  if (normal && !mailchimp.contacts.has(normal)) mailchimp.addContact(normal);
}

const platforms: Platform[] = [
  {
    name: 'meta',
    batch: 10_000,
    destination: 'meta',
    uploads: () => ({ add: meta.edge('users', 'POST').length, remove: meta.edge('users', 'DELETE').length }),
  },
  {
    name: 'google_ads (Data Manager)',
    batch: 10_000,
    destination: 'google',
    uploads: () => ({
      add: google.batches.filter((b) => b.op === 'ingest').length,
      remove: google.batches.filter((b) => b.op === 'remove').length,
    }),
  },
  {
    name: 'mailchimp',
    batch: 500,
    destination: 'mailchimp',
    uploads: () => {
      const bulk = mailchimp.calls('POST', /\/lists\/[^/]+\/segments\/[^/]+$/);
      const count = (field: string) =>
        bulk.filter((r) => ((r.body as Record<string, unknown[]>)[field] ?? []).length > 0).length;
      return {
        add: count('members_to_add'),
        remove: count('members_to_remove'),
        perMember: mailchimp.calls('POST', /\/members\/[^/]+\/tags$/).length,
      };
    },
  },
];

const store = new StateStore(redis, `bench-push-${process.pid}`);
async function run(platform: Platform): Promise<AudienceResult[]> {
  const prepared = await prepareSync(config, connectors, { destination: platform.destination });
  return syncPrepared(prepared, { store, log });
}

/** 1 % of customers change email: a removal and an addition each, in their audience. */
function changeEmails(): void {
  const lines = readFileSync(shop.files.customers, 'utf8').split('\n');
  for (let r = 1; r < lines.length; r += 100) {
    const cells = lines[r]!.split(',');
    if (!cells[1]) continue;
    cells[1] = `moved-${r}@example.net`;
    lines[r] = cells.join(',');
    mailchimp.addContact(`moved-${r}@example.net`);
  }
  writeFileSync(shop.files.customers, lines.join('\n'));
}

const report: Record<string, unknown>[] = [];
const runs: [string, (() => void) | undefined][] = [
  ['first run', undefined],
  ['nothing changed', undefined],
  ['1 % changed email', changeEmails],
];
for (const [label, before] of runs) {
  before?.();
  for (const platform of platforms) {
    const was = platform.uploads();
    const results = await run(platform);
    const now = platform.uploads();
    const minimal = results.reduce(
      (a, r) => ({
        add: a.add + Math.ceil((r.added + r.rejected) / platform.batch),
        remove: a.remove + Math.ceil(r.removed / platform.batch),
      }),
      { add: 0, remove: 0 },
    );
    // Mailchimp untags by hash, one call each, the members whose email is gone; the rest go in bulk.
    const perMember = (now.perMember ?? 0) - (was.perMember ?? 0);
    if (perMember > 0)
      minimal.remove = Math.ceil(
        Math.max(0, results.reduce((a, r) => a + r.removed, 0) - perMember) / platform.batch,
      );
    const errors = results.filter((r) => r.error).map((r) => r.error);
    report.push({
      run: label,
      platform: platform.name,
      audiences: results.length,
      added: results.reduce((a, r) => a + r.added, 0),
      removed: results.reduce((a, r) => a + r.removed, 0),
      addRequests: now.add - was.add,
      removeRequests: now.remove - was.remove,
      ...(now.perMember !== undefined ? { perMemberRequests: now.perMember - (was.perMember ?? 0) } : {}),
      minimalAddRequests: minimal.add,
      minimalRemoveRequests: minimal.remove,
      ...(errors.length > 0 ? { errors } : {}),
    });
  }
}

const keys = await redis.keys(`bench-push-${process.pid}:*`);
for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
redis.disconnect();
nock.cleanAll();
process.stdout.write(JSON.stringify({ customers, push: report }) + '\n');
