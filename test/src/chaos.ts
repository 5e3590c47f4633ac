/**
 * `npm run chaos` (about 10 minutes) and `npm run chaos -- --short` (under 2 minutes, CI).
 *
 * Real supervisors, real workers, real signals, in a temp folder. Each scenario prints its figures
 * with their targets as it goes; at the end a markdown table (paste it into an issue) and the same
 * figures as JSON in chaos-results/chaos-<timestamp>.json. Exit status 1 when a hard invariant
 * (board integrity, lost writes or tasks, two live workers, double completion, leaks) fails.
 *
 *   node test/dist/chaos.js [--short] [--only storm,restart,crash,tree,damage,load] [--keep]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  garbageHeader,
  localConnectionOf,
  indexOutOfOrder,
  listBackups,
  makeBoard,
  recoverInPlace,
  truncateFile,
  zeroInteriorPage,
  type Board,
  type Db,
  type RecoverInPlaceReport,
} from '@kanban-supervisor/board';
import { readSpool, spoolDir, WORKER_BUSY_TIMEOUT_MS } from '@kanban-supervisor/worker-runtime';
import {
  FIXTURES,
  Harness,
  ROOT,
  Results,
  Sup,
  fdCount,
  fdTargets,
  fmt,
  gitRev,
  integrity,
  listPids,
  machine,
  machineLine,
  median,
  memory,
  openBoard,
  openSql,
  parseFlags,
  pidAlive,
  quantile,
  rand,
  readCmdline,
  readRecords,
  readStat,
  runParts,
  sleep,
  zombieChildren,
  type LogLine,
} from './lib.js';
import { heartbeatsUnderRestarts, rssUnderChurn, waitSummary } from './load.js';

const FLAGS = parseFlags(process.argv.slice(2));
/** Small healthy tasks kept open beside the storm (the successes a real pool has). */
const OK_TRICKLE = Number(process.env.CHAOS_OK_TRICKLE ?? 4);
/**
 * The healthy skill: the bench's tiny native worker (sh + one sqlite3 transaction, ~5 ms) when the
 * sqlite3 command exists, else a Node worker through the runtime. Its successes are what keeps the
 * pool's storm breaker from escalating, as in a real pool where most tasks succeed.
 */
const HAVE_SQLITE3 = spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;
const OK_ARGV = HAVE_SQLITE3 ? [join(FIXTURES, 'bench', 'native-report.sh')] : [process.execPath, join(FIXTURES, 'chaos', 'ok-worker.mjs')];
const SHORT = FLAGS.short;
const CHAOS = join(FIXTURES, 'chaos');

const P = SHORT
  ? {
      storm: { workers: 16, kills: 200, budgetS: 35, iters: 25, iterMs: 5 },
      restart: { kills: 8, gapMs: [900, 2000] as const, budgetS: 45, open: 10 },
      crash: { tasks: 20, ghosts: 2, badCwd: 3, limit: 3, baseS: 2, factor: 2, budgetS: 60 },
      tree: { each: 3 },
      load: { workers: 64, churnS: 10, taskMs: [1000, 4000] as const, restarts: 2, waveMs: 6000, otherProcesses: 600 },
    }
  : {
      storm: { workers: 16, kills: 2000, budgetS: 300, iters: 25, iterMs: 5 },
      restart: { kills: 50, gapMs: [1500, 4000] as const, budgetS: 300, open: 12 },
      crash: { tasks: 100, ghosts: 5, badCwd: 10, limit: 3, baseS: 4, factor: 2, budgetS: 300 },
      tree: { each: 8 },
      load: { workers: 64, churnS: 45, taskMs: [1000, 4000] as const, restarts: 10, waveMs: 6000, otherProcesses: 600 },
    };

const h = new Harness({ prefix: 'ks-chaos-', keep: FLAGS.keep, deadlineMs: (SHORT ? 6 : 30) * 60_000 });
const res = new Results();
const want = (name: string) => !FLAGS.only || FLAGS.only.has(name);

/** Supervisors measured for leaks: zombies and fd growth at quiet moments. */
const leakChecks: Array<{ label: string; pid: number; fdBefore: number | null; fdAfter: number | null; zombies: number; fdDetail?: string[] }> = [];
/** Every board of this run (for the pgid part of the final leak scan). */
const boards: string[] = [];

function tail(sup: Sup, n = 15): string {
  return sup.lines
    .slice(-n)
    .map((l) => JSON.stringify(l))
    .join('\n');
}

function rows<T>(c: Db, sql: string, ...params: unknown[]): T[] {
  return c.prepare(sql).all(...params) as T[];
}

function one<T>(c: Db, sql: string, ...params: unknown[]): T {
  return c.prepare(sql).get(...params) as T;
}

async function waitIdle(b: Board, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await b.idle()) return true;
    await sleep(200);
  }
  return b.idle();
}

function outcomes(c: Db, where = '1'): string {
  return rows<{ outcome: string | null; n: number }>(c, `SELECT outcome, count(*) AS n FROM runs WHERE ${where} GROUP BY outcome ORDER BY n DESC`)
    .map((r) => `${r.outcome ?? 'open'} ${r.n}`)
    .join(', ');
}

function integrityRow(scenario: string, db: string, when: string): boolean {
  const r = integrity(db);
  res.add({ scenario, figure: `board integrity_check ${when}`, value: r, target: 'ok', pass: r === 'ok', hard: true });
  return r === 'ok';
}

function tickErrors(sups: Sup[]): string {
  const byClass = new Map<string, number>();
  for (const s of sups) {
    for (const l of s.events('tick_step_failed')) {
      const k = `${String(l.step)}/${String(l.errorClass)}`;
      byClass.set(k, (byClass.get(k) ?? 0) + 1);
    }
  }
  return byClass.size ? [...byClass].map(([k, n]) => `${k} ×${n}`).join(', ') : 'none';
}

function stormPauses(sups: Sup[]): Array<{ from: number; until: number }> {
  return sups.flatMap((s) => s.events('storm_pause').map((l: LogLine) => ({ from: Number(l.time), until: Number(l.until) })));
}

async function quiet(label: string, sup: Sup, fdBefore: number | null): Promise<void> {
  // A zombie may exist for the few ms between a worker's exit and Node's reaping; look twice.
  let zombies = zombieChildren(sup.pid).length;
  if (zombies > 0) {
    await sleep(500);
    zombies = zombieChildren(sup.pid).length;
  }
  leakChecks.push({ label, pid: sup.pid, fdBefore, fdAfter: fdCount(sup.pid), zombies, fdDetail: fdTargets(sup.pid) });
}

// =============================================================================== 1. SIGKILL storm

