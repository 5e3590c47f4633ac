/**
 * The supervisor daemon on a PostgreSQL board (issue 14), with real processes and signals, on the
 * test PostgreSQL server: `run --until-idle` dispatches, workers (the Node runtime and the worker
 * CLI) report through the URL with one connection each, a crash loop blocks at FAILURE_LIMIT, a
 * cancel reclaims, a SIGKILLed worker is judged crashed and its task requeued; `status` and `logs`
 * work with the URL; the local files live in the state folder; a report spooled to the state
 * folder is applied; connections the server ends are transient (never quarantine). Ownership per
 * host id: a second `run` with the same KANBAN_HOST_ID exits 4 naming the owner, `--standby` takes
 * over when the owner dies. Several host ids on one board (draining, takeover): pg-takeover.test.ts.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, FIXTURES, EXAMPLES, cli, exited, pidAlive, pidsIn, sleep, waitFor } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';

const SUP = join(FIXTURES, 'sup');
const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' };
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_pgrun'));
afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

let boards = 0;
/** A new board (its own schema) and a state folder for each simulated host. */
async function setup(): Promise<{ url: string; password: string; dir: string; schema: string; host: (id: string) => Record<string, string> }> {
  const u = new URL(await dbUrl());
  const schema = `run_${process.pid}_${++boards}`;
  u.searchParams.set('schema', schema);
  const dir = cleanups.tempDir('ks-pgrun-');
  const host = (id: string) => ({ ...FAST, KANBAN_HOST_ID: id, KANBAN_STATE_DIR: join(dir, `state-${id}`) });
  return { url: u.href, password: decodeURIComponent(u.password), dir, schema, host };
}

async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const u = new URL(url);
  u.searchParams.delete('schema');
  return admin(u.href, async (c) => (await c.query(text, params)).rows as T[]);
}

