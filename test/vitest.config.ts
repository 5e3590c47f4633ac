import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The browser tests run apart: `npm run test:e2e` (test/e2e/vitest.config.ts).
    exclude: [...configDefaults.exclude, 'test/e2e/**'],
    // One PostgreSQL server for the run's PostgreSQL tests (or KANBAN_TEST_PG_URL's).
    globalSetup: ['test/board/pg/global-setup.ts'],
    // KANBAN_HTTP=off for every supervisor a test starts, unless it asks for HTTP.
    setupFiles: ['test/src/vitest-env.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default', 'json'],
    // Read by .ci/run to print the plain "N passed, N failed" closing line.
    outputFile: { json: 'test-results/vitest.json' },
  },
});
