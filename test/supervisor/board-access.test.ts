// A board that workers can no longer open by path (chmod 000 while they run): their final reports
// are spooled, not lost; the supervisor says so (log, status), holds dispatch, and applies the spool
// through its own open connection; nothing counts as a failure, nothing runs twice.
//
// Root ignores file permissions, so as root (CI, this machine) the supervisor and its workers run
// unprivileged: as nobody (65534:65534) when nobody can read the repository and run node; otherwise
// as root without the capabilities that bypass file permissions (setpriv drops CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH from the bounding set). Not root: as the current user. KS_TEST_UNPRIVILEGED=
// nobody|setpriv forces one of the two. Skipped, saying why, only when neither works.
import { afterEach, describe, expect, it } from 'vitest';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BoardDamagedError, BoardPathError, classifyError, openBoard, type Board } from '@kanban-supervisor/board';
import { deliverReport } from '@kanban-supervisor/worker-runtime';
import { CLI, Cleanups, FIXTURES, cleanEnv, exited, logEvents, sleep, tempDir, waitFor, type CmdResult } from '../src/common.js';
import { WORKER_CLI, openTestBoard, claimRun } from '../fixtures/worker/harness.js';

const NODE_WORKER = join(FIXTURES, 'access', 'node-worker.mjs');
const CLI_WORKER = join(FIXTURES, 'access', 'cli-worker.sh');
const ROOTED = process.getuid?.() === 0;
const NOBODY = 65534;
const DROP_DAC = ['--bounding-set', '-dac_override,-dac_read_search', '--'];

type Mode = 'self' | 'nobody' | 'setpriv';

/** How to start `argv` unprivileged in `mode`. */
function command(mode: Mode, argv: string[]): { cmd: string; args: string[]; opts: { uid?: number; gid?: number } } {
  if (mode === 'setpriv') return { cmd: 'setpriv', args: [...DROP_DAC, ...argv], opts: {} };
  return { cmd: argv[0]!, args: argv.slice(1), opts: mode === 'nobody' ? { uid: NOBODY, gid: NOBODY } : {} };
}

/**
 * Checked for real: the unprivileged process must read the repository (CLI, runtime, fixtures),
 * run node, and be refused a file of mode 000 (so that chmod means something to it).
 */
function works(mode: Mode): string | null {
  const t = tempDir('ks-access-probe-');
  try {
    const denied = join(t.dir, 'denied');
    writeFileSync(denied, 'x');
    chmodSync(denied, 0);
    if (mode === 'nobody') chownSync(t.dir, NOBODY, NOBODY);
    const probe = `const fs = require('fs');
      const [denied, ...files] = process.argv.slice(1);
      for (const f of files) fs.accessSync(f, fs.constants.R_OK);
      fs.accessSync(files[2], fs.constants.X_OK);
      try { fs.readFileSync(denied); } catch (e) { if (e.code === 'EACCES') process.exit(0); throw e; }
      console.error('a file of mode 000 could be read: file permissions are not enforced'); process.exit(1);`;
    const c = command(mode, [process.execPath, '-e', probe, denied, CLI, WORKER_CLI, CLI_WORKER, NODE_WORKER]);
    const r = spawnSync(c.cmd, c.args, { ...c.opts, encoding: 'utf8', timeout: 30_000 });
    if (r.status === 0) return null;
    return `${mode}: ${(r.error?.message ?? r.stderr ?? '').trim().split('\n').slice(-3).join(' ')}`;
  } finally {
    chmodSync(t.dir, 0o700);
    t.cleanup();
  }
}

