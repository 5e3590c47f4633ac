/**
 * Benchmark "throughput": tasks per second through the supervisor (concurrency 4, --until-idle) ÷
 * the physical limit, for a tiny native command (sh + sqlite3 report, skipped without sqlite3) and
 * a Node worker using the runtime; rounds alternate between the limit, the board limit and the
 * supervisor, and the figure is the median round. Also prints the ratio to the board limit and where
 * a task's time goes (claim → spawned → report → exit → accounted → slot claimed again).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Db } from '@kanban-supervisor/board';
import { Sup, fmt, median, openBoard, openSql } from '../lib.js';
import { boardLimit, physicalLimit, workerBaseEnv } from './limits.js';
import { BENCH, HAVE_SQLITE3, P, h, res, status } from './setup.js';

async function throughputOne(label: string, argv: string[], skillEnv: Record<string, string>, n: number): Promise<void> {
  const S = 'throughput';
  const base = h.dir(`throughput-${label.replace(/\W+/g, '-')}`);
  const limitEnv = workerBaseEnv({ ...skillEnv, NO_BOARD: '1', KANBAN_DB: join(base, 'none.db'), KANBAN_TASK_ID: 't', KANBAN_RUN_ID: 'r', KANBAN_RUN_TOKEN: 'x' });
  // Warm the page cache for the binaries first.
  await physicalLimit(argv, limitEnv, Math.min(20, n), P.conc, join(base, 'limit-warm.log'));
  // These machines share their CPUs with others (steal time comes and goes within seconds), so
  // the limit and the supervisor take turns, round after round; the figure is the median ratio.
  const rounds: Array<{ ratio: number; boardRatio: number; tps: number; limitTps: number; boardTps: number; cpu: number; seconds: number; phases: Record<string, number> }> = [];
  for (let round = 0; round < P.rounds; round++) {
    const dir = join(base, `round-${round}`);
    const db = join(dir, 'board', 'kanban.db');
    // Each side starts with no dirty pages of the other's files waiting to be written back (they
    // would otherwise land in this side's fsyncs).
    spawnSync('sync');
    const limit = await physicalLimit(argv, limitEnv, n, P.conc, join(base, 'limit.log'));
    spawnSync('sync');
    const boardSide = await boardLimit(argv, skillEnv, n, P.conc, join(dir, 'no-supervisor'));
    if (boardSide.done !== n || boardSide.failures > 0) {
      status.failed = true;
      res.add({ scenario: S, figure: `${label}: workers reporting into a board without a supervisor (round ${round + 1})`, value: `${boardSide.done}/${n} done, ${boardSide.failures} failed`, target: `${n}/${n}`, pass: false });
      return;
    }
    const b = await openBoard(db);
    await b.putSkill({ name: 'noop', argv, env: skillEnv });
    for (let i = 0; i < n; i++) await b.createTask({ skill: 'noop', title: `noop ${i}` });
    await b.close();
    spawnSync('sync');
    const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(P.conc) }, args: ['--until-idle'], logFile: join(dir, 'supervisor.log'), direct: true });
    const fin = await sup.waitExitWithCpu(n * 2000 + 60_000);
    const cpu = fin.cpu;
    const c = openSql(db);
    const phases = phaseBreakdown(c, P.conc);
    const r = c.prepare(`SELECT count(*) AS n, sum(t.status = 'done') AS done, min(r.started_at) AS t0, max(r.accounted_at) AS t1, count(DISTINCT r.id) AS runs
                              FROM tasks t JOIN runs r ON r.task_id = t.id`).get() as { n: number; done: number; t0: number; t1: number; runs: number };
    c.close();
    if (fin.timedOut || fin.code !== 0 || r.done !== n || r.runs !== n) {
      status.failed = true;
      res.add({ scenario: S, figure: `${label}: all tasks done, one run each (round ${round + 1})`, value: `${r.done}/${n} done, ${r.runs} runs, supervisor ${fin.timedOut ? 'timed out' : `exit ${fin.code}`}`, target: `${n}/${n}`, pass: false });
      return;
    }
    const seconds = (r.t1 - r.t0) / 1000;
    const tps = r.done / seconds;
    rounds.push({ ratio: tps / limit.tps, boardRatio: tps / boardSide.tps, tps, limitTps: limit.tps, boardTps: boardSide.tps, cpu, seconds, phases });
  }
  // The median round (rounds are odd in number): its ratio is the figure, its details the notes.
  const mid = [...rounds].sort((x, y) => x.ratio - y.ratio)[Math.floor((rounds.length - 1) / 2)]!;
  const ratio = mid.ratio;
  const cpuMs = (mid.cpu / n) * 1000;
  const ph = mid.phases;
  res.add({
    scenario: S,
    figure: `${label}: supervisor ÷ physical limit (concurrency ${P.conc}, ${n} tasks, median of ${rounds.length} alternating rounds)`,
    value: `${fmt(ratio, 2)} (${fmt(mid.tps)} vs ${fmt(mid.limitTps)} tasks/s)`,
    number: ratio,
    target: '≥ 0.8 (synchronous=FULL)',
    pass: ratio >= 0.8,
    note:
      `ratios per round ${rounds.map((x) => fmt(x.ratio, 2)).join(', ')}; ` +
      `median round: supervisor CPU ${fmt((mid.cpu / mid.seconds) * 100, 0)} % of one core, ${fmt(cpuMs, 2)} ms per task; ` +
      `medians: claim→spawned ${fmt(ph.claimToSpawn!, 1)} ms, spawned→report ${fmt(ph.spawnToReport!, 1)} ms, report→exit ${fmt(ph.reportToExit!, 1)} ms, ` +
      `exit→accounted ${fmt(ph.exitToAccount!, 1)} ms, exit→slot claimed again ${fmt(ph.exitToRefill!, 1)} ms`,
  });
  // Where the gap comes from: the same workers reporting into a board with nobody supervising them.
  const bmid = [...rounds].sort((x, y) => x.boardRatio - y.boardRatio)[Math.floor((rounds.length - 1) / 2)]!;
  res.add({
    scenario: S,
    figure: `${label}: supervisor ÷ the same workers reporting into a board, no supervisor (claims made beforehand)`,
    value: `${fmt(bmid.boardRatio, 2)} (${fmt(bmid.tps)} vs ${fmt(bmid.boardTps)} tasks/s)`,
    number: bmid.boardRatio,
    target: `none: it shows what the workers' own board writes cost (without a supervisor they reach ${rounds.map((x) => fmt(x.boardTps / x.limitTps, 2)).join(', ')} of the limit per round)`,
    pass: null,
    note: `ratios per round ${rounds.map((x) => fmt(x.boardRatio, 2)).join(', ')}`,
  });
  res.extra[`throughput ${label}`] = { n, conc: P.conc, rounds, ratio, boardRatio: bmid.boardRatio };
}

/** Where a task's time goes, from the board's own timestamps (medians, ms). */
function phaseBreakdown(c: Db, conc: number): Record<string, number> {
  const runs = c
    .prepare(
      `SELECT r.started_at AS claim, r.ended_at AS report, r.exited_at AS exit, r.accounted_at AS account,
              (SELECT at FROM events e WHERE e.run_id = r.id AND e.kind = 'spawned') AS spawned
         FROM runs r ORDER BY r.started_at`,
    )
    .all() as Array<{ claim: number; report: number; exit: number; account: number; spawned: number }>;
  const claims = runs.map((r) => r.claim).sort((a, b) => a - b);
  const exits = runs.map((r) => r.exit).sort((a, b) => a - b);
  // In steady state the k-th exit frees the slot that the (k + conc)-th claim fills.
  const refill = exits.slice(0, Math.max(0, exits.length - conc)).map((x, k) => claims[k + conc]! - x);
  return {
    claimToSpawn: median(runs.map((r) => r.spawned - r.claim)),
    spawnToReport: median(runs.map((r) => r.report - r.spawned)),
    reportToExit: median(runs.map((r) => r.exit - r.report)),
    exitToAccount: median(runs.map((r) => r.account - r.exit)),
    exitToRefill: median(refill),
  };
}

export async function benchThroughput(): Promise<void> {
  if (HAVE_SQLITE3) {
    await throughputOne('tiny native command (sh + sqlite3 report)', [join(BENCH, 'native-report.sh')], {}, P.nativeN);
  } else {
    res.add({ scenario: 'throughput', figure: 'tiny native command (sh + sqlite3 report)', value: 'skipped: no sqlite3 command on PATH', target: '≥ 0.8', verdict: 'SKIP' });
  }
  await throughputOne('Node worker using the runtime', [process.execPath, join(BENCH, 'noop-worker.mjs')], {}, P.nodeN);
}
