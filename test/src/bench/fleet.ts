/**
 * Benchmark "fleet" (issue 18 part 2: fleet scale on one host). One supervisor with
 * MAX_CONCURRENT_WORKERS=N and default channel settings; N workers heartbeating at 1 Hz through the
 * report channel, measured from the workers' side (each beat: when it was sent, when its answer
 * came), from the first spawn on: the start-up storm is in the figures. Churn: every worker lives a
 * random 15–45 s, then completes, and the next task of the queue (enough were added up front, in
 * bulk) takes its slot. After 60 s the supervisor is stopped (SIGTERM: it reclaims its workers).
 *
 * Fleets: 64 and 256 Node workers (runWorker, fleet-worker.mjs), 64, 256 and 1,000 light Python
 * workers (kanban_worker, py-fleet.py; a Node process per worker does not fit 1,000 in 24 GB).
 * `--short`: 32 Node and 100 Python workers for 15 s each, lives of 5–10 s. BENCH_FLEET picks
 * fleets (e.g. `BENCH_FLEET=python:64,python:256`). A fleet whose workers would not fit in the
 * memory available now is skipped (SKIP row).
 *
 * Per fleet: heartbeat p50/p99/max over the whole run and over its last 20 s (7 s with --short),
 * beats lost (fleet-records.ts), runs that did not complete (runs' outcomes; at the stop, runs
 * ended `abandoned` by the supervisor's shutdown are expected), the supervisor's tick steps that
 * failed on lock contention (`tick_step_failed`, class busy), the supervisor's CPU (% of one core)
 * and RSS and open files (max, from /proc), board commits carrying reports per second (the
 * supervisor's `stopped` line), and how the start-up storm went (spawn → task loaded, the time to
 * spawn N). Targets, on the largest Python fleet of the run (1,000 in the full run): heartbeat p99
 * ≤ 50 ms and max ≤ 1 s over the whole run, 0 beats lost, supervisor ≤ 10 % of a core and ≤ 150 MB;
 * 0 runs failed and 0 ticks failed busy on every fleet. A markdown table of the fleets ends the part.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../common.js';
import { Sup, clockTicks, cpuSeconds, fdCount, fmt, memory, openBoard, openSql, rand, sleep } from '../lib.js';
import { beatWindow, readFleetRecords, spread, type BeatWindow, type Spread } from './fleet-records.js';
import { pythonExecutable } from './python.js';
import { BENCH, SHORT, h, res, tail } from './setup.js';

const S = 'fleet';

type Kind = 'node' | 'python';

interface FleetSpec {
  kind: Kind;
  n: number;
}

/** Seconds from the first spawn to the stop; the steady window (the last seconds of it); worker lives. */
const T = SHORT ? { runS: 15, steadyS: 7, lifeS: [5, 10] as const } : { runS: 60, steadyS: 20, lifeS: [15, 45] as const };
const DEFAULT_FLEETS: FleetSpec[] = SHORT
  ? [
      { kind: 'node', n: 32 },
      { kind: 'python', n: 100 },
    ]
  : [
      { kind: 'node', n: 64 },
      { kind: 'node', n: 256 },
      { kind: 'python', n: 64 },
      { kind: 'python', n: 256 },
      { kind: 'python', n: 1000 },
    ];
/** Memory one worker takes (PSS, measured: python.ts's fleet figure), bytes, for the fits-in-memory check. */
const WORKER_BYTES: Record<Kind, number> = { node: 45 * 2 ** 20, python: 14 * 2 ** 20 };
/** An unanswered beat sent this close to the stop was in flight when it came. */
const IN_FLIGHT_MS = 5000;

/** BENCH_FLEET=kind:n,…: the fleets to run; unset: the default ones. A wrong value names the variable. */
export function fleetsFromEnv(value: string | undefined): FleetSpec[] {
  if (value === undefined || value.trim() === '') return DEFAULT_FLEETS;
  return value.split(',').map((item) => {
    const m = /^(node|python):(\d+)$/.exec(item.trim());
    const n = m ? Number(m[2]) : NaN;
    if (!m || !Number.isInteger(n) || n < 1 || n > 5000) {
      throw new Error(`BENCH_FLEET: "${item}" is not kind:N (kind node or python, N from 1 to 5000), e.g. BENCH_FLEET=python:64,python:1000`);
    }
    return { kind: m[1] as Kind, n };
  });
}