function pickMode(): { mode: Mode | null; why: string } {
  if (!ROOTED) return { mode: 'self', why: '' };
  const forced = process.env.KS_TEST_UNPRIVILEGED;
  const order: Mode[] = forced === 'nobody' || forced === 'setpriv' ? [forced] : ['nobody', 'setpriv'];
  const problems: string[] = [];
  for (const m of order) {
    const p = works(m);
    if (!p) return { mode: m, why: '' };
    problems.push(p);
  }
  return { mode: null, why: `running as root, and no unprivileged way works (${problems.join('; ')}); make ${process.execPath} and the repository readable by user ${NOBODY}, or install setpriv (util-linux)` };
}
const PICKED = pickMode();
const MODE: Mode = PICKED.mode ?? 'self';
const SKIP = PICKED.mode === null ? PICKED.why : null;
if (SKIP) console.warn(`board-access.test: skipped: ${SKIP}`);

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** A temp dir the unprivileged user owns. */
function ownedTemp(): string {
  const dir = cleanups.tempDir('ks-access-');
  if (MODE === 'nobody') chownSync(dir, NOBODY, NOBODY);
  return dir;
}

/** The kanban-supervisor CLI, run as the unprivileged user. */
function cliAs(db: string, args: string[]): Promise<CmdResult> {
  return new Promise((resolve) => {
    const c = command(MODE, [process.execPath, CLI, '--db', db, ...args]);
    execFile(c.cmd, c.args, { ...c.opts, env: cleanEnv(), timeout: 60_000 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: null, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Runs accounted as completed (the task is done when the report lands: `run_accounted`, or `task_done`). */
const completed = (out: string) => logEvents(out).filter((e) => (e.event === 'run_accounted' || e.event === 'task_done') && e.outcome === 'completed');

/** The spool entries left next to a board, read directly (readSpool reads only its own user's). */
function spoolEntries(db: string): Array<{ runId: string; taskId: string; token: string; report: { outcome: string; seconds?: number; reason?: string } }> {
  const dir = join(db, '..', 'spool');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') && !f.startsWith('.'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
}

describe('access errors', () => {
  const err = (code: string) => Object.assign(new Error(`${code}: no`), { code });

  it('are their own class: not damage, not I/O (no quarantine, no backup), not "other" (a final report is spooled)', () => {
    for (const code of ['EACCES', 'EPERM', 'EROFS', 'SQLITE_READONLY', 'SQLITE_READONLY_DBMOVED', 'SQLITE_PERM', 'SQLITE_AUTH']) {
      expect(classifyError(err(code)), code).toBe('access');
    }
    expect(classifyError(new BoardPathError('/x', 'cannot be used', { cause: err('EACCES') }))).toBe('access');
    expect(classifyError(err('SQLITE_CANTOPEN'))).toBe('io');
    expect(classifyError(new BoardDamagedError('/x', 'bad'))).toBe('damaged');
  });

  it('a final report the board refuses with EACCES, EROFS, SQLITE_READONLY or anything but a fence is spooled after the retries', async () => {
    const dir = ownedTemp();
    for (const code of ['EACCES', 'EROFS', 'SQLITE_READONLY', 'ENOENT', 'SOMETHING_ELSE']) {
      let calls = 0;
      const board = { report: async () => { calls++; throw err(code); } } as unknown as Board;
      const db = join(dir, code, 'kanban.db');
      mkdirSync(join(dir, code));
      const cred = { taskId: 't1', runId: `r-${code}`, token: 'tok' };
      const d = await deliverReport(board, db, cred, { outcome: 'completed', result: { code } }, { delayMs: 1 });
      expect(d, code).toMatchObject({ via: 'spool', cause: `${code}: no` });
      expect(calls, code).toBe(3);
      expect(spoolEntries(db)).toMatchObject([{ runId: `r-${code}`, report: { outcome: 'completed', result: { code } } }]);
    }
  });
});

describe.skipIf(SKIP !== null)('a board workers can no longer open (chmod 000 while they run)', () => {
  it('spools the final reports, says so in the log and status, holds dispatch, and every task ends done exactly once', { timeout: 240_000 }, async () => {
    const dir = ownedTemp();
    const db = join(dir, 'board', 'kanban.db');
    const ready = join(dir, 'ready');
    const go = join(dir, 'go');
    for (const d of [ready, join(dir, 'board')]) {
      mkdirSync(d);
      if (MODE === 'nobody') chownSync(d, NOBODY, NOBODY);
    }
    const init = await cliAs(db, ['init']);
    expect(init.code, init.stderr).toBe(0);
    const skillEnv = ['--env', `READY_DIR=${ready}`, '--env', `GO=${go}`, '--env', `NODE=${process.execPath}`];
    expect((await cliAs(db, ['skill', 'add', 'node', ...skillEnv, '--', process.execPath, NODE_WORKER])).code).toBe(0);
    expect((await cliAs(db, ['skill', 'add', 'sh', ...skillEnv, '--', CLI_WORKER])).code).toBe(0);
    // Six run at once (3 runWorker, 3 worker CLI); two more wait for a free slot.
    const ids = new Map<string, string>();
    const firstSh: string[] = [];
    for (const [skill, priority, n] of [['node', '10', 3], ['sh', '10', 3], ['node', '0', 1], ['sh', '0', 1]] as const) {
      for (let i = 0; i < n; i++) {
        const r = await cliAs(db, ['add', '--skill', skill, '--priority', priority]);
        expect(r.code, r.stderr).toBe(0);
        ids.set(r.stdout.trim(), skill);
        if (skill === 'sh' && priority === '10') firstSh.push(r.stdout.trim());
      }
    }
    const sc = command(MODE, [process.execPath, CLI, '--db', db, 'run']);
    const sup = spawn(sc.cmd, sc.args, {
      ...sc.opts,
      // The direct path and its spool (REPORT_CHANNEL=off): through the channel, the workers' reports
      // never need the board file (the supervisor's connection applies them).
      env: cleanEnv({ TICK_INTERVAL_MS: '100', MAX_CONCURRENT_WORKERS: '6', FAILURE_LIMIT: '2', BACKOFF_BASE_SECONDS: '0.2', CRASH_GRACE_SECONDS: '1', STORM_DISTINCT_TASKS: '0', REPORT_CHANNEL: 'off' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    sup.stdout!.on('data', (d) => (out += String(d)));
    sup.stderr!.on('data', (d) => (out += String(d)));
    /** waitFor, failing with the supervisor's recent log. */
    const until = (what: string, fn: () => boolean, ms = 30_000) =>
      waitFor(fn, ms, 100).catch((e: Error) => {
        throw new Error(`${what}: ${e.message}\n${out.slice(-6000)}`);
      });
    cleanups.killAtEnd(sup);
    const mode = statSync(db).mode & 0o777;
    cleanups.push(() => chmodSync(db, mode)); // so that the temp dir can be removed whatever happens

    await until('6 workers ready', () => readdirSync(ready).length === 6);
    await sleep(500); // heartbeats flowing
    chmodSync(db, 0o000);

    // The supervisor notices within its probe interval (5 s), with the path and the errno.
    await until('board_inaccessible', () => logEvents(out, 'board_inaccessible').length > 0, 20_000);
    const bad = logEvents(out, 'board_inaccessible')[0]!;
    expect(bad).toMatchObject({ level: 50, path: db, code: 'EACCES' });
    const st = await cliAs(db, ['--json', 'status']);
    expect(JSON.parse(st.stdout).boardAccess, st.stdout + st.stderr).toMatchObject({ ok: false, path: db, code: 'EACCES' });
    expect(JSON.parse(st.stdout).quarantine).toBeNull(); // not damage
    const human = await cliAs(db, ['status']);
    expect(human.stdout).toContain('board access: NOT readable/writable');
    expect(human.stdout).toContain(db);

    // The workers finish while the board is still 000.
    const spawnsBefore = logEvents(out, 'spawned').length;
    expect(spawnsBefore).toBe(6);
    writeFileSync(go, '');
    // The 3 CLI reports come through the spool (applied through the supervisor's own connection);
    // the 3 runWorker reports through the workers' connections opened before the chmod.
    await until('6 tasks done', () => completed(out).length === 6);
    expect(logEvents(out, 'spool_applied').map((e) => e.task).sort()).toEqual(firstSh.sort());
    // Two slots are free and two tasks wait: dispatch is held while workers could not open the board.
    await sleep(1500);
    expect(logEvents(out, 'spawned').length, out).toBe(spawnsBefore);
    expect(statSync(db).mode & 0o777).toBe(0);

    chmodSync(db, mode);
    await until('board_accessible', () => logEvents(out, 'board_accessible').length > 0, 20_000);
    await until('8 tasks done', () => completed(out).length === 8);
    expect(JSON.parse((await cliAs(db, ['--json', 'status'])).stdout).boardAccess).toEqual({ ok: true });
    sup.kill('SIGTERM');
    expect((await exited(sup)).code, out).toBe(0);

    // Every task done exactly once with its result; no run counted as a failure; nothing left in the spool.
    const board = await openBoard(db, { readonly: true });
    try {
      for (const [id, skill] of ids) {
        const { task, runs } = (await board.showTask(id))!;
        expect(task.status, JSON.stringify(task)).toBe('done');
        expect(task.result).toEqual({ task: id, via: skill });
        expect(task.consecutiveFailures).toBe(0);
        expect(runs.map((r) => r.outcome), JSON.stringify(runs)).toEqual(['completed']);
      }
    } finally {
      await board.close();
    }
    expect(logEvents(out, 'task_requeued')).toEqual([]);
    expect(logEvents(out, 'task_blocked')).toEqual([]);
    expect(logEvents(out, 'board_quarantined')).toEqual([]);
    expect(spoolEntries(db)).toEqual([]);
    expect(existsSync(join(dir, 'board', 'spool', 'unapplied'))).toBe(false);
    // The CLI workers said where their reports went.
    const logs = readdirSync(join(dir, 'board', 'logs')).map((f) => readFileSync(join(dir, 'board', 'logs', f), 'utf8'));
    expect(logs.filter((l) => l.includes('it was spooled to')).length).toBe(3);
  });

  it('a runWorker that cannot open the board at start spools a deferral (exit 75), not a failure', async () => {
    const dir = ownedTemp();
    const board = await openTestBoard(dir);
    const run = await claimRun(board, null);
    const run2 = await claimRun(board, null);
    await board.close();
    for (const f of readdirSync(dir)) if (MODE === 'nobody') chownSync(join(dir, f), NOBODY, NOBODY);
    const db = join(dir, 'kanban.db');
    const mode = statSync(db).mode & 0o777;
    chmodSync(db, 0o000);
    cleanups.push(() => chmodSync(db, mode));
    const wc = command(MODE, [process.execPath, NODE_WORKER]);
    const w = spawn(wc.cmd, wc.args, { ...wc.opts, env: cleanEnv({ ...run.env, READY_DIR: dir, GO: join(dir, 'go') }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    w.stdout!.on('data', (d) => (out += String(d)));
    w.stderr!.on('data', (d) => (out += String(d)));
    expect((await exited(w)).code, out).toBe(75);
    expect(out).toContain('spooled to');
    const [s] = spoolEntries(db);
    expect(s).toMatchObject({ runId: run.runId, token: run.token, report: { outcome: 'deferred', seconds: 5 } });
    expect(s!.report.reason).toContain('EACCES');
    // The worker CLI spools its final report the same way (and a heartbeat it cannot write is not fatal to a skill that ignores it).
    const cc = command(MODE, [process.execPath, WORKER_CLI, 'worker', 'complete', '--result', '{"n":1}']);
    const c = spawnSync(cc.cmd, cc.args, { ...cc.opts, env: cleanEnv(run2.env), encoding: 'utf8' });
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toContain('spooled to');
    expect(spoolEntries(db).map((x) => [x.runId, x.report.outcome]).sort()).toEqual(
      [[run.runId, 'deferred'], [run2.runId, 'completed']].sort(),
    );
  });
});
