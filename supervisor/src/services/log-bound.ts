/**
 * Log bounding: every live run's log is kept under LOG_MAX_BYTES (its head, one marker line, its
 * newest tail). A log that is being written is checked every LOG_CHECK_INTERVAL_MS; one found
 * unchanged LOG_QUIET_CHECKS times in a row is watched instead (reaper's watchFd: inotify on the
 * descriptor the supervisor holds, not on its name), and polled again from its first write on.
 * Every polled log is also checked at every tick, and every watched one at a tick at most every
 * WATCHED_LOG_CHECK_MS (a safety net, should a watch event be lost).
 */
import { closeSync, fstatSync } from 'node:fs';
import { boundLogFd, openLogForBounding, watchFd, type FdWatch } from '@kanban-supervisor/reaper';
import type { TickContext, Worker } from '../state.js';

/**
 * A log being written is checked against LOG_MAX_BYTES this often (one fstat, on a descriptor the
 * supervisor holds). A log exceeds the bound by at most what its processes write in one interval
 * (plus any stall of the supervisor's event loop): see the README for the figure measured at full
 * speed.
 */
export const LOG_CHECK_INTERVAL_MS = 20;

/**
 * Checks in a row that found a log unchanged before it is watched instead of polled (100 ms). A
 * quiet log then costs nothing until its next write, whose watch event puts it back on the
 * LOG_CHECK_INTERVAL_MS polling: 64 idle logs polled every 20 ms took 1 % of a core (3,200 fstat
 * calls a second and the timer's wake-ups) on the bench's 2-core VM.
 */
export const LOG_QUIET_CHECKS = 5;

/**
 * A watched log is also checked by a tick at most this often, ms. Its watch reports its first write
 * at once; this check only bounds a log whose watch event was lost. (Checking all 64 logs of the
 * bench at every tick was a tenth of its tick.)
 */
export const WATCHED_LOG_CHECK_MS = 5000;

/** Per run: the descriptor its log is bounded through (null when it was refused), counters, and how it is watched. */
interface Bound {
  fd: number | null;
  ctx: { task: string; run: string; workerPid: number };
  truncations: number;
  lastWarnAt: number;
  /** Its size at the last check (-1: unknown, e.g. just truncated). */
  size: number;
  /** Checks in a row that found it unchanged. */
  quiet: number;
  /** Its watch while it is quiet; null: it is polled every LOG_CHECK_INTERVAL_MS. */
  watch: FdWatch | null;
}

export class LogBound {
  private readonly bounds = new Map<string, Bound>();
  private timer: NodeJS.Timeout | null = null;
  /** When the last tick checked the watched logs too. */
  private watchedCheckedAt = -Infinity;

  constructor(private readonly ctx: TickContext) {}

  /**
   * Bound every run's log (at every tick; a watched one at most every WATCHED_LOG_CHECK_MS), for as long as the run is in `workers`, i.e. while any
   * process of its group lives, not only its leader. A run that left `workers` gets one last check
   * (what its processes wrote since the one before), then its descriptor is closed. Never throws.
   */
  boundLogs(mono = performance.now()): void {
    const { state, log } = this.ctx;
    try {
      // A monotonic clock: a wall clock stepped back must not skip the watched logs for that long.
      const watchedToo = mono - this.watchedCheckedAt >= WATCHED_LOG_CHECK_MS;
      if (watchedToo) this.watchedCheckedAt = mono;
      if (!state.stopped) for (const w of state.workers.values()) if (w.logPath && (watchedToo || !this.bounds.get(w.runId)?.watch)) this.boundLog(w);
      this.release();
      this.arm();
    } catch (e) {
      log.error({ event: 'log_bound_failed', err: e }, 'bounding worker logs failed');
    }
  }

  /**
   * Start bounding the logs of runs registered since the last call (the tick calls it after its
   * spawns): each is polled from its first moment, not from the next tick on. Never throws.
   */
  track(): void {
    const { state, log } = this.ctx;
    if (state.stopped) return;
    try {
      for (const w of state.workers.values()) if (w.logPath && !this.bounds.has(w.runId)) this.boundLog(w);
      this.arm();
    } catch (e) {
      log.error({ event: 'log_bound_failed', err: e }, 'bounding worker logs failed');
    }
  }

