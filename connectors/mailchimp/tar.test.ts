import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { tarGz } from './fixtures/fake.js';
import { readTarGz } from './tar.js';

describe('readTarGz', () => {
  it('returns the regular files with their names, skipping folders, and honours GNU long names', () => {
    const long = `${'d'.repeat(120)}/results.json`;
    const archive = tarGz([
      { name: 'job/', data: Buffer.alloc(0), dir: true },
      { name: 'job/a.json', data: Buffer.from('[1]') },
      { name: '././@LongLink', data: Buffer.from(`${long}\0`), type: 'L' },
      { name: long.slice(0, 99), data: Buffer.from('x'.repeat(700)) },
    ]);
    expect(readTarGz(archive).map((f) => [f.name, f.data.length])).toEqual([
      ['job/a.json', 3],
      [long, 700],
    ]);
  });

  it('refuses a truncated archive', () => {
    const archive = tarGz([{ name: 'a.json', data: Buffer.from('x'.repeat(1000)) }]);
    const cut = gzipSync(gunzipSync(archive).subarray(0, 800));
    expect(() => readTarGz(cut)).toThrow(/truncated tar entry/);
  });
});
