import { defineConfig } from 'vitest/config';

/**
 * `npm run test:e2e`: the browser tests (the web board in Debian's Chromium), apart from `npm test`
 * (they need a browser: `apt-get install -y chromium`). One file at a time: each starts a real
 * supervisor and a browser, and the first-render figure must not share the CPU with another.
 */
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 90_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/e2e/vitest.json' },
  },
});
