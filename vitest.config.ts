import { defineConfig } from 'vitest/config';

const COVERAGE_CHECK = 'test/transitionCoverage.test.ts';

export default defineConfig({
  test: {
    // Real gpg-agents and key generation: generous per-test limits (a hang still fails, never passes).
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/support/summaryReporter.ts'],
    globalSetup: ['./test/support/coverageSetup.ts'],
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: [COVERAGE_CHECK], sequence: { groupOrder: 0 } } },
      // Runs after the suite: it reads the transitions the suite's real sockets took.
      { extends: true, test: { name: 'transition-coverage', include: [COVERAGE_CHECK], sequence: { groupOrder: 1 } } },
    ],
  },
});
