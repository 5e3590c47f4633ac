// Regression tests for faults that broke the README's promises (issue 11): a reclaim interrupted
// by a supervisor SIGKILL, a poisoned spool, a supervisor killed between claim and spawn, escapees
// that outlive a supervisor SIGKILL, and log lines for transitions that did not commit.
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { bootId } from '@kanban-supervisor/reaper';
import { Cleanups, FIXTURES, cli, exited, logEvents, pidAlive, pidsIn, show, sleep, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const setup = () => cleanups.boardDir('ks-faults-');

const FAST = { TICK_INTERVAL_MS: '100', LOG_LEVEL: 'info' };

function supervise(db: string, args: string[] = [], env: Record<string, string> = {}) {
  return cleanups.startCli(db, ['run', ...args], { ...FAST, ...env });
}

/** The task's latest run, read straight from the board. */
async function boardRun(db: string, taskId: string) {
  const b = await openBoard(db, { busyTimeoutMs: 2000 });
  try {
    const d = await b.showTask(taskId);
    return d?.runs.at(-1) ?? null;
  } finally {
    await b.close();
  }
}

describe('a reclaim interrupted by a supervisor SIGKILL', () => {
  it('is resumed by the next supervisor: SIGKILL at the original SIGTERM + grace, and its shutdown ends', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    cleanups.killPidsAtEnd(pids);
    const GRACE = 5000;
    await cli(db, ['skill', 'add', 'stubborn', '--reclaim-grace', String(GRACE / 1000), '--', join(SUP, 'ignore-term.sh'), pids]);
    const id = (await cli(db, ['add', '--skill', 'stubborn'])).stdout.trim();
    const a = supervise(db);
    await waitFor(() => pidsIn(pids).length === 1);
    const pid = pidsIn(pids)[0]!;
    expect((await cli(db, ['cancel', id])).code).toBe(0);
    // Read the board directly (a CLI call can take a second on a loaded machine).
    const sigtermAt = await waitFor(async () => (await boardRun(db, id))?.sigtermAt ?? null);
    await sleep(Math.max(0, sigtermAt + 1000 - Date.now()));
    a.kill('SIGKILL');
    await exited(a);
    expect(Date.now() - sigtermAt).toBeLessThan(GRACE - 500); // the premise: killed well inside the grace
    expect(pidAlive(pid)).toBe(true); // it ignores SIGTERM, and its grace is not over
    const b = supervise(db);
    // The new supervisor SIGKILLs it at the original SIGTERM time + grace, not a grace after its own start.
    await waitFor(() => !pidAlive(pid), GRACE + 8000, 10);
    const killedAt = Date.now();
    expect(killedAt - sigtermAt).toBeGreaterThanOrEqual(GRACE - 50);
    expect(killedAt - sigtermAt).toBeLessThan(GRACE + 3000);
    await waitFor(async () => (await boardRun(db, id))?.exitedAt != null, 10_000);
    const s = await show(db, id);
    expect(s.status).toBe('cancelled');
    expect(s.runs).toHaveLength(1);
    expect(s.runs[0].outcome).toBe('cancelled');
    expect(s.events.filter((e: { kind: string }) => e.kind === 'sigkill_sent')).toHaveLength(1);
    // Its shutdown is not stuck on an adopted worker that nobody terminates.
    b.kill('SIGTERM');
    const t0 = Date.now();
    expect((await exited(b)).code, b.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('a timed-out run interrupted the same way frees its pool slot: the next task runs', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    const done = join(dir, 'done.txt');
    cleanups.killPidsAtEnd(pids);
    await cli(db, ['skill', 'add', 'stubborn', '--max-runtime', '1', '--reclaim-grace', '2', '--', join(SUP, 'ignore-term.sh'), pids]);
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), done, '0.1']);
    const stuck = (await cli(db, ['add', '--skill', 'stubborn', '--priority', '10', '--max-retries', '1'])).stdout.trim();
    const next = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    const env = { MAX_CONCURRENT_WORKERS: '1' };
    const a = supervise(db, [], env);
    await waitFor(async () => (await show(db, stuck)).events.some((e: { kind: string }) => e.kind === 'sigterm_sent'));
    a.kill('SIGKILL');
    await exited(a);
    const b = supervise(db, ['--until-idle'], env);
    const { code } = await exited(b);
    expect(code, b.output()).toBe(0);
    expect((await show(db, stuck)).runs[0].outcome).toBe('timed_out');
    expect((await show(db, next)).status).toBe('done');
    for (const pid of pidsIn(pids)) expect(pidAlive(pid)).toBe(false);
  });
});

