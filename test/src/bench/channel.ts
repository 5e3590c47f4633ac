/**
 * Benchmark "channel" (issue 17: the report channel). In one run, rounds alternating between the
 * sides (the machine's CPUs are shared: steal time comes and goes within seconds):
 *
 * - throughput, as a ratio to the plain-spawn limit (the same command spawned the way the reaper
 *   spawns, no board; limits.ts): a Node worker using the runtime through the channel, and the same
 *   worker direct (REPORT_CHANNEL=off: it opens the board and writes its reports itself); a native
 *   skill (sh) reporting through the worker CLI, channel and direct (its limit: the same binaries,
 *   the worker CLI printing its help). Targets: Node worker ≥ 0.9, native reporting skill ≥ 0.8.
 *   A supervisor in channel mode says at its stop how many reports it answered (the `stopped` log
 *   line): a channel figure whose reports went to the board directly is refused.
 * - heartbeats: workers at 1 Hz through the channel (overhead.ts's machinery), with the batching
 *   window (REPORT_BATCH_WINDOW_MS) at 0, 2 and 5 ms, and direct (full run only): heartbeat p50/p99
 *   and the supervisor's CPU. Targets on the default window (2 ms): p99 ≤ 20 ms, CPU ≤ 2 %.
 *
 * `--short`: 20 Node and 12 CLI tasks per side, 3 rounds, 16 heartbeat workers over 8 s.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Sup, fmt, median, openBoard, openSql, quantile } from '../lib.js';
import { physicalLimit, workerBaseEnv } from './limits.js';
import { heartbeatRun } from './overhead.js';
import { BENCH, P, SHORT, h, res, status } from './setup.js';

const S = 'report channel';
/** Sizes: tasks per side and round (Node worker, worker CLI), heartbeat workers and window. */
const C = SHORT ? { nodeN: 20, cliN: 12, hbWorkers: 16, hbWindowS: 8 } : { nodeN: P.nodeN, cliN: P.nodeN, hbWorkers: P.hbWorkers, hbWindowS: P.hbWindowS };
/** The default batching window (REPORT_BATCH_WINDOW_MS): its heartbeat figures carry the targets. */
const DEFAULT_WINDOW_MS = 2;

interface Side {
  tps: number;
  cpuMsPerTask: number;
  /** Reports answered over the channel, and commits that carried them (from the `stopped` line). */
  reports: { applied: number; unavailable: number; commits: number } | null;
}

/** `n` tasks of `argv` under a supervisor (--until-idle, concurrency P.conc); tasks/s from the board's timestamps. */
async function supervised(dir: string, argv: string[], skillEnv: Record<string, string>, n: number, channel: boolean): Promise<Side | string> {
  const db = join(dir, 'board', 'kanban.db');
  const b = await openBoard(db);
  await b.putSkill({ name: 'noop', argv, env: skillEnv });
  for (let i = 0; i < n; i++) await b.createTask({ skill: 'noop', title: `noop ${i}` });
  await b.close();
  spawnSync('sync');
  const logFile = join(dir, 'supervisor.log');
  const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(P.conc), REPORT_CHANNEL: channel ? 'on' : 'off' }, args: ['--until-idle'], logFile, direct: true });
  const fin = await sup.waitExitWithCpu(n * 2000 + 60_000);
  const cpu = fin.cpu;
  const c = openSql(db);
  const r = c.prepare(`SELECT sum(t.status = 'done') AS done, min(r.started_at) AS t0, max(r.accounted_at) AS t1, count(DISTINCT r.id) AS runs FROM tasks t JOIN runs r ON r.task_id = t.id`).get() as {
    done: number;
    t0: number;
    t1: number;
    runs: number;
  };
  c.close();
  if (fin.timedOut || fin.code !== 0 || r.done !== n || r.runs !== n) return `${r.done}/${n} done, ${r.runs} runs, supervisor ${fin.timedOut ? 'timed out' : `exit ${fin.code}`}`;
  const lines = readFileSync(logFile, 'utf8').split('\n');
  const off = lines.find((l) => l.includes('"event":"channel_off"'));
  if (channel && off) return `the report channel was off: ${String((JSON.parse(off) as { error?: string }).error)}`;
  const stopped = lines
    .filter((l) => l.includes('"event":"stopped"'))
    .map((l) => JSON.parse(l) as { reports?: Side['reports'] })
    .at(-1);
  const reports = stopped?.reports ?? null;
  if (channel && (!reports || reports.applied < n)) return `only ${reports?.applied ?? 0} reports answered over the channel for ${n} tasks (the workers wrote the board directly)`;
  if (!channel && reports) return 'REPORT_CHANNEL=off, yet the supervisor listened on a channel';
  return { tps: r.done / ((r.t1 - r.t0) / 1000), cpuMsPerTask: (cpu / n) * 1000, reports };
}

