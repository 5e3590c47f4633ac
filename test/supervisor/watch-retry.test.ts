// `status --watch` and `retry` (issue 12 §4): the pool watched live without taking any lock, and a
// finished task made ready again as a new attempt, never while a worker of it may live.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, Cleanups, FIXTURES, cli, exited, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const setup = () => cleanups.boardDir('ks-watch-');

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', BACKOFF_BASE_SECONDS: '0.2', LOG_LEVEL: 'info' };

describe('status --watch', () => {
  it('not on a terminal: one plain block per refresh with a row per live worker; SIGINT exits 0', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '60']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run'], { ...FAST, MAX_CONCURRENT_WORKERS: '3' });
    await waitFor(() => existsSync(pids));
    const pid = Number(readFileSync(pids, 'utf8').trim());
    const w = cleanups.startCli(db, ['status', '--watch', '--interval', '0.3']);
    // Several refreshes, each a full block: header with the time, owner, pool, dispatch, counts, workers.
    await waitFor(() => (w.output().match(/^owner: /gm) ?? []).length >= 3, 20_000);
    const blocks = w.output().split('\n\n').filter((b) => b.includes('owner: '));
    const last = blocks[blocks.length - 2]!;
    expect(last).toMatch(/^\S+ {2}\d{4}-\d\d-\d\dT[\d:.]+Z\nboard /);
    expect(last).toContain(`owner: pid ${sup.pid} on `);
    expect(last).toContain('pool: 1 live / 3 max');
    expect(last).toContain('dispatch: running');
    expect(last).toContain('quarantine: none');
    expect(last).toContain('tasks: waiting 0, ready 0, running 1,');
    expect(last).toMatch(/TASK\s+SKILL\s+ATTEMPT\s+PID\s+AGE\s+HEARTBEAT\s+CPU%\s+RSS\s+STATE/);
    expect(last).toMatch(new RegExp(`${id}\\s+sleeper\\s+1\\s+${pid}\\s+\\S+\\s+-\\s+\\d+\\.\\d\\s+\\d+\\.\\dMB\\s+running`));
    w.kill('SIGINT');
    expect(await exited(w)).toEqual({ code: 0, signal: null });
    // --json --watch: one report per line.
    const j = cleanups.startCli(db, ['--json', 'status', '--watch', '--interval', '0.2']);
    await waitFor(() => j.output().split('\n').filter(Boolean).length >= 2, 20_000);
    const rep = JSON.parse(j.output().split('\n')[0]!);
    expect(rep.workers[0]).toMatchObject({ task: id, skill: 'sleeper', attempt: 1, pid, reclaim: null, alive: true });
    j.kill('SIGTERM');
    expect((await exited(j)).code).toBe(0);
    // The reclaim state shows while a cancelled worker is being stopped.
    await cli(db, ['cancel', id]);
    sup.kill('SIGTERM');
    expect((await exited(sup)).code).toBe(0);
  });

  it('on a terminal (through script(1)): redraws in place on the alternate screen and restores the terminal on Ctrl-C, exit 0', async () => {
    const { dir, db } = setup();
    await cli(db, ['init']);
    // script(1) gives the command a pseudo-terminal and copies what it shows to a file as it goes.
    const typescript = join(dir, 'typescript');
    const sc = spawn('script', ['-qefc', `${process.execPath} ${CLI} --db ${db} status --watch --interval 0.3`, typescript], { stdio: ['ignore', 'ignore', 'pipe'] });
    cleanups.killAtEnd(sc);
    const shown = () => (existsSync(typescript) ? readFileSync(typescript, 'latin1') : '');
    await waitFor(() => (shown().match(/\x1b\[H/g) ?? []).length >= 3, 60_000, 100);
    // Ctrl-C: SIGINT to the watching process (found by its own command line).
    const watcher = readdirSync('/proc')
      .filter((f) => /^\d+$/.test(f))
      .find((pid) => {
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return argv[0] === process.execPath && argv.includes(db) && argv.includes('--watch');
        } catch {
          return false;
        }
      });
    expect(watcher).toBeDefined();
    process.kill(Number(watcher), 'SIGINT');
    expect(await exited(sc)).toEqual({ code: 0, signal: null });
    const out = shown();
    const enter = out.indexOf('\x1b[?1049h'); // the alternate screen, as top and watch use
    const firstFrame = out.indexOf('\x1b[H');
    expect(enter).toBeGreaterThanOrEqual(0);
    expect(firstFrame).toBeGreaterThan(enter);
    expect(out).toContain('owner: none has run on this board');
    expect(out.lastIndexOf('\x1b[?1049l')).toBeGreaterThan(out.lastIndexOf('\x1b[H')); // terminal restored at the end
  });

  it('reads only: takes no lock, creates no owner-lock file next to the board, with or without --watch', async () => {
    const { dir, db } = setup();
    await cli(db, ['init']);
    // (A read-only connection may create the -wal and -shm SQLite needs; nothing else.)
    const before = new Set([...readdirSync(join(dir, 'board')), 'kanban.db-wal', 'kanban.db-shm']);
    expect((await cli(db, ['status'])).code).toBe(0);
    const w = cleanups.startCli(db, ['status', '--watch', '--interval', '0.2']);
    await waitFor(() => (w.output().match(/^owner: /gm) ?? []).length >= 2);
    w.kill('SIGINT');
    expect((await exited(w)).code).toBe(0);
    const after = (readdirSync(join(dir, 'board')) as string[]).filter((f) => !before.has(f));
    expect(after).toEqual([]);
  });

  it('shows a storm pause with its reason', async () => {
    const { dir, db } = setup();
    await cli(db, ['skill', 'add', 'crash', '--', join(SUP, 'crash.sh'), join(dir, 'spawns.txt')]);
    for (let i = 0; i < 3; i++) await cli(db, ['add', '--skill', 'crash', '--max-attempts', '5']);
    const sup = cleanups.startCli(db, ['run'], { ...FAST, STORM_DISTINCT_TASKS: '2' });
    await waitFor(() => sup.output().includes('"event":"storm_pause"'));
    // The pause lasts 5 s, then 10 s…: both views taken at once, until one falls inside a pause.
    await waitFor(async () => {
      const [human, json] = await Promise.all([cli(db, ['status']), cli(db, ['--json', 'status'])]);
      const storm = JSON.parse(json.stdout).storm;
      if (!storm || !/dispatch: PAUSED/.test(human.stdout)) return false;
      expect(human.stdout).toMatch(/dispatch: PAUSED by the storm breaker until \S+ \(2 different tasks failed within 10 s; trip \d+\)/);
      expect(storm).toMatchObject({ trips: expect.any(Number), reason: '2 different tasks failed within 10 s', pausedUntil: expect.any(Number) });
      return true;
    }, 60_000, 100);
    sup.kill('SIGTERM');
    expect((await exited(sup)).code).toBe(0);
  });
});

