import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { glibcVersion, MALLOC_SETTING, mallocAdvice } from '../../src/runtime.js';

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
    expect(read('bench/runtime.ts')).toContain(`export const RUNTIME = ['${FLAG}'];`);
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

describe("glibc's malloc setting", () => {
  const { name, value } = MALLOC_SETTING;

  it('is the same in the container, its recipe in CI, the benchmarks and the README', () => {
    expect(`${name}=${value}`).toBe('MALLOC_MMAP_THRESHOLD_=131072');
    expect(read('Dockerfile')).toMatch(new RegExp(`^ENV .* ${name}=${value}$`, 'm'));
    expect(read('.ci/container')).toMatch(new RegExp(`^export ${name}=${value}$`, 'm'));
    expect(read('bench/runtime.ts')).toContain(`{ ${name}: '${value}' }`);
    expect(read('README.md')).toContain(`Environment=${name}=${value}`);
  });

  it("knows this machine's glibc as ldd does", () => {
    const ldd = spawnSync('ldd', ['--version'], { encoding: 'utf8' });
    const version = /(\d+\.\d+)\s*$/m.exec(ldd.stdout.split('\n')[0]!)?.[1];
    expect(version).toBeDefined();
    const report = process.report as NodeJS.ProcessReport & { excludeNetwork: boolean };
    report.excludeNetwork = false;
    expect(glibcVersion()).toBe(version);
    // The report it asks for leaves out sockets' peers (looked up by name), and the setting is put back.
    expect(report.excludeNetwork).toBe(false);
  });

  it('is advised to a worker on glibc that read a large source without it, once it matters', () => {
    let asked = 0;
    const glibc = () => (asked++, '2.36');
    const advice = mallocAdvice(10_000_000, {}, glibc);
    expect(advice).toContain(`without ${name}=${value}`);
    expect(advice).toContain('10,000,000 customers');
    expect(advice).toContain('in the environment the worker starts with');
    expect(mallocAdvice(999_999, {}, glibc)).toBeUndefined();
    expect(mallocAdvice(10_000_000, { [name]: '65536' }, glibc)).toBeUndefined();
    expect(
      mallocAdvice(10_000_000, { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072' }, glibc),
    ).toBeUndefined();
    // The process report is asked for only when the rest says the advice may be due.
    expect(asked).toBe(1);
    // Another tunable does not set the threshold.
    expect(mallocAdvice(10_000_000, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, glibc)).toContain(name);
    expect(mallocAdvice(10_000_000, {}, () => undefined)).toBeUndefined();
  });
});
