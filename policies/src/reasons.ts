/**
 * Why a supervisor stopped a run, and the exit statuses every command of this product uses: one
 * union and one table, used end to end (policies decide, the board stores, the CLIs print). Pure.
 */
import type { RunOutcome } from './decisions.js';

/**
 * Why the supervisor stopped a live run. The first five are reclaims (a decision of
 * `reclaimReason`); `abandoned` is a run left behind when the supervisor shut down; `lease_lost`
 * (shared boards) is a run whose supervisor's lease expired: another supervisor closed its fence
 * and requeued its task, and its own supervisor, back, terminates its processes.
 */
export const STOP_REASONS = ['timed_out', 'stalled', 'memory_exceeded', 'cancelled', 'hung_after_report', 'abandoned', 'lease_lost'] as const;
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
  lease_lost: "its supervisor's lease expired: another supervisor took its task over",
};

/** The outcome of a stopped run whose worker did not report one. */
export function stopOutcome(reason: StopReason): RunOutcome {
  switch (reason) {
    case 'hung_after_report':
      return 'crashed';
    case 'lease_lost':
      return 'abandoned';
    default:
      return reason;
  }
}

/**
 * Whether a reclaim for `reason` may begin on this run (its fence closed, its SIGTERM recorded):
 * the processes must not be known gone and no reclaim may have begun. `hung_after_report` reclaims
 * only a run that has ended, every other reason only one that has not; `lease_lost` only a run
 * whose fence another supervisor closed when it took the run's task over (stop reason `lease_lost`
 * recorded, no SIGTERM yet).
 */
export function reclaimMayBegin(
  reason: StopReason,
  run: { status: string; stopReason: StopReason | null; sigtermAt: number | null; exitedAt: number | null },
): boolean {
  if (run.exitedAt !== null) return false;
  if (reason === 'lease_lost') return run.stopReason === 'lease_lost' && run.sigtermAt === null;
  if (run.stopReason !== null) return false;
  return (reason === 'hung_after_report') === (run.status === 'ended');
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
