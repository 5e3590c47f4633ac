import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { CLI, Cleanups, FIXTURES, cli, exited, startProcess } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('a worker that exits 75 (EX_TEMPFAIL) without reporting', () => {
  it('is deferred, not counted: retried after one backoff step, never blocked', async () => {
    const dir = cleanups.tempDir('ks-exit75-');
    const db = join(dir, 'board', 'kanban.db');
    const marker = join(dir, 'first-try');
    await cli(db, ['skill', 'add', 'tempfail', '--', join(FIXTURES, 'sup', 'tempfail-once.sh'), marker]);
    const id = (await cli(db, ['add', '--skill', 'tempfail'])).stdout.trim();
    // With a failure limit of 1, a counted failure would block the task at once.
    const p = startProcess(process.execPath, [CLI, '--db', db, 'run', '--until-idle'], {
      TICK_INTERVAL_MS: '100',
      FAILURE_LIMIT: '1',
      BACKOFF_BASE_SECONDS: '0.5',
    });
    cleanups.push(() => p.exitCode === null && p.kill('SIGKILL'));
    expect((await exited(p)).code, p.output()).toBe(0);
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('done');
    expect(show.result).toEqual({ second: true });
    expect(show.consecutive_failures).toBe(0);
    expect(show.runs.map((r: { outcome: string }) => r.outcome)).toEqual(['deferred', 'completed']);
    expect(show.runs[0].error).toContain('EX_TEMPFAIL');
    // The retry waited one backoff step (0.5 s ± 10 %), not zero.
    expect(show.runs[1].started_at - show.runs[0].ended_at).toBeGreaterThanOrEqual(450);
  });
});
