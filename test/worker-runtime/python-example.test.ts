/**
 * examples/python/slow_fetch.py (issue 19) under a real supervisor: it completes with its result and
 * heartbeats; cancelled mid-call, its shutdown hook aborts the request and it exits 143 at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Cleanups, ROOT, cli, exited, waitFor } from '../src/common.js';
import { PYTHON, PY_PATH } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const EXAMPLE = join(ROOT, 'examples', 'python', 'slow_fetch.py');

function row(db: string, sql: string, ...args: unknown[]): Record<string, unknown> | undefined {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).get(...args) as Record<string, unknown> | undefined;
  } finally {
    d.close();
  }
}

describe('the README\'s Python skill', () => {
  it('runs as written, under a supervisor, to its result', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Writing a skill in Python'));
    const code = /```python\n([\s\S]*?)```/.exec(section)![1]!;
    const { dir, db } = cleanups.boardDir('ks-pyreadme-');
    const file = join(dir, 'shout.py');
    writeFileSync(file, code);
    expect((await cli(db, ['skill', 'add', 'shout', '--heartbeat-timeout', '30', '--env', `PYTHONPATH=${PY_PATH}`, '--', PYTHON, file])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'shout', '--payload', '{"text":"the quick brown fox"}'])).stdout.trim();
    const sup = await cli(db, ['run', '--until-idle'], { TICK_INTERVAL_MS: '100', KANBAN_HTTP: 'off' });
    expect(sup.code, sup.stderr).toBe(0);
    expect(JSON.parse(String(row(db, 'SELECT result FROM tasks WHERE id = ?', id)!.result))).toEqual({ shout: 'THE QUICK BROWN FOX' });
    expect(JSON.parse(String(row(db, 'SELECT progress FROM runs WHERE task_id = ?', id)!.progress))).toEqual({ step: 'shouting' });
    expect(JSON.parse(String(row(db, `SELECT data FROM events WHERE task_id = ? AND kind = 'note'`, id)!.data))).toEqual({ chars: 19 });
  });
});

describe('examples/python/slow_fetch.py', () => {
  it('completes with heartbeats and its result; cancelled mid-call it stops at once (143)', async () => {
    const { db } = cleanups.boardDir('ks-pyex-');
    expect((await cli(db, ['skill', 'add', 'slow-fetch', '--heartbeat-timeout', '10', '--reclaim-grace', '10', '--env', `PYTHONPATH=${PY_PATH}`, '--', PYTHON, EXAMPLE])).code).toBe(0);
    const quick = (await cli(db, ['add', '--skill', 'slow-fetch', '--payload', '{"count":2,"seconds":0.3}'])).stdout.trim();
    const slow = (await cli(db, ['add', '--skill', 'slow-fetch', '--payload', '{"count":1,"seconds":60}'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '100', KANBAN_HTTP: 'off', LOG_LEVEL: 'info' });
    await waitFor(() => row(db, 'SELECT status FROM tasks WHERE id = ?', quick)?.status === 'done', 30_000);
    expect(JSON.parse(String(row(db, 'SELECT result FROM tasks WHERE id = ?', quick)!.result))).toEqual({ fetched: 2, bytes: 20480 });
    expect(JSON.parse(String(row(db, 'SELECT progress FROM runs WHERE task_id = ?', quick)!.progress))).toEqual({ request: 2, of: 2, bytes: 20480 });
    // The slow one is mid-call (its first pieces arrived): cancel it.
    await waitFor(() => row(db, 'SELECT progress FROM runs WHERE task_id = ?', slow)?.progress, 30_000);
    const t0 = Date.now();
    expect((await cli(db, ['cancel', slow])).code).toBe(0);
    const exit = await waitFor(() => row(db, `SELECT data, at FROM events WHERE task_id = ? AND kind = 'exited'`, slow), 30_000);
    expect(JSON.parse(String(exit.data))).toMatchObject({ exit_code: 143 });
    expect(Number(exit.at) - t0).toBeLessThan(5000);
    expect(row(db, `SELECT data FROM events WHERE task_id = ? AND kind = 'stopped_on_request'`, slow)).toBeDefined();
    const log = String(row(db, 'SELECT log_path FROM runs WHERE task_id = ?', slow)!.log_path);
    expect(readFileSync(log, 'utf8')).toContain('slow_fetch: aborted the request in flight');
    sup.kill('SIGTERM');
    expect((await exited(sup)).code, sup.output()).toBe(0);
  });
});
