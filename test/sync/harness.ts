import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { expect, inject } from 'vitest';
import { fileConnector, memberLine } from '../../connectors/file/index.js';
import { audiencesOf, membershipOf } from '../../src/audience/audiences.js';
import { loadConfig } from '../../src/config/load.js';
import { segmentCustomers } from '../../src/score/pipeline.js';
import { PROFILE_FIELDS } from '../../src/source/columns.js';
import type { Config } from '../../src/config/schema.js';
import { slotBuffers, type Identified, type Person } from '../../src/identify/types.js';
import type { Segmented } from '../../src/score/pipeline.js';
import { generateShop } from '../../src/example/generate.js';
import type { Logger } from '../../src/log.js';
import type { StateStore } from '../../src/record/store.js';
import { prepareSync, syncPrepared, type ConnectorRegistry } from '../../src/sync/prepare.js';
import type { RetryPolicy } from '../../src/push/retry.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { tempDir } from '../helpers.js';

/** The built CLI: `npm run build` makes it. */
export const BIN = path.resolve('dist/app/cli/bin.js');

/** The environment of a CLI run against the test Redis, logging warnings and errors only. */
export function cliEnv(): NodeJS.ProcessEnv {
  return { ...process.env, CI: 'true', REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'warn' };
}

/**
 * `plan --json` by the built CLI in `cwd`, identifying in `threads` threads (0: on the main thread) from the
 * first customer on: each destination's skip reasons and their counts.
 */