  /** How a run's log is bounded now (tests): polled, watched, or not at all. */
  mode(runId: string): 'polled' | 'watched' | null {
    const b = this.bounds.get(runId);
    if (!b || b.fd === null) return null;
    return b.watch ? 'watched' : 'polled';
  }

  /** The timer: check the logs being written; stop when there is none (all quiet and watched). */
  private poll(): void {
    try {
      this.release();
      for (const b of this.bounds.values()) if (b.fd !== null && !b.watch) this.check(b);
      this.arm();
    } catch (e) {
      this.ctx.log.error({ event: 'log_bound_failed', err: e }, 'bounding worker logs failed');
    }
  }

  /** Run the polling timer while a log is polled (and the supervisor runs), not otherwise. */
  private arm(): void {
    let polled = false;
    if (!this.ctx.state.stopped) {
      for (const b of this.bounds.values()) {
        if (b.fd !== null && !b.watch) {
          polled = true;
          break;
        }
      }
    }
    if (polled && !this.timer) {
      this.timer = setInterval(() => this.poll(), LOG_CHECK_INTERVAL_MS);
      this.timer.unref();
    } else if (!polled && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Runs that left `workers` (or all, once stopped): a last check, then their watch and descriptor closed. */
  private release(): void {
    const { state } = this.ctx;
    for (const [runId, b] of this.bounds) {
      if (!state.stopped && state.workers.has(runId)) continue;
      this.bounds.delete(runId);
      b.watch?.close();
      b.watch = null;
      if (b.fd !== null) {
        this.boundFd(b);
        try {
          closeSync(b.fd);
        } catch {
          /* closed already */
        }
      }
    }
  }

  /** Keep one run's log under LOG_MAX_BYTES. Its descriptor is opened once, without following a symlink, checked to be a regular file of ours with one link. */
  private boundLog(w: Worker): void {
    let b = this.bounds.get(w.runId);
    if (!b) {
      b = { fd: null, ctx: { task: w.taskId, run: w.runId, workerPid: w.identity.pid }, truncations: 0, lastWarnAt: 0, size: -1, quiet: 0, watch: null };
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
    if (b.fd !== null) this.check(b);
  }

  /**
   * Check one log; a change puts a watched log back on polling, LOG_QUIET_CHECKS checks without one
   * watch it (and a write between the last check and the watch is seen by one more fstat after it).
   */
  private check(b: Bound): void {
    const size = this.boundFd(b);
    const same = size !== null && size === b.size;
    b.size = size ?? -1;
    if (!same) {
      b.quiet = 0;
      b.watch?.close();
      b.watch = null;
      return;
    }
    if (b.watch || ++b.quiet < LOG_QUIET_CHECKS || this.ctx.state.stopped) return;
    const fd = b.fd!;
    const w = watchFd(fd, () => {
      // Its first write since: poll it again (checked now, then every LOG_CHECK_INTERVAL_MS).
      if (b.watch !== w) return;
      b.watch = null;
      b.quiet = 0;
      this.check(b);
      this.arm();
    });
    b.quiet = 0;
    if (!w) return; // no watch to be had (not Linux, inotify limits): it stays polled
    b.watch = w;
    try {
      if (fstatSync(fd).size === b.size) return;
    } catch {
      /* looked at by the next check */
    }
    w.close();
    b.watch = null;
  }

  /** One bounding of a log: its size as seen (null when it was just truncated, or could not be looked at). */
  private boundFd(b: Bound): number | null {
    const { cfg, log } = this.ctx;
    try {
      const r = boundLogFd(b.fd!, cfg.logMaxBytes, { boundName: `LOG_MAX_BYTES=${cfg.logMaxBytes}` });
      if (!r.truncated) return r.size;
      b.truncations++;
      const now = Date.now();
      // Once per run at first, then at most every 10 s (a flooding worker is truncated often).
      if (b.truncations === 1 || now - b.lastWarnAt >= 10_000) {
        b.lastWarnAt = now;
        log.warn({ event: 'log_truncated', ...b.ctx, bytes: r.size, kept: r.kept, dropped: r.dropped, truncations: b.truncations }, 'worker log truncated');
      }
      return null;
    } catch (e) {
      const now = Date.now();
      if (now - b.lastWarnAt >= 10_000) {
        b.lastWarnAt = now;
        log.warn({ event: 'log_bound_failed', ...b.ctx, err: e }, 'bounding the worker log failed');
      }
      return null;
    }
  }
}