/** Checked when the bench starts (before any part runs): a wrong BENCH_FLEET exits 2 naming it. */
const FLEETS: FleetSpec[] = (() => {
  try {
    return fleetsFromEnv(process.env.BENCH_FLEET);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
})();

export interface FleetFigures {
  kind: Kind;
  n: number;
  whole: BeatWindow;
  steady: BeatWindow;
  /** Runs that ended other than completed (before the stop), or other than completed/abandoned (at it), by outcome. */
  failed: number;
  outcomes: Record<string, number>;
  /** Runs spawned before the stop. */
  runs: number;
  /** Runs whose log says a heartbeat was not recorded. */
  runsSayingHbFailed: number;
  /** Spawn (the claim) → the handler had its task, ms, over every run; seconds from the first process start to the N-th. */
  startup: Spread;
  spawnNS: number;
  cpuPct: number;
  cpuPctSteady: number;
  rssMaxMb: number;
  fdMax: number;
  fdLimit: number | null;
  commitsPerS: number;
  reportsPerCommit: number;
  /** Reports the supervisor answered unavailable (their workers wrote them directly). */
  unavailable: number;
  /** The supervisor's tick steps that failed, by error class (tick_step_failed). */
  tickFailures: Record<string, number>;
  seconds: number;
}

function memAvailable(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : Infinity;
}

function openFilesLimit(pid: number): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function fleetRun(spec: FleetSpec): Promise<FleetFigures> {
  const { kind, n } = spec;
  // Short folder names: the socket's path must fit a sockaddr_un (107 bytes).
  const dir = h.dir(`fl-${kind[0]}${n}`);
  const db = join(dir, 'board', 'kanban.db');
  const records = join(dir, 'rec.txt');
  const b = await openBoard(db);
  try {
    await b.putSkill({
      name: 'fleet',
      argv: kind === 'node' ? [process.execPath, join(BENCH, 'fleet-worker.mjs')] : [pythonExecutable(), join(BENCH, 'py-fleet.py')],
      env: { RECORDS: records, ...(kind === 'python' ? { PYTHONPATH: join(ROOT, 'worker-runtime', 'python') } : {}) },
    });
    // Enough tasks for every slot to churn through the whole run (each lives at least lifeS[0]).
    const tasks = n * (Math.ceil(T.runS / T.lifeS[0]) + 2);
    for (let i = 0; i < tasks; i += 1000) {
      const chunk = Array.from({ length: Math.min(1000, tasks - i) }, (_, j) => ({ skill: 'fleet', title: `fleet ${i + j}`, payload: { lifeMs: Math.round(rand(T.lifeS[0], T.lifeS[1]) * 1000) } }));
      await b.createTasks(chunk);
    }
  } finally {
    await b.close();
  }
  const logFile = join(dir, 'supervisor.log');
  const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(n) }, logFile, direct: true });
  const sql = openSql(db, { readonly: true });
  try {
    const firstSpawn = () => (sql.prepare('SELECT min(started_at) AS t FROM runs').get() as { t: number | null }).t;
    const waitUntil = Date.now() + 60_000;
    let t0: number | null = null;
    while ((t0 = firstSpawn()) === null && Date.now() < waitUntil && sup.running) await sleep(100);
    if (t0 === null) throw new Error(`no worker spawned within 60 s (supervisor log ${logFile}):\n${readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')}`);
    // Samples of the supervisor every 500 ms until the stop.
    const samples: Array<{ t: number; cpu: number }> = [];
    let rssMax = 0;
    let fdMax = 0;
    const stopAt = t0 + T.runS * 1000;
    while (Date.now() < stopAt && sup.running) {
      const cpu = cpuSeconds(sup.pid);
      if (cpu !== null) samples.push({ t: Date.now(), cpu });
      rssMax = Math.max(rssMax, memory(sup.pid)?.rss ?? 0);
      fdMax = Math.max(fdMax, fdCount(sup.pid) ?? 0);
      await sleep(Math.min(500, Math.max(1, stopAt - Date.now())));
    }
    if (!sup.running) throw new Error(`the supervisor exited during the run (log ${logFile})`);
    const stoppedAt = Date.now();
    const cpuEnd = cpuSeconds(sup.pid)!;
    samples.push({ t: stoppedAt, cpu: cpuEnd });
    const fdLimit = openFilesLimit(sup.pid);
    const code = await sup.stop(120_000);
    if (code !== 0) throw new Error(`the supervisor's stop exited ${code} (log ${logFile})`);
    const first = samples[0]!;
    const steadyFrom = stoppedAt - T.steadyS * 1000;
    const s0 = samples.find((s) => s.t >= steadyFrom) ?? first;
    const pct = (a: { t: number; cpu: number }, z: { t: number; cpu: number }) => ((z.cpu - a.cpu) / Math.max(0.001, (z.t - a.t) / 1000)) * 100;

    // The runs: outcomes, and spawn → task loaded from the workers' start records (joined by pid).
    const runs = sql.prepare('SELECT task_id AS task, pid, started_at AS started, proc_start_time AS procStart, ended_at AS ended, outcome, log_path AS log FROM runs WHERE started_at <= ?').all(stoppedAt) as Array<{
      task: string;
      pid: number | null;
      started: number;
      procStart: number | null;
      ended: number | null;
      outcome: string | null;
      log: string | null;
    }>;
    const outcomes: Record<string, number> = {};
    let failed = 0;
    let runsSayingHbFailed = 0;
    for (const r of runs) {
      const o = `${r.outcome ?? 'not ended'}${r.ended !== null && r.ended >= stoppedAt ? ' at the stop' : ''}`;
      outcomes[o] = (outcomes[o] ?? 0) + 1;
      const atStop = r.ended === null || r.ended >= stoppedAt;
      if (r.outcome !== 'completed' && !(atStop && r.outcome === 'abandoned')) failed++;
      if (r.log) {
        try {
          if (/heartbeat not recorded|automatic heartbeat failed/.test(readFileSync(r.log, 'utf8'))) runsSayingHbFailed++;
        } catch {
          /* no log */
        }
      }
    }
    const rec = readFleetRecords(records);
    const spawnedAt = new Map(runs.map((r) => [`${r.task} ${r.pid}`, r.started]));
    const startup = spread(rec.starts.flatMap((s) => (spawnedAt.has(`${s.task} ${s.pid}`) ? [s.handlerMs - spawnedAt.get(`${s.task} ${s.pid}`)!] : [])));
    // The first N processes' start times (the kernel's, in clock ticks): how long spawning N took.
    const procStarts = runs.flatMap((r) => (r.procStart !== null ? [r.procStart] : [])).sort((a, z) => a - z);
    const spawnNS = procStarts.length >= n ? (procStarts[n - 1]! - procStarts[0]!) / clockTicks() : NaN;

    const log = readFileSync(logFile, 'utf8').split('\n');
    // Ticks whose step failed, by error class (busy: the board's write lock held by workers writing it directly).
    const tickFailures: Record<string, number> = {};
    for (const l of log.filter((x) => x.includes('"event":"tick_step_failed"'))) {
      const c = String((JSON.parse(l) as { errorClass?: string }).errorClass ?? '?');
      tickFailures[c] = (tickFailures[c] ?? 0) + 1;
    }
    const stopped = log
      .filter((l) => l.includes('"event":"stopped"'))
      .map((l) => JSON.parse(l) as { time?: number; reports?: { applied: number; unavailable: number; commits: number } })
      .at(-1);
    const rep = stopped?.reports;
    if (!rep) throw new Error(`the supervisor's stopped line has no report channel totals (was the channel off?): ${logFile}`);
    const seconds = ((stopped?.time ?? Date.now()) - t0) / 1000;
    return {
      kind,
      n,
      whole: beatWindow(rec, t0, stoppedAt, IN_FLIGHT_MS),
      steady: beatWindow(rec, steadyFrom, stoppedAt, IN_FLIGHT_MS),
      failed,
      outcomes,
      runs: runs.length,
      runsSayingHbFailed,
      startup,
      spawnNS,
      cpuPct: pct(first, samples.at(-1)!),
      cpuPctSteady: pct(s0, samples.at(-1)!),
      rssMaxMb: rssMax / 2 ** 20,
      fdMax,
      fdLimit,
      commitsPerS: rep.commits / seconds,
      reportsPerCommit: rep.applied / Math.max(1, rep.commits),
      unavailable: rep.unavailable,
      tickFailures,
      seconds,
    };
  } catch (e) {
    throw new Error(`${(e as Error).message}${sup.lines.length ? `\n${tail(sup)}` : ''}`);
  } finally {
    sql.close();
    if (sup.running) await sup.stop(120_000);
  }
}

