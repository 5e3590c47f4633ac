/**
 * Two measurements under load, shared by the chaos scenario "load" and the bench (issue 11, items
 * 11 and 12):
 *
 * - heartbeatsUnderRestarts: 64 Node workers heartbeating at 1 Hz (worker runtime, `ctx.heartbeat`,
 *   each one timed), started in one batch per cycle; the supervisor is SIGKILLed right after it
 *   spawned the batch (so that every run is still `starting`, its pid not recorded) and restarted,
 *   and the workers heartbeat on under the new one, with other processes running on the host (the
 *   supervisor's /proc work grows with them). Restarts every few seconds, one per cycle. A lock
 *   probe records how long the board's write lock was held continuously. A heartbeat that waits
 *   longer than the worker's busy timeout means some writer held the lock across other work.
 * - rssUnderChurn: the supervisor's RSS with 64 workers whose tasks end every second or so.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { FIXTURES, Harness, Sup, integrity, memory, median, openBoard, openSql, quantile, rand, readRecords, sleep, type LogLine } from './lib.js';

const HB_WORKER = join(FIXTURES, 'chaos', 'hb-wait-worker.mjs');
const LOCK_PROBE = join(FIXTURES, 'chaos', 'lock-probe.mjs');

export interface RestartLoad {
  workers: number;
  restarts: number;
  /** How long each task heartbeats (ms). */
  waveMs: number;
  /** Idle processes started beside the workers for the measurement (a host's other processes). */
  otherProcesses: number;
}

export interface RestartLoadResult {
  restarts: number;
  /** Runs left `starting` (pid not on the board) at each SIGKILL. */
  startingAtKill: number[];
  /** Median time between two SIGKILLs of the supervisor (s). */
  killEveryS: number;
  beats: number;
  /** How long each heartbeat took to settle (ms), failed ones included. */
  waits: number[];
  /** Heartbeats that rejected, by error name (NotCurrentError counted apart). */
  failedBeats: Array<{ task: string; name: string; message: string }>;
  /** Runs by outcome. */
  outcomes: Record<string, number>;
  /** Runs that ended failed (a heartbeat or report that failed ends the handler: the run fails). */
  runsFailed: number;
  /** Longest streaks (ms) during which the lock probe could not take the write lock. */
  lockStreaks: number[];
  /** `write_lock_held` events of the supervisors (ticks that held the write lock > 1 s), ms. */
  supervisorHolds: number[];
  /** `tick_step_failed` events with errorClass busy. */
  busyTickFailures: number;
  integrity: string;
  seconds: number;
}

function countSpawned(sup: Sup, from: number): number {
  let n = 0;
  for (let i = from; i < sup.lines.length; i++) if (sup.lines[i]!.event === 'spawned') n++;
  return n;
}

/** Start `n` idle processes (marked, killed by the harness at the latest); returns a stopper. */
async function otherProcesses(h: Harness, n: number): Promise<() => Promise<void>> {
  const kids: ChildProcess[] = [];
  for (let i = 0; i < n; i++) kids.push(h.spawn('sleep', ['3600']));
  await sleep(Math.min(3000, 200 + n * 2));
  return async () => {
    for (const k of kids) k.kill('SIGKILL');
    const end = Date.now() + 10_000;
    while (kids.some((k) => k.exitCode === null && k.signalCode === null) && Date.now() < end) await sleep(50);
  };
}