describe('the spool', () => {
  it('sets a poisoned entry aside and still applies a valid result: the task runs once', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'spooler', '--', join(SUP, 'spool-then-exit.sh'), pids]);
    const id = (await cli(db, ['add', '--skill', 'spooler'])).stdout.trim();
    const spool = join(dir, 'board', 'spool');
    mkdirSync(spool, { recursive: true, mode: 0o700 });
    // Sorts before every run id, and its report is invalid (a negative defer).
    const poison = { version: 1, taskId: 'no-task', runId: 'no-run', token: 'x', report: { outcome: 'deferred', seconds: -1 }, at: Date.now(), board: db, pid: 1, cause: 'test' };
    writeFileSync(join(spool, '0-poison.json'), JSON.stringify(poison) + '\n', { mode: 0o600 });
    const p = supervise(db, ['--until-idle'], { CRASH_GRACE_SECONDS: '1' });
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    const s = await show(db, id);
    expect(s.status).toBe('done');
    expect(s.result).toEqual({ spooled: true });
    expect(s.runs).toHaveLength(1);
    expect(pidsIn(pids)).toHaveLength(1);
    const rejected = logEvents(p.output(), 'spool_rejected');
    expect(rejected).toHaveLength(1); // logged once, not at every tick
    expect(String(rejected[0]!.error)).toContain('defer seconds');
    expect(readdirSync(join(spool, 'rejected'))).toEqual(['0-poison.json']);
    expect(readdirSync(spool).filter((f) => f.endsWith('.json'))).toEqual([]);
    expect(existsSync(join(spool, 'unapplied'))).toBe(false);
  });
});

describe('a supervisor killed between committing a claim and spawning its worker', () => {
  it('leaves a run that is abandoned at once, not counted: the task runs and is not blocked', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '0.1']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    // Play the supervisor that committed the claim and died before spawning.
    const b = await openBoard(db);
    const [claim] = await b.claimBatch(1, Date.now(), (r) => join(dir, `${r}.log`));
    expect(claim?.task.id).toBe(id);
    await b.close();
    // With a failure limit of 1, counting that run would block the task; the crash grace is 30 s.
    const t0 = Date.now();
    const p = supervise(db, ['--until-idle'], { FAILURE_LIMIT: '1', CRASH_GRACE_SECONDS: '30' });
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000); // no crash grace waited out
    const s = await show(db, id);
    expect(s.status).toBe('done');
    expect(s.consecutive_failures).toBe(0);
    expect(s.runs).toHaveLength(2);
    const first = s.runs.find((r: { id: string }) => r.id === claim!.run.id);
    expect(first.outcome).toBe('abandoned');
    expect(first.error).toContain('never started');
    expect(pidsIn(pids)).toHaveLength(1);
  });
});

