/**
 * Benchmark "overhead" (supervisor overhead and heartbeat latency): 64 workers heartbeating at 1 Hz
 * under the default tick with the runtime's automatic heartbeats (their heartbeat slots); the
 * supervisor's CPU (≤ 2 % of one core) and RSS (≤ 100 MB) over a window. A second run sends each
 * bare heartbeat as a report (ctx.heartbeat(), answered): the workers' heartbeat p50 / p99 (p99 ≤
 * 20 ms). A third prices heartbeats that carry progress (each one the worker's data, committed
 * before its answer), and one without heartbeats gives the floor: INFO. The supervisor serves HTTP as by default
 * (on a free loopback port); a second window measures its CPU with the web page open (page-client.ts:
 * the event stream, /api/status every 2 s, /api/history every 20 s), target ≤ 3 %.
 *
 * heartbeatRun is the machinery, shared with the channel part (channel.ts: the same series with
 * the report channel's batching window at 0, 2 and 5 ms, and direct).
 */
import { join } from 'node:path';
import { Sup, cpuSeconds, fmt, median, memory, openBoard, openSql, quantile, readRecords, sleep } from '../lib.js';
import { openPage } from './page-client.js';
import { BENCH, P, h, res, tail } from './setup.js';

export interface HeartbeatRun {
  /** Workers that started (of `workers`). */
  started: number;
  windowMs: number;
  /** Supervisor CPU over the window, % of one core. */
  cpuPct: number;
  /** Heartbeat latencies (ms) of the beats that returned within the window. */
  beats: number[];
  rssMax: number;
  mem: { rss: number; hwm: number } | null;
  /** What `during` returned. */
  extra: unknown;
  /** Whether the supervisor's report channel listened (its workers reported through it). */
  channel: boolean;
  /** Over the window, from the supervisor's /metrics (null: no HTTP): beats read in heartbeat slots, heartbeats reported on the channel. */
  counted: { slot: number; reported: number } | null;
}

/** The heartbeat counters of a supervisor's /metrics: beats read in slots, heartbeats reported on the channel. */
async function beatCounters(url: string): Promise<{ slot: number; reported: number } | null> {
  try {
    const text = await (await fetch(`${url.replace(/\/$/, '')}/metrics`)).text();
    let slot = 0;
    let reported = 0;
    for (const line of text.split('\n')) {
      const v = Number(line.split(' ').at(-1));
      if (line.startsWith('kanban_heartbeat_slot_beats_total ')) slot += v;
      else if (line.startsWith('kanban_channel_reports_total{') && line.includes('op="heartbeat"')) reported += v;
    }
    return { slot, reported };
  } catch {
    return null;
  }
}

/**
 * `workers` workers of hb-worker.mjs heartbeating at 1 Hz under a supervisor started with `env`;
 * after they all started and settled, the supervisor's CPU and the heartbeat latencies over a
 * window of `windowS` seconds; then `during` (a second window of the caller's, e.g. the web page
 * open); then the workers finish and the supervisor stops.
 */
