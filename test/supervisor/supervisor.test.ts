import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, cli, exited, pidAlive, sleep, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const setup = () => cleanups.boardDir('ks-sup-');

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' };

function supervise(db: string, args: string[] = [], env: Record<string, string> = {}) {
  return cleanups.startCli(db, ['run', ...args], { ...FAST, ...env });
}

async function open(db: string) {
  return openBoard(db, { busyTimeoutMs: 2000 });
}

describe('kanban-supervisor run', () => {
  it('never exceeds MAX_CONCURRENT_WORKERS (measured from the workers’ own timestamps)', async () => {
    const { dir, db } = setup();
    const spans = join(dir, 'spans.txt');
    expect((await cli(db, ['skill', 'add', 'span', '--', join(SUP, 'span.sh'), spans, '0.4'])).code).toBe(0);
    for (let i = 0; i < 10; i++) expect((await cli(db, ['add', '--skill', 'span'])).code).toBe(0);
    const p = supervise(db, ['--until-idle'], { MAX_CONCURRENT_WORKERS: '3' });
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    const events = readFileSync(spans, 'utf8').trim().split('\n').map((l) => l.split(' '));
    const points = events.map(([kind, at]) => ({ at: Number(at), d: kind === 'start' ? 1 : -1 })).sort((a, b) => a.at - b.at || a.d - b.d);
    let cur = 0;
    let max = 0;
    for (const x of points) max = Math.max(max, (cur += x.d));
    expect(events.filter((e) => e[0] === 'start').length).toBe(10);
    expect(max).toBeLessThanOrEqual(3);
    expect(max).toBe(3); // the pool is actually used
    const b = await open(db);
    expect((await b.counts()).tasks.done).toBe(10);
    await b.close();
  });

  it('a deterministic crash loop spawns exactly FAILURE_LIMIT times with growing gaps, then blocks', async () => {
    const { dir, db } = setup();
    const spawns = join(dir, 'spawns.txt');
    await cli(db, ['skill', 'add', 'crash', '--', join(SUP, 'crash.sh'), spawns]);
    const id = (await cli(db, ['add', '--skill', 'crash'])).stdout.trim();
    const p = supervise(db, ['--until-idle'], { FAILURE_LIMIT: '3', BACKOFF_BASE_SECONDS: '0.4', BACKOFF_FACTOR: '3' });
    expect((await exited(p)).code, p.output()).toBe(0);
    const times = readFileSync(spawns, 'utf8').trim().split('\n').map(Number);
    expect(times.length).toBe(3);
    const gaps = [times[1]! - times[0]!, times[2]! - times[1]!];
    expect(gaps[0]).toBeGreaterThanOrEqual(0.4 * 0.9 * 1000);
    expect(gaps[1]).toBeGreaterThanOrEqual(1.2 * 0.9 * 1000);
    expect(gaps[1]).toBeGreaterThan(gaps[0]!);
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('blocked');
    expect(show.consecutive_failures).toBe(3);
    expect(show.last_error).toContain('crashed 3 times in a row (limit 3)');
    expect(show.last_error).toContain('exited with code 1 without reporting an outcome');
    expect(show.runs.map((r: { outcome: string }) => r.outcome)).toEqual(['crashed', 'crashed', 'crashed']);
  });

  it('a command that does not exist is blocked at once with a clear error and no spawn', async () => {
    const { db } = setup();
    await cli(db, ['skill', 'add', 'ghost', '--', 'no-such-command-kanban-xyz', '--flag']);
    const id = (await cli(db, ['add', '--skill', 'ghost'])).stdout.trim();
    const p = supervise(db, ['--until-idle']);
    expect((await exited(p)).code, p.output()).toBe(0);
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('blocked');
    expect(show.last_error).toContain('no-such-command-kanban-xyz');
    expect(show.last_error).toContain('skill "ghost"');
    expect(show.runs.every((r: { pid: number | null }) => r.pid === null)).toBe(true);
  });

  it('SIGKILLs a SIGTERM-ignoring worker after the grace, not before, and leaves nothing behind', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'stubborn', '--max-runtime', '0.5', '--reclaim-grace', '1.5', '--', join(SUP, 'ignore-term.sh'), pids]);
    const id = (await cli(db, ['add', '--skill', 'stubborn', '--max-retries', '1'])).stdout.trim();
    const p = supervise(db, ['--until-idle']);
    expect((await exited(p)).code, p.output()).toBe(0);
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    const term = show.events.find((e: { kind: string }) => e.kind === 'sigterm_sent');
    const kill = show.events.find((e: { kind: string }) => e.kind === 'sigkill_sent');
    expect(term.data.reason).toBe('timed_out');
    expect(kill.at - term.at).toBeGreaterThanOrEqual(1500);
    expect(kill.at - term.at).toBeLessThan(1500 + 1000);
    expect(show.runs[0].outcome).toBe('timed_out');
    expect(show.runs[0].signal).toBe('SIGKILL');
    expect(show.status).toBe('blocked');
    const pid = Number(readFileSync(pids, 'utf8').trim());
    expect(pidAlive(pid)).toBe(false);
  });

  it('cancel of a running task reclaims its worker and keeps the task cancelled', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--reclaim-grace', '5', '--', join(SUP, 'sleeper.sh'), pids, '60']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    const p = supervise(db, ['--until-idle']);
    await waitFor(() => existsSync(pids));
    const pid = Number(readFileSync(pids, 'utf8').trim());
    expect((await cli(db, ['cancel', id])).code).toBe(0);
    expect((await exited(p)).code, p.output()).toBe(0);
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('cancelled');
    expect(show.runs[0].outcome).toBe('cancelled');
    expect(show.events.some((e: { kind: string }) => e.kind === 'sigkill_sent')).toBe(false);
    expect(pidAlive(pid)).toBe(false);
  });

  it('refuses a second supervisor (exit 4, naming board and owner); a standby takes over when the owner dies', async () => {
    const { db } = setup();
    await cli(db, ['init']);
    const a = supervise(db);
    await waitFor(() => a.output().includes('supervisor started'));
    const second = await cli(db, ['run'], FAST);
    expect(second.code).toBe(4);
    expect(second.stderr).toContain(`board ${db} is owned by supervisor pid ${a.pid}`);
    const status = JSON.parse((await cli(db, ['--json', 'status'])).stdout);
    expect(status.owner.pid).toBe(a.pid);
    expect(status.owner.live).toBe(true);

    const b = supervise(db, ['--standby']);
    await sleep(500);
    expect(b.output()).not.toContain('supervisor started');
    a.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => b.output().includes('supervisor started'), 10_000, 20);
    const took = Date.now() - killedAt;
    expect(took).toBeLessThan(3000);
    const st2 = JSON.parse((await cli(db, ['--json', 'status'])).stdout);
    expect(st2.owner.pid).toBe(b.pid);
    b.kill('SIGTERM');
    expect((await exited(b)).code).toBe(0);
  });

  it('after a SIGKILL of the supervisor, a restart adopts the live worker: no second worker, nothing lost', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '2']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    const a = supervise(db);
    await waitFor(() => existsSync(pids));
    a.kill('SIGKILL');
    await exited(a);
    const pid = Number(readFileSync(pids, 'utf8').trim());
    expect(pidAlive(pid)).toBe(true); // the worker survived its supervisor
    const b = supervise(db, ['--until-idle']);
    expect((await exited(b)).code, b.output()).toBe(0);
    expect(b.output()).toContain('adopted a live worker');
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('done');
    expect(show.result).toEqual({ slept: true });
    expect(show.runs.length).toBe(1);
    expect(readFileSync(pids, 'utf8').trim().split('\n').length).toBe(1);
  });

  it('SIGTERM shutdown stops every worker, ends their runs abandoned (not counted) and leaves no process', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '60']);
    for (let i = 0; i < 3; i++) await cli(db, ['add', '--skill', 'sleeper']);
    const p = supervise(db, [], { MAX_CONCURRENT_WORKERS: '3' });
    await waitFor(() => existsSync(pids) && readFileSync(pids, 'utf8').trim().split('\n').length === 3);
    p.kill('SIGTERM');
    expect((await exited(p)).code, p.output()).toBe(0);
    for (const pid of readFileSync(pids, 'utf8').trim().split('\n').map(Number)) expect(pidAlive(pid)).toBe(false);
    const list = JSON.parse((await cli(db, ['--json', 'list'])).stdout);
    expect(list.map((t: { status: string }) => t.status)).toEqual(['ready', 'ready', 'ready']);
    expect(list.map((t: { consecutive_failures: number }) => t.consecutive_failures)).toEqual([0, 0, 0]);
    const show = JSON.parse((await cli(db, ['--json', 'show', list[0].id])).stdout);
    expect(show.runs[0].outcome).toBe('abandoned');
  });

  it('gives workers only the base environment, the skill env, passed-through names and the KANBAN_* variables', async () => {
    const { dir, db } = setup();
    const dump = join(dir, 'env.bin');
    await cli(db, ['skill', 'add', 'env', '--env', 'SKILL_VAR=1', '--', join(SUP, 'env-dump.sh'), dump]);
    await cli(db, ['add', '--skill', 'env']);
    const p = supervise(db, ['--until-idle', '--pass-env', 'PASSED_VAR'], { SECRET_OF_SUPERVISOR: 'x', PASSED_VAR: 'yes' });
    expect((await exited(p)).code, p.output()).toBe(0);
    const env = Object.fromEntries(
      readFileSync(dump, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    expect(env.SECRET_OF_SUPERVISOR).toBeUndefined();
    expect(env.SKILL_VAR).toBe('1');
    expect(env.PASSED_VAR).toBe('yes');
    expect(env.KANBAN_DB).toBe(db);
    expect(env.KANBAN_RUN_TOKEN).toMatch(/^[0-9a-f]{32}$/);
    // The report channel (on by default): its socket next to the board.
    expect(env.KANBAN_SOCKET).toBe(join(dirname(db), 'sockets', 'kanban.db.sock'));
    // Its heartbeat slot, with the socket.
    expect(env.KANBAN_HEARTBEAT_SLOT).toBe(join(dirname(db), 'sockets', 'kanban.db.beats', `${env.KANBAN_RUN_ID}.beat`));
    const allowed = new Set(['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR', 'SKILL_VAR', 'PASSED_VAR', 'KANBAN_DB', 'KANBAN_TASK_ID', 'KANBAN_RUN_ID', 'KANBAN_RUN_TOKEN', 'KANBAN_RECLAIM_GRACE_SECONDS', 'KANBAN_HEARTBEAT_TIMEOUT_SECONDS', 'KANBAN_CLI', 'KANBAN_SOCKET', 'KANBAN_HEARTBEAT_SLOT', 'PWD', 'SHLVL', '_', 'OLDPWD']);
    expect(Object.keys(env).filter((k) => !allowed.has(k))).toEqual([]);
    // The token never reaches the supervisor's logs.
    expect(p.output()).not.toContain(env.KANBAN_RUN_TOKEN);
  });

  it('reclaims a worker without heartbeats as stalled and one over its memory limit as memory_exceeded', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'silent', '--heartbeat-timeout', '1', '--reclaim-grace', '2', '--', join(SUP, 'sleeper.sh'), pids, '60']);
    await cli(db, ['skill', 'add', 'hog', '--max-rss-mb', '40', '--reclaim-grace', '2', '--', process.execPath, '-e', 'globalThis.b = Buffer.alloc(150e6, 1); setInterval(() => {}, 1000)']);
    const silent = (await cli(db, ['add', '--skill', 'silent', '--max-retries', '1'])).stdout.trim();
    const hog = (await cli(db, ['add', '--skill', 'hog', '--max-retries', '1'])).stdout.trim();
    const p = supervise(db, ['--until-idle']);
    expect((await exited(p)).code, p.output()).toBe(0);
    const s1 = JSON.parse((await cli(db, ['--json', 'show', silent])).stdout);
    const s2 = JSON.parse((await cli(db, ['--json', 'show', hog])).stdout);
    expect(s1.runs[0].outcome).toBe('stalled');
    expect(s1.status).toBe('blocked');
    expect(s2.runs[0].outcome).toBe('memory_exceeded');
    expect(s2.last_error).toContain('memory_exceeded');
  });

  it('status shows the owner, the pool and each running worker with CPU and RSS', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '30']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    // A long tick interval: the worker's pid reaches the board only with the next tick, so status
    // must find a just-spawned worker by itself.
    const p = supervise(db, [], { MAX_CONCURRENT_WORKERS: '2', TICK_INTERVAL_MS: '60000' });
    await waitFor(() => existsSync(pids));
    const st = JSON.parse((await cli(db, ['--json', 'status'])).stdout);
    expect(st.owner).toMatchObject({ pid: p.pid, live: true });
    expect(st.pool).toEqual({ live: 1, max: 2 });
    expect(st.workers).toHaveLength(1);
    expect(st.workers[0]).toMatchObject({ task: id, pid: Number(readFileSync(pids, 'utf8').trim()), alive: true });
    expect(st.workers[0].rssBytes).toBeGreaterThan(0);
    expect(typeof st.workers[0].cpuPercent).toBe('number');
    const human = await cli(db, ['status']);
    expect(human.stdout).toContain(`owner: pid ${p.pid}`);
    expect(human.stdout).toContain('pool: 1 live / 2 max');
    p.kill('SIGTERM');
    expect((await exited(p)).code).toBe(0);
  });
});
