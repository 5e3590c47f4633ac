/**
 * Benchmark "retention" (issue 16): a board of 1,000,000 finished tasks (each with its run and an
 * event; --short: 200,000) pruned to 1,000 by `kanban-supervisor prune` while 64 workers heartbeat
 * at 1 Hz under a running supervisor: the workers' heartbeat write p99 during the prune (target
 * ≤ 20 ms), the longest batch's hold of the write lock (target ≤ 50 ms), and the prune's rate.
 */
import { join } from 'node:path';
import { CLI, Sup, fmt, median, openBoard, openSql, quantile, readRecords, run, sleep } from '../lib.js';
import { finishedBoard } from './flat.js';
import { BENCH, P, SHORT, h, res, tail } from './setup.js';

export async function benchRetention(): Promise<void> {
  const S = 'retention';
  const dir = h.dir('retention');
  const db = join(dir, 'board', 'kanban.db');
  const records = join(dir, 'records.txt');
  const rows = SHORT ? 200_000 : 1_000_000;
  const keep = 1_000;
  const n = P.hbWorkers;
  // Every task finished over 2 h ago, then the newest `keep` made young: `prune --older-than 1h` leaves them.
  const fillS = await finishedBoard(db, rows, 0, 2 * 3_600_000);
  const c0 = openSql(db);
  try {
    c0.prepare(`UPDATE tasks SET updated_at = ? WHERE id IN (SELECT id FROM tasks ORDER BY created_at DESC LIMIT ?)`).run(Date.now(), keep);
  } finally {
    c0.close();
  }
  process.stdout.write(`  (board filled: ${fmt(rows)} finished tasks in ${fmt(fillS)} s)\n`);
  const b = await openBoard(db);
  try {
    await b.putSkill({ name: 'hb', argv: [process.execPath, join(BENCH, 'hb-worker.mjs')], env: { RECORDS: records } });
    const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(n), KANBAN_HTTP: 'off' }, logFile: join(dir, 'supervisor.log') });
    if (!(await sup.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(sup)}`);
    const until = Date.now() + 30 * 60_000;
    for (let i = 0; i < n; i++) await b.createTask({ skill: 'hb', payload: { until } });
    const t0 = Date.now();
    while (readRecords(records).filter((r) => r[0] === 'start').length < n && Date.now() - t0 < 90_000) await sleep(200);
    const started = readRecords(records).filter((r) => r[0] === 'start').length;
    await sleep(5000); // the start-up of 64 Node processes settles
    const w0 = Date.now();
    const pr = await run(process.execPath, [CLI, '--db', db, '--json', 'prune', '--older-than', '1h'], { timeoutMs: 30 * 60_000 });
    const w1 = Date.now();
    if (pr.code !== 0) throw new Error(`prune failed (${pr.code}): ${pr.stderr}`);
    const out = JSON.parse(pr.stdout) as { tasks: number; runs: number; events: number; batches: number; longest_batch_ms: number };
    const left = (await b.counts()).tasks.done;
    const beats = readRecords(records)
      .filter((r) => r[0] === 'hb' && Number(r[1]) >= w0 && Number(r[1]) <= w1)
      .map((r) => Number(r[2]));
    // Let the workers finish (payload.until), then stop.
    const c = openSql(db);
    try {
      c.prepare(`UPDATE tasks SET payload = json_set(payload, '$.until', ?) WHERE skill = 'hb'`).run(Date.now());
    } finally {
      c.close();
    }
    await sup.stop(30_000);
    const p99 = quantile(beats, 0.99);
    const secs = (w1 - w0) / 1000;
    res.add({
      scenario: S,
      figure: `worker heartbeat write during a prune of ${fmt(out.tasks)} finished tasks to ${fmt(left)}, ${started} workers at 1 Hz, p50 / p99 (${beats.length} beats)`,
      value: `${fmt(median(beats), 2)} / ${fmt(p99, 2)} ms`,
      number: p99,
      target: 'p99 ≤ 20 ms',
      pass: beats.length > 0 && p99 <= 20,
      note: `prune took ${fmt(secs, 1)} s (${fmt(out.tasks / secs, 0)} tasks/s, with their runs and events) in ${fmt(out.batches)} batches`,
    });
    res.add({
      scenario: S,
      figure: 'longest prune batch (its transaction: the write lock held)',
      value: `${fmt(out.longest_batch_ms, 1)} ms`,
      number: out.longest_batch_ms,
      target: '≤ 50 ms',
      pass: out.longest_batch_ms <= 50,
      note: `${fmt(out.batches)} batches, sized by the last one's hold (policies nextPruneBatchSize)`,
    });
    res.extra.retention = { rows, pruned: out, left, seconds: secs, fillSeconds: fillS, heartbeat: { n: beats.length, p50: median(beats), p99, max: beats.length ? Math.max(...beats) : null } };
  } finally {
    await b.close();
  }
}