describe('escapees (setsid + fork) of a worker across a supervisor SIGKILL', () => {
  it('are found by their run id after the restart and terminated with the run on cancel', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    const esc = join(dir, 'escapees.txt');
    cleanups.killPidsAtEnd(pids);
    cleanups.killPidsAtEnd(esc);
    await cli(db, ['skill', 'add', 'escaper', '--reclaim-grace', '1', '--', join(SUP, 'escape.sh'), pids, esc, 'stay']);
    const id = (await cli(db, ['add', '--skill', 'escaper'])).stdout.trim();
    const a = supervise(db);
    await waitFor(() => pidsIn(esc).length === 1 && pidsIn(pids).length === 1);
    a.kill('SIGKILL');
    await exited(a);
    const b = supervise(db);
    await waitFor(() => b.output().includes('"event":"adopted"'));
    const worker = pidsIn(pids)[0]!;
    const escapee = pidsIn(esc)[0]!;
    expect(pidAlive(escapee)).toBe(true);
    expect(logEvents(b.output(), 'adopted')[0]!.escapees).toContain(escapee);
    await cli(db, ['cancel', id]);
    await waitFor(() => !pidAlive(worker) && !pidAlive(escapee), 8000);
    b.kill('SIGTERM');
    expect((await exited(b)).code, b.output()).toBe(0);
    const s = await show(db, id);
    expect(s.status).toBe('cancelled');
    expect(s.runs).toHaveLength(1);
  });

  it('an escapee re-parented to the supervisor is seen at once in its main thread\'s children (not only by the 30 s full scan)', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    const esc = join(dir, 'escapees.txt');
    cleanups.killPidsAtEnd(pids);
    cleanups.killPidsAtEnd(esc);
    await cli(db, ['skill', 'add', 'escaper', '--', join(SUP, 'escape.sh'), pids, esc, 'stay']);
    await cli(db, ['add', '--skill', 'escaper']);
    const a = supervise(db, [], { RECLAIM_GRACE_SECONDS: '1' });
    await waitFor(() => pidsIn(esc)[0], 15_000);
    const escapee = pidsIn(esc)[0]!;
    const seenAt = Date.now();
    // setsid -f left it to the nearest child subreaper: the supervisor, whose per-tick check lists
    // the main thread's children only; it is terminated as an orphan (SIGTERM, ignored; SIGKILL
    // after the grace) though its worker still runs.
    const ev = await waitFor(() => logEvents(a.output(), 'orphans').find((e) => (e.terminated as number[]).includes(escapee)), 10_000);
    expect(ev).toBeTruthy();
    expect(Date.now() - seenAt, 'found well before the 30 s safety scan').toBeLessThan(5000);
    await waitFor(() => !pidAlive(escapee), 15_000);
    a.kill('SIGTERM');
    await exited(a);
  });

  it('of a run that ended before the restart are terminated by the next supervisor', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    const esc = join(dir, 'escapees.txt');
    cleanups.killPidsAtEnd(pids);
    cleanups.killPidsAtEnd(esc);
    await cli(db, ['skill', 'add', 'escaper', '--', join(SUP, 'escape.sh'), pids, esc, 'exit']);
    const id = (await cli(db, ['add', '--skill', 'escaper'])).stdout.trim();
    const a = supervise(db);
    // The worker reported and exited; its escapee ignores the orphan SIGTERM (5 s grace).
    await waitFor(async () => (await show(db, id)).status === 'done');
    await waitFor(() => a.output().includes('"event":"orphans"'), 5000).catch(() => undefined);
    a.kill('SIGKILL');
    await exited(a);
    const escapee = pidsIn(esc)[0]!;
    expect(pidAlive(escapee)).toBe(true);
    const b = supervise(db);
    await waitFor(() => !pidAlive(escapee), 10_000);
    expect(logEvents(b.output(), 'stray_found').map((e) => e.workerPid)).toContain(escapee);
    b.kill('SIGTERM');
    expect((await exited(b)).code, b.output()).toBe(0);
    expect((await show(db, id)).runs).toHaveLength(1);
  });
});

describe('log lines follow commits', () => {
  it('a run that reported before its supervisor died is not logged as crashed by the next one', async () => {
    const { dir, db } = setup();
    await cli(db, ['skill', 'add', 'noop', '--', 'true']);
    const id = (await cli(db, ['add', '--skill', 'noop'])).stdout.trim();
    // The previous supervisor spawned, recorded, saw the report, and died before recording the exit.
    const b = await openBoard(db);
    const claim = (await b.claimBatch(1, Date.now() - 60_000, (r) => join(dir, `${r}.log`)))[0]!;
    const child = spawnSync('sh', ['-c', 'cat /proc/self/stat'], { encoding: 'utf8' });
    const stat = child.stdout;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(stat.split(' ')[0]);
    await b.recordSpawns([{ runId: claim.run.id, info: { pid, pgid: pid, procStartTime: Number(fields[19]), bootId: bootId() } }], Date.now() - 60_000);
    await b.report({ taskId: id, runId: claim.run.id, token: claim.token }, { outcome: 'completed', result: { ok: 1 } }, Date.now());
    await b.close();
    const p = supervise(db, ['--until-idle'], { CRASH_GRACE_SECONDS: '0' });
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    expect(logEvents(p.output(), 'crash_detected')).toEqual([]);
    expect(p.output()).not.toContain('without reporting an outcome');
    const s = await show(db, id);
    expect(s.status).toBe('done');
    expect(s.runs[0].outcome).toBe('completed');
    expect(s.runs[0].exited_at).not.toBeNull();
  });
});