describe('kanban-supervisor run on a PostgreSQL board', () => {
  it('dispatches Node-runtime and worker-CLI workers, blocks a crash loop at FAILURE_LIMIT, reclaims a cancel; status and logs work with the URL', async () => {
    const { url, password, dir, schema, host } = await setup();
    const env = host('h1');
    const pids = join(dir, 'pids.txt');
    const ok = async (args: string[]) => {
      const r = await cli(url, args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout.trim();
    };
    await ok(['init']);
    await ok(['skill', 'add', 'echo', '--', process.execPath, join(EXAMPLES, 'echo.js')]);
    await ok(['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), join(dir, 'sleeper-pids.txt'), '0.2']);
    await ok(['skill', 'add', 'crash', '--', join(SUP, 'crash.sh'), join(dir, 'spawns.txt')]);
    await ok(['skill', 'add', 'hold', '--reclaim-grace', '5', '--', process.execPath, join(SUP, 'pg-hold.mjs'), pids, '60']);
    const echoes = [];
    for (let i = 0; i < 4; i++) echoes.push(await ok(['add', '--skill', 'echo', '--payload', JSON.stringify({ i })]));
    const slept = await ok(['add', '--skill', 'sleeper']);
    const crash = await ok(['add', '--skill', 'crash']);
    const held = await ok(['add', '--skill', 'hold']);
    cleanups.killPidsAtEnd(pids);
    const t0 = Date.now();
    const p = cleanups.startCli(url, ['run', '--until-idle'], { ...env, FAILURE_LIMIT: '3', BACKOFF_BASE_SECONDS: '0.2', BACKOFF_FACTOR: '2' });
    await waitFor(() => pidsIn(pids).length === 1, 30_000);
    const holder = pidsIn(pids)[0]!;
    // A Node-runtime worker reports through the supervisor's report channel (on by default): it
    // holds no connection to the server at all (its payload came over the channel too).
    await sleep(1000);
    const conns = (await sql<{ n: number }>(url, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [`kanban-supervisor ${holder}`]))[0]!.n;
    expect(conns).toBe(0);
    const status = await cli(url, ['--json', 'status'], env);
    expect(status.code, status.stderr).toBe(0);
    const st = JSON.parse(status.stdout);
    expect(st.owner.pid).toBe(p.pid);
    expect(st.owner.live).toBe(true);
    expect(st.workers.map((w: { task: string }) => w.task)).toContain(held);
    expect(st.supervisors).toEqual([expect.objectContaining({ hostId: 'h1', pid: p.pid, leaseOk: true })]);
    const human = await cli(url, ['status'], env);
    expect(human.stdout).toMatch(new RegExp(`supervisors: h1 \\(pid ${p.pid} on .*, lease .* left\\)`));
    await ok(['cancel', held]);
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    const took = Date.now() - t0;
    expect(pidAlive(holder)).toBe(false);

    for (const [i, id] of echoes.entries()) {
      const s = JSON.parse(await ok(['--json', 'show', id]));
      expect(s.status).toBe('done');
      expect(s.result).toEqual({ i });
    }
    const s = JSON.parse(await ok(['--json', 'show', slept]));
    expect([s.status, s.result]).toEqual(['done', { slept: true }]);
    const c = JSON.parse(await ok(['--json', 'show', crash]));
    expect(c.status).toBe('blocked');
    expect(c.consecutive_failures).toBe(3);
    expect(c.runs.map((r: { outcome: string }) => r.outcome)).toEqual(['crashed', 'crashed', 'crashed']);
    const h = JSON.parse(await ok(['--json', 'show', held]));
    expect(h.status).toBe('cancelled');
    expect(h.runs.map((r: { outcome: string }) => r.outcome)).toEqual(['cancelled']);
    expect(h.runs[0].signal === null || h.runs[0].signal === 'SIGTERM').toBe(true);

    // One supervisor row (host h1), stopped; every run records it.
    const sups = await sql<{ id: string; host_id: string; pid: number; stopped_at: string | null }>(url, `SELECT id, host_id, pid, stopped_at FROM ${schema}.supervisors`);
    expect(sups.map((r) => [r.host_id, r.pid])).toEqual([['h1', p.pid]]);
    expect(sups[0]!.stopped_at).not.toBeNull();
    const owners = await sql<{ supervisor_id: string | null }>(url, `SELECT DISTINCT supervisor_id FROM ${schema}.runs`);
    expect(owners.map((r) => r.supervisor_id)).toEqual([sups[0]!.id]);

    // The local files are in the state folder (0700): logs, status file; `logs` reads them by URL.
    const state = env.KANBAN_STATE_DIR!;
    expect(statSync(state).mode & 0o777).toBe(0o700);
    expect(existsSync(join(state, 'supervisor.json'))).toBe(true);
    expect(readdirSync(join(state, 'logs')).length).toBeGreaterThanOrEqual(9);
    const logs = await cli(url, ['logs', crash], env);
    expect(logs.code, logs.stderr).toBe(0);
    for (const out of [p.output(), status.stdout, status.stderr, logs.stdout, logs.stderr]) expect(out).not.toContain(password);
    expect(p.output()).not.toContain('connection_budget');
    console.log(`pg run --until-idle: 7 tasks, a crash loop and a cancel in ${took} ms`);
  });

  it('a worker SIGKILLed mid-run is judged crashed and its task requeued (then done)', async () => {
    const { url, dir, host } = await setup();
    const env = host('h1');
    const pids = join(dir, 'pids.txt');
    expect((await cli(url, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '1.5'], env)).code).toBe(0);
    const id = (await cli(url, ['add', '--skill', 'sleeper'], env)).stdout.trim();
    cleanups.killPidsAtEnd(pids);
    const p = cleanups.startCli(url, ['run', '--until-idle'], { ...env, BACKOFF_BASE_SECONDS: '0.2' });
    await waitFor(() => pidsIn(pids).length === 1, 30_000);
    process.kill(pidsIn(pids)[0]!, 'SIGKILL');
    expect((await exited(p)).code, p.output()).toBe(0);
    const s = JSON.parse((await cli(url, ['--json', 'show', id], env)).stdout);
    expect(s.runs.map((r: { outcome: string }) => r.outcome)).toEqual(['crashed', 'completed']);
    expect(s.runs[0].signal).toBe('SIGKILL');
    expect([s.status, s.result]).toEqual(['done', { slept: true }]);
    expect(pidsIn(pids)).toHaveLength(2);
  });

  it('a report spooled to KANBAN_SPOOL_DIR (the state folder) is applied; connections terminated by the server are transient (no quarantine), the host lock is taken again', async () => {
    const { url, password, dir, host } = await setup();
    const env = host('h1');
    const pids = join(dir, 'pids.txt');
    expect((await cli(url, ['skill', 'add', 'spool', '--', process.execPath, join(SUP, 'pg-spool.mjs')], env)).code).toBe(0);
    expect((await cli(url, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '1'], env)).code).toBe(0);
    const spooled = (await cli(url, ['add', '--skill', 'spool'], env)).stdout.trim();
    const sleepers = [];
    for (let i = 0; i < 6; i++) sleepers.push((await cli(url, ['add', '--skill', 'sleeper'], env)).stdout.trim());
    cleanups.killPidsAtEnd(pids);
    const p = cleanups.startCli(url, ['run', '--until-idle'], { ...env, MAX_CONCURRENT_WORKERS: '2' });
    await waitFor(() => pidsIn(pids).length >= 1, 30_000);
    // Every connection of the supervisor ends (a server restart, a network cut, an admin's kill).
    const killed = await sql<{ ok: boolean }>(url, 'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [`kanban-supervisor ${p.pid}`]);
    expect(killed.length).toBeGreaterThanOrEqual(2); // the pool's and the host lock's, at least
    expect((await exited(p)).code, p.output()).toBe(0);
    const out = p.output();
    expect(out).toContain('host_ownership_regained');
    expect(out).not.toContain('quarantine');
    expect(out).not.toContain(password);
    const s = JSON.parse((await cli(url, ['--json', 'show', spooled], env)).stdout);
    expect([s.status, s.result]).toEqual(['done', { spooled: join(env.KANBAN_STATE_DIR!, 'spool') }]);
    for (const id of sleepers) expect(JSON.parse((await cli(url, ['--json', 'show', id], env)).stdout).status).toBe('done');
    expect(readdirSync(join(env.KANBAN_STATE_DIR!, 'spool'))).toEqual([]);
  });

  it("warns at start when the live hosts' workers and supervisors could exceed the server's connections", async () => {
    const { url, host } = await setup();
    expect((await cli(url, ['init'], host('h1'))).code).toBe(0);
    const limit = (await sql<{ n: number }>(url, `SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS n`))[0]!.n;
    const workers = String(Math.min(1024, limit)); // one host alone: limit + 6 > limit
    const p = cleanups.startCli(url, ['run', '--until-idle'], { ...host('h1'), MAX_CONCURRENT_WORKERS: workers });
    expect((await exited(p)).code, p.output()).toBe(0);
    const warn = p.output().split('\n').find((l) => l.includes('"connection_budget"'));
    expect(warn, p.output()).toBeDefined();
    expect(JSON.parse(warn!)).toMatchObject({ hosts: 1, maxConcurrentWorkers: Number(workers), need: Number(workers) + 6, maxConnections: limit });
  });

  it('one supervisor per host id: a second run exits 4 naming the owner; --standby takes over when it dies; another host id runs alongside', async () => {
    const { url, host } = await setup();
    expect((await cli(url, ['init'], host('h1'))).code).toBe(0);
    const a = cleanups.startCli(url, ['run'], host('h1'));
    await waitFor(() => a.output().includes('supervisor started'), 30_000);
    const second = await cli(url, ['run'], host('h1'));
    expect(second.code, second.stderr).toBe(4);
    expect(second.stderr).toContain(`is owned on this host by supervisor pid ${a.pid}`);
    expect(second.stderr).toContain('host id h1');
    // Another host id owns its own share of the board.
    const other = cleanups.startCli(url, ['run'], host('h2'));
    await waitFor(() => other.output().includes('supervisor started'), 30_000);
    // A standby of h1 waits, and takes over once the owner's connection is gone.
    const b = cleanups.startCli(url, ['run', '--standby'], host('h1'));
    await sleep(800);
    expect(b.output()).not.toContain('supervisor started');
    a.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => b.output().includes('supervisor started'), 15_000, 20);
    expect(Date.now() - killedAt).toBeLessThan(5000);
    for (const x of [b, other]) {
      x.kill('SIGTERM');
      expect((await exited(x)).code, x.output()).toBe(0);
    }
  });

  it("a supervisor whose host lock is taken by a standby of its host (its lock's connection ended) leaves with exit 4, its worker untouched; the standby adopts it", async () => {
    const { url, dir, host } = await setup();
    const env = host('h1');
    const pids = join(dir, 'pids.txt');
    expect((await cli(url, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '3'], env)).code).toBe(0);
    const id = (await cli(url, ['add', '--skill', 'sleeper'], env)).stdout.trim();
    cleanups.killPidsAtEnd(pids);
    const a = cleanups.startCli(url, ['run'], env);
    await waitFor(() => pidsIn(pids).length === 1, 30_000);
    const b = cleanups.startCli(url, ['run', '--standby', '--until-idle'], env);
    await sleep(500);
    // The connection holding a's host lock ends (its last statement took the lock), until the
    // standby is the one that takes the free lock (a tries to take it again at each tick too).
    await waitFor(async () => {
      if (b.output().includes('supervisor started')) return true;
      await sql(url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_try_advisory_lock%'`, [`kanban-supervisor ${a.pid}`]);
      return false;
    }, 30_000, 20);
    expect((await exited(a)).code, a.output()).toBe(4);
    expect(a.output()).toContain('host_ownership_taken');
    const worker = pidsIn(pids)[0]!;
    expect(pidAlive(worker)).toBe(true);
    expect((await exited(b)).code, b.output()).toBe(0);
    expect(b.output()).toContain('adopted a live worker');
    const s = JSON.parse((await cli(url, ['--json', 'show', id], env)).stdout);
    expect([s.status, s.result, s.runs.length]).toEqual(['done', { slept: true }, 1]);
    expect(pidsIn(pids)).toEqual([worker]);
  });
});
