import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default', 'json'],
    // Read by .ci/run to print the plain "N passed, N failed" closing line.
    outputFile: { json: 'test-results/vitest.json' },
  },
});
