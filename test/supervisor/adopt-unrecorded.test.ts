import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { findByEnv } from '@kanban-supervisor/reaper';
import { CLI, Cleanups, FIXTURES, cli, exited, startProcess, waitFor } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('a worker whose pid was never recorded', () => {
  it('is found by its run id, adopted, and its task is not run a second time', async () => {
    const dir = cleanups.tempDir('ks-adopt-');
    const db = join(dir, 'kanban.db');
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(FIXTURES, 'sup', 'sleeper.sh'), pids, '5']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    // Play the supervisor that claimed and spawned, then died before recording the spawn.
    const b = await openBoard(db);
    const claim = (await b.claimBatch(1, Date.now() - 60_000, (r) => join(dir, `${r}.log`)))[0]!;
    await b.close();
    const worker = spawn(join(FIXTURES, 'sup', 'sleeper.sh'), [pids, '5'], {
      detached: true,
      stdio: 'ignore',
      env: { PATH: process.env.PATH!, KANBAN_DB: db, KANBAN_TASK_ID: id, KANBAN_RUN_ID: claim.run.id, KANBAN_RUN_TOKEN: claim.token, KANBAN_CLI: CLI },
    });
    cleanups.push(() => {
      try {
        process.kill(-worker.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    await waitFor(() => existsSync(pids));
    expect(findByEnv('KANBAN_RUN_ID', claim.run.id)[0]?.pid).toBe(worker.pid);
    const p = startProcess(process.execPath, [CLI, '--db', db, 'run', '--until-idle'], { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '0' });
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    expect(p.output()).toContain('adopted a live worker');
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('done');
    expect(show.runs).toHaveLength(1);
    expect(show.runs[0].pid).toBe(worker.pid);
    expect(readFileSync(pids, 'utf8').trim().split('\n')).toHaveLength(1);
  });
});