export async function heartbeatsUnderRestarts(h: Harness, dir: string, cfg: RestartLoad, boards?: string[]): Promise<RestartLoadResult> {
  const db = join(dir, 'board', 'kanban.db');
  boards?.push(db);
  const records = join(dir, 'records.txt');
  const probeOut = join(dir, 'lock-probe.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const sups: Sup[] = [];
  let n = 0;
  const start = async (): Promise<Sup> => {
    const s = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(cfg.workers) }, logFile: join(dir, `supervisor-${++n}.log`) });
    sups.push(s);
    if (!(await s.waitStarted(60_000))) throw new Error(`supervisor #${n} did not start:\n${s.lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
    return s;
  };
  const stopOthers = await otherProcesses(h, cfg.otherProcesses);
  let probe: ChildProcess | null = null;
  const t0 = Date.now();
  const startingAtKill: number[] = [];
  const killedAt: number[] = [];
  try {
    await b.putSkill({ name: 'hb', argv: [process.execPath, HB_WORKER], env: { RECORDS: records } });
    probe = h.spawn(process.execPath, [LOCK_PROBE, db, probeOut]);
    let sup = await start();
    for (let cycle = 0; cycle < cfg.restarts; cycle++) {
      // All slots are free; the cycle's tasks become ready together (one commit), so they are
      // claimed and spawned in one batch.
      const mark = sup.lines.length;
      const ids: string[] = [];
      for (let i = 0; i < cfg.workers; i++) ids.push((await b.createTask({ skill: 'hb', title: `cycle ${cycle} #${i}`, payload: { ms: cfg.waveMs }, notBefore: Date.now() + 3_600_000 })).id);
      const inIds = ids.map(() => '?').join(',');
      sql.prepare(`UPDATE tasks SET not_before = 0 WHERE id IN (${inIds})`).run(...ids);
      const spawned = await sup.waitFor(() => countSpawned(sup, mark) >= cfg.workers, 60_000);
      if (!spawned) throw new Error(`cycle ${cycle}: ${countSpawned(sup, mark)} of ${cfg.workers} workers spawned within 60 s`);
      // Right after the batch: the spawns are recorded with the next tick, so the cycle's runs are
      // still \`starting\`, their pids not on the board; the next supervisor finds them in /proc.
      if (!sup.running) throw new Error(`supervisor #${n} died by itself`);
      sup.kill('SIGKILL');
      killedAt.push(Date.now());
      await sup.exited;
      startingAtKill.push((sql.prepare(`SELECT count(*) AS n FROM runs WHERE status = 'starting' AND pid IS NULL`).get() as { n: number }).n);
      sup = await start();
      // The cycle's workers heartbeat on under the new supervisor until they finish.
      const doneBy = Date.now() + cfg.waveMs + 60_000;
      const open = sql.prepare(`SELECT count(*) AS n FROM runs r WHERE r.task_id IN (${inIds}) AND (r.exited_at IS NULL OR r.accounted_at IS NULL)`);
      while ((open.get(...ids) as { n: number }).n > 0 && Date.now() < doneBy) await sleep(200);
    }
    await sup.stop(30_000);
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    probe?.kill('SIGTERM');
    await stopOthers();
  }
  const recs = readRecords(records);
  const hb = recs.filter((r) => r[0] === 'hb');
  const messages = new Map(recs.filter((r) => r[0] === 'hberr').map((r) => [r[1]!, r.slice(3).join(' ')]));
  const outcomes: Record<string, number> = {};
  for (const r of sql.prepare(`SELECT coalesce(outcome, 'open') AS o, count(*) AS n FROM runs GROUP BY o`).all() as Array<{ o: string; n: number }>) outcomes[r.o] = r.n;
  await b.close();
  sql.close();
  const holds = (l: LogLine) => Number(l.ms);
  return {
    restarts: startingAtKill.length,
    startingAtKill,
    killEveryS: median(killedAt.slice(1).map((t, i) => (t - killedAt[i]!) / 1000)),
    beats: hb.length,
    waits: hb.map((r) => Number(r[3])),
    failedBeats: hb.filter((r) => r[4] === 'err').map((r) => ({ task: r[1]!, name: r[5] ?? '?', message: messages.get(r[1]!) ?? '' })),
    outcomes,
    runsFailed: outcomes.failed ?? 0,
    lockStreaks: readRecords(probeOut)
      .filter((r) => r[0] === 'streak')
      .map((r) => Number(r[1])),
    supervisorHolds: sups.flatMap((s) => s.events('write_lock_held').map(holds)),
    busyTickFailures: sups.reduce((a, s) => a + s.events('tick_step_failed').filter((l) => l.errorClass === 'busy').length, 0),
    integrity: integrity(db),
    seconds: (Date.now() - t0) / 1000,
  };
}

export interface ChurnLoad {
  workers: number;
  /** Measurement window (s), after the first `workers` tasks have started. */
  windowS: number;
  /** Each task heartbeats at 1 Hz for a random time in this range (ms). */
  taskMs: readonly [number, number];
}

export interface ChurnLoadResult {
  rssMaxMb: number;
  rssLastMb: number;
  /** VmHWM at the end of the window (includes start-up). */
  hwmMb: number;
  completed: number;
  exitsPerSecond: number;
  samples: number;
}

/** The supervisor's RSS while tasks end every second or so and their slots are refilled. */
export async function rssUnderChurn(h: Harness, dir: string, cfg: ChurnLoad, boards?: string[]): Promise<ChurnLoadResult> {
  const db = join(dir, 'board', 'kanban.db');
  boards?.push(db);
  const records = join(dir, 'records.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  await b.putSkill({ name: 'hb', argv: [process.execPath, HB_WORKER], env: { RECORDS: records } });
  let stop = false;
  const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(cfg.workers) }, logFile: join(dir, 'supervisor.log'), direct: true });
  const feeder = (async () => {
    while (!stop) {
      const open = (sql.prepare(`SELECT count(*) AS n FROM tasks WHERE status IN ('ready', 'running')`).get() as { n: number }).n;
      for (let i = open; i < cfg.workers + 8 && !stop; i++) await b.createTask({ skill: 'hb', payload: { ms: Math.round(rand(cfg.taskMs[0], cfg.taskMs[1])) } });
      await sleep(200);
    }
  })();
  try {
    const startBy = Date.now() + 90_000;
    while (readRecords(records).filter((r) => r[0] === 'start').length < cfg.workers && Date.now() < startBy) await sleep(200);
    const done0 = (sql.prepare(`SELECT count(*) AS n FROM runs WHERE outcome = 'completed'`).get() as { n: number }).n;
    const w0 = Date.now();
    const rss: number[] = [];
    while (Date.now() - w0 < cfg.windowS * 1000) {
      const m = memory(sup.pid);
      if (m) rss.push(m.rss);
      await sleep(500);
    }
    const mem = memory(sup.pid);
    const completed = (sql.prepare(`SELECT count(*) AS n FROM runs WHERE outcome = 'completed'`).get() as { n: number }).n - done0;
    const seconds = (Date.now() - w0) / 1000;
    stop = true;
    await feeder;
    await sup.stop(60_000);
    return {
      rssMaxMb: Math.max(...rss) / 2 ** 20,
      rssLastMb: (rss.at(-1) ?? NaN) / 2 ** 20,
      hwmMb: (mem?.hwm ?? NaN) / 2 ** 20,
      completed,
      exitsPerSecond: completed / seconds,
      samples: rss.length,
    };
  } finally {
    stop = true;
    await feeder;
    if (sup.running) sup.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}

/** "p50 / p99 / max" of heartbeat waits, ms. */
export function waitSummary(waits: number[]): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  return `${f(median(waits))} / ${f(quantile(waits, 0.99))} / ${f(Math.max(...waits))} ms`;
}
