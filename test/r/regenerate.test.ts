import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

/**
 * The committed golden outputs (test/fixtures/rfm) are what the R reference computes now. Runs in the
 * vitest project `r`, after every other test (see vitest.config.ts): thirty R processes are minutes of a
 * busy machine, and nothing else then waits for the CPU they take.
 */
const hasR = spawnSync('Rscript', ['--version']).status === 0;

// CI installs R, so there this check always runs; elsewhere it runs where Rscript is installed.
it.runIf(hasR || process.env.CI === 'true')('test/r/regenerate.sh --check', async () => {
  // Asynchronous, so that the timeout can stop a hung R; the output says what drifted.
  const run = await promisify(execFile)('bash', ['test/r/regenerate.sh', '--check'], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  }).catch((error: { code?: number; stdout?: string; stderr?: string }) => error);
  expect(run.stdout + (run.stderr ?? ''), `regenerate.sh exited ${'code' in run ? run.code : 0}`).toMatch(
    /committed fixtures and golden outputs are up to date/,
  );
});
