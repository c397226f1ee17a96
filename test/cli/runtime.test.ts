import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The product runs Node with one V8 flag (a young generation of 64 MB per semi-space): the container's
 * entrypoint passes it, and so do CI's run of that recipe and the benchmarks; the README tells anyone
 * who starts the CLI or the worker themselves to set it in NODE_OPTIONS.
 */
const FLAG = '--max-semi-space-size=64';
const read = (file: string) => readFileSync(path.resolve(file), 'utf8');

describe('the runtime flag', () => {
  it('is the same in the container, its recipe in CI, the benchmarks and the README', () => {
    expect(read('Dockerfile')).toMatch(
      new RegExp(`^ENTRYPOINT \\["node", "${FLAG}", "/app/dist/app/cli/bin.js"\\]$`, 'm'),
    );
    expect(read('.ci/container')).toContain(`node ${FLAG} "$app/dist/app/cli/bin.js"`);
    expect(read('bench/run.ts')).toContain(`const RUNTIME = ['${FLAG}'];`);
    expect(read('README.md')).toContain(`NODE_OPTIONS=${FLAG}`);
  });

  it('is one that node takes from NODE_OPTIONS, as the README says to set it', () => {
    const r = spawnSync(process.execPath, ['-e', 'console.log("ok")'], {
      env: { ...process.env, NODE_OPTIONS: FLAG },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ok');
  });
});
