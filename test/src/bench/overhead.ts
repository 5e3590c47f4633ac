/**
 * Benchmark "overhead" (supervisor overhead and heartbeat latency): 64 workers heartbeating at 1 Hz
 * under the default tick; the supervisor's CPU (≤ 2 % of one core) and RSS (≤ 100 MB) over a window,
 * and the workers' heartbeat write p50 / p99 (p99 ≤ 20 ms). The supervisor serves HTTP as by default
 * (on a free loopback port); a second window measures its CPU with the web page open (page-client.ts:
 * the event stream, /api/status every 2 s, /api/history every 20 s), target ≤ 3 %.
 */
import { join } from 'node:path';
import { Sup, cpuSeconds, fmt, median, memory, openBoard, openSql, quantile, readRecords, sleep } from '../lib.js';
import { openPage } from './page-client.js';
import { BENCH, P, h, res, tail } from './setup.js';

export async function benchOverhead(): Promise<void> {
  const S = 'supervisor overhead';
  const dir = h.dir('overhead');
  const db = join(dir, 'board', 'kanban.db');
  const records = join(dir, 'records.txt');
  const n = P.hbWorkers;
  const b = await openBoard(db);
  try {
    await b.putSkill({ name: 'hb', argv: [process.execPath, join(BENCH, 'hb-worker.mjs')], env: { RECORDS: records } });
    const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(n), KANBAN_HTTP: '127.0.0.1:0' }, logFile: join(dir, 'supervisor.log') });
    if (!(await sup.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(sup)}`);
    const startBudget = 90_000;
    const until = Date.now() + startBudget + 2 * P.hbWindowS * 1000 + 20_000;
    for (let i = 0; i < n; i++) await b.createTask({ skill: 'hb', payload: { until } });
    const t0 = Date.now();
    while (readRecords(records).filter((r) => r[0] === 'start').length < n && Date.now() - t0 < startBudget) await sleep(200);
    const started = readRecords(records).filter((r) => r[0] === 'start').length;
    await sleep(5000); // let the start-up of 64 Node processes settle
    const c0 = cpuSeconds(sup.pid)!;
    const w0 = Date.now();
    let rssMax = 0;
    while (Date.now() - w0 < P.hbWindowS * 1000) {
      rssMax = Math.max(rssMax, memory(sup.pid)?.rss ?? 0);
      await sleep(1000);
    }
    const c1 = cpuSeconds(sup.pid)!;
    const w1 = Date.now();
    const mem = memory(sup.pid);
    rssMax = Math.max(rssMax, mem?.rss ?? 0);
    const cpuPct = ((c1 - c0) / ((w1 - w0) / 1000)) * 100;
    // The same, with the web page open.
    const url = String((await sup.waitFor((l) => l.event === 'http_started', 5000))?.url ?? '');
    let pagePct = NaN;
    let pageNote = 'no HTTP server (http_started not logged)';
    if (url) {
      const page = openPage(url);
      await sleep(3000); // the page's first loads
      const p0 = cpuSeconds(sup.pid)!;
      const pw0 = Date.now();
      await sleep(P.hbWindowS * 1000);
      const p1 = cpuSeconds(sup.pid)!;
      const pw1 = Date.now();
      await page.stop();
      pagePct = ((p1 - p0) / ((pw1 - pw0) / 1000)) * 100;
      pageNote = `${page.stats.requests} requests answered (${page.stats.failures} failed), ${page.stats.streamBytes} bytes of event stream; ${P.hbWindowS} s window after the page's first loads`;
    }
    // Let the workers finish (payload.until), then stop.
    const c = openSql(db);
    try {
      c.prepare(`UPDATE tasks SET payload = json_set(payload, '$.until', ?) WHERE skill = 'hb'`).run(Date.now());
    } finally {
      c.close();
    }
    await sup.stop(30_000);
    const beats = readRecords(records)
      .filter((r) => r[0] === 'hb' && Number(r[1]) >= w0 && Number(r[1]) <= w1)
      .map((r) => Number(r[2]));
    res.add({
      scenario: S,
      figure: `CPU of the supervisor, ${started} workers heartbeating at 1 Hz (${P.hbWindowS} s window)`,
      value: `${fmt(cpuPct, 2)} % of one core`,
      number: cpuPct,
      target: '≤ 2 %',
      pass: started === n && cpuPct <= 2,
      note: `${fmt(beats.length / ((w1 - w0) / 1000), 0)} heartbeats/s committed in the window; default TICK_INTERVAL_MS (1000)`,
    });
    res.add({
      scenario: S,
      figure: `CPU of the supervisor, ${started} workers heartbeating at 1 Hz, the web page open (event stream, status every 2 s)`,
      value: `${fmt(pagePct, 2)} % of one core`,
      number: pagePct,
      target: '≤ 3 %',
      pass: started === n && pagePct <= 3,
      note: pageNote,
    });
    const rssMb = rssMax / 2 ** 20;
    res.add({
      scenario: S,
      figure: `RSS of the supervisor with ${started} workers (highest sample in the window)`,
      value: `${fmt(rssMb)} MB (VmHWM since start, incl. spawning the 64: ${fmt((mem?.hwm ?? NaN) / 2 ** 20)} MB)`,
      number: rssMb,
      target: '≤ 100 MB',
      pass: rssMb <= 100,
    });
    const p99 = quantile(beats, 0.99);
    res.add({
      scenario: 'heartbeat latency',
      figure: `worker heartbeat write, ${started} workers at 1 Hz, p50 / p99 (${beats.length} beats)`,
      value: `${fmt(median(beats), 2)} / ${fmt(p99, 2)} ms`,
      number: p99,
      target: 'p99 ≤ 20 ms',
      pass: beats.length > 0 && p99 <= 20,
      note: `max ${fmt(Math.max(...beats), 1)} ms`,
    });
    res.extra.overhead = { workers: started, windowS: (w1 - w0) / 1000, cpuPct, pagePct, mem, heartbeat: { n: beats.length, p50: median(beats), p99, max: Math.max(...beats) } };
  } finally {
    await b.close();
  }
}