const mid = <T>(xs: T[], key: (x: T) => number): T => [...xs].sort((a, b) => key(a) - key(b))[Math.floor((xs.length - 1) / 2)]!;

async function throughputSeries(key: string, label: string, argv: string[], limitEnv: Record<string, string>, n: number, target: number): Promise<void> {
  // Short folder names: the socket's path must fit a sockaddr_un (107 bytes).
  const base = h.dir(`ch-${key}`);
  await physicalLimit(argv, limitEnv, Math.min(20, n), P.conc, join(base, 'limit-warm.log')); // warm the page cache
  const rounds: Array<{ limitTps: number; channel: Side; direct: Side }> = [];
  for (let round = 0; round < P.rounds; round++) {
    spawnSync('sync');
    const limit = await physicalLimit(argv, limitEnv, n, P.conc, join(base, 'limit.log'));
    // The two modes take turns going first.
    const sides: Partial<Record<'channel' | 'direct', Side>> = {};
    for (const mode of round % 2 === 0 ? (['channel', 'direct'] as const) : (['direct', 'channel'] as const)) {
      spawnSync('sync');
      const s = await supervised(join(base, `r${round}-${mode}`), argv, {}, n, mode === 'channel');
      if (typeof s === 'string') {
        status.failed = true;
        res.add({ scenario: S, figure: `${label}, ${mode}: all tasks done, one run each (round ${round + 1})`, value: s, target: `${n}/${n}`, pass: false });
        return;
      }
      sides[mode] = s;
    }
    rounds.push({ limitTps: limit.tps, channel: sides.channel!, direct: sides.direct! });
  }
  for (const mode of ['channel', 'direct'] as const) {
    const ratios = rounds.map((r) => r[mode].tps / r.limitTps);
    const m = mid(rounds, (r) => r[mode].tps / r.limitTps);
    const rep = m[mode].reports;
    res.add({
      scenario: S,
      figure: `${label}, ${mode === 'channel' ? 'through the channel' : 'direct (REPORT_CHANNEL=off)'} ÷ plain-spawn limit (concurrency ${P.conc}, ${n} tasks, median of ${rounds.length} alternating rounds)`,
      value: `${fmt(m[mode].tps / m.limitTps, 2)} (${fmt(m[mode].tps)} vs ${fmt(m.limitTps)} tasks/s)`,
      number: m[mode].tps / m.limitTps,
      target: mode === 'channel' ? `≥ ${target}` : 'none: the same workers writing the board themselves',
      pass: mode === 'channel' ? m[mode].tps / m.limitTps >= target : null,
      note:
        `ratios per round ${ratios.map((x) => fmt(x, 2)).join(', ')}; median round: supervisor ${fmt(m[mode].cpuMsPerTask, 2)} ms CPU per task` +
        (rep ? `, ${rep.applied} reports in ${rep.commits} commits (${fmt(rep.applied / Math.max(1, rep.commits), 1)} per commit), ${rep.unavailable} answered unavailable` : ''),
    });
  }
  res.extra[`channel ${label}`] = { n, conc: P.conc, rounds };
}

