/**
 * Sampling, run as a tick step: every worker's CPU and RSS every SAMPLE_INTERVAL_MS (memory limits
 * are checked on these samples by the reclaim step), and the log bound at every tick.
 */
import type { TickContext } from '../state.js';
import type { LogBound } from './log-bound.js';

/**
 * CPU and RSS of every worker are sampled this often (one /proc scan: ~10-20 ms of the event loop
 * with 64 workers).
 */
export const SAMPLE_INTERVAL_MS = 5000;

export function sample(ctx: TickContext, logs: LogBound, now: number): void {
  const s = ctx.state;
  logs.boundLogs(); // every tick (a watched log every WATCHED_LOG_CHECK_MS); a log being written also on its own LOG_CHECK_INTERVAL_MS timer
  if (now - s.lastSampleAt < SAMPLE_INTERVAL_MS || s.workers.size === 0) return;
  s.lastSampleAt = now;
  const ids = [...s.workers.values()].filter((w) => !w.leaderExit).map((w) => w.identity);
  const usage = ctx.reaper.sample(ids);
  const cpu: Parameters<typeof ctx.metrics.sampledCpu>[0] = [];
  for (const w of s.workers.values()) {
    const u = usage.get(w.identity.pid);
    if (u) {
      w.rssBytes = u.rssBytes;
      w.cpuPercent = u.cpuPercent;
      cpu.push({ runId: w.runId, skill: w.skill, cpuPercent: u.cpuPercent, cpuSeconds: u.cpuSeconds ?? null });
    }
  }
  ctx.metrics.sampledCpu(cpu, now);
}