describe('a full disk', () => {
  // A small tmpfs holds the board (root can mount one; elsewhere this case cannot be set up).
  const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;
  it.runIf(canMount)('logs each requeue once, after its commit, never for a tick that was rolled back', async () => {
    const { dir } = setup();
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    cleanups.push(() => void spawnSync('umount', ['-l', mnt]));
    const db = join(mnt, 'board', 'kanban.db');
    const spawns = join(dir, 'spawns.txt');
    await cli(db, ['init']);
    // Workers that run for a second: some of them exit while the disk is full.
    await cli(db, ['skill', 'add', 'crash', '--', join(SUP, 'crash-later.sh'), spawns, '1']);
    for (let i = 0; i < 4; i++) await cli(db, ['add', '--skill', 'crash', '--max-retries', '1000']);
    const p = supervise(db, [], { BACKOFF_BASE_SECONDS: '0.05', BACKOFF_FACTOR: '1', CRASH_GRACE_SECONDS: '1' });
    await waitFor(() => pidsIn(spawns).length >= 8);
    // Fill the disk: the tick's commits now fail (SQLITE_FULL) and are rolled back.
    const filler = join(mnt, 'filler');
    spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { encoding: 'utf8' });
    const fullFrom = Date.now();
    await waitFor(() => p.output().includes('"event":"tick_step_failed"'), 10_000);
    await sleep(2500);
    const fullUntil = Date.now();
    spawnSync('rm', ['-f', filler]);
    await waitFor(() => pidsIn(spawns).filter((t) => t > fullUntil).length >= 4, 30_000);
    p.kill('SIGTERM');
    expect((await exited(p)).code, p.output()).toBe(0);
    const requeued = logEvents(p.output(), 'task_requeued');
    const perRun = new Map<string, number>();
    for (const e of requeued) perRun.set(String(e.run), (perRun.get(String(e.run)) ?? 0) + 1);
    expect([...perRun.values()].filter((n) => n > 1)).toEqual([]);
    // Every logged requeue is on the board; no worker was started while nothing could commit.
    const b = await openBoard(db);
    try {
      for (const run of perRun.keys()) {
        const d = await b.showTask(String(requeued.find((e) => e.run === run)!.task));
        expect(d!.runs.find((r) => r.id === run)?.accountedAt).not.toBeNull();
      }
    } finally {
      await b.close();
    }
    expect(pidsIn(spawns).filter((t) => t > fullFrom + 500 && t < fullUntil)).toEqual([]);
  });
});

describe('a supervisor that ends', () => {
  it('with --until-idle waits for the orphans it is terminating: a SIGTERM-ignoring escapee does not outlive it', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    const esc = join(dir, 'escapees.txt');
    cleanups.killPidsAtEnd(pids);
    cleanups.killPidsAtEnd(esc);
    await cli(db, ['skill', 'add', 'escaper', '--', join(SUP, 'escape.sh'), pids, esc, 'exit']);
    const id = (await cli(db, ['add', '--skill', 'escaper'])).stdout.trim();
    const p = supervise(db, ['--until-idle']);
    expect((await exited(p)).code, p.output()).toBe(0);
    expect((await show(db, id)).status).toBe('done');
    const escapees = pidsIn(esc);
    expect(escapees.length).toBeGreaterThan(0);
    for (const pid of escapees) expect(pidAlive(pid)).toBe(false);
  });
});

