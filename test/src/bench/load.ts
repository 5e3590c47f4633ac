/**
 * Benchmark "load" (under load: churn, supervisor restarts), measured by ../load.ts: the
 * supervisor's RSS with 64 workers under churn, the longest write-lock wait a worker's heartbeat
 * sees while the supervisor is SIGKILLed and restarted, and how long the write lock stays taken.
 */
import { WORKER_BUSY_TIMEOUT_MS } from '@kanban-supervisor/worker-runtime';
import { fmt, median, quantile } from '../lib.js';
import { heartbeatsUnderRestarts, rssUnderChurn, waitSummary } from '../load.js';
import { P, h, res } from './setup.js';

/**
 * The supervisor's RSS with 64 workers whose tasks end every second or so, and how long a worker's
 * heartbeat waits for the board's write lock while the supervisor is SIGKILLed and restarted every
 * few seconds (right after it spawned a batch, the worst moment: see test/src/load.ts).
 */
export async function benchLoad(): Promise<void> {
  const S = 'under load';
  const n = P.hbWorkers;
  const churn = await rssUnderChurn(h, h.dir('load-churn'), { workers: n, windowS: P.churnS, taskMs: [1000, 4000] });
  res.add({
    scenario: S,
    figure: `RSS of the supervisor, ${n} workers under churn (tasks of 1–4 s, highest sample in ${P.churnS} s)`,
    value: `${fmt(churn.rssMaxMb)} MB`,
    number: churn.rssMaxMb,
    target: '≤ 100 MB',
    pass: churn.rssMaxMb <= 100,
    note: `last sample ${fmt(churn.rssLastMb)} MB, VmHWM ${fmt(churn.hwmMb)} MB; ${churn.completed} tasks completed (${fmt(churn.exitsPerSecond)} a second)`,
  });
  const r = await heartbeatsUnderRestarts(h, h.dir('load-restarts'), { workers: n, restarts: P.restarts, waveMs: P.waveMs, otherProcesses: P.otherProcs });
  const failed = r.failedBeats.filter((f) => f.name !== 'NotCurrentError').length + r.runsFailed;
  const maxWait = Math.max(...r.waits);
  res.add({
    scenario: S,
    figure: `longest write-lock wait seen by any worker: heartbeat p50 / p99 / max, ${n} workers at 1 Hz, supervisor SIGKILLed and restarted ${r.restarts} times (every ${fmt(r.killEveryS)} s, right after spawning), ${P.otherProcs} other processes on the host`,
    value: waitSummary(r.waits),
    number: maxWait,
    target: 'no heartbeat or report fails (max stated)',
    pass: r.waits.length > 0 && failed === 0,
    note: `${r.beats} beats, ${failed} failed; runs by outcome: ${Object.entries(r.outcomes).map(([o, c]) => `${o} ${c}`).join(', ')}; the longest waits fall while ${n} Node workers start at once (CPU)`,
  });
  const longest = Math.max(0, ...r.lockStreaks);
  res.add({
    scenario: S,
    figure: "same run: longest time the board's write lock stayed taken (a probe tries it every 5 ms)",
    value: `${fmt(longest, 0)} ms`,
    number: longest,
    target: `≤ ${WORKER_BUSY_TIMEOUT_MS} ms (one busy timeout of the worker)`,
    pass: longest <= WORKER_BUSY_TIMEOUT_MS,
    note: `supervisor ticks holding it > 1 s: ${r.supervisorHolds.length ? r.supervisorHolds.map((x) => `${x} ms`).join(', ') : 'none'}`,
  });
  res.extra.load = { churn, restarts: { ...r, waits: undefined, p50: median(r.waits), p99: quantile(r.waits, 0.99), max: maxWait } };
}
