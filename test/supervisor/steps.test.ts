/**
 * Tick steps run in-process against a real SQLite board, with no daemon: each step is called with
 * a tick context and the tick's transaction (supervisor/src/steps/*, supervisor/src/tick-tx.ts),
 * and what it committed is read through a second, read-only connection (what every other process
 * sees).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard, resolveBoardPath, type Board, type Claim, type ExitObservation } from '@kanban-supervisor/board';
import { loadConfig } from '@kanban-supervisor/policies';
import { Reaper, identify } from '@kanban-supervisor/reaper';
import { readSpool, writeSpool } from '@kanban-supervisor/worker-runtime';
import { createContext, type TickContext } from '../../supervisor/dist/state.js';
import { TickTx } from '../../supervisor/dist/tick-tx.js';
import { account } from '../../supervisor/dist/steps/account.js';
import { dispatch } from '../../supervisor/dist/steps/dispatch.js';
import { reclaim } from '../../supervisor/dist/steps/reclaim.js';
import { spool } from '../../supervisor/dist/steps/spool.js';
import { register } from '../../supervisor/dist/workers.js';
import { Cleanups, ROOT, killQuietly, waitFor } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

type Line = Record<string, unknown> & { level: string; msg?: string };

/** A logger that keeps every line (the supervisor's logger is pino; steps use info/warn/error). */
function captureLog() {
  const lines: Line[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, ...(obj as Record<string, unknown>), msg });
  const log: Record<string, unknown> = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug'), trace: at('trace'), fatal: at('fatal') };
  log.child = () => log;
  return { log, lines, events: (name: string) => lines.filter((l) => l.event === name) };
}

interface Setup {
  dir: string;
  db: string;
  ctx: TickContext;
  board: Board;
  /** A second connection, read-only: what is committed. */
  observer: Board;
  events: (name: string) => Line[];
  claim: (now?: number) => Promise<Claim>;
}

async function setup(env: Record<string, string> = {}, argv: string[] = ['/bin/true']): Promise<Setup> {
  const dir = cleanups.tempDir('ks-steps-');
  const board = await openBoard(join(dir, 'kanban.db'), { busyTimeoutMs: 50, busyRetries: 3 });
  cleanups.push(() => board.close());
  const db = resolveBoardPath(join(dir, 'kanban.db'));
  const observer = await openBoard(db, { readonly: true });
  cleanups.push(() => observer.close());
  const cfg = loadConfig({ KANBAN_DB: db, FAILURE_LIMIT: '2', BACKOFF_BASE_SECONDS: '1', STORM_DISTINCT_TASKS: '0', ...env });
  const { log, events } = captureLog();
  const reaper = new Reaper({ logger: log as never, subreaper: false });
  const ctx = createContext({ cfg, log: log as never, reaper, boardPath: db });
  ctx.state.board = board;
  await board.putSkill({ name: 's', argv, cwd: ROOT });
  await board.createTask({ skill: 's', title: 'the task' });
  const claim = async (now = Date.now()) => {
    const [c] = await board.claimBatch(1, now, (runId) => join(dir, 'logs', `${runId}.log`));
    expect(c).toBeDefined();
    return c!;
  };
  return { dir, db, ctx, board, observer, events, claim };
}

/** A claimed run whose (pretend) worker was spawned and recorded. */
async function spawnedRun(s: Setup, now = Date.now()): Promise<Claim> {
  const c = await s.claim(now);
  await s.board.recordSpawns([{ runId: c.run.id, info: { pid: 4_000_000, pgid: 4_000_000, procStartTime: 1, bootId: 'not-this-boot' } }], now);
  return c;
}

/** What reap holds for a worker that exited 1 without reporting. */
function crashedExit(runId: string, at = Date.now()): ExitObservation {
  return { runId, at, exitCode: 1, signal: null, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'worker exited with code 1 without reporting an outcome' };
}

