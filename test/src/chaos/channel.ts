/**
 * Chaos scenario "channel" (supervisor SIGKILLed while workers report, issue 17): ledger workers
 * (a fenced heartbeat and a fenced event per iteration, each logged to a ledger once acknowledged)
 * report through the report channel while the supervisor is SIGKILLed, left dead for a moment and
 * restarted, again and again (3 times with --short, 15 in full). While no supervisor listens the
 * workers fall back to the board directly (same seq: a report whose channel answer was lost is
 * applied at most once); the next supervisor adopts them and they return to the channel.
 * Measures: the kills; reports written directly while no supervisor listened (> 0: the fallback
 * was taken); as hard invariants, the board drained and intact, every acknowledged write on the
 * board, nothing applied twice, no task left undone; for information the runs by outcome and the
 * last supervisor's channel totals.
 */
import { join } from 'node:path';
import { Sup, fmt, openBoard, openSql, rand, sleep } from '../lib.js';
import { CHANNEL_RETRY_MS } from '@kanban-supervisor/worker-runtime';
import { ledgerRows, reportPathRow } from './ledger.js';
import { CHAOS, SHORT, boards, h, integrityRow, one, outcomes, res, rows, tail, tickErrors, waitIdle } from './setup.js';

const CFG = SHORT
  ? { workers: 12, kills: 3, runMs: [1500, 3000] as const, gapMs: [300, 1200] as const, iters: 150, iterMs: 5, budgetS: 90 }
  : { workers: 20, kills: 15, runMs: [1500, 4000] as const, gapMs: [300, 1500] as const, iters: 300, iterMs: 5, budgetS: 600 };

export async function scenarioChannel(): Promise<void> {
  const S = 'supervisor SIGKILLed while workers report';
  const cfg = CFG;
  const dir = h.dir('channel');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const ledger = join(dir, 'ledger.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const sups: Sup[] = [];
  const env = {
    MAX_CONCURRENT_WORKERS: String(cfg.workers),
    TICK_INTERVAL_MS: '100',
    CRASH_GRACE_SECONDS: '2',
    FAILURE_LIMIT: '5',
    RECLAIM_GRACE_SECONDS: '3',
    KANBAN_HTTP: 'off',
  };
  const start = async (): Promise<{ sup: Sup; listeningAt: number }> => {
    const s = new Sup(h, db, { env, logFile: join(dir, `supervisor-${sups.length + 1}.log`) });
    sups.push(s);
    const l = await s.waitFor((x) => x.event === 'channel_listening' || x.event === 'channel_off', 30_000);
    if (!(await s.waitStarted(30_000))) throw new Error(`supervisor #${sups.length} did not start:\n${tail(s)}`);
    if (l?.event !== 'channel_listening') throw new Error(`supervisor #${sups.length}: the report channel did not listen:\n${tail(s)}`);
    return { sup: s, listeningAt: Number(l.time) };
  };
  try {
    await b.putSkill({ name: 'rep', argv: [process.execPath, join(CHAOS, 'ledger-worker.mjs')], env: { LEDGER: ledger, ITERS: String(cfg.iters), ITER_MS: String(cfg.iterMs) } });
    let { sup } = await start();
    let stop = false;
    let created = 0;
    const feeder = (async () => {
      while (!stop) {
        const open = one<{ n: number }>(sql, `SELECT count(*) AS n FROM tasks WHERE status IN ('ready', 'running')`).n;
        for (let i = open; i < cfg.workers && !stop; i++, created++) await b.createTask({ skill: 'rep', title: `rep ${created}` });
        await sleep(200);
      }
    })();
    // The dead windows: from a SIGKILL to the next supervisor's channel listening.
    const gaps: Array<[number, number]> = [];
    const t0 = Date.now();
    let kills = 0;
    try {
      while (kills < cfg.kills && Date.now() - t0 < cfg.budgetS * 1000) {
        await sleep(rand(cfg.runMs[0], cfg.runMs[1]));
        if (!sup.running) throw new Error(`the supervisor died by itself:\n${tail(sup)}`);
        const killAt = Date.now();
        sup.kill('SIGKILL');
        await sup.exited;
        kills++;
        await sleep(rand(cfg.gapMs[0], cfg.gapMs[1]));
        const next = await start();
        sup = next.sup;
        gaps.push([killAt, next.listeningAt]);
      }
      // The last supervisor gets a run period too, longer than a worker's channel retry: its adopted
      // workers come back to the channel (they had fallen back to the board while no supervisor
      // listened, CHANNEL_RETRY_MS) and new ones start; the report-path row below reads its totals.
      // Without it, a run whose tasks were all running at the last SIGKILL left it nothing to apply.
      await sleep(CHANNEL_RETRY_MS + rand(cfg.runMs[0], cfg.runMs[1]));
    } finally {
      stop = true;
      await feeder;
    }
    const drained = await waitIdle(b, 120_000);
    const code = await sup.stop(30_000);
    res.add({
      scenario: S,
      figure: 'supervisor SIGKILLs while workers report, each followed by a restart',
      value: `${kills} (dead ${gaps.map(([a, z]) => fmt((z - a) / 1000, 1)).join(', ')} s)`,
      number: kills,
      target: `${cfg.kills}`,
      pass: kills >= cfg.kills,
      note: `${cfg.workers} ledger workers, ${cfg.iters} × (heartbeat + event) each, ${created} tasks`,
    });
    res.add({ scenario: S, figure: 'board drained after the kills', value: drained ? 'yes' : 'no (timeout 120 s)', target: 'yes', pass: drained, hard: true });
    integrityRow(S, db, 'after the kills');
    // Written directly: events whose time (the worker's own clock on the direct path; the
    // supervisor's on the channel) falls where no supervisor listened.
    const evAt = rows<{ at: number }>(sql, `SELECT at FROM events WHERE kind = 'chaos.ev'`).map((r) => r.at);
    const direct = evAt.filter((at) => gaps.some(([a, z]) => at > a && at < z)).length;
    res.add({
      scenario: S,
      figure: 'events written directly while no supervisor listened (the fallback)',
      value: `${fmt(direct)} of ${fmt(evAt.length)}`,
      number: direct,
      target: '> 0',
      pass: direct > 0,
    });
    const ledgerFig = ledgerRows(S, sql, ledger);
    const left = one<{ n: number; done: number }>(sql, `SELECT count(*) AS n, sum(status = 'done') AS done FROM tasks`);
    res.add({ scenario: S, figure: 'tasks not done at the end', value: `${left.n - left.done} of ${left.n}`, number: left.n - left.done, target: '0', pass: left.n === left.done, hard: true });
    res.add({ scenario: S, figure: 'runs by outcome / tick step failures', value: `${outcomes(sql)}; ${tickErrors(sups)}`, target: '-', pass: null });
    reportPathRow(S, true, (sup.events('stopped').at(-1)?.reports as never) ?? null);
    res.add({ scenario: S, figure: 'last supervisor SIGTERM exit status', value: String(code), target: '0', pass: code === 0 });
    integrityRow(S, db, 'after the last supervisor stopped');
    res.extra.channel = { kills, gaps, directEvents: direct, ledger: ledgerFig };
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}
