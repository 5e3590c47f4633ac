/**
 * The supervisor's metrics (supervisor/src/metrics), in process: a real Supervisor runs real
 * workers on a temp board until idle, then a scrape (renderMetrics, through a read-only connection
 * of its own, as the HTTP view's) is parsed and checked against the board; counters move only once
 * their transaction committed; names follow Prometheus conventions; a scrape at 100,000 tasks stays
 * cheap; the per-minute history aggregates as the page plots it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard, resolveBoardPath, type Board } from '@kanban-supervisor/board';
import { TASK_STATUSES, loadConfig } from '@kanban-supervisor/policies';
import { Reaper } from '@kanban-supervisor/reaper';
import { Supervisor } from '../../supervisor/dist/supervisor.js';
import { createContext, type TickContext } from '../../supervisor/dist/state.js';
import { TickTx } from '../../supervisor/dist/tick-tx.js';
import { account } from '../../supervisor/dist/steps/account.js';
import { MinuteHistory, SupervisorMetrics, history, renderMetrics } from '../../supervisor/dist/metrics/index.js';
import { Cleanups, FIXTURES, ROOT, waitFor } from '../src/common.js';
import { RawClient, socketOf } from '../src/channel-client.js';
import { fillTasks } from '../src/fill.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** A logger that keeps nothing (pino's shape: the supervisor and reaper log through it). */
function quietLog(): never {
  const log: Record<string, unknown> = {};
  for (const l of ['info', 'warn', 'error', 'debug', 'trace', 'fatal']) log[l] = () => undefined;
  log.child = () => log;
  return log as never;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Parsed {
  samples: Sample[];
  types: Map<string, string>;
  helps: Map<string, string>;
}

/** Parse Prometheus' text format strictly: every line a HELP, a TYPE or a sample; anything else fails. */
function parse(text: string): Parsed {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (-?[0-9.e+-]+|NaN|\\+Inf|-Inf)$`);
  const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m: RegExpMatchArray | null;
    if ((m = line.match(new RegExp(`^# HELP (${NAME}) (.+)$`)))) helps.set(m[1]!, m[2]!);
    else if ((m = line.match(new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`)))) types.set(m[1]!, m[2]!);
    else if ((m = line.match(SAMPLE))) {
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!;
      samples.push({ name: m[1]!, labels, value: Number(m[3]) });
    } else throw new Error(`not a line of the Prometheus text format: ${JSON.stringify(line)}`);
  }
  return { samples, types, helps };
}

function value(p: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  return p.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** A board in a temp folder with two skills of the worker fixture: `ok` returns, `bad` throws. */
async function tempBoard(): Promise<{ dir: string; db: string }> {
  const dir = cleanups.tempDir('ks-metrics-');
  const db = resolveBoardPath(join(dir, 'kanban.db'));
  const b = await openBoard(db);
  const skill = join(FIXTURES, 'worker', 'skill.mjs');
  await b.putSkill({ name: 'ok', argv: [process.execPath, skill], env: { MODE: 'return' }, cwd: ROOT });
  await b.putSkill({ name: 'bad', argv: [process.execPath, skill], env: { MODE: 'throw' }, cwd: ROOT });
  await b.close();
  return { dir, db };
}

async function readOnly(db: string): Promise<Board> {
  const r = await openBoard(db, { readonly: true });
  cleanups.push(() => r.close());
  return r;
}

describe('metrics of a supervisor that ran real tasks', () => {
  it('the scrape matches the board: tasks by status and skill, runs ended by outcome and skill, dispatch and spawn histograms, pool, board files; names follow the conventions', async () => {
    const { db } = await tempBoard();
    const b = await openBoard(db);
    for (let i = 0; i < 4; i++) await b.createTask({ skill: 'ok', title: `ok ${i}`, payload: { result: i } });
    for (let i = 0; i < 2; i++) await b.createTask({ skill: 'bad', title: `bad ${i}`, payload: { why: 'test' } });
    const held = await b.createTask({ skill: 'ok', title: 'blocked by hand' });
    await b.blockTask(held.id, 'not now');
    await b.close();

    const cfg = loadConfig({ KANBAN_DB: db, FAILURE_LIMIT: '1', STORM_DISTINCT_TASKS: '0', MAX_CONCURRENT_WORKERS: '3' });
    const sup = new Supervisor(cfg, quietLog(), { untilIdle: true });
    const started = Date.now();
    expect(await sup.start()).toBe(0);
    const ctx = sup.context;

    const reads = await readOnly(db);
    const { contentType, body } = await renderMetrics(ctx, reads);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const p = parse(body);

    // Tasks by status and skill: what the board says, every status of each skill listed.
    const counts = await reads.taskCountsBySkill();
    expect(counts.length).toBeGreaterThan(0);
    for (const skill of ['ok', 'bad']) {
      for (const status of TASK_STATUSES) {
        const want = counts.find((c) => c.skill === skill && c.status === status)?.count ?? 0;
        expect(value(p, 'kanban_tasks', { status, skill }), `${status}/${skill}`).toBe(want);
      }
    }
    expect(value(p, 'kanban_tasks', { status: 'done', skill: 'ok' })).toBe(4);
    expect(value(p, 'kanban_tasks', { status: 'blocked', skill: 'ok' })).toBe(1);
    expect(value(p, 'kanban_tasks', { status: 'blocked', skill: 'bad' })).toBe(2);

    // Runs ended: the board's runs, by outcome and skill.
    const runs = await reads.listRuns({ limit: 100 });
    expect(runs.length).toBe(6);
    expect(value(p, 'kanban_runs_ended_total', { outcome: 'completed', skill: 'ok' })).toBe(4);
    expect(value(p, 'kanban_runs_ended_total', { outcome: 'failed', skill: 'bad' })).toBe(2);
    expect(p.samples.filter((s) => s.name === 'kanban_runs_ended_total').reduce((n, s) => n + s.value, 0)).toBe(6);

    // One dispatch latency and one spawn duration per worker; latencies within the run's time.
    expect(value(p, 'kanban_dispatch_latency_seconds_count')).toBe(6);
    expect(value(p, 'kanban_spawn_duration_seconds_count')).toBe(6);
    expect(value(p, 'kanban_dispatch_latency_seconds_sum')!).toBeLessThan((6 * (Date.now() - started + 1000)) / 1000);
    expect(value(p, 'kanban_dispatch_latency_seconds_bucket', { le: '+Inf' })).toBe(6);
    expect(value(p, 'kanban_tick_duration_seconds_count')!).toBeGreaterThan(0);
    expect(value(p, 'kanban_write_lock_hold_seconds_count')!).toBeGreaterThan(0);
    expect(value(p, 'kanban_pool_capacity')).toBe(3);
    expect(value(p, 'kanban_pool_in_use')).toBe(0);
    expect(value(p, 'kanban_quarantined')).toBe(0);
    expect(value(p, 'kanban_storm_paused')).toBe(0);
    expect(value(p, 'kanban_board_size_bytes', { file: 'db' })).toBe(statSync(db).size);
    expect(value(p, 'kanban_board_size_bytes', { file: 'wal' })).toBeGreaterThanOrEqual(0);
    // Node's own process metrics, on the same registry.
    expect(value(p, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(value(p, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);

    // Conventions: every metric has help text and a type; ours are kanban_*, counters end in
    // _total, and units are base units named last.
    for (const [name, type] of p.types) {
      expect(p.helps.get(name), `help of ${name}`).toBeTruthy();
      if (!/^(process|nodejs)_/.test(name)) expect(name).toMatch(/^kanban_[a-z_]+$/);
      if (type === 'counter') expect(name, `counter ${name}`).toMatch(/_total$/);
      // (Node's default metrics have gauges named *_total, e.g. nodejs_active_handles_total: not ours.)
      if (type !== 'counter' && name.startsWith('kanban_')) expect(name, `${name} (${type})`).not.toMatch(/_total$/);
      expect(name).not.toMatch(/_(ms|milliseconds|kb|mb|bytes_total_bytes)$/);
    }
    for (const s of p.samples) {
      const family = [...p.types.keys()].find((n) => s.name === n || s.name.startsWith(`${n}_`));
      expect(family, `sample ${s.name} has a TYPE`).toBeDefined();
    }

    // The page's history: this minute's done and failed runs, the pool, the latency quantiles.
    const points = history(ctx);
    expect(points.length).toBeGreaterThanOrEqual(1);
    expect(points.reduce((n, x) => n + x.done, 0)).toBe(4);
    expect(points.reduce((n, x) => n + x.failed, 0)).toBe(2);
    const last = points.at(-1)!;
    expect(last.poolSize).toBe(3);
    expect(points.some((x) => x.dispatchP50Ms !== null && x.dispatchP99Ms! >= x.dispatchP50Ms)).toBe(true);
  });
});

describe('the report channel in the metrics', () => {
  it('reports answered by op and outcome, batch sizes, report commit durations, connections open, clients dropped', async () => {
    const { db } = await tempBoard();
    const b = await openBoard(db);
    for (let i = 0; i < 5; i++) await b.createTask({ skill: 'ok', title: `ok ${i}`, payload: { result: i } });
    await b.createTask({ skill: 'bad', title: 'bad', payload: { why: 'test' } });
    await b.close();
    const cfg = loadConfig({ KANBAN_DB: db, FAILURE_LIMIT: '1', STORM_DISTINCT_TASKS: '0', MAX_CONCURRENT_WORKERS: '3', TICK_INTERVAL_MS: '200', KANBAN_HTTP: 'off' });
    const sup = new Supervisor(cfg, quietLog());
    const code = sup.start();
    cleanups.push(async () => {
      sup.requestStop('SIGTERM');
      await code;
    });
    const ctx = sup.context;
    const reads = await readOnly(db);
    const scrape = async () => parse((await renderMetrics(ctx, reads)).body);
    await waitFor(async () => (await reads.taskCountsBySkill()).filter((c) => c.status === 'done' || c.status === 'blocked').reduce((n, c) => n + c.count, 0) === 6, 60_000);

    // Two clients of our own: one connected (the gauge), one that sends a frame that is not JSON (dropped).
    const idle = await RawClient.connect(socketOf(db));
    cleanups.push(() => idle.close());
    const bad = await RawClient.connect(socketOf(db));
    cleanups.push(() => bad.close());
    await waitFor(async () => value(await scrape(), 'kanban_channel_connections') === 2);
    bad.sock.write('this is not json\n');
    await bad.waitClosed();
    // A report of a run that ended (and a made-up token): answered fenced, counted so; a request
    // the protocol refuses: invalid.
    const [ended] = await reads.listRuns({ limit: 1 });
    idle.send({ v: 1, id: 1, op: 'heartbeat', task: ended!.taskId, run: ended!.id, token: '0'.repeat(32), seq: '1' });
    expect(await idle.answer(1)).toMatchObject({ ok: false, code: 'fenced' });
    idle.send({ v: 1, id: 2, op: 'event', task: ended!.taskId, run: ended!.id, token: '0'.repeat(32), seq: 'x' });
    expect(await idle.answer(2)).toMatchObject({ ok: false, code: 'invalid' });
    const p = await waitFor(async () => {
      const q = await scrape();
      return value(q, 'kanban_channel_connections') === 1 ? q : null;
    });

    // Every worker loaded its payload and ended through the channel: 5 completed, 1 failed.
    expect(value(p, 'kanban_channel_reports_total', { op: 'payload', outcome: 'applied' })).toBe(6);
    expect(value(p, 'kanban_channel_reports_total', { op: 'complete', outcome: 'applied' })).toBe(5);
    expect(value(p, 'kanban_channel_reports_total', { op: 'fail', outcome: 'applied' })).toBe(1);
    expect(value(p, 'kanban_channel_reports_total', { op: 'heartbeat', outcome: 'fenced' })).toBe(1);
    expect(value(p, 'kanban_channel_reports_total', { op: 'event', outcome: 'invalid' })).toBe(1);
    expect(ctx.state.reports!.stats.applied).toBeGreaterThanOrEqual(12);
    // Batch sizes: every report answered from a committed transaction (applied, duplicate, fenced;
    // not the one the protocol refused before any transaction) is in one observation.
    const answeredOk = p.samples
      .filter((s) => s.name === 'kanban_channel_reports_total' && ['applied', 'duplicate', 'fenced'].includes(s.labels.outcome!))
      .reduce((n, s) => n + s.value, 0);
    const batched = p.samples.filter((s) => s.name === 'kanban_channel_batch_size_sum').reduce((n, s) => n + s.value, 0);
    expect(batched).toBe(answeredOk);
    const ownCommits = value(p, 'kanban_channel_batch_size_count', { commit: 'report' }) ?? 0;
    expect(ownCommits + (value(p, 'kanban_channel_batch_size_count', { commit: 'tick' }) ?? 0)).toBeGreaterThan(0);
    expect(value(p, 'kanban_channel_commit_duration_seconds_count') ?? 0).toBe(ownCommits);
    expect(value(p, 'kanban_channel_clients_dropped_total', { reason: 'malformed' })).toBe(1);
    expect(p.types.get('kanban_channel_reports_total')).toBe('counter');
    expect(p.types.get('kanban_channel_batch_size')).toBe('histogram');
    expect(p.types.get('kanban_channel_commit_duration_seconds')).toBe('histogram');
    expect(p.types.get('kanban_channel_connections')).toBe('gauge');
    expect(p.types.get('kanban_channel_clients_dropped_total')).toBe('counter');

    idle.close();
    sup.requestStop('SIGTERM');
    expect(await code).toBe(0);
    expect(value(await scrape(), 'kanban_channel_connections')).toBe(0);
  });
});

describe('counters move only after their transaction committed', () => {
  it('runs accounted in a tick that rolled back are not counted; counted once when the accounting commits', async () => {
    const { dir, db } = await tempBoard();
    const board = await openBoard(db, { busyTimeoutMs: 50, busyRetries: 3 });
    cleanups.push(() => board.close());
    const cfg = loadConfig({ KANBAN_DB: db, FAILURE_LIMIT: '3', STORM_DISTINCT_TASKS: '0' });
    const ctx: TickContext = createContext({ cfg, log: quietLog(), reaper: new Reaper({ logger: quietLog(), subreaper: false }), boardPath: db });
    ctx.state.board = board;
    await board.createTask({ skill: 'bad' });
    const now = Date.now();
    const [c] = await board.claimBatch(1, now, (runId) => join(dir, `${runId}.log`));
    await board.recordSpawns([{ runId: c!.run.id, info: { pid: 4_000_000, pgid: 4_000_000, procStartTime: 1, bootId: 'b' } }], now);
    ctx.state.heldObs.push({ runId: c!.run.id, at: now, exitCode: 1, signal: null, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'x' });
    const ended = async () => (await ctx.metrics.runsEnded.get()).values.reduce((n, v) => n + v.value, 0);

    // The accounting written, then the transaction closed without its commit: nothing happened.
    const lost = new TickTx(ctx.state);
    await account(ctx, lost, now);
    expect(await ended()).toBe(0);
    lost.close();
    expect(await ended()).toBe(0);
    expect(history(ctx).reduce((n, x) => n + x.failed, 0)).toBe(0);

    // Again, committed this time: counted once, with its outcome and skill.
    const tx = new TickTx(ctx.state);
    await account(ctx, tx, now);
    expect(await ended()).toBe(0);
    await tx.commit();
    tx.close();
    expect((await ctx.metrics.runsEnded.get()).values).toEqual([{ labels: { outcome: 'crashed', skill: 'bad' }, value: 1 }]);
    expect(history(ctx).reduce((n, x) => n + x.failed, 0)).toBe(1);
  });
});

describe('a scrape at 100,000 tasks', () => {
  it('reads the task counts once (cached up to 1 s) and renders in well under 250 ms', async () => {
    const { db } = await tempBoard();
    const made = fillTasks(db, 100_000, ['ok', 'bad', 'c', 'd']);
    const cfg = loadConfig({ KANBAN_DB: db });
    const ctx = createContext({ cfg, log: quietLog(), reaper: new Reaper({ logger: quietLog(), subreaper: false }), boardPath: db });
    const reads = await readOnly(db);
    let calls = 0;
    const counting = { taskCountsBySkill: () => (calls++, reads.taskCountsBySkill()) };
    await renderMetrics(ctx, counting); // warm-up (statements prepared, default metrics on)
    await new Promise((r) => setTimeout(r, 1100));
    const times: number[] = [];
    let body = '';
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      body = (await renderMetrics(ctx, counting)).body;
      times.push(performance.now() - t);
    }
    expect(calls, 'one read for the warm-up, one for the five scrapes within a second').toBe(2);
    const p = parse(body);
    for (const [k, n] of made) {
      const [status, skill] = k.split('/') as [string, string];
      expect(value(p, 'kanban_tasks', { status, skill }), k).toBe(n);
    }
    // The first of the five read the board; a loose bound (the bench reports the real figure).
    expect(times[0]!, `scrape times ${times.map((t) => t.toFixed(1)).join(', ')} ms`).toBeLessThan(250);
  });
});

describe('history (per-minute points of the last hour)', () => {
  const M = 60_000;
  const t0 = 1_000 * M; // a minute boundary

  it('aggregates per minute: done and failed summed, the pool at its peak, latency quantiles; quiet minutes are zeros', () => {
    const h = new MinuteHistory();
    expect(h.points(t0)).toEqual([]);
    h.addRuns(2, 1, t0 + 1000);
    h.addRuns(1, 0, t0 + 59_000);
    h.addPool(3, 8, t0 + 1000);
    h.addPool(5, 8, t0 + 2000);
    h.addPool(1, 8, t0 + 3000);
    for (let i = 1; i <= 100; i++) h.addDispatch(i, t0 + 5000);
    h.addPool(0, 8, t0 + 2 * M + 10);
    expect(h.points(t0 + 2 * M + 20)).toEqual([
      { at: t0, done: 3, failed: 1, poolUsed: 5, poolSize: 8, dispatchP50Ms: 50, dispatchP99Ms: 99 },
      { at: t0 + M, done: 0, failed: 0, poolUsed: 0, poolSize: 0, dispatchP50Ms: null, dispatchP99Ms: null },
      { at: t0 + 2 * M, done: 0, failed: 0, poolUsed: 0, poolSize: 8, dispatchP50Ms: null, dispatchP99Ms: null },
    ]);
  });

  it('keeps the last hour only: a slot an hour old is reused, older minutes drop out', () => {
    const h = new MinuteHistory();
    h.addRuns(1, 0, t0);
    h.addRuns(5, 0, t0 + 30 * M);
    expect(h.points(t0 + 59 * M)).toHaveLength(60);
    expect(h.points(t0 + 59 * M)[0]!.done).toBe(1);
    // An hour later the first minute is gone; its slot takes the new minute.
    h.addRuns(7, 0, t0 + 60 * M);
    const pts = h.points(t0 + 60 * M);
    expect(pts[0]!.at).toBe(t0 + 30 * M);
    expect(pts.map((x) => x.done).filter((n) => n > 0)).toEqual([5, 7]);
    expect(pts.at(-1)).toMatchObject({ at: t0 + 60 * M, done: 7 });
  });

  it('bounds the latencies kept per minute (a uniform sample) while the quantiles stay right', () => {
    const h = new MinuteHistory(() => 0.5);
    for (let i = 0; i < 20_000; i++) h.addDispatch(10, t0);
    h.addDispatch(10_000, t0);
    const [pt] = h.points(t0);
    expect(pt).toMatchObject({ dispatchP50Ms: 10, dispatchP99Ms: 10 });
  });

  it('worker CPU seconds accrue from the cumulative CPU time of each sample (or CPU % × interval without it)', async () => {
    const m = new SupervisorMetrics();
    m.sampledCpu([{ runId: 'r1', skill: 'a', cpuPercent: 50, cpuSeconds: 2 }], 1000);
    m.sampledCpu([{ runId: 'r1', skill: 'a', cpuPercent: 50, cpuSeconds: 4.5 }], 6000);
    m.sampledCpu([{ runId: 'r2', skill: 'b', cpuPercent: 100, cpuSeconds: null }], 6000); // first sample: nothing known yet
    m.sampledCpu([{ runId: 'r2', skill: 'b', cpuPercent: 100, cpuSeconds: null }], 11_000);
    const v = (await m.workerCpu.get()).values.map((x) => [x.labels.skill, x.value]);
    expect(v).toEqual([
      ['a', 4.5],
      ['b', 5],
    ]);
  });
});
