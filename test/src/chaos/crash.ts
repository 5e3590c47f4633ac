/**
 * Chaos scenario "crash" (spawn-crash loops): tasks whose worker exits at once, commands that do not
 * exist, a working directory that does not exist, beside a trickle of healthy tasks. Measures: every
 * looping task blocked; exactly FAILURE_LIMIT spawns per crashing task and a board record that agrees
 * (runs, outcome, counter, error); retry delays within the backoff, none early, and how late after the
 * backoff (and any storm pause) each try starts; nothing spawned for a missing command; the missing
 * directory's tasks ending after exactly FAILURE_LIMIT spawn_failed tries; integrity; SIGTERM exit.
 */
import { join } from 'node:path';
import { Sup, fmt, median, openBoard, openSql, quantile, readRecords, sleep } from '../lib.js';
import { CHAOS, OK_ARGV, P, boards, h, integrityRow, one, outcomes, quiet, res, rows, stormPauses, tail, tickErrors, waitIdle } from './setup.js';

export async function scenarioCrash(): Promise<void> {
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
      // How long the try waited while it was due and dispatch was not paused: from its not_before to
      // its start, less the storm pauses in between (merged). A pause that began after the try fell
      // due holds it too (the supervisor spawns a tick's claims in slices: a storm found by the first
      // crashes of a wave pauses the rest of the wave, which is the breaker's job).
      const spans = pauses
        .map((p) => [Math.max(p.from, q.nb), Math.min(p.until, nextAt)] as const)
        .filter(([a, b]) => b > a)
        .sort((x, y) => x[0] - y[0]);
      let paused = 0;
      let reach = -Infinity;
      for (const [a, b] of spans) {
        const from = Math.max(a, reach);
        if (b > from) paused += b - from;
        reach = Math.max(reach, b);
      }
      lateness.push(nextAt - q.nb - paused);
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
      figure: 'try start after its backoff ended, storm pauses in between not counted, p50 / p99',
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