describe('retry', () => {
  it('makes a blocked, cancelled or done task ready again as a new attempt with its failure counter reset', async () => {
    const { dir, db } = setup();
    const spawns = join(dir, 'spawns.txt');
    await cli(db, ['skill', 'add', 'crash', '--', join(SUP, 'crash.sh'), spawns]);
    const id = (await cli(db, ['add', '--skill', 'crash', '--max-attempts', '2'])).stdout.trim();
    let sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    let show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show).toMatchObject({ status: 'blocked', consecutive_failures: 2 });
    const r = await cli(db, ['--json', 'retry', id]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id, status: 'ready', consecutive_failures: 0, last_error: null, not_before: 0 });
    show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.events.at(-1)).toMatchObject({ kind: 'retried', data: { from: 'blocked', consecutive_failures: 2 } });
    // The retried task runs again: two new attempts (its limit, counted from zero again).
    sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    expect(readFileSync(spawns, 'utf8').trim().split('\n').length).toBe(4);
    show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.runs.map((x: { attempt: number }) => x.attempt)).toEqual([1, 2, 3, 4]);
    expect(show.status).toBe('blocked');
    // A done task (its result cleared) and a cancelled one.
    await cli(db, ['skill', 'add', 'ok', '--', join(SUP, 'sleeper.sh'), join(dir, 'ok.txt'), '0']);
    const ok = (await cli(db, ['add', '--skill', 'ok'])).stdout.trim();
    const cancelled = (await cli(db, ['add', '--skill', 'ok'])).stdout.trim();
    await cli(db, ['cancel', cancelled]);
    sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    expect(JSON.parse((await cli(db, ['--json', 'show', ok])).stdout)).toMatchObject({ status: 'done', result: { slept: true } });
    expect(JSON.parse((await cli(db, ['--json', 'retry', ok])).stdout)).toMatchObject({ status: 'ready', result: null });
    expect(JSON.parse((await cli(db, ['--json', 'retry', cancelled])).stdout)).toMatchObject({ status: 'ready' });
    // A ready task is refused.
    const again = await cli(db, ['retry', ok]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`task ${ok} is ready`);
  });

  it('refuses a running task, and a cancelled one whose worker is still stopping, with a clear message', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'stubborn', '--reclaim-grace', '600', '--', join(SUP, 'ignore-term.sh'), pids]);
    const id = (await cli(db, ['add', '--skill', 'stubborn'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    await waitFor(() => existsSync(pids));
    await waitFor(async () => JSON.parse((await cli(db, ['--json', 'show', id])).stdout).runs[0]?.pid !== null);
    const running = await cli(db, ['retry', id]);
    expect(running.code).toBe(1);
    expect(running.stderr).toMatch(new RegExp(`task ${id} is running \\(run r[a-z2-7]{12}\\); it is retried only once it has ended`));
    // Cancelled, but its worker ignores SIGTERM (and its grace is long): the run has not ended.
    expect((await cli(db, ['cancel', id])).code).toBe(0);
    await waitFor(async () => JSON.parse((await cli(db, ['--json', 'show', id])).stdout).events.some((e: { kind: string }) => e.kind === 'sigterm_sent'));
    const stopping = await cli(db, ['retry', id]);
    expect(stopping.code).toBe(1);
    expect(stopping.stderr).toContain(`task ${id} is cancelled but its run`);
    expect(stopping.stderr).toContain('has not ended yet');
    expect(JSON.parse((await cli(db, ['--json', 'show', id])).stdout).status).toBe('cancelled');
    // The worker's group killed here: the supervisor sees it gone and accounts for the run.
    process.kill(-Number(readFileSync(pids, 'utf8').trim()), 'SIGKILL');
    expect((await exited(sup)).code, sup.output()).toBe(0);
    // Once the worker is gone and the run accounted, the retry is taken.
    expect((await cli(db, ['retry', id])).code).toBe(0);
  });
});