describe('a hard link to the board planted in the spool', () => {
  // The supervisor must never open the board's inode through fs: closing it would drop its SQLite locks.
  const locksOf = (pid: number, ino: number) =>
    readFileSync('/proc/locks', 'utf8')
      .split('\n')
      .filter((l) => l.includes(' POSIX ') && l.split(/\s+/).includes(String(pid)) && l.includes(`:${ino} `));
  it.runIf(existsSync('/proc/locks'))('is refused unopened: the supervisor keeps its POSIX locks on the board', async () => {
    const { dir, db } = setup();
    await cli(db, ['init']);
    const p = supervise(db);
    await waitFor(() => p.output().includes('"event":"started"'));
    const { statSync, linkSync } = await import('node:fs');
    const ino = statSync(db).ino;
    await waitFor(() => locksOf(p.pid!, ino).length > 0, 10_000);
    const spool = join(dir, 'board', 'spool');
    mkdirSync(spool, { recursive: true, mode: 0o700 });
    linkSync(db, join(spool, 'zz.json'));
    await waitFor(() => p.output().includes('spool_rejected'), 10_000);
    await sleep(500);
    expect(locksOf(p.pid!, ino).length).toBeGreaterThan(0);
    expect(p.output()).toContain('hard links');
    p.kill('SIGTERM');
    expect((await exited(p)).code, p.output()).toBe(0);
  });
});

describe('a spooled result while the board is busy', () => {
  it('is applied, not judged crashed, when the spool step meets a held write lock', async () => {
    const { dir, db } = setup();
    const marker = join(dir, 'spooled');
    const go = join(dir, 'go');
    await cli(db, ['skill', 'add', 'spooler', '--', process.execPath, join(SUP, 'spool-wait.mjs'), marker, go]);
    const id = (await cli(db, ['add', '--skill', 'spooler'])).stdout.trim();
    const p = supervise(db, ['--until-idle']);
    await waitFor(() => existsSync(marker), 20_000, 10);
    // Another writer holds the board's write lock across the worker's exit and the next tick's spool step.
    const { default: Database } = await import('better-sqlite3');
    const other = new Database(db, { timeout: 5000 });
    other.exec('BEGIN IMMEDIATE');
    writeFileSync(go, '');
    const t0 = Date.now();
    while (Date.now() - t0 < 400) {
      /* hold the lock: the supervisor's busy timeout (50 ms × 3 retries) runs out meanwhile */
    }
    other.exec('COMMIT');
    other.close();
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    const s = await show(db, id);
    expect(s.status).toBe('done');
    expect(s.result).toEqual({ spooled: true });
    expect(s.runs).toHaveLength(1);
    expect(s.consecutive_failures).toBe(0);
    expect(existsSync(join(dir, 'board', 'spool', 'unapplied'))).toBe(false);
  });
});

describe("a spawn that fails for the supervisor's own fault", () => {
  it('(its log folder replaced by a file) never counts against a task: dispatch waits, then the tasks run', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '0.1']);
    const p = supervise(db, [], { FAILURE_LIMIT: '1' });
    await waitFor(() => p.output().includes('"event":"started"'));
    const logs = join(dir, 'board', 'logs');
    const { rmSync } = await import('node:fs');
    rmSync(logs, { recursive: true, force: true });
    writeFileSync(logs, 'not a folder');
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push((await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim());
    await waitFor(() => p.output().includes('"event":"logs_unusable"'), 10_000);
    await sleep(1500);
    for (const id of ids) {
      const s = await show(db, id);
      expect(s.status).toBe('ready');
      expect(s.consecutive_failures).toBe(0);
    }
    rmSync(logs, { force: true });
    await waitFor(async () => {
      for (const id of ids) if ((await show(db, id)).status !== 'done') return false;
      return true;
    }, 20_000);
    for (const id of ids) expect((await show(db, id)).runs.every((r: { outcome: string }) => r.outcome !== 'spawn_failed')).toBe(true);
    p.kill('SIGTERM');
    expect((await exited(p)).code, p.output()).toBe(0);
  });
});
