import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { expectedAudiences, expectedRows, fileAudiences, makeShop } from '../../test/sync/harness.js';
import { tempDir } from '../../test/helpers.js';

/**
 * Issue 14, case 3: a disk that refuses part of a write. The kernel reports a short write only by its
 * byte count (`write` returns less than asked; the next write fails), which is what a file size limit
 * (RLIMIT_FSIZE, set with `prlimit`; Node ignores the SIGXFSZ that comes with it) and a full tmpfs both
 * do for real. Nothing of `fs` is stubbed: the CLI runs in its own process.
 */
const BIN = path.resolve('dist/app/cli/bin.js');
const env = { ...process.env, CI: 'true', REDIS_URL: inject('redisUrl') };

interface Result {
  audience: string;
  added: number;
  removed: number;
  unchanged: number;
  error?: string;
}

function sync(cwd: string, limitBytes?: number) {
  const command = limitBytes
    ? ['prlimit', `--fsize=${limitBytes}`, process.execPath, BIN]
    : [process.execPath, BIN];
  const r = spawnSync(command[0]!, [...command.slice(1), 'sync', '--json'], { cwd, env, encoding: 'utf8' });
  if (r.error) throw r.error;
  const results = r.stdout.trim() ? (JSON.parse(r.stdout) as { results: Result[] }).results : undefined;
  return { code: r.status, stderr: r.stderr, results };
}

const sum = (results: Result[], field: 'added' | 'removed') => results.reduce((a, r) => a + r[field], 0);

/** The change log's lines, each of which must be a whole entry: no torn line is left for a reader. */
function wholeLog(out: string): { seq: number; members: string[] }[] {
  const text = readFileSync(path.join(out, 'changes.jsonl'), 'utf8');
  expect(text === '' || text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { seq: number; members: string[] });
}

/** Whatever a failed run left behind: only whole member files and no temporary copies. */
function expectNoDebris(out: string): void {
  expect(readdirSync(out).filter((f) => f.includes('.tmp') || f.includes('.lock'))).toEqual([]);
  for (const file of readdirSync(out).filter((f) => f.endsWith('.members'))) {
    const [header, ...lines] = readFileSync(path.join(out, file), 'utf8').split('\n');
    expect(header).toMatch(/^# audience-sync file audience: .*; seq=\d+$/);
    expect(lines.pop()).toBe('');
    for (const line of lines) expect(line).toMatch(/^(email|phone)=[0-9a-f]{64}$/);
  }
}

describe('a write the disk cuts short (issue 14, case 3)', () => {
  it('under a file size limit, a torn batch is not counted and the next run sends it', async () => {
    const shop = await makeShop({ customers: 2000 });
    // 20,000 bytes: the first audience's batch (about 30 kB) is written in part, then refused.
    const limited = sync(shop.dir, 20_000);
    expect(limited.code).toBe(1);
    expect(limited.results).toBeDefined();
    // What the run counted is exactly what the log holds whole.
    const log = wholeLog(shop.out);
    expect(sum(limited.results!, 'added')).toBe(log.reduce((a, e) => a + e.members.length, 0));
    const failed = limited.results!.filter((r) => r.error);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((r) => r.added === 0)).toBe(true);
    expect(failed[0]!.error).toMatch(/wrote 20,000 of [\d,]+ bytes: file too large \(EFBIG\)/);
    expectNoDebris(shop.out);

    // The limit lifted: the batches not counted are sent again, and every audience is whole.
    const again = sync(shop.dir);
    expect(again.code).toBe(0);
    const expected = await expectedAudiences(shop.config);
    expect(fileAudiences(shop.out)).toEqual(expected);
    const rows = await expectedRows(shop.config);
    const members = [...rows.values()].reduce((a, m) => a + m.size, 0);
    expect(sum(limited.results!, 'added') + sum(again.results!, 'added')).toBe(members);
    const third = sync(shop.dir);
    expect(sum(third.results!, 'added') + sum(third.results!, 'removed')).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(expected);
    const seqs = wholeLog(shop.out).map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  });
});

