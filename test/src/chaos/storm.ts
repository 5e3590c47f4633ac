/**
 * Chaos scenario "storm" (worker SIGKILL storm): storm workers write events and heartbeats to the
 * board and log each acknowledged write to a ledger, while a killer SIGKILLs a random one every
 * 20–100 ms (200 kills with --short, 2,000 in full), beside a trickle of healthy tasks. The workers
 * report through the report channel (REPORT_CHANNEL=on, the default; said in a row: the channel's
 * totals from the supervisor's `stopped` line). Measures: the kills, the board drained and intact,
 * acknowledged writes lost and writes applied twice (ledger vs board, hard), storm tasks
 * not done, runs by outcome, storm-breaker pauses, the supervisor's SIGTERM exit; its fd count and
 * zombies feed the final leak check.
 */
import { join } from 'node:path';
import { Sup, fdCount, fmt, memory, openBoard, openSql, rand, readStat, sleep } from '../lib.js';
import { ledgerRows, reportPathRow } from './ledger.js';
import { CHAOS, HAVE_SQLITE3, OK_ARGV, OK_TRICKLE, P, boards, h, integrityRow, one, outcomes, quiet, res, rows, stormPauses, tail, tickErrors, waitIdle } from './setup.js';

export async function scenarioStorm(): Promise<void> {
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

    // Ledger vs board: every acknowledged write must be on the board, none twice.
    const ledgerFig = ledgerRows(S, sql, ledger);
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
    res.extra.storm = { kills, stormSeconds: stormS, memBefore, memAfter, fdBefore, ledger: ledgerFig };
    const code = await sup.stop(30_000);
    res.add({ scenario: S, figure: 'supervisor SIGTERM exit status', value: String(code), target: '0', pass: code === 0 });
    // The workers reported through the channel (the default): its totals are in the `stopped` line.
    reportPathRow(S, sup.events('channel_listening').length > 0, (sup.events('stopped').at(-1)?.reports as never) ?? null);
    integrityRow(S, db, 'after the supervisor stopped');
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}
