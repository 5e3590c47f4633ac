/**
 * Hostile input to the Python runtime (a review of issue 19's runtime found each): a board path with
 * URI characters, a result with a lone surrogate, a payload nested deeper than Python's json parses,
 * a deferral too long for the board's INTEGER times. Each ends with a clear outcome on the board,
 * never a worker that exits with nothing recorded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, cli } from '../src/common.js';
import { PYTHON, PY_PATH } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const SKILL = join(FIXTURES, 'runtimes', 'skill.py');
const py = (code: string): string => execFileSync(PYTHON, ['-c', code], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: PY_PATH } }).trim();

async function runOne(db: string, env: Record<string, string>, payload: string, supEnv: Record<string, string> = {}) {
  expect((await cli(db, ['skill', 'add', 'py', ...Object.entries({ PYTHONPATH: PY_PATH, ...env }).flatMap(([k, v]) => ['--env', `${k}=${v}`]), '--', PYTHON, SKILL])).code).toBe(0);
  const add = await cli(db, ['add', '--skill', 'py', '--max-attempts', '1', '--payload', payload]);
  expect(add.code, add.stderr).toBe(0);
  const id = add.stdout.trim();
  const sup = await cli(db, ['run', '--until-idle'], { TICK_INTERVAL_MS: '100', KANBAN_HTTP: 'off', ...supEnv });
  expect(sup.code, sup.stderr).toBe(0);
  const b = await openBoard(db, { readonly: true });
  try {
    return (await b.showTask(id))!;
  } finally {
    await b.close();
  }
}

describe('the Python runtime against hostile input', () => {
  it('a lone surrogate is written as JSON.stringify writes it (\\udcff), never an unencodable string', () => {
    const out = py("from kanban_worker._channel import dumps; print(dumps({'e': '\\udcff x \\u00e9 \\U0001F600'}))");
    expect(out).toBe(JSON.stringify({ e: '\udcff x é 😀' }));
  });

  it('a deferral longer than the board can hold: ctx.defer refuses it naming the bound, and the run fails with that message', async () => {
    const { db } = cleanups.boardDir('ks-pyhostile-');
    const t = await runOne(db, { MODE: 'defer' }, '{"seconds":1e16}', { REPORT_CHANNEL: 'off' });
    expect(t.runs.map((r) => r.outcome)).toEqual(['failed']);
    expect(t.runs[0]!.error).toMatch(/longer than the board can hold/);
  }, 60_000);

  it('a board in a folder whose name has # and ? (direct path, REPORT_CHANNEL=off): the worker opens that board, not a truncated path', async () => {
    const base = cleanups.tempDir('ks-pyhostile-');
    const dir = join(base, 'a#b?c');
    mkdirSync(dir);
    const db = join(dir, 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    const t = await runOne(db, { MODE: 'return' }, '{"result":{"ok":1}}', { REPORT_CHANNEL: 'off' });
    expect(t.task.status, JSON.stringify(t)).toBe('done');
    expect(t.task.result).toEqual({ ok: 1 });
    expect(execFileSync('ls', [base], { encoding: 'utf8' }).trim().split('\n')).toEqual(['a#b?c']);
  }, 60_000);

  it('a payload nested 1,000 deep (the board takes it; Python cannot parse it): the run fails saying so, it does not exit with nothing recorded', async () => {
    const { db } = cleanups.boardDir('ks-pyhostile-');
    const t = await runOne(db, { MODE: 'return' }, '['.repeat(1000) + ']'.repeat(1000));
    expect(t.runs.map((r) => r.outcome)).toEqual(['failed']);
    expect(t.runs[0]!.error).toMatch(/nested deeper than Python's json module can parse/);
  }, 60_000);
});