async function heartbeatSeries(): Promise<void> {
  const workers = C.hbWorkers;
  const windowS = C.hbWindowS;
  const modes: Array<{ name: string; env: Record<string, string>; windowMs: number | null }> = [0, 2, 5].map((w) => ({
    name: `window ${w} ms`,
    env: { REPORT_BATCH_WINDOW_MS: String(w) },
    windowMs: w,
  }));
  if (!SHORT) modes.push({ name: 'direct (REPORT_CHANNEL=off)', env: { REPORT_CHANNEL: 'off' }, windowMs: null });
  const out: Array<{ name: string; windowMs: number | null; p50: number; p99: number; cpuPct: number; started: number; n: number }> = [];
  for (const m of modes) {
    const run = await heartbeatRun(`ch-hb-${m.windowMs ?? 'direct'}`, { workers, windowS, env: { KANBAN_HTTP: '127.0.0.1:0', ...m.env } });
    if (run.channel !== (m.windowMs !== null)) {
      status.failed = true;
      res.add({ scenario: S, figure: `heartbeats, ${m.name}: the report channel ${m.windowMs !== null ? 'listening' : 'off'}`, value: run.channel ? 'listening' : 'off', target: m.windowMs !== null ? 'listening' : 'off', pass: false });
      continue;
    }
    const p99 = quantile(run.beats, 0.99);
    const p50 = median(run.beats);
    out.push({ name: m.name, windowMs: m.windowMs, p50, p99, cpuPct: run.cpuPct, started: run.started, n: run.beats.length });
    const carries = m.windowMs === DEFAULT_WINDOW_MS;
    const ok = run.started === workers && run.beats.length > 0;
    res.add({
      scenario: S,
      figure: `heartbeat p50 / p99, ${run.started} workers at 1 Hz, ${m.windowMs === null ? m.name : `through the channel, ${m.name}`} (${run.beats.length} beats)`,
      value: `${fmt(p50, 2)} / ${fmt(p99, 2)} ms`,
      number: p99,
      target: carries ? 'p99 ≤ 20 ms' : 'none: the window series',
      pass: carries ? ok && p99 <= 20 : null,
      note: `max ${fmt(Math.max(...run.beats), 1)} ms`,
    });
    res.add({
      scenario: S,
      figure: `supervisor CPU, ${run.started} workers at 1 Hz, ${m.windowMs === null ? m.name : `through the channel, ${m.name}`} (${windowS} s window)`,
      value: `${fmt(run.cpuPct, 2)} % of one core`,
      number: run.cpuPct,
      target: carries ? '≤ 2 %' : 'none: the window series',
      pass: carries ? ok && run.cpuPct <= 2 : null,
    });
  }
  // The best window: lowest p99 (CPU within 0.2 points of the lowest breaks near-ties).
  const chan = out.filter((o) => o.windowMs !== null);
  if (chan.length === 0) return;
  const minCpu = Math.min(...chan.map((o) => o.cpuPct));
  const best = [...chan].sort((a, b) => a.p99 - b.p99 || a.cpuPct - b.cpuPct).find((o) => o.cpuPct <= minCpu + 0.2) ?? chan[0]!;
  res.add({
    scenario: S,
    figure: 'batching window with the lowest heartbeat p99 (CPU within 0.2 points of the lowest)',
    value: `${best.windowMs} ms`,
    target: `none: the default is ${DEFAULT_WINDOW_MS} ms (REPORT_BATCH_WINDOW_MS)`,
    pass: null,
    note: chan.map((o) => `${o.windowMs} ms: p99 ${fmt(o.p99, 2)} ms, CPU ${fmt(o.cpuPct, 2)} %`).join('; '),
  });
  res.extra['channel heartbeats'] = { workers, windowS, series: out };
}

export async function benchChannel(): Promise<void> {
  await throughputSeries('node', 'Node worker using the runtime', [process.execPath, join(BENCH, 'noop-worker.mjs')], workerBaseEnv({ NO_BOARD: '1' }), C.nodeN, 0.9);
  // The worker CLI is what $KANBAN_CLI names for a supervisor's workers.
  await throughputSeries('cli', 'native skill reporting through the worker CLI', [join(BENCH, 'cli-report.sh')], workerBaseEnv({ NO_BOARD: '1', KANBAN_CLI: CLI }), C.cliN, 0.8);
  await heartbeatSeries();
}
