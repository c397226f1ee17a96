import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateShop } from '../../src/example/generate.js';
import { StateStore } from '../../src/record/store.js';
import { expectedAudiences, expectedRows, fileAudiences, makeShop } from './harness.js';

/**
 * Kills `sync` with SIGKILL at random moments (while reading, pushing, journaling, checkpointing,
 * or writing the file destination) and checks that the next run leaves every audience exactly
 * equal to its segment, and that the run after that sends nothing.
 */
const BIN = path.resolve('dist/app/cli/bin.js');
const env = { ...process.env, CI: 'true', REDIS_URL: inject('redisUrl') };
const TRIALS = Number(process.env.CRASH_TRIALS ?? 24);
const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());

function runToEnd(cwd: string): { added: number; removed: number; ms: number; out: string } {
  const started = performance.now();
  const r = spawnSync(process.execPath, [BIN, 'sync', '--json'], { cwd, env, encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 3) throw new Error(`sync exited ${r.status}: ${r.stderr}`);
  const results = JSON.parse(r.stdout).results as { added: number; removed: number }[];
  return {
    added: results.reduce((a, x) => a + x.added, 0),
    removed: results.reduce((a, x) => a + x.removed, 0),
    ms: performance.now() - started,
    out: JSON.stringify(results.filter((x) => x.added + x.removed > 0)) + r.stderr,
  };
}

/**
 * Starts a sync and kills it: `ms` after start, or — when `log` is given — `ms` after the file
 * destination's change log first grows, which lands inside the push phase.
 */
function killAfter(cwd: string, ms: number, log?: string): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'sync'], { cwd, env, stdio: 'ignore' });
    const size = () => (log && existsSync(log) ? statSync(log).size : 0);
    const start = size();
    let timer: NodeJS.Timeout | undefined;
    const watch = log
      ? setInterval(() => {
          if (timer || size() === start) return;
          timer = setTimeout(() => child.kill('SIGKILL'), ms);
        }, 1)
      : undefined;
    if (!log) timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      clearInterval(watch);
      resolve();
    });
  });
}

// One test per trial, in order, on one shop: each has the suite's hang guard, however many trials there are.
describe(`crash safety: after ${TRIALS} random kills, the next run always finishes the job`, () => {
  let shop: Awaited<ReturnType<typeof makeShop>>;
  let full = 0;
  // Other shops with the same customer ids: segments move and identifiers change between trials.
  const variants: string[] = [];
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const use = (dir: string) => {
    for (const file of ['orders.csv', 'customers.csv'])
      copyFileSync(path.join(dir, file), path.join(shop.dir, 'shop', file));
  };

  beforeAll(async () => {
    shop = await makeShop({ customers: 500, batchSize: 4, seed: 11, sync: 'max_removal_share: 1' });
    full = runToEnd(shop.dir).ms;
    for (const variant of [12, 13, 14]) {
      const dir = path.join(shop.dir, `variant-${variant}`);
      await generateShop(dir, { customers: 500, seed: variant, analysisDate: '2026-01-01' });
      variants.push(dir);
    }
  });

  for (let trial = 0; trial < TRIALS; trial++) {
    // One or two kills in a row: anywhere from start-up to the end of a normal run, or while pushing.
    const kills = 1 + (trial % 2);
    it(`trial ${trial}: ${kills} kill${kills > 1 ? 's' : ''}, then a run that leaves every audience exact`, async () => {
      use(variants[trial % variants.length]!);
      for (let k = 0; k < kills; k++) {
        if (random() < 0.35) await killAfter(shop.dir, 100 + random() * full);
        else await killAfter(shop.dir, random() * 40, path.join(shop.out, 'changes.jsonl'));
      }
      const complete = runToEnd(shop.dir);
      const expected = await expectedAudiences(shop.config);
      const got = fileAudiences(shop.out);
      expect(got, `trial ${trial}`).toEqual(expected);
      // The state counts what the platform holds (what health readings and alerts compare with the segment).
      const store = new StateStore(redis, shop.prefix);
      for (const [name, members] of await expectedRows(shop.config)) {
        const counts = await store.audience('local', name).counts();
        expect(counts && counts.confirmed + counts.addPending, `trial ${trial}: '${name}' as counted`).toBe(
          members.size,
        );
      }
      const again = runToEnd(shop.dir);
      expect(
        again.added + again.removed,
        `trial ${trial}: a run after a complete one sends nothing: ${again.out}\nthe complete run: ${complete.out}`,
      ).toBe(0);
    });
  }
});