const label = (f: { kind: Kind; n: number }) => `${fmt(f.n)} ${f.kind === 'node' ? 'Node' : 'Python'} workers`;
const ms = (x: number) => (x >= 1000 ? `${fmt(x / 1000, 2)} s` : `${fmt(x, x < 10 ? 2 : 1)} ms`);
const trio = (s: Spread) => `${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)}`;

function report(f: FleetFigures, targets: boolean): void {
  const L = label(f);
  const lostNote = (w: BeatWindow) =>
    `${w.unanswered} never answered, ${w.failed} not recorded, ${w.missed} slots missed while a beat was in flight; ${w.direct} written directly (channel down)`;
  res.add({
    scenario: S,
    figure: `${L}: heartbeat p50 / p99 / max, whole run from the first spawn (${fmt(f.whole.latency.n)} beats)`,
    value: trio(f.whole.latency),
    number: f.whole.latency.p99,
    target: targets ? 'p99 ≤ 50 ms, max ≤ 1 s' : 'none: the figure',
    pass: targets ? f.whole.latency.n > 0 && f.whole.latency.p99 <= 50 && f.whole.latency.max <= 1000 : null,
    note: `start-up: spawn → task loaded p50 / p99 / max ${trio(f.startup)}; ${fmt(f.n)} spawned in ${fmt(f.spawnNS, 1)} s`,
  });
  res.add({
    scenario: S,
    figure: `${L}: heartbeat p50 / p99 / max, steady (last ${T.steadyS} s, ${fmt(f.steady.latency.n)} beats)`,
    value: trio(f.steady.latency),
    number: f.steady.latency.p99,
    target: 'none: the figure',
    pass: null,
  });
  res.add({
    scenario: S,
    figure: `${L}: heartbeats lost, whole run`,
    value: `${fmt(f.whole.lost)} of ${fmt(f.whole.sent + f.whole.missed)}`,
    number: f.whole.lost,
    target: targets ? '0' : 'none: the figure',
    pass: targets ? f.whole.lost === 0 : null,
    note: `${lostNote(f.whole)}; ${f.runsSayingHbFailed} runs' logs say a heartbeat was not recorded; the supervisor answered ${f.unavailable} reports unavailable`,
  });
  res.add({
    scenario: S,
    figure: `${L}: runs that did not complete (of ${fmt(f.runs)} spawned; abandoned at the stop excepted)`,
    value: String(f.failed),
    number: f.failed,
    target: '0',
    pass: f.failed === 0,
    note: Object.entries(f.outcomes)
      .map(([o, c]) => `${o} ${c}`)
      .join(', '),
  });
  const busy = f.tickFailures.busy ?? 0;
  res.add({
    scenario: S,
    figure: `${L}: supervisor tick steps failed on lock contention (busy)`,
    value: String(busy),
    number: busy,
    target: '0',
    pass: busy === 0,
    note: Object.keys(f.tickFailures).length ? `all tick_step_failed by class: ${JSON.stringify(f.tickFailures)}` : undefined,
  });
  res.add({
    scenario: S,
    figure: `${L}: supervisor CPU, whole run (steady)`,
    value: `${fmt(f.cpuPct, 1)} % (${fmt(f.cpuPctSteady, 1)} %) of one core`,
    number: f.cpuPct,
    target: targets ? '≤ 10 %' : 'none: the figure',
    pass: targets ? f.cpuPct <= 10 : null,
  });
  res.add({
    scenario: S,
    figure: `${L}: supervisor RSS (max)`,
    value: `${fmt(f.rssMaxMb)} MB`,
    number: f.rssMaxMb,
    target: targets ? '≤ 150 MB' : 'none: the figure',
    pass: targets ? f.rssMaxMb <= 150 : null,
    note: `open files max ${f.fdMax} (soft limit ${f.fdLimit ?? '?'})`,
  });
  res.add({
    scenario: S,
    figure: `${L}: board commits carrying reports per second`,
    value: `${fmt(f.commitsPerS, 1)} /s (${fmt(f.reportsPerCommit, 2)} reports per commit)`,
    number: f.commitsPerS,
    target: 'none: the figure',
    pass: null,
  });
}

