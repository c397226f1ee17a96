import { availableParallelism } from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'node',
    projects: [
      {
        extends: true,
        test: {
          name: 'suite',
          include: [
            'test/**/*.test.ts',
            'connectors/**/*.test.ts',
            'jobs/**/*.test.ts',
            'src/**/*.test.ts',
            'app/**/*.test.ts',
          ],
          exclude: [...configDefaults.exclude, 'test/r/**'],
          globalSetup: ['test/setup/global.ts'],
          // Three files at a time at least, whatever the cores: most tests wait on child processes, Redis,
          // lease expiries and the browser, so a 2-core machine runs the suite in about a third of the time
          // one file at a time takes (11 min with three, 16 with two, measured on one machine in one hour).
          maxWorkers: Math.max(3, availableParallelism() - 1),
          // Hang guards, not speed targets: a test spawning CLIs takes 1 min on a 2-core machine running
          // three suites, 10 s on an idle one. No test sets a smaller budget of its own.
          testTimeout: 600_000,
          hookTimeout: 600_000,
        },
      },
      {
        // The R reference's own check: minutes of R on a busy machine, so it runs after the suite, alone,
        // with a budget that only a hung R exceeds (a loaded 2-core machine has taken 170 s).
        extends: true,
        test: {
          name: 'r',
          include: ['test/r/**/*.test.ts'],
          testTimeout: 900_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