export function planSkips(
  cwd: string,
  threads: number,
  env: NodeJS.ProcessEnv = {},
): Record<string, Record<string, number>> {
  const r = spawnSync(process.execPath, [BIN, 'plan', '--json'], {
    cwd,
    env: {
      ...cliEnv(),
      AUDIENCE_SYNC_THREADS: String(threads),
      AUDIENCE_SYNC_THREADS_FROM: '1',
      ...env,
    },
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { plans: { destination: string; skipped: Record<string, number> }[] };
  return Object.fromEntries(out.plans.map((p) => [p.destination, p.skipped]));
}

/** Runs the built CLI in `cwd` to its end: its exit code and output. */
export function cli(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: cliEnv(), encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A synthetic shop, a config syncing it (to a `file` destination named `local`, unless `destinations` gives
 * the block's entries, indented by two spaces), and a Redis prefix of its own.
 */
export async function makeShop(
  options: {
    customers?: number;
    batchSize?: number;
    seed?: number;
    destinations?: string;
    attributes?: readonly string[];
    /** More keys of the `sync:` block, as YAML flow entries (`max_removal_share: 1`). */
    sync?: string;
  } = {},
) {
  const dir = tempDir('audience-sync-sync-');
  await generateShop(path.join(dir, 'shop'), {
    customers: options.customers ?? 400,
    seed: options.seed ?? 3,
    analysisDate: '2026-01-01',
  });
  const prefix = `test-${path.basename(dir)}`;
  const write = (analysisDate = '2026-01-01', extra = '') =>
    writeFileSync(
      path.join(dir, 'audience-sync.yaml'),
      `source: { type: csv, path: shop/orders.csv }
profiles:
  type: csv
  path: shop/customers.csv
  attributes: [${(options.attributes ?? ['favorite_brand']).join(', ')}]
scoring: { analysis_date: "${analysisDate}" }
audiences:
  list:
    - { name: "Champions who love Acme", segments: [Champions], where: { favorite_brand: Acme } }
    - { name: "Slipping away", segments: ["At Risk", "Can't Lose Them"] }
destinations:
${options.destinations ?? `  local: { type: file, path: out, batch_size: ${options.batchSize ?? 10000} }`}
sync: { redis_prefix: ${prefix}, lease_seconds: 2${options.sync ? `, ${options.sync}` : ''} }
${extra}`,
    );
  write();
  /** Edits the customer file in place: `edit(cells, header, row)` for each data row (row 1 is the first). */
  const editCustomers = (edit: (cells: string[], header: string[], row: number) => void) => {
    const file = path.join(dir, 'shop', 'customers.csv');
    const lines = readFileSync(file, 'utf8').split('\n');
    const header = lines[0]!.split(',');
    for (let r = 1; r < lines.length; r++) {
      if (lines[r] === '') continue;
      const cells = lines[r]!.split(',');
      edit(cells, header, r);
      lines[r] = cells.join(',');
    }
    writeFileSync(file, lines.join('\n'));
  };
  return {
    dir,
    config: path.join(dir, 'audience-sync.yaml'),
    out: path.join(dir, 'out'),
    prefix,
    write,
    editCustomers,
  };
}

/** Per audience, the hashed identifiers the segments call for, computed from the source directly. */
export async function expectedAudiences(configFile: string): Promise<Map<string, Set<string>>> {
  const rows = await expectedRows(configFile);
  return new Map(
    [...rows].map(([name, members]) => [name, new Set([...members.values()].flatMap((l) => l.split(' ')))]),
  );
}

/**
 * Per audience, each identifiable member's identifier slots by customer id, computed straight from the
 * source with a connector's `identify` (profile fields and attributes, as the core passes them).
 */
export function identifiedMembers(
  config: Config,
  segmented: Segmented,
  identify: (person: Person) => Identified,
): Map<string, Map<string, (Buffer | undefined)[]>> {
  const { customers } = segmented;
  const out = new Map<string, Map<string, (Buffer | undefined)[]>>();
  for (const spec of audiencesOf(config, segmented.scores.segments)) {
    const members = new Map<string, (Buffer | undefined)[]>();
    for (const i of membershipOf(spec, segmented).members) {
      const person: Person = {};
      for (const f of PROFILE_FIELDS) {
        const v = customers.profile[f]?.get(i);
        if (v !== undefined) person[f] = v;
      }
      for (const [name, column] of Object.entries(customers.attributes)) {
        const v = column.get(i);
        if (v !== undefined && person[name] === undefined) person[name] = v;
      }
      const id = identify(person);
      if (!('skip' in id)) members.set(customers.ids.get(i)!, slotBuffers(id.slots));
    }
    out.set(spec.name, members);
  }
  return out;
}

/** Per audience, each member's line (`email=… phone=…`) by customer id. */
export async function expectedRows(configFile: string): Promise<Map<string, Map<string, string>>> {
  const { config, dir } = loadConfig(configFile);
  const segmented = await segmentCustomers(config, { baseDir: dir });
  const destination = fileConnector.configSchema.parse(config.destinations.local);
  const members = identifiedMembers(config, segmented, (person) =>
    fileConnector.identify(person, destination),
  );
  return new Map(
    [...members].map(([name, byId]) => [
      name,
      new Map([...byId].map(([id, slots]) => [id, memberLine(slots)])),
    ]),
  );
}

/** Per audience, the identifiers in the file destination. */
export function fileAudiences(out: string): Map<string, Set<string>> {
  const registry = JSON.parse(readFileSync(path.join(out, 'audiences.json'), 'utf8')) as Record<
    string,
    string
  >;
  const result = new Map<string, Set<string>>();
  for (const [id, name] of Object.entries(registry)) {
    const file = path.join(out, `${id}.members`);
    const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(1).filter(Boolean) : [];
    result.set(name, new Set(lines));
  }
  return result;
}

export function changeLog(out: string): { audience: string; op: string; members: string[] }[] {
  const file = path.join(out, 'changes.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Redis loses the state under `prefix` (flushed, evicted): all of it, and there was one (13 audiences). */
export async function loseState(redis: Redis, prefix: string): Promise<void> {
  const keys = await redis.keys(`${prefix}:*`);
  expect(keys.length).toBeGreaterThan(13);
  await redis.del(...keys);
}

export async function clearPrefix(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
}

/** One sync of a destination, as a worker runs it: prepare, create its client, sync, close the client. */
export async function syncOnce(
  configFile: string,
  registry: ConnectorRegistry,
  options: {
    store: StateStore;
    log: Logger;
    destination?: string;
    full?: boolean;
    retry?: RetryPolicy;
  },
): Promise<AudienceResult[]> {
  const prepared = await prepareSync(configFile, registry, { destination: options.destination });
  return syncPrepared(prepared, {
    store: options.store,
    log: options.log,
    full: options.full ?? false,
    ...(options.retry ? { retry: options.retry } : {}),
  });
}

/**
 * Runs syncs until a platform that processes later has taken everything and nothing is left to send
 * (`between` runs before each: a fake finishing its jobs); fails on any audience error.
 */
export async function syncUntilSettled(
  run: () => Promise<AudienceResult[]>,
  options: { most: number; between?: () => void },
): Promise<AudienceResult[][]> {
  const runs: AudienceResult[][] = [];
  for (let n = 0; n < options.most; n++) {
    options.between?.();
    const results = await run();
    runs.push(results);
    const errors = results.filter((r) => r.error).map((r) => `${r.audience}: ${r.error}`);
    if (errors.length > 0) throw new Error(`run ${n + 1} failed: ${errors.join('; ')}`);
    if (results.every((r) => r.inFlight === 0 && r.added === 0 && r.removed === 0 && r.waiting === 0))
      return runs;
  }
  throw new Error(`the sync did not settle in ${options.most} runs`);
}
