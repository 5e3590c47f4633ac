/**
 * Benchmark "exit-skill" (issue 17): tasks per second of an exit-code skill (`--report exit`: the
 * worker never touches the board, the supervisor ends the run from its exit status) through the
 * supervisor (concurrency 4, --until-idle) ÷ the physical limit, the same command spawned the way
 * the reaper spawns it with no board at all. The command is the tiny native command of the
 * throughput part run without its board write (sh + `sqlite3 :memory:`; sh alone without sqlite3),
 * so the two parts compare: what is left between the supervisor and the limit is the supervisor's
 * own cost (its claims, its one commit per tick, the exits it reaps and accounts). Rounds alternate
 * between the limit and the supervisor; the figure is the median round.
 *
 *   npm run bench -- --only exit-skill
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Sup, fmt, openBoard, openSql } from '../lib.js';
import { physicalLimit, workerBaseEnv } from './limits.js';
import { BENCH, HAVE_SQLITE3, P, h, res, status } from './setup.js';

/** The target of issue 17: an exit-code skill at 0.9 of plain spawning. */
const TARGET = 0.9;

export async function benchExitSkill(): Promise<void> {
  const S = 'exit-skill';
  const argv = HAVE_SQLITE3 ? [join(BENCH, 'native-report.sh')] : [join(BENCH, 'exit-noop.sh')];
  const label = HAVE_SQLITE3 ? 'exit-code skill, tiny native command (sh + sqlite3 :memory:)' : 'exit-code skill, tiny native command (sh)';
  const skillEnv: Record<string, string> = HAVE_SQLITE3 ? { NO_BOARD: '1' } : {};
  const n = P.nativeN;
  const base = h.dir('exit-skill');
  // The limit's command sees what the supervisor gives an exit-code worker (no board, no token).
  const limitEnv = workerBaseEnv({ ...skillEnv, KANBAN_TASK_ID: 't', KANBAN_RUN_ID: 'r', KANBAN_RECLAIM_GRACE_SECONDS: '30', KANBAN_PAYLOAD: 'null' });
  await physicalLimit(argv, limitEnv, Math.min(20, n), P.conc, join(base, 'limit-warm.log'));
  const rounds: Array<{ ratio: number; tps: number; limitTps: number; cpu: number; seconds: number }> = [];
  for (let round = 0; round < P.rounds; round++) {
    const dir = join(base, `round-${round}`);
    const db = join(dir, 'board', 'kanban.db');
    spawnSync('sync');
    const limit = await physicalLimit(argv, limitEnv, n, P.conc, join(base, 'limit.log'));
    const b = await openBoard(db);
    await b.putSkill({ name: 'noop', argv, env: skillEnv, report: 'exit' });
    for (let i = 0; i < n; i++) await b.createTask({ skill: 'noop', title: `noop ${i}` });
    await b.close();
    spawnSync('sync');
    const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(P.conc) }, args: ['--until-idle'], logFile: join(dir, 'supervisor.log'), direct: true });
    const fin = await sup.waitExitWithCpu(n * 2000 + 60_000);
    const cpu = fin.cpu;
    const c = openSql(db);
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
    rounds.push({ ratio: tps / limit.tps, tps, limitTps: limit.tps, cpu, seconds });
  }
  const mid = [...rounds].sort((x, y) => x.ratio - y.ratio)[Math.floor((rounds.length - 1) / 2)]!;
  res.add({
    scenario: S,
    figure: `${label}: supervisor ÷ physical limit (concurrency ${P.conc}, ${n} tasks, median of ${rounds.length} alternating rounds)`,
    value: `${fmt(mid.ratio, 2)} (${fmt(mid.tps)} vs ${fmt(mid.limitTps)} tasks/s)`,
    number: mid.ratio,
    target: `≥ ${TARGET} (synchronous=FULL)`,
    pass: mid.ratio >= TARGET,
    note:
      `ratios per round ${rounds.map((x) => fmt(x.ratio, 2)).join(', ')}; ` +
      `median round: supervisor CPU ${fmt((mid.cpu / mid.seconds) * 100, 0)} % of one core, ${fmt((mid.cpu / n) * 1000, 2)} ms per task`,
  });
  res.extra[`exit-skill ${label}`] = { n, conc: P.conc, rounds, ratio: mid.ratio };
}