export async function heartbeatRun(
  name: string,
  opts: { workers: number; windowS: number; env?: Record<string, string>; skillEnv?: Record<string, string>; during?: (sup: Sup) => Promise<unknown> },
): Promise<HeartbeatRun> {
  const dir = h.dir(name);
  const db = join(dir, 'board', 'kanban.db');
  const records = join(dir, 'records.txt');
  const n = opts.workers;
  const b = await openBoard(db);
  try {
    await b.putSkill({ name: 'hb', argv: [process.execPath, join(BENCH, 'hb-worker.mjs')], env: { RECORDS: records, ...opts.skillEnv } });
    const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(n), ...opts.env }, logFile: join(dir, 'supervisor.log') });
    if (!(await sup.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(sup)}`);
    const startBudget = 90_000;
    const until = Date.now() + startBudget + 2 * opts.windowS * 1000 + 20_000;
    for (let i = 0; i < n; i++) await b.createTask({ skill: 'hb', payload: { until } });
    const t0 = Date.now();
    while (readRecords(records).filter((r) => r[0] === 'start').length < n && Date.now() - t0 < startBudget) await sleep(200);
    const started = readRecords(records).filter((r) => r[0] === 'start').length;
    await sleep(5000); // let the start-up of the Node processes settle
    const url = opts.env?.KANBAN_HTTP ? String((await sup.waitFor((l) => l.event === 'http_started', 5000))?.url ?? '') : '';
    const k0 = url ? await beatCounters(url) : null;
    const c0 = cpuSeconds(sup.pid)!;
    const w0 = Date.now();
    let rssMax = 0;
    while (Date.now() - w0 < opts.windowS * 1000) {
      rssMax = Math.max(rssMax, memory(sup.pid)?.rss ?? 0);
      await sleep(1000);
    }
    const c1 = cpuSeconds(sup.pid)!;
    const w1 = Date.now();
    const mem = memory(sup.pid);
    rssMax = Math.max(rssMax, mem?.rss ?? 0);
    const cpuPct = ((c1 - c0) / ((w1 - w0) / 1000)) * 100;
    const k1 = url ? await beatCounters(url) : null;
    const counted = k0 && k1 ? { slot: k1.slot - k0.slot, reported: k1.reported - k0.reported } : null;
    const extra = opts.during ? await opts.during(sup) : null;
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
    return { started, windowMs: w1 - w0, cpuPct, beats, rssMax, mem, extra, channel: sup.events('channel_listening').length > 0, counted };
  } finally {
    await b.close();
  }
}

export async function benchOverhead(): Promise<void> {
  const S = 'supervisor overhead';
  const n = P.hbWorkers;
  // The workers' automatic heartbeats at 1 Hz, as the runtime sends them (its heartbeat slot while
  // the supervisor acknowledges them): the supervisor's cost of keeping n workers' liveness.
  const run = await heartbeatRun('overhead', {
    workers: n,
    windowS: P.hbWindowS,
    env: { KANBAN_HTTP: '127.0.0.1:0' },
    skillEnv: { HB_MODE: 'auto' },
    // The same, with the web page open.
    during: async (sup) => {
      const url = String((await sup.waitFor((l) => l.event === 'http_started', 5000))?.url ?? '');
      if (!url) return { pagePct: NaN, pageNote: 'no HTTP server (http_started not logged)' };
      const page = openPage(url);
      await sleep(3000); // the page's first loads
      const p0 = cpuSeconds(sup.pid)!;
      const pw0 = Date.now();
      await sleep(P.hbWindowS * 1000);
      const p1 = cpuSeconds(sup.pid)!;
      const pw1 = Date.now();
      await page.stop();
      return {
        pagePct: ((p1 - p0) / ((pw1 - pw0) / 1000)) * 100,
        pageNote: `${page.stats.requests} requests answered (${page.stats.failures} failed), ${page.stats.streamBytes} bytes of event stream; ${P.hbWindowS} s window after the page's first loads`,
      };
    },
  });
  const { started, cpuPct, rssMax, mem } = run;
  const { pagePct, pageNote } = run.extra as { pagePct: number; pageNote: string };
  const perS = (x: number | undefined) => fmt((x ?? NaN) / (run.windowMs / 1000), 1);
  res.add({
    scenario: S,
    figure: `CPU of the supervisor, ${started} workers heartbeating at 1 Hz (the runtime's automatic heartbeats; ${P.hbWindowS} s window)`,
    value: `${fmt(cpuPct, 2)} % of one core`,
    number: cpuPct,
    target: '≤ 2 %',
    pass: started === n && cpuPct <= 2,
    note: `${perS(run.counted?.slot)} beats/s read in heartbeat slots, ${perS(run.counted?.reported)}/s reported on the channel; default TICK_INTERVAL_MS (1000)`,
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
  // The floor: the same workers without any heartbeat (what supervising them costs: ticks, /proc,
  // logs), HTTP served and scraped before the window as in the first row (a scrape turns Node's
  // process metrics on for good: a floor without them was not the floor of that row).
  const floor = await heartbeatRun('overhead-floor', { workers: n, windowS: P.hbWindowS, env: { KANBAN_HTTP: '127.0.0.1:0' }, skillEnv: { HB_MODE: 'none' } });
  res.add({
    scenario: S,
    figure: `CPU of the supervisor, ${floor.started} workers without heartbeats (the floor the rows above sit on)`,
    value: `${fmt(floor.cpuPct, 2)} % of one core`,
    number: floor.cpuPct,
    target: 'none: the figure',
    pass: null,
    note: `heartbeats at 1 Hz through the slots add ${fmt(cpuPct - floor.cpuPct, 2)} points in this run`,
  });
  // The same workers sending each bare heartbeat as a report (ctx.heartbeat(): answered, so timed).
  const rep = await heartbeatRun('overhead-reported', { workers: n, windowS: P.hbWindowS, env: { KANBAN_HTTP: '127.0.0.1:0' } });
  const beats = rep.beats;
  const p99 = quantile(beats, 0.99);
  res.add({
    scenario: 'heartbeat latency',
    figure: `worker heartbeat sent as a report (ctx.heartbeat()), ${rep.started} workers at 1 Hz, p50 / p99 (${beats.length} beats)`,
    value: `${fmt(median(beats), 2)} / ${fmt(p99, 2)} ms`,
    number: p99,
    target: 'p99 ≤ 20 ms',
    pass: beats.length > 0 && p99 <= 20,
    note: `max ${fmt(Math.max(...beats), 1)} ms; supervisor CPU meanwhile ${fmt(rep.cpuPct, 2)} % (answered from memory once a run's first one committed)`,
  });
  // The same workers, each heartbeat carrying progress: the worker's data, committed before its answer.
  const prog = await heartbeatRun('overhead-progress', { workers: n, windowS: P.hbWindowS, skillEnv: { HB_PROGRESS: '1' } });
  const progP99 = quantile(prog.beats, 0.99);
  res.add({
    scenario: S,
    figure: `CPU of the supervisor, ${prog.started} workers heartbeating at 1 Hz with progress (each one committed before its answer); heartbeat p50 / p99`,
    value: `${fmt(prog.cpuPct, 2)} % of one core; ${fmt(median(prog.beats), 2)} / ${fmt(progP99, 2)} ms`,
    number: prog.cpuPct,
    target: 'none: the figure',
    pass: null,
    note: `${prog.beats.length} beats`,
  });
  res.extra.overhead = {
    workers: started,
    windowS: run.windowMs / 1000,
    cpuPct,
    pagePct,
    mem,
    counted: run.counted,
    floorPct: floor.cpuPct,
    reported: { cpuPct: rep.cpuPct, n: beats.length, p50: median(beats), p99, max: Math.max(...beats), counted: rep.counted },
    progress: { cpuPct: prog.cpuPct, p50: median(prog.beats), p99: progP99 },
  };
}
