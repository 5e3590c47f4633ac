/**
 * Chaos scenario "load" (heartbeats and memory under load), issue 11, items 11 and 12, measured by
 * ../load.ts: the supervisor's RSS with 64 workers under churn; then the longest write-lock wait any
 * worker's heartbeat sees and how long the lock stays taken, while the supervisor is SIGKILLed right
 * after spawning a wave and restarted, with idle processes beside them on the host; and the board's
 * integrity at the end.
 */
import { WORKER_BUSY_TIMEOUT_MS } from '@kanban-supervisor/worker-runtime';
import { fmt, median, quantile } from '../lib.js';
import { heartbeatsUnderRestarts, rssUnderChurn, waitSummary } from '../load.js';
import { P, boards, h, res } from './setup.js';

/**
 * Issue 11, items 11 and 12. 64 Node workers heartbeating at 1 Hz through the runtime. First under
 * churn (tasks of 1–4 s): the supervisor's RSS. Then in waves that end together, the supervisor
 * SIGKILLed right after it spawned a wave (every run still `starting`) and restarted, with idle
 * processes beside them on the host: no heartbeat may fail, and none may wait long for the lock.
 */
export async function scenarioLoad(): Promise<void> {
  const S = 'heartbeats and memory under load';
  const cfg = P.load;
  const churn = await rssUnderChurn(h, h.dir('load-churn'), { workers: cfg.workers, windowS: cfg.churnS, taskMs: cfg.taskMs }, boards);
  res.add({
    scenario: S,
    figure: `supervisor RSS, ${cfg.workers} workers under churn (tasks of ${cfg.taskMs[0] / 1000}–${cfg.taskMs[1] / 1000} s, highest sample in ${cfg.churnS} s)`,
    value: `${fmt(churn.rssMaxMb)} MB`,
    number: churn.rssMaxMb,
    target: '≤ 100 MB',
    pass: churn.rssMaxMb <= 100,
    note: `last sample ${fmt(churn.rssLastMb)} MB, VmHWM ${fmt(churn.hwmMb)} MB; ${churn.completed} tasks completed (${fmt(churn.exitsPerSecond)} a second)`,
  });
  const r = await heartbeatsUnderRestarts(h, h.dir('load-restarts'), { workers: cfg.workers, restarts: cfg.restarts, waveMs: cfg.waveMs, otherProcesses: cfg.otherProcesses }, boards);
  const setting = `${cfg.workers} workers, supervisor SIGKILLed right after each batch of spawns and restarted ${r.restarts} times (every ${fmt(r.killEveryS)} s), ${cfg.otherProcesses} other processes on the host`;
  const maxWait = Math.max(...r.waits);
  const failed = r.failedBeats.filter((f) => f.name !== 'NotCurrentError');
  res.add({
    scenario: S,
    figure: `longest write-lock wait seen by any worker (heartbeat p50 / p99 / max, ${r.beats} beats), ${setting}; heartbeats failed / runs ended failed`,
    value: `${waitSummary(r.waits)}; ${failed.length} / ${r.runsFailed} failed${failed.length ? ` (e.g. ${failed[0]!.name}: ${failed[0]!.message})` : ''}`,
    number: maxWait,
    target: 'no heartbeat or report fails (max stated)',
    pass: r.waits.length > 0 && failed.length === 0 && r.runsFailed === 0,
    hard: true,
    note:
      `runs by outcome: ${Object.entries(r.outcomes).map(([o, n]) => `${o} ${n}`).join(', ')}; runs still starting at each SIGKILL: ${r.startingAtKill.join(', ')}; ` +
      `busy tick failures: ${r.busyTickFailures}; the longest waits fall while ${cfg.workers} Node workers start at once (CPU), the lock itself is the next row`,
  });
  const longest = Math.max(0, ...r.lockStreaks);
  res.add({
    scenario: S,
    figure: "longest time the board's write lock stayed taken (a probe tries it every 5 ms)",
    value: `${fmt(longest, 0)} ms`,
    number: longest,
    target: `≤ ${WORKER_BUSY_TIMEOUT_MS} ms (one busy timeout of the worker)`,
    pass: longest <= WORKER_BUSY_TIMEOUT_MS,
    hard: true,
    note: `${r.lockStreaks.length} streaks ≥ 100 ms; supervisor ticks holding it > 1 s: ${r.supervisorHolds.length ? r.supervisorHolds.map((x) => `${x} ms`).join(', ') : 'none'}`,
  });
  res.add({ scenario: S, figure: 'board integrity_check at the end', value: r.integrity, target: 'ok', pass: r.integrity === 'ok', hard: true });
  res.extra.load = { churn, restarts: { ...r, waits: undefined, p50: median(r.waits), p99: quantile(r.waits, 0.99), max: maxWait } };
}
