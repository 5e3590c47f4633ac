/**
 * Several supervisors on one PostgreSQL board (issue 14), with real processes and signals, hosts
 * simulated with KANBAN_HOST_ID: two and three supervisors drain 1,000 tasks, each done exactly
 * once; a SIGKILLed supervisor's task is taken over by another within lease + grace + 2 ticks, its
 * orphaned worker's late writes are refused (it stops by itself at its next heartbeat) and the task
 * never has two live workers; a supervisor SIGSTOPped past its lease, resumed, finds its run fenced,
 * terminates its worker (which cannot report), registers again and goes on.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, FIXTURES, cli, exited, isDead, listPids, logEvents, pidAlive, pidsIn, readCmdline, readEnviron, readStat, sleep, waitFor } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';

const SUP = join(FIXTURES, 'sup');
const TICK_MS = 100;
const LEASE_S = 2;
const FAST = { TICK_INTERVAL_MS: String(TICK_MS), CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', SUPERVISOR_LEASE_SECONDS: String(LEASE_S) };
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_takeover'));
afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

let boards = 0;
async function setup(): Promise<{ url: string; dir: string; schema: string; host: (id: string) => Record<string, string> }> {
  const u = new URL(await dbUrl());
  const schema = `to_${process.pid}_${++boards}`;
  u.searchParams.set('schema', schema);
  const dir = cleanups.tempDir('ks-takeover-');
  const host = (id: string) => ({ ...FAST, KANBAN_HOST_ID: id, KANBAN_STATE_DIR: join(dir, `state-${id}`) });
  return { url: u.href, dir, schema, host };
}

async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const u = new URL(url);
  u.searchParams.delete('schema');
  return admin(u.href, async (c) => (await c.query(text, params)).rows as T[]);
}

/** Every ~20 ms: how many distinct runs of task `taskId` have a live (not zombie) process on this machine, all simulated hosts together. */
function sampleLiveRuns(taskId: string): { stop: () => number } {
  let max = 0;
  let seen = '';
  const t = setInterval(() => {
    const runs = new Set<string>();
    const who: string[] = [];
    for (const pid of listPids()) {
      const env = readEnviron(pid);
      if (env?.get('KANBAN_TASK_ID') !== taskId || env.has('KS_PROBE')) continue; // not the test's own late-write probe
      if (isDead(readStat(pid))) continue;
      runs.add(env.get('KANBAN_RUN_ID') ?? '?');
      who.push(`${pid}:${env.get('KANBAN_RUN_ID')}:${readCmdline(pid).join(' ').slice(0, 80)}`);
    }
    if (runs.size > max) seen = `${Date.now()} ${who.join(' | ')}`;
    max = Math.max(max, runs.size);
  }, 20);
  return {
    stop: () => {
      clearInterval(t);
      if (max > 1) console.log(`two live runs at once: ${seen}`);
      return max;
    },
  };
}

