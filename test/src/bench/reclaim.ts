/**
 * Benchmark "reclaim" (reclaim precision): workers that ignore SIGTERM, graces spread over 1–2 s;
 * SIGKILL − (SIGTERM + grace), p50 / p99 / max (all ≤ 250 ms, never early), with the default tick
 * and with TICK_INTERVAL_MS=100.
 */
import { join } from 'node:path';
import { Sup, fmt, median, openBoard, openSql, quantile } from '../lib.js';
import { BENCH, P, h, res, tail } from './setup.js';

async function reclaimOnce(label: string, tickMs: string | null): Promise<number[]> {
  const dir = h.dir(`reclaim-${label}`);
  const db = join(dir, 'board', 'kanban.db');
  const n = P.reclaimN;
  // One skill per grace (1 s + k/n s): the SIGKILL deadlines fall at every phase of the tick.
  const graceMs = (k: number) => 1000 + Math.round((1000 * k) / n);
  const b = await openBoard(db);
  try {
    for (let k = 0; k < n; k++) {
      await b.putSkill({ name: `stubborn-${k}`, argv: [join(BENCH, 'stubborn.sh')], maxRuntimeSeconds: 0.5, reclaimGraceSeconds: graceMs(k) / 1000 });
      await b.createTask({ skill: `stubborn-${k}`, maxRetries: 1 });
    }
  } finally {
    await b.close();
  }
  const env: Record<string, string> = { MAX_CONCURRENT_WORKERS: String(n) };
  if (tickMs) env.TICK_INTERVAL_MS = tickMs;
  const sup = new Sup(h, db, { env, args: ['--until-idle'], logFile: join(dir, 'supervisor.log') });
  const fin = await sup.waitExit(120_000);
  if (fin.timedOut || fin.code !== 0) throw new Error(`reclaim supervisor: ${fin.timedOut ? 'timed out' : `exit ${fin.code}`}:\n${tail(sup)}`);
  const c = openSql(db);
  try {
    const ev = c
      .prepare(
        `SELECT e.run_id, e.kind, e.at, t.skill FROM events e JOIN tasks t ON t.id = e.task_id
          WHERE e.kind IN ('sigterm_sent', 'sigkill_sent') ORDER BY e.id`,
      )
      .all() as Array<{ run_id: string; kind: string; at: number; skill: string }>;
    const term = new Map(ev.filter((e) => e.kind === 'sigterm_sent').map((e) => [e.run_id, e.at]));
    return ev
      .filter((e) => e.kind === 'sigkill_sent' && term.has(e.run_id))
      .map((e) => e.at - (term.get(e.run_id)! + graceMs(Number(e.skill.split('-')[1]))));
  } finally {
    c.close();
  }
}

export async function benchReclaim(): Promise<void> {
  const S = 'reclaim precision';
  const d = await reclaimOnce('default', null);
  const early = d.filter((x) => x < 0).length;
  res.add({
    scenario: S,
    figure: `SIGKILL − (SIGTERM + grace), SIGTERM-ignoring workers, graces 1–2 s, p50 / p99 / max (${d.length}, default TICK_INTERVAL_MS)`,
    value: `${fmt(median(d), 0)} / ${fmt(quantile(d, 0.99), 0)} / ${fmt(Math.max(...d), 0)} ms`,
    number: Math.max(...d),
    target: 'all ≤ 250 ms (never < 0)',
    pass: d.length === P.reclaimN && early === 0 && Math.max(...d) <= 250,
    note: early ? `${early} SIGKILLs came before the grace ended` : undefined,
  });
  const f = await reclaimOnce('tick100', '100');
  res.add({
    scenario: S,
    figure: `same with TICK_INTERVAL_MS=100, p50 / p99 / max (${f.length})`,
    value: `${fmt(median(f), 0)} / ${fmt(quantile(f, 0.99), 0)} / ${fmt(Math.max(...f), 0)} ms`,
    number: Math.max(...f),
    target: 'all ≤ 250 ms',
    pass: null,
  });
  res.extra.reclaim = { defaultTick: d, tick100: f };
}