/** A real tmpfs needs root (CI runs as root); the file size limit above covers the same short write without. */
const mountable = (() => {
  if (process.getuid?.() !== 0) return false;
  const probe = tempDir('audience-sync-tmpfs-probe-');
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]).status === 0;
  if (ok) spawnSync('umount', [probe]);
  rmSync(probe, { recursive: true, force: true });
  return ok;
})();

describe.skipIf(!mountable)(
  `a full disk (a real tmpfs${mountable ? '' : ': skipped, mounting one needs root'})`,
  () => {
    const mounted: string[] = [];
    const mount = (dir: string, size: string) => {
      mkdirSync(dir, { recursive: true });
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`mount failed: ${r.stderr}`);
      mounted.push(dir);
    };
    /** Frees space by growing the tmpfs: what an operator does after ENOSPC. */
    const grow = (dir: string, size: string) => {
      const r = spawnSync('mount', ['-o', `remount,size=${size}`, dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`remount failed: ${r.stderr}`);
    };
    afterEach(() => {
      for (const dir of mounted.splice(0)) spawnSync('umount', [dir]);
    });

    it('on a 200 KB tmpfs the run fails with ENOSPC, and after freeing space every audience is whole', async () => {
      const shop = await makeShop({ customers: 2000 });
      mount(shop.out, '200k');
      const full = sync(shop.dir);
      expect(full.code).toBe(1);
      expect(full.stderr + JSON.stringify(full.results ?? [])).toMatch(/no space left on device \(ENOSPC\)/);
      const log = wholeLog(shop.out);
      expect(sum(full.results!, 'added')).toBe(log.reduce((a, e) => a + e.members.length, 0));

      grow(shop.out, '16m');
      const again = sync(shop.dir);
      expect(again.code).toBe(0);
      const expected = await expectedAudiences(shop.config);
      expect(fileAudiences(shop.out)).toEqual(expected);
      expect(expected.get('RFM: Hibernating')!.size).toBeGreaterThan(0);
      const third = sync(shop.dir);
      expect(sum(third.results!, 'added') + sum(third.results!, 'removed')).toBe(0);
      expect(fileAudiences(shop.out)).toEqual(expected);
      expectNoDebris(shop.out);
    });

    it('member files that cannot be written after the batches counted are written from the log next run', async () => {
      const shop = await makeShop({ customers: 2000 });
      mount(shop.out, '16m');
      expect(sync(shop.dir).code).toBe(0);

      // Four members of the largest audience change email: a few small batches, one large member file.
      const rows = await expectedRows(shop.config);
      const changed = new Set([...rows.get('Slipping away')!.keys()].slice(0, 4));
      shop.editCustomers((cells, header) => {
        if (changed.has(cells[header.indexOf('customer_id')]!))
          cells[header.indexOf('email')] = `new-${cells[header.indexOf('customer_id')]}@example.org`;
      });
      const memberFile = readFileSync(path.join(shop.out, 'slipping-away.members'));
      // Leave room for the batches but not for a new copy of that member file.
      const { bavail, bsize } = statfsSync(shop.out);
      const room = Math.floor(memberFile.length / 2);
      writeFileSync(path.join(shop.out, 'ballast'), Buffer.alloc(Math.max(0, bavail * bsize - room)));

      const cut = sync(shop.dir);
      expect(cut.code).toBe(1);
      // The run says what it sent (the batches are in the log), then why it failed.
      expect(sum(cut.results!, 'added') + sum(cut.results!, 'removed')).toBeGreaterThan(0);
      expect(cut.stderr).toMatch(/could not write the member files of .*'Slipping away'/);
      expect(cut.stderr).toMatch(/ENOSPC/);
      // The member file is as it was (never a truncated copy), and the log holds the batches.
      expect(readFileSync(path.join(shop.out, 'slipping-away.members')).equals(memberFile)).toBe(true);
      const log = wholeLog(shop.out);
      expect(log.length).toBeGreaterThan(0);

      rmSync(path.join(shop.out, 'ballast'));
      const next = sync(shop.dir);
      expect(next.code).toBe(0);
      // Nothing to send: the batches counted are on the destination, and its member files say so now.
      expect(sum(next.results!, 'added') + sum(next.results!, 'removed')).toBe(0);
      expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
      expectNoDebris(shop.out);
    });
  },
);