describe('account step', () => {
  it("requeues a crashed run's task with its counter incremented, both committed in one transaction (logged after the commit)", async () => {
    const s = await setup();
    const c = await spawnedRun(s);
    s.ctx.state.heldObs.push(crashedExit(c.run.id));
    const now = Date.now();
    const tx = new TickTx(s.ctx.state);
    try {
      await account(s.ctx, tx, now);
      // Written in the transaction, not committed: every other connection still sees the run live.
      expect(s.ctx.state.heldObs).toEqual([]);
      const before = await s.observer.getTask(c.task.id);
      expect(before).toMatchObject({ status: 'running', consecutiveFailures: 0 });
      expect((await s.observer.getRun(c.run.id))?.status).not.toBe('ended');
      expect(s.events('task_requeued')).toHaveLength(0);
      await tx.commit();
    } finally {
      tx.close();
    }
    const after = await s.observer.getTask(c.task.id);
    expect(after).toMatchObject({ status: 'ready', consecutiveFailures: 1, currentRunId: null });
    expect(after!.notBefore).toBeGreaterThan(now);
    const run = await s.observer.getRun(c.run.id);
    expect(run).toMatchObject({ status: 'ended', outcome: 'crashed', exitCode: 1 });
    expect(run!.accountedAt).not.toBeNull();
    expect(s.events('task_requeued')).toEqual([expect.objectContaining({ task: c.task.id, run: c.run.id, consecutiveFailures: 1, counted: true })]);
  });

  it('blocks the task at the failure limit', async () => {
    const s = await setup({ FAILURE_LIMIT: '2' });
    for (let attempt = 1; attempt <= 2; attempt++) {
      const ready = await s.observer.getTask((await s.board.listTasks())[0]!.id);
      const at = Math.max(Date.now(), (ready!.notBefore ?? 0) + 1); // past the backoff
      const c = await spawnedRun(s, at);
      s.ctx.state.heldObs.push(crashedExit(c.run.id, at));
      const tx = new TickTx(s.ctx.state);
      try {
        await account(s.ctx, tx, at);
        await tx.commit();
      } finally {
        tx.close();
      }
      const t = await s.observer.getTask(c.task.id);
      if (attempt === 1) expect(t).toMatchObject({ status: 'ready', consecutiveFailures: 1 });
      else {
        expect(t).toMatchObject({ status: 'blocked', consecutiveFailures: 2 });
        expect(t!.lastError).toContain('limit 2');
      }
    }
    expect(s.events('task_blocked')).toHaveLength(1);
  });

  it('a lost transaction leaves the counter unchanged; the next run of the step applies it once', async () => {
    const s = await setup();
    const c = await spawnedRun(s);
    s.ctx.state.heldObs.push(crashedExit(c.run.id));
    const lost = new TickTx(s.ctx.state);
    await account(s.ctx, lost, Date.now());
    lost.close(); // never committed: rolled back
    expect(await s.observer.getTask(c.task.id)).toMatchObject({ status: 'running', consecutiveFailures: 0 });
    expect((await s.observer.getRun(c.run.id))?.status).not.toBe('ended');
    // The exit it carried is back in line, and nothing was logged of what did not happen.
    expect(s.ctx.state.heldObs.map((o) => o.runId)).toEqual([c.run.id]);
    expect(s.events('task_requeued')).toHaveLength(0);

    for (let i = 0; i < 2; i++) {
      const tx = new TickTx(s.ctx.state);
      try {
        await account(s.ctx, tx, Date.now());
        await tx.commit();
      } finally {
        tx.close();
      }
    }
    expect(await s.observer.getTask(c.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 1 });
    const detail = await s.observer.showTask(c.task.id);
    expect(detail!.events.filter((e) => e.kind === 'requeued')).toHaveLength(1);
    expect(s.events('task_requeued')).toHaveLength(1);
    expect(s.ctx.state.heldObs).toEqual([]);
  });
});

