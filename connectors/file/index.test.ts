import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../test/helpers.js';
import type { Member, RemoteAudience } from '../../src/connector.js';
import { FileClient, fileConfigSchema } from './index.js';

/** A member with one email identifier; its line in the files is `email=<sha256 of the name>`. */
function member(name: string): Member {
  return { key: Buffer.alloc(8), slots: [createHash('sha256').update(name).digest(), undefined] };
}
const line = (name: string) => `email=${createHash('sha256').update(name).digest('hex')}`;

function client(dir: string): FileClient {
  return new FileClient(fileConfigSchema.parse({ type: 'file', path: dir }), '/');
}

function entry(seq: number, audience: string, op: string, names: string[]): string {
  return JSON.stringify({ seq, at: '2026-01-01T00:00:00.000Z', audience, op, members: names.map(line) });
}

/** The member file's identifiers and position, as a reader of the folder sees them. */
function membersFile(dir: string, id: string): { seq: number; lines: string[] } {
  const [header, ...lines] = readFileSync(path.join(dir, `${id}.members`), 'utf8').split('\n');
  return { seq: Number(/seq=(\d+)$/.exec(header!)![1]), lines: lines.filter(Boolean) };
}

const seqs = (dir: string) =>
  readFileSync(path.join(dir, 'changes.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);

function folderWith(registry: Record<string, string>, log: string): string {
  const dir = tempDir('audience-sync-file-');
  writeFileSync(path.join(dir, 'audiences.json'), JSON.stringify(registry));
  writeFileSync(path.join(dir, 'changes.jsonl'), log);
  return dir;
}

describe('file destination: the change log', () => {
  it('cuts off a torn last line, never counts it as a batch, and numbers the next batch after the whole ones', async () => {
    const whole = `${entry(1, 'a', 'add', ['ann'])}\n${entry(2, 'a', 'add', ['bob'])}\n`;
    const dir = folderWith({ a: 'A' }, whole + entry(3, 'a', 'add', ['cyd']).slice(0, 60));
    const c = client(dir);
    const a = await c.ensureAudience('A');
    expect(await c.stats(a)).toEqual({ size: 2, counts: 'identifiers', warnings: [] });
    expect(readFileSync(path.join(dir, 'changes.jsonl'), 'utf8')).toBe(whole);
    await c.add(a, [member('dee')]);
    await c.close();
    expect(seqs(dir)).toEqual([1, 2, 3]);
    expect(membersFile(dir, 'a')).toEqual({ seq: 3, lines: ['ann', 'bob', 'dee'].map(line).sort() });
  });

  it('keeps a whole entry written after a torn one on the same line (an older version could leave that)', async () => {
    const log = `${entry(1, 'a', 'add', ['ann'])}\n${entry(2, 'a', 'add', ['bob']).slice(0, 50)}${entry(3, 'a', 'add', ['cyd'])}\n`;
    const dir = folderWith({ a: 'A' }, log);
    const c = client(dir);
    const a = await c.ensureAudience('A');
    expect(await c.stats(a)).toEqual({ size: 2, counts: 'identifiers', warnings: [] });
    await c.close();
    expect(membersFile(dir, 'a').lines).toEqual(['ann', 'cyd'].map(line).sort());
  });

  it('clients that interleave share one numbering, one registry, and every batch reaches the member file', async () => {
    const dir = tempDir('audience-sync-file-');
    const one = client(dir);
    const two = client(dir);
    const a1 = await one.ensureAudience('A');
    const a2 = await two.ensureAudience('A');
    expect(a2).toEqual({ ...a1, created: false });
    await one.ensureAudience('B');
    await two.ensureAudience('C');
    await one.add(a1, [member('ann')]);
    await two.add(a2, [member('bob')]);
    await one.remove(a1, [member('ann')]);
    await two.add(a2, [member('cyd')]);
    // The client that saw fewer of the batches closes last: it must not write its own view.
    await two.close();
    await one.close();
    expect(seqs(dir)).toEqual([1, 2, 3, 4]);
    expect(Object.values(JSON.parse(readFileSync(path.join(dir, 'audiences.json'), 'utf8'))).sort()).toEqual([
      'A',
      'B',
      'C',
    ]);
    expect(membersFile(dir, a1.id)).toEqual({ seq: 4, lines: ['bob', 'cyd'].map(line).sort() });
    expect(await client(dir).stats(a1)).toEqual({ size: 2, counts: 'identifiers', warnings: [] });
  });
});

describe('file destination: member files', () => {
  it('a member file that cannot be written fails close(); the next client writes it from the log', async () => {
    const dir = tempDir('audience-sync-file-');
    const c = client(dir);
    const a = await c.ensureAudience('A');
    await c.add(a, [member('ann'), member('bob')]);
    // A folder where the temporary copy goes: the write fails for real, as on a disk that refuses it.
    const squat = path.join(dir, `${a.id}.members.tmp`);
    mkdirSync(path.join(squat, 'in-the-way'), { recursive: true });
    await expect(c.close()).rejects.toThrow(
      /could not write the member files of 'A' in .*: illegal operation on a directory \(EISDIR\)/,
    );
    expect(existsSync(path.join(dir, `${a.id}.members`))).toBe(false);
    // The batch counted is on the destination all the same: the log holds it.
    expect(await client(dir).stats(a)).toEqual({ size: 2, counts: 'identifiers', warnings: [] });

    rmSync(squat, { recursive: true });
    // The next run syncs another audience only: the file behind the log is written all the same.
    const next = client(dir);
    await next.ensureAudience('B');
    await next.close();
    expect(membersFile(dir, a.id)).toEqual({ seq: 1, lines: ['ann', 'bob'].map(line).sort() });
  });

  it('a client used only for check writes nothing', async () => {
    const dir = path.join(tempDir('audience-sync-file-'), 'out');
    const c = client(dir);
    expect((await c.check())[0]!.ok).toBe(true);
    await c.close();
    expect(existsSync(dir)).toBe(false);
  });
});

describe('file destination: the folder lock', () => {
  const audience: RemoteAudience = { id: 'a', name: 'A' };

  it('takes over at once a lock left by a process that no longer runs', async () => {
    const dir = folderWith({ a: 'A' }, '');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    const lock = path.join(dir, 'audiences.lock');
    writeFileSync(
      lock,
      JSON.stringify({ pid: gone, host: hostname(), nonce: 'x', at: new Date().toISOString() }),
    );
    await client(dir).add(audience, [member('ann')]);
    expect(seqs(dir)).toEqual([1]);
    expect(existsSync(lock)).toBe(false);
  });

  it('waits for a lock held by a running process, then goes on', async () => {
    const dir = folderWith({ a: 'A' }, '');
    const holder = spawn('sleep', ['60']);
    try {
      const lock = path.join(dir, 'audiences.lock');
      writeFileSync(
        lock,
        JSON.stringify({ pid: holder.pid, host: hostname(), nonce: 'x', at: new Date().toISOString() }),
      );
      const adding = client(dir).add(audience, [member('ann')]);
      for (let i = 0; i < 20; i++) await tick();
      // Nothing can be written while another process holds the folder.
      expect(readFileSync(path.join(dir, 'changes.jsonl'), 'utf8')).toBe('');
      rmSync(lock);
      await adding;
      expect(seqs(dir)).toEqual([1]);
    } finally {
      holder.kill();
    }
  });
});