async function scenarioStorm(): Promise<void> {
  const S = 'worker SIGKILL storm';
  const cfg = P.storm;
  const dir = h.dir('storm');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const ledger = join(dir, 'ledger.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const sups: Sup[] = [];
  try {
    await b.putSkill({
      name: 'storm',
      argv: [process.execPath, join(CHAOS, 'ledger-worker.mjs')],
      env: { LEDGER: ledger, ITERS: String(cfg.iters), ITER_MS: String(cfg.iterMs) },
    });
    await b.putSkill({ name: 'ok', argv: OK_ARGV });
    const sup = new Sup(h, db, {
      env: {
        MAX_CONCURRENT_WORKERS: String(cfg.workers + OK_TRICKLE),
        TICK_INTERVAL_MS: '100',
        CRASH_GRACE_SECONDS: '2',
        FAILURE_LIMIT: '1000',
        BACKOFF_BASE_SECONDS: '0.05',
        BACKOFF_FACTOR: '1',
        BACKOFF_MAX_SECONDS: '0.05',
        RECLAIM_GRACE_SECONDS: '2',
      },
      logFile: join(dir, 'supervisor.log'),
    });
    sups.push(sup);
    if (!(await sup.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(sup)}`);

    // Warm up (first spawns, statement caches), then measure the supervisor at rest.
    for (let i = 0; i < cfg.workers; i++) await b.createTask({ skill: 'storm', title: `warm-up ${i}` });
    if (!(await waitIdle(b, 90_000))) throw new Error('the warm-up tasks did not finish within 90 s');
    await sleep(300);
    const fdBefore = fdCount(sup.pid);
    const memBefore = memory(sup.pid);

    // The storm: the feeder keeps `workers` storm tasks open (and OK_TRICKLE small healthy tasks, the
    // trickle of successes a real pool has); the killer SIGKILLs a random storm worker every 20-100 ms.
    let stop = false;
    let created = cfg.workers;
    const feeder = (async () => {
      while (!stop) {
        const open = new Map(
          rows<{ skill: string; n: number }>(sql, `SELECT skill, count(*) AS n FROM tasks WHERE status IN ('ready', 'running') GROUP BY skill`).map((r) => [r.skill, r.n]),
        );
        for (let i = open.get('storm') ?? 0; i < cfg.workers && !stop; i++, created++) await b.createTask({ skill: 'storm', title: `storm ${created}` });
        for (let i = open.get('ok') ?? 0; i < OK_TRICKLE && !stop; i++) await b.createTask({ skill: 'ok', priority: 10 });
        await sleep(100);
      }
    })();
    const t0 = Date.now();
    const end = t0 + cfg.budgetS * 1000;
    let kills = 0;
    let idleTicks = 0;
    while (kills < cfg.kills && Date.now() < end) {
      await sleep(rand(20, 100));
      const victims = h.scanner.scan((p) => p.stat.ppid === sup.pid && p.stat.state !== 'Z' && p.cmd.some((c) => c.endsWith('ledger-worker.mjs')));
      if (victims.length === 0) {
        idleTicks++;
        continue;
      }
      const v = victims[Math.floor(Math.random() * victims.length)]!;
      const s = readStat(v.pid);
      if (!s || s.startTime !== v.stat.startTime || s.state === 'Z') continue;
      try {
        process.kill(v.pid, 'SIGKILL');
        kills++;
      } catch {
        /* it exited meanwhile */
      }
      if (!sup.running) throw new Error(`the supervisor died during the storm:\n${tail(sup)}`);
    }
    const stormS = (Date.now() - t0) / 1000;
    stop = true;
    await feeder;
    const drained = await waitIdle(b, 120_000);
    await sleep(300);
    await quiet('storm', sup, fdBefore);
    const memAfter = memory(sup.pid);

    res.add({
      scenario: S,
      figure: 'SIGKILLs of random workers',
      value: `${fmt(kills)} in ${fmt(stormS)} s (${fmt(kills / stormS)}/s)`,
      number: kills,
      target: `≥ ${fmt(cfg.kills)}`,
      pass: kills >= cfg.kills,
      note: `${idleTicks} killer turns found no live worker; healthy trickle: ${OK_TRICKLE} × ${HAVE_SQLITE3 ? 'sh + sqlite3' : 'Node'} worker`,
    });
    res.add({ scenario: S, figure: 'board drained after the storm', value: drained ? 'yes' : 'no (timeout 120 s)', target: 'yes', pass: drained, hard: true });
    integrityRow(S, db, 'after the storm');

    // Ledger vs board: every acknowledged write must be on the board.
    const recs = readRecords(ledger);
    const evAck = new Set<string>();
    const hbAck = new Map<string, number>();
    let hbAcks = 0;
    for (const r of recs) {
      if (r[0] === 'e') evAck.add(`${r[2]} ${r[3]}`);
      else if (r[0] === 'h') {
        hbAcks++;
        hbAck.set(r[2]!, Math.max(hbAck.get(r[2]!) ?? 0, Number(r[3])));
      }
    }
    const evBoard = new Set(
      rows<{ run_id: string; seq: number }>(sql, `SELECT run_id, json_extract(data, '$.seq') AS seq FROM events WHERE kind = 'chaos.ev'`).map((r) => `${r.run_id} ${r.seq}`),
    );
    const progress = new Map(rows<{ id: string; seq: number | null }>(sql, `SELECT id, json_extract(progress, '$.seq') AS seq FROM runs`).map((r) => [r.id, r.seq]));
    let lostEv = 0;
    for (const k of evAck) if (!evBoard.has(k)) lostEv++;
    let lostHb = 0;
    for (const [run, seq] of hbAck) if (!((progress.get(run) ?? -1) >= seq)) lostHb++;
    let unacked = 0;
    for (const k of evBoard) if (!evAck.has(k)) unacked++;
    res.add({
      scenario: S,
      figure: 'acknowledged writes lost',
      value: `${lostEv + lostHb} (of ${fmt(evAck.size)} events + ${fmt(hbAcks)} heartbeats acknowledged)`,
      number: lostEv + lostHb,
      target: '0',
      pass: lostEv + lostHb === 0 && evAck.size > 0,
      hard: true,
      note: `${unacked} committed writes were never acknowledged (the worker died between commit and ledger line)`,
    });
    const storm = one<{ n: number; done: number }>(sql, `SELECT count(*) AS n, sum(status = 'done') AS done FROM tasks WHERE skill = 'storm'`);
    res.add({
      scenario: S,
      figure: 'storm tasks not done at the end',
      value: `${storm.n - storm.done} of ${storm.n}`,
      number: storm.n - storm.done,
      target: '0',
      pass: storm.n === storm.done,
      hard: true,
    });
    const pauses = stormPauses(sups);
    res.add({ scenario: S, figure: 'runs by outcome', value: outcomes(sql), target: '-', pass: null });
    res.add({
      scenario: S,
      figure: 'storm-breaker pauses / tick step failures',
      value: `${pauses.length} pauses (${fmt(pauses.reduce((a, p) => a + (p.until - p.from), 0) / 1000)} s without dispatch); ${tickErrors(sups)}`,
      target: '-',
      pass: null,
    });
    res.extra.storm = { kills, stormSeconds: stormS, memBefore, memAfter, fdBefore, ledgerLines: recs.length };
    const code = await sup.stop(30_000);
    res.add({ scenario: S, figure: 'supervisor SIGTERM exit status', value: String(code), target: '0', pass: code === 0 });
    integrityRow(S, db, 'after the supervisor stopped');
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}

// =============================================================================== 2. restarts

interface Rec {
  kind: string;
  task: string;
  run: string;
  pid: number;
  at: number;
  why?: string;
}

async function scenarioRestart(): Promise<void> {
  const S = 'supervisor SIGKILL/restart';
  const cfg = P.restart;
  const dir = h.dir('restart');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const records = join(dir, 'records.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const sups: Sup[] = [];
  const env = {
    MAX_CONCURRENT_WORKERS: '8',
    TICK_INTERVAL_MS: '100',
    CRASH_GRACE_SECONDS: '2',
    FAILURE_LIMIT: '5',
    BACKOFF_BASE_SECONDS: '0.2',
    BACKOFF_FACTOR: '2',
    BACKOFF_MAX_SECONDS: '2',
    RECLAIM_GRACE_SECONDS: '3',
  };
  let n = 0;
  const start = async (untilIdle = false): Promise<Sup> => {
    const s = new Sup(h, db, { env, args: untilIdle ? ['--until-idle'] : [], logFile: join(dir, `supervisor-${++n}.log`) });
    sups.push(s);
    if (!(await s.waitStarted(30_000))) throw new Error(`supervisor #${n} did not start:\n${tail(s)}`);
    return s;
  };
  let stop = false;
  let monitorStop = false;
  try {
    await b.putSkill({ name: 'steady', argv: [process.execPath, join(CHAOS, 'steady-worker.mjs')], env: { RECORDS: records } });
    let sup = await start();

    // Monitor: every ~20 ms, the live worker processes of each task (from /proc, by environment).
    const incidents = new Map<string, { task: string; pids: number[]; runs: string[]; first: number; last: number }>();
    let samples = 0;
    const monitor = (async () => {
      while (!monitorStop) {
        const byTask = new Map<string, Array<{ pid: number; run: string }>>();
        for (const p of h.scanner.scan((q) => q.stat.state !== 'Z' && q.cmd.some((c) => c.endsWith('steady-worker.mjs')))) {
          const task = p.env.get('KANBAN_TASK_ID') ?? '?';
          const list = byTask.get(task) ?? [];
          list.push({ pid: p.pid, run: p.env.get('KANBAN_RUN_ID') ?? '?' });
          byTask.set(task, list);
        }
        const now = Date.now();
        for (const [task, list] of byTask) {
          if (list.length < 2) continue;
          const pids = list.map((x) => x.pid).sort((x, y) => x - y);
          const key = `${task} ${pids.join(',')}`;
          const inc = incidents.get(key);
          if (inc) inc.last = now;
          else incidents.set(key, { task, pids, runs: list.map((x) => x.run), first: now, last: now });
        }
        samples++;
        await sleep(20);
      }
    })();

    let created = 0;
    const feeder = (async () => {
      while (!stop) {
        const open = one<{ n: number }>(sql, `SELECT count(*) AS n FROM tasks WHERE status IN ('ready', 'running')`).n;
        for (let i = open; i < cfg.open && !stop; i++, created++) await b.createTask({ skill: 'steady', title: `steady ${created}`, payload: { ms: Math.round(rand(300, 1500)) } });
        await sleep(100);
      }
    })();

    const t0 = Date.now();
    const end = t0 + cfg.budgetS * 1000;
    let kills = 0;
    let integrityOk = 0;
    const integrityBad: string[] = [];
    const startupMs: number[] = [];
    let finalSup: Sup | null = null;
    while (kills < cfg.kills) {
      await sleep(rand(cfg.gapMs[0], cfg.gapMs[1]));
      const last = kills + 1 >= cfg.kills || Date.now() >= end;
      if (last) {
        stop = true;
        await feeder;
      }
      if (!sup.running) throw new Error(`supervisor #${n} died by itself:\n${tail(sup)}`);
      sup.kill('SIGKILL');
      await sup.exited;
      kills++;
      const r = integrity(db);
      if (r === 'ok') integrityOk++;
      else integrityBad.push(r);
      const t = Date.now();
      sup = await start(last);
      startupMs.push(Date.now() - t);
      if (last) {
        finalSup = sup;
        break;
      }
    }
    const runS = (Date.now() - t0) / 1000;
    const fin = await finalSup!.waitExit(120_000);
    await sleep(1000); // let the last fenced-out stragglers (if any) show in the monitor
    monitorStop = true;
    await monitor;

    res.add({
      scenario: S,
      figure: 'supervisor SIGKILLs + restarts under load',
      value: `${kills} in ${fmt(runS)} s`,
      number: kills,
      target: `≥ ${cfg.kills}`,
      pass: kills >= cfg.kills,
      note: `restart to "started": median ${fmt(median(startupMs), 0)} ms, max ${fmt(Math.max(...startupMs), 0)} ms`,
    });
    res.add({
      scenario: S,
      figure: 'integrity_check at every restart',
      value: `${integrityOk}/${kills} ok${integrityBad.length ? `; ${integrityBad[0]}` : ''}`,
      number: integrityBad.length,
      target: 'all ok',
      pass: integrityBad.length === 0,
      hard: true,
    });
    res.add({
      scenario: S,
      figure: 'final --until-idle supervisor',
      value: fin.timedOut ? 'did not go idle within 120 s' : `exit ${fin.code}`,
      target: 'exit 0',
      pass: !fin.timedOut && fin.code === 0,
      hard: true,
    });

    // Two live workers for one task: seen in /proc, and from the workers' own start/stop records.
    const inc = [...incidents.values()];
    res.add({
      scenario: S,
      figure: 'times a task had two live workers at once (/proc, every 20 ms)',
      value: `${inc.length}${inc.length ? ` (e.g. task ${inc[0]!.task}: pids ${inc[0]!.pids.join(', ')}, runs ${inc[0]!.runs.join(', ')}, ${inc[0]!.last - inc[0]!.first} ms)` : ''}`,
      number: inc.length,
      target: '0',
      pass: inc.length === 0,
      hard: true,
      note: `${fmt(samples)} /proc samples`,
    });
    const recs: Rec[] = readRecords(records).map((r) => ({ kind: r[0]!, task: r[1]!, run: r[2]!, pid: Number(r[3]), at: Number(r[4]), why: r[5] }));
    const exitedAt = new Map(rows<{ id: string; exited_at: number | null }>(sql, 'SELECT id, exited_at FROM runs').map((r) => [r.id, r.exited_at]));
    const spans = new Map<string, Array<{ run: string; from: number; to: number }>>();
    for (const r of recs.filter((x) => x.kind === 'start')) {
      const stopRec = recs.find((x) => x.kind === 'stop' && x.run === r.run);
      const to = stopRec?.at ?? exitedAt.get(r.run) ?? Date.now();
      const list = spans.get(r.task) ?? [];
      list.push({ run: r.run, from: r.at, to });
      spans.set(r.task, list);
    }
    let overlaps = 0;
    let example = '';
    for (const [task, list] of spans) {
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const a = list[i]!;
          const c = list[j]!;
          if (a.from < c.to && c.from < a.to) {
            overlaps++;
            example ||= ` (e.g. task ${task}: runs ${a.run} and ${c.run})`;
          }
        }
      }
    }
    res.add({
      scenario: S,
      figure: 'overlapping worker lifetimes from start/stop records',
      value: `${overlaps}${example}`,
      number: overlaps,
      target: '0',
      pass: overlaps === 0,
      hard: true,
    });
    const twice = rows<{ task_id: string; n: number }>(sql, `SELECT task_id, count(*) AS n FROM runs WHERE outcome = 'completed' GROUP BY task_id HAVING n > 1`);
    res.add({ scenario: S, figure: 'tasks completed more than once', value: String(twice.length), number: twice.length, target: '0', pass: twice.length === 0, hard: true });
    const effects = new Map<string, number>();
    for (const r of recs) if (r.kind === 'effect') effects.set(r.task, (effects.get(r.task) ?? 0) + 1);
    const redone = [...effects.values()].filter((x) => x > 1).length;
    res.add({ scenario: S, figure: 'tasks whose work ran to the end more than once', value: String(redone), number: redone, target: '0', pass: redone === 0, hard: true });
    const tasks = one<{ n: number; done: number }>(sql, `SELECT count(*) AS n, sum(status = 'done') AS done FROM tasks`);
    const notDone = rows<{ status: string; n: number }>(sql, `SELECT status, count(*) AS n FROM tasks WHERE status != 'done' GROUP BY status`);
    res.add({
      scenario: S,
      figure: 'tasks lost (not done at the end)',
      value: `${tasks.n - tasks.done} of ${tasks.n}${notDone.length ? ` (${notDone.map((x) => `${x.status} ${x.n}`).join(', ')})` : ''}`,
      number: tasks.n - tasks.done,
      target: '0',
      pass: tasks.n === tasks.done,
      hard: true,
    });
    const adopted = sups.reduce((a, s) => a + s.events('adopted').length, 0);
    const crashed = rows<{ error: string | null }>(sql, `SELECT error FROM runs WHERE outcome = 'crashed'`);
    res.add({
      scenario: S,
      figure: 'workers adopted across restarts / runs ended crashed',
      value: `${adopted} / ${crashed.length}`,
      target: '-',
      pass: null,
      note: crashed.length ? `crashed: ${[...new Set(crashed.map((c) => c.error ?? '?'))].slice(0, 2).join(' | ')}` : undefined,
    });
    res.add({ scenario: S, figure: 'runs by outcome', value: outcomes(sql), target: '-', pass: null });
    integrityRow(S, db, 'at the end');
    res.extra.restart = { kills, runSeconds: runS, startupMs, incidents: inc, created };
  } finally {
    stop = true;
    monitorStop = true;
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}

// =============================================================================== heartbeats and memory under load

/**
 * Issue 11, items 11 and 12. 64 Node workers heartbeating at 1 Hz through the runtime. First under
 * churn (tasks of 1–4 s): the supervisor's RSS. Then in waves that end together, the supervisor
 * SIGKILLed right after it spawned a wave (every run still `starting`) and restarted, with idle
 * processes beside them on the host: no heartbeat may fail, and none may wait long for the lock.
 */
async function scenarioLoad(): Promise<void> {
  const S = 'heartbeats and memory under load';
  const cfg = P.load;
  const churn = await rssUnderChurn(h, h.dir('load-churn'), { workers: cfg.workers, windowS: cfg.churnS, taskMs: cfg.taskMs }, boards);
  res.add({
    scenario: S,
    figure: `supervisor RSS, ${cfg.workers} workers under churn (tasks of ${cfg.taskMs[0] / 1000}–${cfg.taskMs[1] / 1000} s, highest sample in ${cfg.churnS} s)`,
    value: `${fmt(churn.rssMaxMb)} MB`,
    number: churn.rssMaxMb,
    target: '≤ 100 MB',
    pass: churn.rssMaxMb <= 100,
    note: `last sample ${fmt(churn.rssLastMb)} MB, VmHWM ${fmt(churn.hwmMb)} MB; ${churn.completed} tasks completed (${fmt(churn.exitsPerSecond)} a second)`,
  });
  const r = await heartbeatsUnderRestarts(h, h.dir('load-restarts'), { workers: cfg.workers, restarts: cfg.restarts, waveMs: cfg.waveMs, otherProcesses: cfg.otherProcesses }, boards);
  const setting = `${cfg.workers} workers, supervisor SIGKILLed right after each batch of spawns and restarted ${r.restarts} times (every ${fmt(r.killEveryS)} s), ${cfg.otherProcesses} other processes on the host`;
  const maxWait = Math.max(...r.waits);
  const failed = r.failedBeats.filter((f) => f.name !== 'NotCurrentError');
  res.add({
    scenario: S,
    figure: `longest write-lock wait seen by any worker (heartbeat p50 / p99 / max, ${r.beats} beats), ${setting}; heartbeats failed / runs ended failed`,
    value: `${waitSummary(r.waits)}; ${failed.length} / ${r.runsFailed} failed${failed.length ? ` (e.g. ${failed[0]!.name}: ${failed[0]!.message})` : ''}`,
    number: maxWait,
    target: 'no heartbeat or report fails (max stated)',
    pass: r.waits.length > 0 && failed.length === 0 && r.runsFailed === 0,
    hard: true,
    note:
      `runs by outcome: ${Object.entries(r.outcomes).map(([o, n]) => `${o} ${n}`).join(', ')}; runs still starting at each SIGKILL: ${r.startingAtKill.join(', ')}; ` +
      `busy tick failures: ${r.busyTickFailures}; the longest waits fall while ${cfg.workers} Node workers start at once (CPU), the lock itself is the next row`,
  });
  const longest = Math.max(0, ...r.lockStreaks);
  res.add({
    scenario: S,
    figure: "longest time the board's write lock stayed taken (a probe tries it every 5 ms)",
    value: `${fmt(longest, 0)} ms`,
    number: longest,
    target: `≤ ${WORKER_BUSY_TIMEOUT_MS} ms (one busy timeout of the worker)`,
    pass: longest <= WORKER_BUSY_TIMEOUT_MS,
    hard: true,
    note: `${r.lockStreaks.length} streaks ≥ 100 ms; supervisor ticks holding it > 1 s: ${r.supervisorHolds.length ? r.supervisorHolds.map((x) => `${x} ms`).join(', ') : 'none'}`,
  });
  res.add({ scenario: S, figure: 'board integrity_check at the end', value: r.integrity, target: 'ok', pass: r.integrity === 'ok', hard: true });
  res.extra.load = { churn, restarts: { ...r, waits: undefined, p50: median(r.waits), p99: quantile(r.waits, 0.99), max: maxWait } };
}

// =============================================================================== 3. crash loops

async function scenarioCrash(): Promise<void> {
  const S = 'spawn-crash loops';
  const cfg = P.crash;
  const dir = h.dir('crash');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const spawns = join(dir, 'spawns.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const sups: Sup[] = [];
  let stop = false;
  try {
    const script = join(CHAOS, 'crash-at-once.sh');
    await b.putSkill({ name: 'crash', argv: [script, spawns] });
    await b.putSkill({ name: 'ghost', argv: ['/nonexistent/kanban-chaos/bin/worker', '--flag'] });
    await b.putSkill({ name: 'ghost-path', argv: ['kanban-chaos-no-such-command-on-path'] });
    await b.putSkill({ name: 'bad-cwd', argv: [script, spawns], cwd: join(dir, 'no-such-dir') });
    await b.putSkill({ name: 'ok', argv: OK_ARGV });
    const ids = { crash: [] as string[], ghost: [] as string[], ghostPath: [] as string[], badCwd: [] as string[] };
    for (let i = 0; i < cfg.tasks; i++) ids.crash.push((await b.createTask({ skill: 'crash', title: `crash ${i}` })).id);
    for (let i = 0; i < cfg.ghosts; i++) ids.ghost.push((await b.createTask({ skill: 'ghost' })).id);
    for (let i = 0; i < cfg.ghosts; i++) ids.ghostPath.push((await b.createTask({ skill: 'ghost-path' })).id);
    for (let i = 0; i < cfg.badCwd; i++) ids.badCwd.push((await b.createTask({ skill: 'bad-cwd' })).id);
    const sup = new Sup(h, db, {
      env: {
        // Room for every looping task at once: a try waits for its backoff (and the storm breaker), never for a slot.
        MAX_CONCURRENT_WORKERS: String(cfg.tasks + cfg.badCwd + 2 * cfg.ghosts + 8),
        TICK_INTERVAL_MS: '100',
        CRASH_GRACE_SECONDS: '2',
        FAILURE_LIMIT: String(cfg.limit),
        BACKOFF_BASE_SECONDS: String(cfg.baseS),
        BACKOFF_FACTOR: String(cfg.factor),
        BACKOFF_MAX_SECONDS: '600',
      },
      logFile: join(dir, 'supervisor.log'),
    });
    sups.push(sup);
    const fdBefore = null; // the supervisor starts dispatching at once; fd growth is measured in the storm and tree scenarios
    if (!(await sup.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(sup)}`);
    const t0 = Date.now();
    // The healthy trickle: one small task at a time, so that the storm breaker's escalation is reset
    // the way a real pool resets it (a success now and then); it still pauses dispatch on every burst.
    const feeder = (async () => {
      while (!stop) {
        const open = one<{ n: number }>(sql, `SELECT count(*) AS n FROM tasks WHERE skill = 'ok' AND status IN ('ready', 'running')`).n;
        if (open === 0) await b.createTask({ skill: 'ok', priority: 10 });
        await sleep(100);
      }
    })();
    const end = t0 + cfg.budgetS * 1000;
    let settled = false;
    while (Date.now() < end) {
      const left = one<{ n: number }>(sql, `SELECT count(*) AS n FROM tasks WHERE skill != 'ok' AND status != 'blocked'`).n;
      if (left === 0) {
        settled = true;
        break;
      }
      if (!sup.running) throw new Error(`the supervisor died:\n${tail(sup)}`);
      await sleep(200);
    }
    const runS = (Date.now() - t0) / 1000;
    stop = true;
    await feeder;
    await waitIdle(b, 30_000);
    await sleep(300);
    await quiet('spawn-crash', sup, fdBefore);

    res.add({
      scenario: S,
      figure: 'every looping task blocked',
      value: settled ? `yes, in ${fmt(runS)} s` : `no (after ${cfg.budgetS} s)`,
      target: 'yes',
      pass: settled,
    });
    // Spawns per task, from the workers' own records, and runs per task from the board.
    const recs = readRecords(spawns).map((r) => ({ task: r[0]!, run: r[1]!, at: Number(r[2]) }));
    const spawnsOf = new Map<string, Array<{ run: string; at: number }>>();
    for (const r of recs) {
      const l = spawnsOf.get(r.task) ?? [];
      l.push(r);
      spawnsOf.set(r.task, l);
    }
    const counts = ids.crash.map((t) => spawnsOf.get(t)?.length ?? 0);
    const wrong = counts.filter((c) => c !== cfg.limit).length;
    res.add({
      scenario: S,
      figure: `spawns per crashing task (${cfg.tasks} tasks)`,
      value: `min ${Math.min(...counts)}, max ${Math.max(...counts)}; ${wrong} tasks ≠ ${cfg.limit}`,
      number: wrong,
      target: `exactly ${cfg.limit} (FAILURE_LIMIT)`,
      pass: wrong === 0,
      hard: true,
    });
    const runsPer = new Map(
      rows<{ task_id: string; n: number; crashed: number }>(sql, `SELECT task_id, count(*) AS n, sum(outcome = 'crashed') AS crashed FROM runs GROUP BY task_id`).map((r) => [r.task_id, r]),
    );
    const blocked = new Map(rows<{ id: string; status: string; last_error: string | null; consecutive_failures: number }>(sql, 'SELECT id, status, last_error, consecutive_failures FROM tasks').map((r) => [r.id, r]));
    const badBoard = ids.crash.filter((t) => {
      const r = runsPer.get(t);
      const tk = blocked.get(t);
      return !r || r.n !== cfg.limit || r.crashed !== cfg.limit || tk?.status !== 'blocked' || tk.consecutive_failures !== cfg.limit || !tk.last_error?.includes(`limit ${cfg.limit}`);
    }).length;
    res.add({
      scenario: S,
      figure: 'crashing tasks whose board record disagrees (runs, outcome, counter, blocked error)',
      value: String(badBoard),
      number: badBoard,
      target: '0',
      pass: badBoard === 0,
      hard: true,
    });

    // Backoff: the delay the supervisor chose, and when the next try really started.
    const requeued = rows<{ task_id: string; run_id: string; at: number; nb: number; cf: number }>(
      sql,
      `SELECT task_id, run_id, at, json_extract(data, '$.not_before') AS nb, json_extract(data, '$.consecutive_failures') AS cf
         FROM events WHERE kind = 'requeued' AND task_id IN (SELECT id FROM tasks WHERE skill = 'crash')`,
    );
    const pauses = stormPauses(sups);
    const runStart = new Map<string, number>();
    for (const r of recs) runStart.set(r.run, r.at);
    const runsOf = new Map<string, string[]>();
    for (const r of rows<{ task_id: string; id: string }>(sql, 'SELECT task_id, id FROM runs ORDER BY started_at, rowid')) {
      const l = runsOf.get(r.task_id) ?? [];
      l.push(r.id);
      runsOf.set(r.task_id, l);
    }
    let inJitter = 0;
    let early = 0;
    const lateness: number[] = [];
    const ratios: number[] = [];
    for (const q of requeued) {
      const expected = cfg.baseS * Math.pow(cfg.factor, q.cf - 1) * 1000;
      const delay = q.nb - q.at;
      if (delay >= expected * 0.9 - 2 && delay <= expected * 1.1 + 2) inJitter++;
      const list = runsOf.get(q.task_id) ?? [];
      const next = list[list.indexOf(q.run_id) + 1];
      const nextAt = next ? runStart.get(next) : undefined;
      const thisAt = runStart.get(q.run_id);
      if (nextAt === undefined) continue;
      if (nextAt < q.nb - 2) early++;
      // The earliest the try may start: its not_before, pushed past every storm pause it falls into.
      let earliest = q.nb;
      for (let moved = true; moved; ) {
        moved = false;
        for (const p of pauses) {
          if (earliest >= p.from && earliest < p.until) {
            earliest = p.until;
            moved = true;
          }
        }
      }
      lateness.push(nextAt - earliest);
      if (thisAt !== undefined) ratios.push((nextAt - thisAt) / expected);
    }
    res.add({
      scenario: S,
      figure: 'retry delays within the backoff (base·factor^(n-1) ±10 % jitter)',
      value: `${inJitter}/${requeued.length}`,
      number: requeued.length - inJitter,
      target: `all (${cfg.baseS} s, ${cfg.baseS * cfg.factor} s, …)`,
      pass: inJitter === requeued.length && requeued.length > 0,
    });
    res.add({ scenario: S, figure: 'tries started before their backoff expired', value: String(early), number: early, target: '0', pass: early === 0, hard: true });
    res.add({
      scenario: S,
      figure: 'try start after its backoff (and any storm pause) ended, p50 / p99',
      value: `${fmt(median(lateness), 0)} / ${fmt(quantile(lateness, 0.99), 0)} ms`,
      number: quantile(lateness, 0.99),
      target: 'p99 ≤ 1000 ms',
      pass: lateness.length > 0 && quantile(lateness, 0.99) <= 1000,
      note: `gap between tries ÷ backoff: median ${fmt(median(ratios), 2)}, max ${fmt(Math.max(...ratios), 2)}; storm-breaker pauses: ${pauses.length} (${fmt(pauses.reduce((a, p) => a + (p.until - p.from), 0) / 1000)} s)`,
    });

    // Commands that cannot run: blocked at once, nothing spawned.
    const ghostIds = [...ids.ghost, ...ids.ghostPath];
    const ghostBad = ghostIds.filter((t) => {
      const tk = blocked.get(t);
      const cmd = ids.ghost.includes(t) ? '/nonexistent/kanban-chaos/bin/worker' : 'kanban-chaos-no-such-command-on-path';
      const r = runsPer.get(t);
      return tk?.status !== 'blocked' || !tk.last_error?.includes(cmd) || (r?.n ?? 0) > 1;
    }).length;
    const ghostPids = one<{ n: number }>(sql, `SELECT count(*) AS n FROM runs WHERE pid IS NOT NULL AND task_id IN (SELECT id FROM tasks WHERE skill IN ('ghost', 'ghost-path'))`).n;
    res.add({
      scenario: S,
      figure: `nonexistent command (${ghostIds.length} tasks): processes spawned / not blocked with the command named`,
      value: `${ghostPids} / ${ghostBad}`,
      number: ghostPids + ghostBad,
      target: '0 / 0',
      pass: ghostPids === 0 && ghostBad === 0,
    });
    const cwdRuns = rows<{ task_id: string; n: number; sf: number; pids: number }>(
      sql,
      `SELECT task_id, count(*) AS n, sum(outcome = 'spawn_failed') AS sf, count(pid) AS pids FROM runs
        WHERE task_id IN (SELECT id FROM tasks WHERE skill = 'bad-cwd') GROUP BY task_id`,
    );
    const cwdBad = ids.badCwd.filter((t) => {
      const r = cwdRuns.find((x) => x.task_id === t);
      return !r || r.n !== cfg.limit || r.sf !== cfg.limit || r.pids !== 0 || blocked.get(t)?.status !== 'blocked';
    }).length;
    res.add({
      scenario: S,
      figure: `missing working directory (${ids.badCwd.length} tasks): tasks not ending after exactly ${cfg.limit} spawn_failed tries`,
      value: String(cwdBad),
      number: cwdBad,
      target: '0',
      pass: cwdBad === 0,
    });
    res.add({ scenario: S, figure: 'runs by outcome', value: outcomes(sql), target: '-', pass: null, note: `tick step failures: ${tickErrors(sups)}` });
    integrityRow(S, db, 'after the loops');
    const code = await sup.stop(30_000);
    res.add({ scenario: S, figure: 'supervisor SIGTERM exit status', value: String(code), target: '0', pass: code === 0 });
    res.extra.crash = { runSeconds: runS, pauses, lateness: { p50: median(lateness), p99: quantile(lateness, 0.99), max: Math.max(...lateness) } };
  } finally {
    stop = true;
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}

// =============================================================================== 4. process trees

async function scenarioTree(): Promise<void> {
  const S = 'leaks';
  const each = P.tree.each;
  const dir = h.dir('tree');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const records = join(dir, 'tree.txt');
  const b = await openBoard(db);
  const sups: Sup[] = [];
  try {
    const script = join(CHAOS, 'tree-worker.sh');
    await b.putSkill({ name: 'tree-exit', argv: [script, records, 'exit'] });
    await b.putSkill({ name: 'tree-hang', argv: [script, records, 'hang'] });
    const hang: string[] = [];
    for (let i = 0; i < each; i++) await b.createTask({ skill: 'tree-exit' });
    for (let i = 0; i < each; i++) hang.push((await b.createTask({ skill: 'tree-hang', maxRetries: 1 })).id);
    const env = { MAX_CONCURRENT_WORKERS: String(2 * each), TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '2', RECLAIM_GRACE_SECONDS: '2' };
    const first = new Sup(h, db, { env, logFile: join(dir, 'supervisor.log') });
    sups.push(first);
    if (!(await first.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(first)}`);
    const leaders = async () => readRecords(records).filter((r) => r[0] === 'leader');
    const t0 = Date.now();
    while ((await leaders()).length < 2 * each && Date.now() - t0 < 30_000) await sleep(100);
    // SIGKILL the supervisor in the middle: the escapees it was holding (re-parented to it, the
    // child subreaper) go to init, and the next supervisor must find them by their run id.
    first.kill('SIGKILL');
    await first.exited;
    const sup = new Sup(h, db, { env, logFile: join(dir, 'supervisor-2.log') });
    sups.push(sup);
    if (!(await sup.waitStarted())) throw new Error(`the second supervisor did not start:\n${tail(sup)}`);
    const fdStart = fdCount(sup.pid);
    // SIGKILL every hanging worker's shell: its group and its escaped grandchild stay behind.
    let killed = 0;
    for (const r of await leaders()) {
      if (!hang.includes(r[1]!)) continue;
      const pid = Number(r[2]);
      if (readCmdline(pid).some((c) => c.endsWith('tree-worker.sh'))) {
        try {
          process.kill(pid, 'SIGKILL');
          killed++;
        } catch {
          /* gone */
        }
      }
    }
    const idle = await waitIdle(b, 60_000);
    const tIdle = Date.now();
    // Left behind by the workers: every recorded child and escapee must disappear.
    const left = () =>
      readRecords(records)
        .filter((r) => r[0] === 'child' || r[0] === 'escapee')
        .filter((r) => pidAlive(Number(r[2])) && readCmdline(Number(r[2]))[0] === 'sleep');
    while (left().length > 0 && Date.now() - tIdle < 20_000) await sleep(100);
    const remaining = left();
    const cleanMs = Date.now() - tIdle;
    const total = readRecords(records).filter((r) => r[0] === 'child' || r[0] === 'escapee').length;
    await sleep(300);
    await quiet('process trees', sup, fdStart);
    res.add({
      scenario: S,
      figure: `descendants left by ${2 * each} workers (${killed} SIGKILLed, ${each} exited, their supervisor SIGKILLed and restarted) still alive`,
      value: `${remaining.length} of ${total}`,
      number: remaining.length,
      target: '0',
      pass: idle && remaining.length === 0 && total === 4 * each,
      hard: true,
      note: `board idle: ${idle ? 'yes' : 'no'}; last descendant gone ${fmt(cleanMs / 1000)} s after the board went idle`,
    });
    const code = await sup.stop(30_000);
    res.add({ scenario: S, figure: 'tree supervisor SIGTERM exit status', value: String(code), target: '0', pass: code === 0 });
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
  }
}

// =============================================================================== 5. damage

interface DamageKind {
  key: string;
  title: string;
  apply: (db: string) => string;
}

const DAMAGE_KINDS: DamageKind[] = [
  { key: 'header', title: 'garbage over the header', apply: (db) => `${garbageHeader(db).bytes} bytes of log text at offset 0` },
  {
    key: 'page',
    title: 'zeroed table page',
    apply: (db) => {
      const r = zeroInteriorPage(db, { table: 'tasks', kind: 'leaf' });
      return `tasks leaf page ${r.pageno} (${r.cells} rows) zeroed`;
    },
  },
  {
    key: 'truncate',
    title: 'truncated file',
    apply: (db) => {
      const r = truncateFile(db);
      return `${fmt(r.from)} → ${fmt(r.to)} bytes`;
    },
  },
  {
    key: 'index',
    title: 'index keys out of order',
    apply: (db) => {
      const r = indexOutOfOrder(db);
      return `tasks_status leaf page ${r.pageno}: cells ${r.swapped.join(' and ')} swapped`;
    },
  },
];

/** TRUNCATE checkpoint through a short connection (closed again before any byte is touched through fs). */
function checkpointTruncate(db: string): void {
  const c = openSql(db, { busyTimeoutMs: 2000 });
  try {
    c.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    c.close();
  }
}

/** Checkpoint (TRUNCATE: the -wal emptied) and close a plain connection; a busy checkpoint is harmless (the WAL stays valid). */
function closeTruncating(c: Db): void {
  try {
    c.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    /* harmless */
  }
  c.close();
}

async function damageOne(kind: DamageKind): Promise<void> {
  const S = `damage: ${kind.title}`;
  const dir = h.dir(`damage-${kind.key}`);
  const db = join(dir, 'board', 'kanban.db');
  const records = join(dir, 'records.txt');
  const go = join(dir, 'GO');
  const K = 3;
  const sups: Sup[] = [];
  const env = { MAX_CONCURRENT_WORKERS: '8', TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '5', QUARANTINE_PROBE_SECONDS: '0.5', RECLAIM_GRACE_SECONDS: '3' };
  const sup = async (label: string, args: string[] = []): Promise<Sup> => {
    const s = new Sup(h, db, { env, args, logFile: join(dir, `supervisor-${label}.log`) });
    sups.push(s);
    if (!(await s.waitStarted(30_000))) throw new Error(`supervisor ${label} did not start:\n${tail(s)}`);
    return s;
  };
  try {
    // The work tasks first (low rowids: the part of the file the damage leaves), then the
    // toolkit's filler board around them (300 tasks, half with ended runs); filler stays blocked.
    {
      const b = await openBoard(db);
      await b.putSkill({ name: 'work', argv: [process.execPath, join(CHAOS, 'damage-worker.mjs')], env: { RECORDS: records, GO: go } });
      for (let i = 0; i < K; i++) await b.createTask({ skill: 'work', title: `work ${i}`, priority: -1 });
      localConnectionOf(b)!.closeNow('TRUNCATE');
    }
    await makeBoard(db, { tasks: 300 });
    {
      const c = openSql(db);
      c.prepare(`UPDATE tasks SET status = 'blocked', last_error = 'chaos filler' WHERE skill = 's' AND status = 'ready'`).run();
      closeTruncating(c);
    }

    // 1. A supervisor runs K workers; the board is damaged under it; the workers then deliver.
    const s1 = await sup('1-live');
    const t0 = Date.now();
    while (readRecords(records).filter((r) => r[0] === 'start').length < K && Date.now() - t0 < 30_000) await sleep(50);
    let applied = '';
    let lastErr = '';
    for (let i = 0; i < 20 && !applied; i++) {
      try {
        checkpointTruncate(db);
        applied = kind.apply(db);
      } catch (e) {
        lastErr = (e as Error).message;
        await sleep(100);
      }
    }
    if (!applied) throw new Error(`could not damage the board: ${lastErr}`);
    writeFileSync(go, '');
    const t1 = Date.now();
    const workerAlive = () => h.scanner.scan((p) => p.stat.state !== 'Z' && p.cmd.some((c) => c.endsWith('damage-worker.mjs'))).length > 0;
    while (workerAlive() && Date.now() - t1 < 30_000) await sleep(50);
    const live = await s1.waitFor((l) => l.event === 'board_quarantined', 3000);
    await s1.stop(20_000);
    // 2. A restart on the damaged board: its pre-check quarantines; a few probes; no second backup.
    const s2 = await sup('2-restart');
    const atRestart = await s2.waitFor((l) => l.event === 'board_quarantined', 3000);
    await sleep(1500);
    await s2.stop(20_000);
    const spooled = readSpool(db).length;
    // 3. The operator recovers the board in place; a supervisor takes the spool and drains the board.
    let recovered: RecoverInPlaceReport | null = null;
    let recoverError = '';
    try {
      recovered = recoverInPlace(db);
    } catch (e) {
      recoverError = (e as Error).message;
    }
    const s3 = await sup('3-recovered', ['--until-idle']);
    const fin = await s3.waitExit(60_000);

    const fingerprints = new Set<string>();
    for (const s of sups) for (const l of s.events('board_quarantined')) if (typeof l.fingerprint === 'string') fingerprints.add(l.fingerprint);
    if (recovered?.backup?.fingerprint) fingerprints.add(recovered.backup.fingerprint);
    const backups = listBackups(db);
    const perFp = [...fingerprints].map((fp) => backups.filter((x) => x.dir.endsWith(`.${fp.slice(0, 16)}`)).length);
    const okBackups = fingerprints.size > 0 && perFp.every((n) => n === 1) && backups.length === fingerprints.size;
    res.add({
      scenario: S,
      figure: 'damage seen by the running supervisor / by a restart',
      value: `${live ? 'yes' : 'no'} / ${atRestart ? 'yes' : 'no'}`,
      target: '-',
      pass: null,
      note: `${applied}${live ? `; reason: ${String(live.reason).slice(0, 80)}` : ''}`,
    });
    res.add({
      scenario: S,
      figure: 'backups made per damage fingerprint',
      value: `${backups.length} backup(s) for ${fingerprints.size} fingerprint(s)`,
      number: backups.length,
      target: '1 per fingerprint',
      pass: okBackups,
    });
    // Results: every worker that returned a result must find it on the recovered board.
    const sql = openSql(db);
    try {
      // Kept aside: spool files (pending or set aside as rejected) still naming the run.
      const spoolFiles = (() => {
        const out: string[] = [];
        const walk = (d: string) => {
          let names: string[] = [];
          try {
            names = readdirSync(d);
          } catch {
            return;
          }
          for (const n of names) {
            const p = join(d, n);
            if (statSync(p).isDirectory()) walk(p);
            else out.push(readFileSync(p, 'latin1'));
          }
        };
        walk(spoolDir(db));
        return out;
      })();
      let onBoard = 0;
      let kept = 0;
      let destroyed = 0;
      const results = readRecords(records).filter((r) => r[0] === 'result');
      for (const r of results) {
        const t = one<{ status: string; result: string | null } | undefined>(sql, 'SELECT status, result FROM tasks WHERE id = ?', r[1]);
        const run = one<{ id: string } | undefined>(sql, 'SELECT id FROM runs WHERE id = ?', r[2]);
        if (!t || !run) destroyed++;
        const by = t?.result ? (JSON.parse(t.result) as { by?: string }).by : undefined;
        if (t?.status === 'done' && by === r[2]) onBoard++;
        else if (spoolFiles.some((f) => f.includes(r[2]!))) kept++;
      }
      const lost = results.length - onBoard - kept;
      const count = (ev: string) => sups.reduce((a, s) => a + s.events(ev).length, 0);
      const dropped = count('spool_not_current');
      res.add({
        scenario: S,
        figure: 'worker results lost (neither on the board nor kept in the spool)',
        value: `${lost} of ${results.length}${kept ? ` (${kept} only in the spool, not on the board)` : ''}`,
        number: lost,
        target: '0',
        pass: lost === 0 && results.length === K && !recoverError && !fin.timedOut,
        hard: true,
        note:
          `${spooled} spooled while the board was damaged: ${count('spool_applied')} applied, ${count('spool_unapplied')} kept unapplied, ${dropped} deleted as not current; ${kept} on disk in the spool; ` +
          `${destroyed} whose run (or task) the damage destroyed${recoverError ? `; recover failed: ${recoverError}` : ''}; final supervisor ${fin.timedOut ? 'did not go idle' : `exit ${fin.code}`}`,
      });
    } finally {
      sql.close();
    }
    integrityRow(S, db, 'after recover');
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
  }
}

async function scenarioDamage(): Promise<void> {
  const S = 'damage';
  if (!existsSync(join(ROOT, 'board/src/damage.ts')) || typeof makeBoard !== 'function') {
    process.stdout.write('damage: skipped (toolkit not present)\n');
    res.add({ scenario: S, figure: 'damaged-board fixtures under a running supervisor', value: 'skipped (toolkit not present)', target: 'backups per fingerprint 1, results lost 0', verdict: 'SKIP' });
    return;
  }
  const kinds = SHORT ? DAMAGE_KINDS.filter((k) => k.key === 'header' || k.key === 'truncate') : DAMAGE_KINDS;
  for (const k of kinds) {
    try {
      await damageOne(k);
    } catch (e) {
      res.add({ scenario: `damage: ${k.title}`, figure: 'scenario ran to the end', value: `error: ${(e as Error).message.split('\n')[0]}`, target: 'no error', pass: false, hard: true });
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    }
  }
}

// =============================================================================== leaks

function finalLeaks(): void {
  const S = 'leaks';
  // Every process of this run carries the mark; all supervisors are stopped by now.
  const marked = h.leftovers();
  // And anything in a process group a worker led (workers that scrub their environment).
  // pgid → the start times of the workers that led it (a pid, hence a pgid, is reused over a long run).
  const pgids = new Map<number, Set<number>>();
  for (const db of boards) {
    if (!existsSync(db)) continue;
    try {
      const c = openSql(db);
      for (const r of c.prepare('SELECT DISTINCT pgid, proc_start_time FROM runs WHERE pgid IS NOT NULL').all() as Array<{ pgid: number; proc_start_time: number | null }>) {
        if (!pgids.has(r.pgid)) pgids.set(r.pgid, new Set());
        if (r.proc_start_time !== null) pgids.get(r.pgid)!.add(r.proc_start_time);
      }
      c.close();
    } catch {
      /* a board we cannot open is reported by its scenario */
    }
  }
  // The kernel never hands out a pid still in use as a process group id: while anything of a
  // worker's group lives, its pgid names that group. A live process whose pid is the pgid but
  // whose start time is no worker's is the leader of a new, unrelated group (another program on a
  // busy host reused the pid after the worker's group was gone): not ours.
  const ourGroup = (pgid: number): boolean => {
    const leader = readStat(pgid);
    return !leader || leader.state === 'Z' || pgids.get(pgid)!.has(leader.startTime);
  };
  const selfStart = readStat(process.pid)?.startTime ?? 0;
  const inGroups = listPids()
    .map((p) => readStat(p))
    .filter((s) => s && s.state !== 'Z' && pgids.has(s.pgid) && s.startTime >= selfStart && s.pid !== process.pid && ourGroup(s.pgid));
  const all = new Set([...marked.map((p) => p.pid), ...inGroups.map((s) => s!.pid)]);
  const what = [...all].slice(0, 5).map((pid) => `${pid} ${readCmdline(pid).join(' ').slice(0, 60)}`);
  res.add({
    scenario: S,
    figure: "processes left from any worker's group or tree (after everything)",
    value: `${all.size}${what.length ? ` (${what.join('; ')})` : ''}`,
    number: all.size,
    target: '0',
    pass: all.size === 0,
    hard: true,
  });
  if (leakChecks.length === 0) return;
  const zombies = Math.max(...leakChecks.map((c) => c.zombies));
  res.add({
    scenario: S,
    figure: 'zombies of the supervisor (at rest after load)',
    value: leakChecks.map((c) => `${c.label} ${c.zombies}`).join(', '),
    number: zombies,
    target: '0',
    pass: zombies === 0,
    hard: true,
  });
  const growth = leakChecks.filter((c) => c.fdBefore !== null && c.fdAfter !== null);
  if (growth.length) {
    const worst = Math.max(...growth.map((c) => c.fdAfter! - c.fdBefore!));
    res.add({
      scenario: S,
      figure: 'supervisor fd count growth (at rest, before → after load)',
      value: growth.map((c) => `${c.label} ${c.fdBefore} → ${c.fdAfter}`).join(', '),
      number: worst,
      target: '≤ +2',
      pass: worst <= 2,
      hard: true,
      note: worst > 2 ? `open fds after: ${growth.map((c) => c.fdDetail?.join(' ')).join(' | ')}` : undefined,
    });
  }
}

// =============================================================================== main

async function main(): Promise<number> {
  const t0 = Date.now();
  process.stdout.write(`kanban-supervisor chaos ${SHORT ? '--short ' : ''}· ${machineLine()} · temp ${h.root}\n`);
  const scenarios: Array<[string, string, () => Promise<void>]> = [
    ['storm', 'worker SIGKILL storm', scenarioStorm],
    ['restart', 'supervisor SIGKILL/restart', scenarioRestart],
    ['crash', 'spawn-crash loops', scenarioCrash],
    ['tree', 'leaks', scenarioTree],
    ['damage', 'damage', scenarioDamage],
    ['load', 'heartbeats and memory under load', scenarioLoad],
  ];
  const { timing } = await runParts(res, scenarios, want, { figure: 'scenario ran to the end', hard: true });
  await sleep(500);
  process.stdout.write('\n== leaks (after everything)\n');
  finalLeaks();
  const seconds = (Date.now() - t0) / 1000;
  const meta = [
    `command: \`npm run chaos${SHORT ? ' -- --short' : ''}\` · ${fmt(seconds)} s · commit ${gitRev()} · ${new Date().toISOString()}`,
    `machine: ${machineLine()}`,
  ];
  const hard = res.hardFailures();
  const misses = res.misses();
  res.notes.push(
    hard.length
      ? `${hard.length} hard invariant(s) failed: ${hard.map((r) => `${r.scenario} / ${r.figure}`).join('; ')}`
      : `hard invariants: all held${misses.length ? `; ${misses.length} soft target(s) missed` : ''}`,
  );
  const table = res.table(`kanban-supervisor chaos${SHORT ? ' (--short)' : ''}`, meta);
  process.stdout.write(`\n${table}`);
  const file = res.writeJson(join(ROOT, 'chaos-results'), 'chaos', { kind: 'chaos', short: SHORT, seconds, scenarioSeconds: timing, machine: machine(), commit: gitRev(), at: new Date().toISOString() });
  process.stdout.write(`\nJSON: ${file}\n`);
  return hard.length ? 1 : 0;
}

const code = await main().catch((e: unknown) => {
  process.stderr.write(`chaos: ${(e as Error).stack ?? String(e)}\n`);
  return 1;
});
await h.cleanup();
process.exit(code);