describe('reclaim step', () => {
  it("commits the run's fence before the SIGTERM: the worker, on SIGTERM, reads it from the board", async () => {
    const s = await setup();
    const c = await s.claim();
    const out = join(s.dir, 'seen.json');
    // The worker: on SIGTERM, it opens the board itself and reads its run's fence.
    const script = `
      const Database = require('better-sqlite3');
      process.on('SIGTERM', () => {
        const db = new Database(process.env.DB, { readonly: true });
        const r = db.prepare('SELECT stop_reason, sigterm_at FROM runs WHERE id = ?').get(process.env.RUN);
        require('fs').writeFileSync(process.env.OUT, JSON.stringify(r));
        process.exit(0);
      });
      require('fs').writeFileSync(process.env.OUT + '.ready', '');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, detached: true, stdio: 'ignore', env: { ...process.env, DB: s.db, RUN: c.run.id, OUT: out } });
    cleanups.push(() => killQuietly(-child.pid!));
    await waitFor(() => existsSync(out + '.ready'));
    const id = identify(child.pid!);
    expect(id).not.toBeNull();
    s.ctx.reaper.track(id!);
    const w = register(s.ctx, c.run.id, c.task.id, id!, { own: false, graceSeconds: 5, stopReason: null, sigkillRecorded: false, logPath: null });
    await s.board.cancelTask(c.task.id);

    const tx = new TickTx(s.ctx.state);
    try {
      const live = await tx.liveRuns();
      await reclaim(s.ctx, tx, live, Date.now());
      expect(w.stopReason).toBe('cancelled');
      expect(w.term?.phase).toBe('term');
      // Committed by the step itself (the tick's commit has not run).
      expect(await s.observer.getRun(c.run.id)).toMatchObject({ stopReason: 'cancelled' });
    } finally {
      tx.close();
    }
    const seen = JSON.parse(await waitFor(() => (existsSync(out) ? readFileSync(out, 'utf8') : null))) as { stop_reason: string; sigterm_at: number | null };
    expect(seen.stop_reason).toBe('cancelled');
    expect(seen.sigterm_at).not.toBeNull();
    expect(s.events('sigterm_sent')).toEqual([expect.objectContaining({ run: c.run.id, reason: 'cancelled' })]);
  });
});

describe('dispatch step', () => {
  it('commits the claim before the spawn; the spawn record goes into the next transaction', async () => {
    // The worker reads its own run from the board (another connection) and prints what it sees.
    const script = `
      const Database = require('better-sqlite3');
      const db = new Database(process.env.KANBAN_DB, { readonly: true });
      const r = db.prepare('SELECT r.status, t.status AS task FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.id = ?').get(process.env.KANBAN_RUN_ID);
      console.log('SEEN ' + JSON.stringify(r ?? null));`;
    const s = await setup({}, [process.execPath, '-e', script]);
    const tx = new TickTx(s.ctx.state);
    try {
      await dispatch(s.ctx, tx, Date.now());
    } finally {
      tx.close();
    }
    const [w] = [...s.ctx.state.workers.values()];
    expect(w).toBeDefined();
    cleanups.push(() => killQuietly(w!.identity.pid));
    expect(s.events('spawned')).toHaveLength(1);
    // The spawn is held in memory, not on the board yet.
    expect(s.ctx.state.pendingSpawns.flatMap((b) => b.items.map((i) => i.runId))).toEqual([w!.runId]);
    expect((await s.observer.getRun(w!.runId))?.pid).toBeNull();
    const log = await waitFor(() => (w!.logPath && existsSync(w!.logPath) && readFileSync(w!.logPath, 'utf8').includes('SEEN') ? readFileSync(w!.logPath, 'utf8') : null));
    // Claimed (the run starting, its task running), committed before the worker started.
    expect(JSON.parse(log.split('SEEN ')[1]!)).toEqual({ status: 'starting', task: 'running' });

    const next = new TickTx(s.ctx.state);
    try {
      await next.writeHeld();
      await next.commit();
    } finally {
      next.close();
    }
    expect(s.ctx.state.pendingSpawns).toEqual([]);
    expect(await s.observer.getRun(w!.runId)).toMatchObject({ status: 'running', pid: w!.identity.pid });
  });
});

describe('spool step', () => {
  it("applies a spooled report through the board's fenced operation, then deletes its file", async () => {
    const s = await setup();
    const c = await spawnedRun(s);
    const cred = { taskId: c.task.id, runId: c.run.id, token: c.token };
    const path = writeSpool(s.db, cred, { outcome: 'completed', result: { ok: 1 } }, Date.now(), 'test: board was busy');
    expect(readSpool(s.db)).toHaveLength(1);
    await spool(s.ctx, s.board);
    expect(existsSync(path)).toBe(false);
    expect(readSpool(s.db)).toEqual([]);
    expect(await s.observer.getRun(c.run.id)).toMatchObject({ status: 'ended', outcome: 'completed' });
    expect(await s.observer.getTask(c.task.id)).toMatchObject({ status: 'done' });
    expect(s.events('spool_applied')).toHaveLength(1);
  });
});
