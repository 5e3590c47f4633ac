/**
 * Log bounding: every live run's log is kept under LOG_MAX_BYTES (its head, one marker line, its
 * newest tail), on a timer of its own (LOG_CHECK_INTERVAL_MS) and at every tick.
 */
import { closeSync } from 'node:fs';
import { boundLogFd, openLogForBounding } from '@kanban-supervisor/reaper';
import type { TickContext, Worker } from '../state.js';

/**
 * Every live run's log is checked against LOG_MAX_BYTES this often (one fstat per log, on a
 * descriptor the supervisor holds), on a timer of its own. A log exceeds the bound by at most what
 * its processes write in one interval (plus any stall of the supervisor's event loop): see the
 * README for the figure measured at full speed.
 */
export const LOG_CHECK_INTERVAL_MS = 20;

/** Per run: the descriptor its log is bounded through (null when it was refused), and counters. */
interface Bound {
  fd: number | null;
  ctx: { task: string; run: string; workerPid: number };
  truncations: number;
  lastWarnAt: number;
}

export class LogBound {
  private readonly bounds = new Map<string, Bound>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ctx: TickContext) {}

  /**
   * Bound every run's log, at every tick and every LOG_CHECK_INTERVAL_MS on a timer of its own
   * (armed at the first call, cleared once the supervisor stopped), for as long as the run is in
   * `workers`, i.e. while any process of its group lives, not only its leader. A run that left
   * `workers` gets one last check (what its processes wrote in their last interval), then its
   * descriptor is closed. Never throws (it runs from a timer).
   */
  boundLogs(): void {
    const { state, log } = this.ctx;
    try {
      if (!state.stopped && !this.timer) {
        this.timer = setInterval(() => this.boundLogs(), LOG_CHECK_INTERVAL_MS);
        this.timer.unref();
      }
      if (!state.stopped) for (const w of state.workers.values()) if (w.logPath) this.boundLog(w);
      for (const [runId, b] of this.bounds) {
        if (!state.stopped && state.workers.has(runId)) continue;
        this.bounds.delete(runId);
        if (b.fd !== null) {
          this.boundFd(b);
          try {
            closeSync(b.fd);
          } catch {
            /* closed already */
          }
        }
      }
      if (state.stopped && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    } catch (e) {
      log.error({ event: 'log_bound_failed', err: e }, 'bounding worker logs failed');
    }
  }

  /** Keep one run's log under LOG_MAX_BYTES. Its descriptor is opened once, without following a symlink, checked to be a regular file of ours with one link. */
  private boundLog(w: Worker): void {
    let b = this.bounds.get(w.runId);
    if (!b) {
      b = { fd: null, ctx: { task: w.taskId, run: w.runId, workerPid: w.identity.pid }, truncations: 0, lastWarnAt: 0 };
      this.bounds.set(w.runId, b);
      try {
        b.fd = openLogForBounding(w.logPath!);
      } catch (e) {
        // A symlink, FIFO, hard link or another user's file at the log's name (a worker put it
        // there) is never followed, opened or truncated; a missing log has nothing to bound.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.ctx.log.warn({ event: 'log_not_bounded', ...b.ctx, log: w.logPath, error: (e as Error).message }, 'worker log is not a regular file of ours: not bounded');
        }
        return;
      }
    }
    if (b.fd !== null) this.boundFd(b);
  }

  private boundFd(b: Bound): void {
    const { cfg, log } = this.ctx;
    try {
      const r = boundLogFd(b.fd!, cfg.logMaxBytes, { boundName: `LOG_MAX_BYTES=${cfg.logMaxBytes}` });
      if (!r.truncated) return;
      b.truncations++;
      const now = Date.now();
      // Once per run at first, then at most every 10 s (a flooding worker is truncated often).
      if (b.truncations === 1 || now - b.lastWarnAt >= 10_000) {
        b.lastWarnAt = now;
        log.warn({ event: 'log_truncated', ...b.ctx, bytes: r.size, kept: r.kept, dropped: r.dropped, truncations: b.truncations }, 'worker log truncated');
      }
    } catch (e) {
      const now = Date.now();
      if (now - b.lastWarnAt >= 10_000) {
        b.lastWarnAt = now;
        log.warn({ event: 'log_bound_failed', ...b.ctx, err: e }, 'bounding the worker log failed');
      }
    }
  }
}