describe('several supervisors on one PostgreSQL board: leases and takeover', () => {
  for (const n of [2, 3]) {
    it(`${n} supervisors with different host ids drain 1,000 tasks: each done exactly once, every host dispatched`, async () => {
      const { url, schema, host } = await setup();
      expect((await cli(url, ['skill', 'add', 'done', '--', join(SUP, 'spool-done.sh')], host('h1'))).code).toBe(0);
      const N = 1000;
      await sql(url, `INSERT INTO ${schema}.tasks (id, title, skill, status, created_at, updated_at)
        SELECT 't' || lpad(i::text, 5, '0'), 'drain ' || i, 'done', 'ready', i, i FROM generate_series(1, $1::int) i`, [N]);
      const t0 = Date.now();
      const hosts = Array.from({ length: n }, (_, i) => `h${i + 1}`);
      const sups = hosts.map((h) => cleanups.startCli(url, ['run', '--until-idle'], { ...host(h), MAX_CONCURRENT_WORKERS: '4' }));
      for (const x of sups) expect((await exited(x)).code, x.output()).toBe(0);
      const took = Date.now() - t0;
      expect(await sql(url, `SELECT status, count(*)::int AS n FROM ${schema}.tasks GROUP BY status`)).toEqual([{ status: 'done', n: N }]);
      expect(await sql(url, `SELECT task_id FROM ${schema}.runs GROUP BY task_id HAVING count(*) FILTER (WHERE outcome = 'completed') <> 1`)).toEqual([]);
      // Every run completed: none crashed, was abandoned or ran twice.
      const other = await sql(url, `SELECT outcome, error, count(*)::int AS n FROM ${schema}.runs WHERE outcome IS DISTINCT FROM 'completed' GROUP BY outcome, error`);
      expect(other).toEqual([]);
      expect((await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${schema}.runs`))[0]!.n).toBe(N);
      const by = await sql<{ host_id: string; n: number }>(url, `SELECT v.host_id, count(*)::int AS n FROM ${schema}.runs r JOIN ${schema}.supervisors v ON v.id = r.supervisor_id GROUP BY v.host_id ORDER BY v.host_id`);
      expect(by.map((r) => r.host_id)).toEqual(hosts);
      // Each result names the host whose supervisor claimed the run.
      const mismatched = await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${schema}.runs r JOIN ${schema}.supervisors v ON v.id = r.supervisor_id
        JOIN ${schema}.tasks t ON t.id = r.task_id WHERE t.result::json->>'host' <> v.host_id`);
      expect(mismatched[0]!.n).toBe(0);
      console.log(`pg ${n} supervisors: ${N} tasks in ${took} ms (${by.map((r) => `${r.host_id} ${r.n}`).join(', ')})`);
    }, 240_000);
  }

  it("a SIGKILLed supervisor's task is taken over within lease + grace + 2 ticks; its orphaned worker's late writes are refused and it stops by itself; never two live workers; done once", async () => {
    const { url, dir, schema, host } = await setup();
    const pids = join(dir, 'pids.txt');
    cleanups.killPidsAtEnd(pids);
    const GRACE_S = 1;
    const add = await cli(url, ['skill', 'add', 'hold', '--heartbeat-timeout', '10', '--reclaim-grace', String(GRACE_S), '--', process.execPath, join(SUP, 'pg-hold-once.mjs'), pids, join(dir, 'marker')], host('ha'));
    expect(add.code, add.stderr).toBe(0);
    const id = (await cli(url, ['add', '--skill', 'hold'], host('ha'))).stdout.trim();
    const a = cleanups.startCli(url, ['run'], host('ha'));
    const w1 = await waitFor(() => pidsIn(pids)[0], 30_000);
    const [run1] = await sql<{ id: string; token: string; log_path: string }>(url, `SELECT id, token, log_path FROM ${schema}.runs WHERE task_id = $1`, [id]);
    await waitFor(async () => (await sql(url, `SELECT 1 FROM ${schema}.runs WHERE id = $1 AND heartbeat_at IS NOT NULL`, [run1!.id])).length > 0, 30_000).catch(async (e) => {
      console.log(a.output().split('\n').slice(-30).join('\n'));
      console.log(JSON.stringify(await sql(url, `SELECT * FROM ${schema}.runs`)));
      throw e;
    });
    const b = cleanups.startCli(url, ['run'], host('hb'));
    await waitFor(() => b.output().includes('"event":"started"'), 20_000);
    const sampler = sampleLiveRuns(id);
    const tKill = Date.now();
    a.kill('SIGKILL');
    await exited(a);
    // B takes the run over once A's lease has run out (renewed at most one tick before the kill).
    const taken = await waitFor(() => sql<{ at: string }>(url, `SELECT at FROM ${schema}.events WHERE run_id = $1 AND kind = 'taken_over'`, [run1!.id]).then((r) => r[0]), 20_000, 20);
    const tookMs = Number(taken.at) - tKill;
    console.log(`takeover ${tookMs} ms after the SIGKILL (lease ${LEASE_S} s, grace ${GRACE_S} s, tick ${TICK_MS} ms)`);
    expect(tookMs).toBeLessThanOrEqual((LEASE_S + GRACE_S) * 1000 + 2 * TICK_MS + 1000);
    expect(tookMs).toBeGreaterThanOrEqual(LEASE_S * 1000 - 1000); // the lease runs from the start of the last tick that renewed it
    // A late write of the orphaned worker is refused (exit 3, nothing written).
    const late = await cli(url, ['worker', 'heartbeat'], { KANBAN_DB: url, KANBAN_TASK_ID: id, KANBAN_RUN_ID: run1!.id, KANBAN_RUN_TOKEN: run1!.token, KS_PROBE: '1' });
    expect(late.code, late.stderr).toBe(3);
    expect(late.stderr).toMatch(/no longer current/);
    // The orphan notices at its next heartbeat and stops by itself (nobody on "host a" signals it).
    await waitFor(() => !pidAlive(w1), 15_000);
    // B runs the task again once the requeue delay has passed: done, once, by host b.
    await waitFor(async () => (await sql<{ status: string }>(url, `SELECT status FROM ${schema}.tasks WHERE id = $1`, [id]))[0]!.status === 'done', 60_000).catch(async (e) => {
      console.log(b.output().split('\n').slice(-40).join('\n'));
      console.log(JSON.stringify(await sql(url, `SELECT * FROM ${schema}.tasks`)));
      console.log(JSON.stringify(await sql(url, `SELECT * FROM ${schema}.runs`)));
      throw e;
    });
    expect(sampler.stop()).toBe(1);
    const runs = await sql<{ outcome: string; stop_reason: string | null; host_id: string }>(url,
      `SELECT r.outcome, r.stop_reason, v.host_id FROM ${schema}.runs r JOIN ${schema}.supervisors v ON v.id = r.supervisor_id WHERE r.task_id = $1 ORDER BY r.seq`, [id]);
    expect(runs).toEqual([
      { outcome: 'abandoned', stop_reason: 'lease_lost', host_id: 'ha' },
      { outcome: 'completed', stop_reason: null, host_id: 'hb' },
    ]);
    const task = (await sql<{ result: string; consecutive_failures: number }>(url, `SELECT result, consecutive_failures FROM ${schema}.tasks WHERE id = $1`, [id]))[0]!;
    expect([JSON.parse(task.result), task.consecutive_failures]).toEqual([{ again: true }, 0]);
    // The orphan's own log says why it stopped.
    expect(readFileSync(run1!.log_path, 'utf8')).toMatch(/no longer current/);
    const ev = logEvents(b.output(), 'run_taken_over');
    expect(ev).toEqual([expect.objectContaining({ task: id, run: run1!.id, workerPid: w1, hostId: 'ha', action: 'requeue', counted: false })]);
    expect(logEvents(b.output(), 'lease_takeover')).toHaveLength(1);
    b.kill('SIGTERM');
    expect((await exited(b)).code).toBe(0);
  }, 120_000);

  it('a supervisor SIGSTOPped past its lease, resumed, terminates its fenced worker (which cannot report), registers again and goes on', async () => {
    const { url, dir, schema, host } = await setup();
    const pids = join(dir, 'pids.txt');
    const lateExit = join(dir, 'late-exit.txt');
    cleanups.killPidsAtEnd(pids);
    expect((await cli(url, ['skill', 'add', 'sleepy', '--reclaim-grace', '15', '--', join(SUP, 'term-report.sh'), pids, lateExit], host('ha'))).code).toBe(0);
    expect((await cli(url, ['skill', 'add', 'done', '--', join(SUP, 'spool-done.sh')], host('ha'))).code).toBe(0);
    const id = (await cli(url, ['add', '--skill', 'sleepy'], host('ha'))).stdout.trim();
    const a = cleanups.startCli(url, ['run'], host('ha'));
    cleanups.push(() => a.kill('SIGCONT'));
    const w1 = await waitFor(() => pidsIn(pids)[0], 30_000);
    const [run1] = await sql<{ id: string; supervisor_id: string }>(url, `SELECT id, supervisor_id FROM ${schema}.runs WHERE task_id = $1`, [id]);
    const b = cleanups.startCli(url, ['run'], host('hb'));
    await waitFor(() => b.output().includes('"event":"started"'), 20_000);
    a.kill('SIGSTOP');
    await waitFor(() => sql(url, `SELECT 1 FROM ${schema}.events WHERE run_id = $1 AND kind = 'taken_over'`, [run1!.id]).then((r) => r.length > 0), 20_000, 20).catch(async (e) => {
      console.log(b.output().split('\n').slice(-30).join('\n'));
      console.log(JSON.stringify(await sql(url, `SELECT * FROM ${schema}.supervisors`)));
      console.log(Date.now());
      throw e;
    });
    const [task1] = await sql<{ status: string; not_before: string }>(url, `SELECT status, not_before FROM ${schema}.tasks WHERE id = $1`, [id]);
    // Its worker never heartbeats: the requeue waits a whole default heartbeat interval + grace.
    expect(task1!.status).toBe('ready');
    expect(Number(task1!.not_before) - Date.now()).toBeGreaterThan(25_000);
    expect(pidAlive(w1)).toBe(true); // nobody on another host touches it
    const tCont = Date.now();
    a.kill('SIGCONT');
    // Back: its lease is lost, it terminates the fenced worker (SIGTERM; its trap runs a late report
    // through the worker CLI, then exits) and registers again.
    await waitFor(() => !pidAlive(w1), 20_000);
    const stoppedIn = Date.now() - tCont;
    expect(stoppedIn).toBeLessThan(15_000);
    // The worker's late report on SIGTERM was refused (exit 3): no result written for it.
    await waitFor(() => existsSync(lateExit), 15_000).catch((e) => {
      console.log(a.output().split('\n').slice(-30).join('\n'));
      throw e;
    });
    expect(readFileSync(lateExit, 'utf8').trim()).toBe('3');
    const lost = await waitFor(() => logEvents(a.output(), 'lease_lost')[0], 10_000);
    expect(lost).toEqual(expect.objectContaining({ supervisorId: run1!.supervisor_id }));
    const term = logEvents(a.output(), 'sigterm_sent');
    expect(term).toEqual([expect.objectContaining({ task: id, run: run1!.id, workerPid: w1, reason: 'lease_lost' })]);
    await waitFor(async () => (await sql(url, `SELECT 1 FROM ${schema}.runs WHERE id = $1 AND exited_at IS NOT NULL`, [run1!.id])).length > 0, 10_000);
    const r1 = (await sql<Record<string, unknown>>(url, `SELECT status, outcome, stop_reason, signal, sigterm_at FROM ${schema}.runs WHERE id = $1`, [run1!.id]))[0]!;
    expect([r1.status, r1.outcome, r1.stop_reason]).toEqual(['ended', 'abandoned', 'lease_lost']);
    expect(r1.sigterm_at).not.toBeNull();
    const t = (await sql<Record<string, unknown>>(url, `SELECT status, result, consecutive_failures FROM ${schema}.tasks WHERE id = $1`, [id]))[0]!;
    expect([t.status, t.result, t.consecutive_failures]).toEqual(['ready', null, 0]);
    // Host a: the taken-over row and a new live one whose lease is renewed; a still dispatches.
    const rows = await sql<{ id: string; stopped_at: string | null; taken_over_by: string | null; lease_expires_at: string }>(url,
      `SELECT id, stopped_at, taken_over_by, lease_expires_at FROM ${schema}.supervisors WHERE host_id = 'ha' ORDER BY started_at, id`);
    const old = rows.find((r) => r.id === run1!.supervisor_id)!;
    expect(old.stopped_at).not.toBeNull();
    expect(old.taken_over_by).not.toBeNull();
    const fresh = rows.filter((r) => r.stopped_at === null);
    expect(fresh).toHaveLength(1);
    expect(Number(fresh[0]!.lease_expires_at)).toBeGreaterThan(Date.now());
    b.kill('SIGTERM');
    expect((await exited(b)).code).toBe(0);
    const next = (await cli(url, ['add', '--skill', 'done'], host('ha'))).stdout.trim();
    await waitFor(async () => (await sql<{ status: string }>(url, `SELECT status FROM ${schema}.tasks WHERE id = $1`, [next]))[0]!.status === 'done', 20_000).catch(async (e) => {
      console.log(a.output().split('\n').slice(-30).join('\n'));
      console.log(JSON.stringify(await sql(url, `SELECT * FROM ${schema}.supervisors`)));
      console.log(JSON.stringify(await sql(url, `SELECT * FROM ${schema}.tasks`)));
      throw e;
    });
    a.kill('SIGTERM');
    expect((await exited(a)).code).toBe(0);
  }, 120_000);
});
