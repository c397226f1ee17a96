import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { expectedAudiences, expectedRows, fileAudiences, makeShop } from '../../test/sync/harness.js';

/**
 * Issue 14, case 11 (the file destination's part): two processes writing one folder at once. Each must
 * number its batches after every batch on disk, fold every batch into the member files (not only its
 * own), and find or create audiences from the registry on disk.
 */
const BIN = path.resolve('dist/app/cli/bin.js');
const env = { ...process.env, CI: 'true', REDIS_URL: inject('redisUrl') };

interface Result {
  added: number;
  removed: number;
  error?: string;
}

/** A sync in its own process, and the promise of its end. */
function startSync(cwd: string, args: string[]) {
  const child = spawn(process.execPath, [BIN, 'sync', '--json', ...args], { cwd, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done };
}

const stopped = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');

/**
 * A real interleaving that does not depend on the machine's speed: the first sync is frozen (SIGSTOP) in
 * the middle of its batches, the second runs from start to end, then the first goes on from where it was.
 * It is frozen only while it holds no lock on the folder, as a slow process would be between two steps.
 */
async function interleaved(dir: string, out: string, first: string[], second: string[]) {
  const a = startSync(dir, first);
  const log = path.join(out, 'changes.jsonl');
  let ended = false;
  void a.done.then(() => (ended = true));
  while (!ended && !(existsSync(log) && statSync(log).size > 0)) await sleep(2);
  expect(ended, 'the first sync ended before it could be frozen').toBe(false);
  for (;;) {
    a.child.kill('SIGSTOP');
    while (!stopped(a.child.pid!)) await sleep(1);
    if (!existsSync(path.join(out, 'audiences.lock'))) break;
    a.child.kill('SIGCONT');
    await sleep(1);
  }
  const batchesBefore = logEntries(out).length;
  const b = await startSync(dir, second).done;
  a.child.kill('SIGCONT');
  return { a: await a.done, b, batchesBefore };
}

function logEntries(out: string): { seq: number; audience: string }[] {
  const text = readFileSync(path.join(out, 'changes.jsonl'), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { seq: number; audience: string });
}

function registry(out: string): Record<string, string> {
  return JSON.parse(readFileSync(path.join(out, 'audiences.json'), 'utf8')) as Record<string, string>;
}

function expectSound(out: string, expected: Map<string, Set<string>>) {
  // Sequence numbers: unique and increasing in log order.
  const seqs = logEntries(out).map((e) => e.seq);
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  // One registry entry per audience: no twin.
  expect(Object.values(registry(out)).sort()).toEqual([...expected.keys()].sort());
  // Every batch is folded into the member files.
  expect(fileAudiences(out)).toEqual(expected);
}

describe('two processes writing one file destination at once (issue 14, case 11)', () => {
  it('two syncs of one destination, then a third: exact members, one numbering', async () => {
    const shop = await makeShop({ customers: 800, batchSize: 5 });
    const { a, b, batchesBefore } = await interleaved(shop.dir, shop.out, [], []);
    // The second run waits for the first one's lease, which expires while it is frozen: the first run
    // stops when it wakes (it lost the lease), and its member files must still come out right.
    expect([0, 1, 3], a.stderr).toContain(a.code);
    expect([0, 3], b.stderr).toContain(b.code);
    const expected = await expectedAudiences(shop.config);
    const members = [...(await expectedRows(shop.config)).values()].reduce((n, m) => n + m.size, 0);
    expect(batchesBefore, 'the first sync was frozen after its last batch').toBeLessThan(members / 5);
    expectSound(shop.out, expected);

    const third = spawnSync(process.execPath, [BIN, 'sync', '--json'], {
      cwd: shop.dir,
      env,
      encoding: 'utf8',
    });
    expect([0, 3], third.stderr).toContain(third.status);
    expectSound(shop.out, expected);
  });

  it('two destinations sharing one folder (no lease keeps them apart): the folder stays exact', async () => {
    const shop = await makeShop({
      customers: 800,
      destinations: `  local: { type: file, path: out, batch_size: 5 }\n  two: { type: file, path: out, batch_size: 5 }`,
      // Each finds audiences the other filled, with no state of its own: it replaces them (a lost
      // state), and the file destination counts identifiers, more than the members the brake compares.
      sync: 'max_removal_share: 1',
    });
    // A lease that outlasts the freeze: the first run goes on where it was instead of stopping.
    const config = readFileSync(shop.config, 'utf8');
    writeFileSync(shop.config, config.replace('lease_seconds: 2', 'lease_seconds: 600'));
    const { a, b, batchesBefore } = await interleaved(
      shop.dir,
      shop.out,
      ['--destination', 'local'],
      ['--destination', 'two'],
    );
    for (const r of [a, b]) expect(r.code, r.stderr).toBe(0);
    const expected = await expectedAudiences(shop.config);
    expectSound(shop.out, expected);
    const members = [...(await expectedRows(shop.config)).values()].reduce((n, m) => n + m.size, 0);
    expect(batchesBefore, 'the first sync was frozen after its last batch').toBeLessThan(members / 5);
    // The first run went on after the second one's batches: it sent more than it had when frozen.
    const sent = (r: typeof a) =>
      (JSON.parse(r.stdout) as { results: Result[] }).results.reduce((n, x) => n + x.added, 0);
    expect(sent(a)).toBeGreaterThan(5 * batchesBefore);
    expect(sent(b)).toBe(members);

    const third = spawnSync(process.execPath, [BIN, 'sync', '--json', '--destination', 'local'], {
      cwd: shop.dir,
      env,
      encoding: 'utf8',
    });
    expect(third.status, third.stderr).toBe(0);
    // Each destination's state has its own epoch, and the folder keeps the last one written per audience:
    // an audience the other destination wrote last is replaced (two setups on one audience), the others
    // are left as they are.
    for (const r of (
      JSON.parse(third.stdout) as { results: (Result & { audience: string; replaced?: string })[] }
    ).results)
      if (r.replaced) expect(r.replaced, r.audience).toMatch(/carries the epoch of another state/);
      else expect(r.added + r.removed, r.audience).toBe(0);
    expectSound(shop.out, expected);
    const fourth = spawnSync(process.execPath, [BIN, 'sync', '--json', '--destination', 'local'], {
      cwd: shop.dir,
      env,
      encoding: 'utf8',
    });
    const again = (
      JSON.parse(fourth.stdout) as { results: (Result & { audience: string; replaced?: string })[] }
    ).results;
    expect(again.reduce((n, r) => n + r.added + r.removed, 0)).toBe(0);
    expect(again.filter((r) => r.replaced)).toEqual([]);
    expectSound(shop.out, expected);
  });
});
