/**
 * Benchmark "latency" (dispatch latency): a task added by another process → its worker started,
 * p50 / p99, with the default TICK_INTERVAL_MS and the data_version poll (target p99 ≤ 100 ms).
 */
import { join } from 'node:path';
import { Sup, fmt, median, openBoard, openSql, quantile, rand, readRecords, sleep } from '../lib.js';
import { BENCH, HAVE_SQLITE3, P, h, res, tail } from './setup.js';

export async function benchLatency(): Promise<void> {
  const S = 'dispatch latency';
  const dir = h.dir('latency');
  const db = join(dir, 'board', 'kanban.db');
  const stamps = join(dir, 'stamps.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const max = 8;
  try {
    await b.putSkill({ name: 'stamp', argv: [join(BENCH, 'stamp.sh'), stamps], env: { REPORT: HAVE_SQLITE3 ? 'sqlite' : 'cli' } });
    const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(max) }, logFile: join(dir, 'supervisor.log') });
    if (!(await sup.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(sup)}`);
    // Warm-up: a few tasks through, not measured.
    for (let i = 0; i < 5; i++) {
      await b.createTask({ skill: 'stamp', title: 'warm-up' });
      await sleep(100);
    }
    await sleep(500);
    const added = new Map<string, number>();
    let fullAtAdd = 0;
    for (let i = 0; i < P.latN; i++) {
      await sleep(rand(50, 150));
      const running = (sql.prepare(`SELECT count(*) AS n FROM runs WHERE exited_at IS NULL`).get() as { n: number }).n;
      if (running >= max) fullAtAdd++;
      const t = await b.createTask({ skill: 'stamp', title: `latency ${i}` });
      added.set(t.id, Date.now()); // committed: the task is visible to the supervisor from now on
    }
    const end = Date.now() + 30_000;
    let lat: number[] = [];
    while (Date.now() < end) {
      lat = readRecords(stamps)
        .filter((r) => added.has(r[0]!))
        .map((r) => Number(r[1]) * 1000 - added.get(r[0]!)!);
      if (lat.length >= added.size) break;
      await sleep(100);
    }
    await sup.stop(20_000);
    const p50 = median(lat);
    const p99 = quantile(lat, 0.99);
    res.add({
      scenario: S,
      figure: `task added by another process → worker start, p50 / p99 (${lat.length} tasks)`,
      value: `${fmt(p50)} / ${fmt(p99)} ms`,
      number: p99,
      target: 'p99 ≤ 100 ms',
      pass: lat.length === added.size && p99 <= 100,
      note: `max ${fmt(Math.max(...lat))} ms; pool full at ${fullAtAdd} of ${P.latN} adds; default TICK_INTERVAL_MS (1000) and data_version poll`,
    });
    res.extra.latency = { samples: lat.length, p50, p90: quantile(lat, 0.9), p99, max: Math.max(...lat) };
  } finally {
    await b.close();
    sql.close();
  }
}
