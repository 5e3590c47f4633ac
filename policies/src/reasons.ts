/**
 * Why a supervisor stopped a run, and the exit statuses every command of this product uses: one
 * union and one table, used end to end (policies decide, the board stores, the CLIs print). Pure.
 */
import type { RunOutcome } from './decisions.js';

/**
 * Why the supervisor stopped a live run. The first five are reclaims (a decision of
 * `reclaimReason`); `abandoned` is a run left behind when the supervisor shut down.
 */
export const STOP_REASONS = ['timed_out', 'stalled', 'memory_exceeded', 'cancelled', 'hung_after_report', 'abandoned'] as const;
export type StopReason = (typeof STOP_REASONS)[number];

/** The reasons a policy decision reclaims a live run for. */
export type ReclaimReason = Exclude<StopReason, 'abandoned'>;

const STOP_REASON_SET: ReadonlySet<string> = new Set(STOP_REASONS);

export function isStopReason(s: unknown): s is StopReason {
  return typeof s === 'string' && STOP_REASON_SET.has(s);
}

/** How a stop reason reads in logs and `last_error`. */
export const STOP_REASON_TEXT: Readonly<Record<StopReason, string>> = {
  timed_out: 'max runtime exceeded',
  stalled: 'no heartbeat within the heartbeat timeout',
  memory_exceeded: 'memory limit exceeded',
  cancelled: 'task cancelled',
  abandoned: 'supervisor shut down',
  hung_after_report: 'worker did not exit after reporting',
};

/** The outcome of a stopped run whose worker did not report one. */
export function stopOutcome(reason: StopReason): RunOutcome {
  switch (reason) {
    case 'hung_after_report':
      return 'crashed';
    default:
      return reason;
  }
}

/**
 * Exit statuses of every command: the supervisor CLI (`kanban-supervisor …`), the worker CLI
 * (`kanban-supervisor worker …`) and a worker process run by the worker runtime.
 */
export const EXIT = {
  ok: 0,
  /** The command failed (a board error, a refused operation, a failed task handler). */
  failed: 1,
  /** Bad input: a flag, a variable, the board's path, a board this user may not use. */
  usage: 2,
  /** Worker: the run is no longer current (reclaimed, cancelled, ended): nothing was written. */
  notCurrent: 3,
  /** `run`: another supervisor owns the board. */
  boardOwned: 4,
  /** EX_TEMPFAIL: a worker that exits with it without reporting is deferred, not counted. */
  tempFail: 75,
  /** The same two statuses under the names a skill uses (`process.exit(EXIT.deferred)`), kept for skills written against 0.1. */
  completed: 0,
  deferred: 75,
  /** A worker stopped by SIGINT / SIGTERM (128 + signal number). */
  sigint: 130,
  sigterm: 143,
} as const;
export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];