/** The issue's table: one row per fleet. */
export function fleetTable(figs: FleetFigures[]): string {
  const lines = [
    '| N | kind | heartbeat p50 / p99 / max, whole run | p99 / max, steady | beats lost (written directly) | runs failed / ticks failed busy | supervisor CPU (steady) | supervisor RSS | commits/s | N spawned in | spawn → task loaded p99 |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const f of figs) {
    lines.push(
      `| ${fmt(f.n)} | ${f.kind} | ${trio(f.whole.latency)} | ${ms(f.steady.latency.p99)} / ${ms(f.steady.latency.max)} | ${fmt(f.whole.lost)} of ${fmt(f.whole.sent + f.whole.missed)}${f.kind === 'python' ? ` (${fmt(f.whole.direct)} direct)` : ''} | ${f.failed} / ${f.tickFailures.busy ?? 0} | ${fmt(f.cpuPct, 1)} % (${fmt(f.cpuPctSteady, 1)} %) | ${fmt(f.rssMaxMb, 0)} MB | ${fmt(f.commitsPerS, 0)} | ${fmt(f.spawnNS, 1)} s | ${ms(f.startup.p99)} |`,
    );
  }
  return lines.join('\n');
}

export async function benchFleet(): Promise<void> {
  const fleets = FLEETS;
  const largestPython = Math.max(0, ...fleets.filter((f) => f.kind === 'python').map((f) => f.n));
  const figs: FleetFigures[] = [];
  for (const spec of fleets) {
    const need = spec.n * WORKER_BYTES[spec.kind];
    const avail = memAvailable();
    if (need > 0.8 * avail) {
      res.add({ scenario: S, figure: `${label(spec)}: run`, value: `skipped: ~${fmt(need / 2 ** 30, 1)} GiB needed, ${fmt(avail / 2 ** 30, 1)} GiB available`, target: 'fits in memory', verdict: 'SKIP' });
      continue;
    }
    process.stdout.write(`  ${label(spec)}, ${T.runS} s, lives ${T.lifeS[0]}-${T.lifeS[1]} s…\n`);
    const f = await fleetRun(spec);
    report(f, spec.kind === 'python' && spec.n === largestPython);
    figs.push(f);
  }
  if (figs.length === 0) return;
  const table = fleetTable(figs);
  process.stdout.write(`\n${table}\n\n`);
  res.notes.push(`fleet table (${T.runS} s from the first spawn, lives ${T.lifeS[0]}-${T.lifeS[1]} s, steady = the last ${T.steadyS} s; targets on the largest Python fleet):\n\n${table}\n`);
  res.extra.fleet = { runS: T.runS, steadyS: T.steadyS, lifeS: T.lifeS, fleets: figs };
}
