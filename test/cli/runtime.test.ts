import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

/**
 * The product runs Node with one V8 flag (a young generation of 64 MB per semi-space): the CLI's shebang
 * asks for it, and so do the container's entrypoint, CI's run of that recipe and the benchmarks.
 */
const FLAG = '--max-semi-space-size=64';
const read = (file: string) => readFileSync(path.resolve(file), 'utf8');

describe('the runtime flag', () => {
  it('is the same in the shebang, the container, its recipe in CI and the benchmarks', () => {
    expect(read('app/cli/bin.ts').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${FLAG}`);
    expect(read('Dockerfile')).toMatch(
      new RegExp(`^ENTRYPOINT \\["node", "${FLAG}", "/app/dist/app/cli/bin.js"\\]$`, 'm'),
    );
    expect(read('.ci/container')).toContain(`node ${FLAG} "$app/dist/app/cli/bin.js"`);
    expect(read('bench/run.ts')).toContain(`const RUNTIME = ['${FLAG}'];`);
  });

  it('the built CLI runs as an executable through its shebang, with the flag', () => {
    // A copy beside the build, made executable as npm makes a package's bin.
    const bin = path.resolve('dist/app/cli/bin.js');
    const copy = path.join(path.dirname(bin), `bin-shebang-${process.pid}.js`);
    copyFileSync(bin, copy);
    chmodSync(copy, 0o755);
    try {
      const r = spawnSync(copy, ['--version'], { encoding: 'utf8', cwd: tempDir() });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      // Its first line, on a script that prints what node was started with: the flag reaches node.
      const probe = path.join(tempDir(), 'probe.mjs');
      writeFileSync(
        probe,
        `${readFileSync(bin, 'utf8').split('\n')[0]}\nconsole.log(process.execArgv.join(' '));\n`,
      );
      chmodSync(probe, 0o755);
      expect(spawnSync(probe, { encoding: 'utf8' }).stdout.trim()).toBe(FLAG);
    } finally {
      rmSync(copy, { force: true });
    }
  });
});
