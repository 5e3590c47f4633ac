/**
 * The shared runtime scenarios (issue 19): ONE list of scenarios, run against the Node runtime
 * (runWorker) and the Python runtime (kanban_worker), with the same skill in each language
 * (test/fixtures/runtimes/skill.{mjs,py}), real supervisors, real processes and real signals.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { readSpool } from '@kanban-supervisor/worker-runtime';
import { MEMORY_BEAT_WRITE_MS } from '@kanban-supervisor/policies';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Cleanups, cli, exited, killQuietly, logEvents, sleep, waitFor } from '../src/common.js';
import { boardSetup, claimRun, integrity, spawnWorker } from '../fixtures/worker/harness.js';
import { RUNTIMES, type Runtime } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const setup = boardSetup('ks-rt-');

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', KANBAN_HTTP: 'off' };
const supervise = (db: string, args: string[] = [], env: Record<string, string> = {}) => cleanups.startCli(db, ['run', ...args], { ...FAST, ...env });

async function addSkill(db: string, name: string, rt: Runtime, env: Record<string, string>, flags: string[] = []): Promise<void> {
  const envFlags = Object.entries({ ...rt.env, ...env }).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
  const r = await cli(db, ['skill', 'add', name, ...flags, ...envFlags, '--', ...rt.argv]);
  expect(r.code, r.stderr).toBe(0);
}
async function addTask(db: string, skill: string, payload: unknown, flags: string[] = []): Promise<string> {
  const r = await cli(db, ['add', '--skill', skill, '--payload', JSON.stringify(payload), ...flags]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

type Row = Record<string, unknown>;
function query(db: string, sql: string, ...args: unknown[]): Row[] {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).all(...args) as Row[];
  } finally {
    d.close();
  }
}
const runsOf = (db: string, task: string) => query(db, 'SELECT * FROM runs WHERE task_id = ? ORDER BY started_at', task);
const eventsOf = (db: string, task: string) =>
  query(db, 'SELECT kind, data, seq FROM events WHERE task_id = ? ORDER BY id', task).map((e) => ({ kind: String(e.kind), seq: e.seq, data: e.data === null ? null : (JSON.parse(String(e.data)) as unknown) }));
const exitOf = (db: string, task: string) => eventsOf(db, task).find((e) => e.kind === 'exited')?.data as { exit_code: number | null; signal: string | null } | undefined;
const ledgerLines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => /^\S+ \d+$/.test(l)) : []);

/** Every acknowledged loop write is on the board exactly once; no seq twice; the file is sound. */
function checkLedger(db: string, ledger: string): void {
  expect(integrity(db)).toBe('ok');
  const rows = query(db, `SELECT run_id, data, seq FROM events WHERE kind = 'seq'`);
  const onBoard = new Map<string, number>();
  for (const r of rows) {
    expect(String(r.seq)).toMatch(/^\d+$/);
    const key = `${String(r.run_id)} ${(JSON.parse(String(r.data)) as { n: number }).n}`;
    onBoard.set(key, (onBoard.get(key) ?? 0) + 1);
  }
  expect([...onBoard.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  expect(ledgerLines(ledger).filter((l) => onBoard.get(l) !== 1)).toEqual([]);
  expect(new Set(rows.map((r) => `${String(r.run_id)} ${String(r.seq)}`)).size).toBe(rows.length);
}

interface Scenario {
  name: string;
  run(rt: Runtime): Promise<void>;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'complete: the payload in, heartbeat with progress, an event, the result out (exit 0)',
    async run(rt) {
      const { db } = cleanups.boardDir('ks-rt-');
      await addSkill(db, 's', rt, { MODE: 'return' });
      const result = { words: ['héllo', 2], nested: { ok: true, n: null } };
      const id = await addTask(db, 's', { result });
      const sup = supervise(db, ['--until-idle']);
      expect((await exited(sup)).code, sup.output()).toBe(0);
      const t = query(db, 'SELECT status, result FROM tasks WHERE id = ?', id)[0]!;
      expect(t.status).toBe('done');
      expect(JSON.parse(String(t.result))).toEqual(result);
      const [run] = runsOf(db, id);
      expect(run).toMatchObject({ outcome: 'completed', status: 'ended' });
      expect(JSON.parse(String(run!.progress))).toEqual({ step: 1 });
      expect(run!.report_seq).toMatch(/^\d+$/);
      const evs = eventsOf(db, id);
      expect(evs.find((e) => e.kind === 'note')).toMatchObject({ data: { n: 1 }, seq: expect.stringMatching(/^\d+$/) });
      expect(evs.find((e) => e.kind === 'reported')).toMatchObject({ data: { outcome: 'completed' }, seq: run!.report_seq });
      expect(exitOf(db, id)).toMatchObject({ exit_code: 0 });
      // Through the channel: the supervisor applied the reports (payload, heartbeat, note, complete).
      expect(logEvents(sup.output(), 'stopped')[0]?.reports).toMatchObject({ applied: 4, fenced: 0, invalid: 0 });
    },
  },
  {
    name: 'fail: an exception fails the run with its message (exit 1)',
    async run(rt) {
      const { db } = cleanups.boardDir('ks-rt-');
      await addSkill(db, 's', rt, { MODE: 'throw' });
      const id = await addTask(db, 's', { why: 'no luck' }, ['--max-attempts', '1']);
      const sup = supervise(db, ['--until-idle']);
      expect((await exited(sup)).code, sup.output()).toBe(0);
      expect(query(db, 'SELECT status, last_error FROM tasks WHERE id = ?', id)[0]).toMatchObject({ status: 'blocked', last_error: expect.stringContaining('boom: no luck') });
      expect(runsOf(db, id)[0]).toMatchObject({ outcome: 'failed', error: 'boom: no luck' });
      expect(eventsOf(db, id).find((e) => e.kind === 'reported')?.data).toEqual({ outcome: 'failed', error: 'boom: no luck' });
      expect(exitOf(db, id)).toMatchObject({ exit_code: 1 });
    },
  },
  {
    name: 'defer: ctx.defer ends the run deferred, not counted (exit 75)',
    async run(rt) {
      const { db } = cleanups.boardDir('ks-rt-');
      await addSkill(db, 's', rt, { MODE: 'defer' });
      const id = await addTask(db, 's', { seconds: 3600, reason: 'rate limited' });
      const sup = supervise(db);
      await waitFor(() => exitOf(db, id), 30_000);
      sup.kill('SIGTERM');
      expect((await exited(sup)).code, sup.output()).toBe(0);
      const [run] = runsOf(db, id);
      expect(run).toMatchObject({ outcome: 'deferred', error: 'rate limited' });
      expect(Number(run!.defer_until) - Number(run!.ended_at)).toBe(3_600_000);
      expect(query(db, 'SELECT status, consecutive_failures FROM tasks WHERE id = ?', id)[0]).toMatchObject({ status: 'ready', consecutive_failures: 0 });
      expect(exitOf(db, id)).toMatchObject({ exit_code: 75 });
    },
  },
  {
    name: 'heartbeat timeout: automatic heartbeats keep a run alive; without them it is reclaimed stalled (SIGTERM, hooks, 143)',
    async run(rt) {
      const { dir, db } = cleanups.boardDir('ks-rt-');
      const f = (n: string) => join(dir, n);
      // 1.5 s: a Python worker on a loaded machine takes a while to start; stalled before its handler runs,
      // it has no hooks to run yet.
      const flags = ['--heartbeat-timeout', '1.5', '--reclaim-grace', '3'];
      await addSkill(db, 'beats', rt, { MODE: 'wait', READY: f('ready-a'), REASON: f('reason-a') }, flags);
      await addSkill(db, 'silent', rt, { MODE: 'wait', AUTO_HB: '0', READY: f('ready-b'), REASON: f('reason-b'), HOOK_MS: '100', HOOK_FILE: f('hooks-b') }, flags);
      const a = await addTask(db, 'beats', null);
      const b = await addTask(db, 'silent', null, ['--max-attempts', '1']);
      const sup = supervise(db);
      await waitFor(() => runsOf(db, b)[0]?.status === 'ended' && exitOf(db, b), 30_000);
      expect(runsOf(db, b)[0]).toMatchObject({ stop_reason: 'stalled', stopped_on_request: 1 });
      expect(exitOf(db, b)).toMatchObject({ exit_code: 143 });
      expect(readFileSync(f('hooks-b'), 'utf8')).toBe('hook stopped\n');
      // The beating one outlived three timeouts and is still the task's one live run.
      await waitFor(() => Date.now() - Number(runsOf(db, a)[0]?.started_at ?? Date.now()) > 4500, 10_000);
      expect(runsOf(db, a)).toHaveLength(1);
      expect(runsOf(db, a)[0]).toMatchObject({ stop_reason: null, exited_at: null });
      // Its beats reach the board every MEMORY_BEAT_WRITE_MS (the supervisor judges by the beats it heard).
      expect(Number(runsOf(db, a)[0]!.heartbeat_at)).toBeGreaterThan(Date.now() - MEMORY_BEAT_WRITE_MS - 1500);
      expect(existsSync(f('ready-b'))).toBe(true);
      sup.kill('SIGTERM');
      expect((await exited(sup)).code, sup.output()).toBe(0);
    },
  },
  {
    name: 'cancel mid-call: the handler sees it, the shutdown hooks run, the stop is recorded, exit 143',
    async run(rt) {
      const { dir, db } = cleanups.boardDir('ks-rt-');
      const f = (n: string) => join(dir, n);
      await addSkill(db, 's', rt, { MODE: 'wait', ASYNC: '1', READY: f('ready'), REASON: f('reason'), HOOK_FILE: f('hooks'), HOOK_MS: '300' }, ['--reclaim-grace', '5']);
      const id = await addTask(db, 's', null);
      const sup = supervise(db);
      await waitFor(() => existsSync(f('ready')), 30_000);
      expect((await cli(db, ['cancel', id])).code).toBe(0);
      await waitFor(() => exitOf(db, id), 30_000);
      expect(exitOf(db, id)).toMatchObject({ exit_code: 143 });
      expect(readFileSync(f('hooks'), 'utf8')).toBe('hook stopped\n');
      expect(readFileSync(f('reason'), 'utf8')).toBe('stopped');
      expect(eventsOf(db, id).find((e) => e.kind === 'stopped_on_request')?.data).toEqual({ signal: 'SIGTERM' });
      expect(query(db, 'SELECT status FROM tasks WHERE id = ?', id)[0]!.status).toBe('cancelled');
      expect(runsOf(db, id)[0]).toMatchObject({ stop_reason: 'cancelled', outcome: 'cancelled', stopped_on_request: 1 });
      sup.kill('SIGTERM');
      expect((await exited(sup)).code, sup.output()).toBe(0);
    },
  },
  {
    name: 'SIGTERM while a writer holds the board (direct path): the stop is given up within the grace, exit 143 before the SIGKILL would come',
    async run(rt) {
      const { dir, board } = await setup();
      const f = (n: string) => join(dir, n);
      const run = await claimRun(board, null, { KANBAN_RECLAIM_GRACE_SECONDS: '1' });
      // No channel: the worker opened the board itself (its payload, its heartbeats).
      const w = await spawnWorker(board, run, rt.argv, { ...rt.env, MODE: 'wait', READY: f('ready'), REASON: f('reason'), HOOK_FILE: f('hooks') });
      await waitFor(() => existsSync(f('ready')) || w.exitCode !== null, 20_000);
      const writer = new Database(board.location);
      writer.pragma('busy_timeout = 5000');
      writer.exec('BEGIN IMMEDIATE');
      try {
        const t0 = Date.now();
        w.kill('SIGTERM');
        const e = await w.done;
        const took = e.at - t0;
        expect(e.code, w.output()).toBe(143);
        // The grace is 1 s: the supervisor SIGKILLs then. The hooks ran, the stop could not be written.
        expect(took, w.output()).toBeLessThan(1000);
        expect(readFileSync(f('hooks'), 'utf8')).toBe('hook stopped\n');
      } finally {
        writer.exec('ROLLBACK');
        writer.close();
      }
      expect(integrity(board.location)).toBe('ok');
    },
  },
  {
    name: 'fenced-out late write: refused, nothing written, the run ends with exit 3',
    async run(rt) {
      const { dir, board } = await setup();
      const f = (n: string) => join(dir, n);
      const run = await claimRun(board, null);
      const w = await spawnWorker(board, run, rt.argv, { ...rt.env, MODE: 'late', READY: f('ready'), GO: f('go'), REASON: f('reason'), HOOK_FILE: f('hooks') });
      await waitFor(() => existsSync(f('ready')) || w.exitCode !== null, 20_000);
      await board.cancelTask(run.taskId);
      writeFileSync(f('go'), '');
      const e = await w.done;
      expect(e.code, w.output()).toBe(3);
      expect(w.output()).toContain(`run ${run.runId} is no longer current for task ${run.taskId}`);
      expect(readFileSync(f('reason'), 'utf8')).toBe('fenced');
      expect(readFileSync(f('hooks'), 'utf8')).toBe('hook fenced\n');
      const d = (await board.showTask(run.taskId))!;
      expect(d.task.status).toBe('cancelled');
      expect(d.events.map((x) => x.kind)).not.toContain('late');
      expect(d.events.map((x) => x.kind)).not.toContain('reported');
    },
  },
  {
    name: 'board unusable (no channel, the board file damaged): the handler does not run, the run ends deferred through the spool (exit 75); a missing board fails (exit 1)',
    async run(rt) {
      const { dir, board } = await setup();
      const run = await claimRun(board, null);
      const spool = join(dir, 'spool');
      const missing = await spawnWorker(null, run, rt.argv, { ...rt.env, MODE: 'return', KANBAN_DB: join(dir, 'gone', 'kanban.db'), KANBAN_SPOOL_DIR: spool });
      expect((await missing.done).code, missing.output()).toBe(1);
      expect(missing.output()).toContain(`${join(dir, 'gone', 'kanban.db')} does not exist`);
      expect(existsSync(spool)).toBe(false);
      const damaged = join(dir, 'damaged.db');
      writeFileSync(damaged, 'this is not a SQLite database, not at all; '.repeat(200));
      const w = await spawnWorker(board, run, rt.argv, { ...rt.env, MODE: 'return', KANBAN_DB: damaged, KANBAN_SPOOL_DIR: spool });
      const e = await w.done;
      expect(e.code, w.output()).toBe(75);
      const entries = readSpool(board.location, spool);
      expect(entries).toHaveLength(1);
      const entry = entries[0]!;
      expect('entry' in entry && entry.entry, JSON.stringify(entry)).toMatchObject({
        version: 1,
        taskId: run.taskId,
        runId: run.runId,
        token: run.token,
        report: { outcome: 'deferred', seconds: 5, reason: expect.stringContaining('could not be opened') },
        seq: expect.stringMatching(/^\d+$/),
      });
      expect(statSync(entry.path).mode & 0o777).toBe(0o600);
      expect(readdirSync(spool)).toEqual([`${run.runId}.json`]);
      // Nothing reached the board: the supervisor applies the spool entry at its next tick.
      expect(eventsOf(board.location, run.taskId).map((x) => x.kind)).not.toContain('note');
    },
  },
  {
    name: 'SIGKILL mid-report (direct board path): the board is sound, every acknowledged write is on it exactly once',
    async run(rt) {
      const { dir, board } = await setup();
      const ledger = join(dir, 'ledger');
      for (let i = 0; i < 6; i++) {
        const run = await claimRun(board, { i }, { KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '0.3' });
        const w = await spawnWorker(board, run, rt.argv, { ...rt.env, MODE: 'loop', LEDGER: ledger });
        if (i % 2 === 0) await sleep(Math.random() * 500);
        else {
          await waitFor(() => ledgerLines(ledger).some((l) => l.startsWith(run.runId)) || w.exitCode !== null, 20_000, 10);
          await sleep(Math.random() * 200);
        }
        w.kill('SIGKILL');
        const e = await w.done;
        expect(e.signal, w.output()).toBe('SIGKILL');
        // Nothing ended the run: a report is all or nothing.
        expect(query(board.location, 'SELECT status, outcome FROM runs WHERE id = ?', run.runId)[0]).toMatchObject({ outcome: null });
      }
      expect(ledgerLines(ledger).length).toBeGreaterThan(0);
      checkLedger(board.location, ledger);
    },
  },
  {
    name: 'supervisor SIGKILLed and restarted while workers report: they go to the board directly, then back; every acknowledged write once',
    async run(rt) {
      const { dir, db } = cleanups.boardDir('ks-rt-');
      const ledger = join(dir, 'ledger');
      await addSkill(db, 's', rt, { MODE: 'loop', LEDGER: ledger, ITER_MS: '5' }, ['--reclaim-grace', '3']);
      await addTask(db, 's', null);
      await addTask(db, 's', null);
      const sup = supervise(db);
      const runsSeen = () => new Set(ledgerLines(ledger).map((l) => l.split(' ')[0])).size;
      await waitFor(() => runsSeen() === 2 && ledgerLines(ledger).length >= 60, 30_000);
      const pids = query(db, 'SELECT pid FROM runs WHERE pid IS NOT NULL').map((r) => Number(r.pid));
      cleanups.push(() => pids.forEach(killQuietly));
      sup.kill('SIGKILL');
      await exited(sup);
      const atKill = ledgerLines(ledger).length;
      await waitFor(() => ledgerLines(ledger).length >= atKill + 60, 30_000);
      const sup2 = supervise(db);
      await waitFor(() => logEvents(sup2.output(), 'channel_listening').length > 0, 30_000);
      // The channel is tried again 5 s after it went down: reports reach the new supervisor again.
      const atRestart = ledgerLines(ledger).length;
      await sleep(6000);
      await waitFor(() => ledgerLines(ledger).length >= atRestart + 60, 30_000);
      sup2.kill('SIGTERM');
      expect((await exited(sup2)).code, sup2.output()).toBe(0);
      expect((logEvents(sup2.output(), 'stopped')[0]?.reports as { applied: number }).applied).toBeGreaterThan(10);
      checkLedger(db, ledger);
      for (const r of query(db, 'SELECT id, exited_at, stopped_on_request FROM runs')) expect(r.exited_at).not.toBeNull();
    },
  },
];

describe.each(RUNTIMES)('the $name runtime', (rt) => {
  it.each(SCENARIOS)('$name', async (s) => s.run(rt));
});
