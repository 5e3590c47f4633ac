/**
 * The ranges of the per-skill and per-task limits: one table, used by the CLI (`skill add`, `add`,
 * `run` flags), the supervisor's configuration, the board's input checks and the worker runtime's
 * reading of KANBAN_RECLAIM_GRACE_SECONDS / KANBAN_HEARTBEAT_TIMEOUT_SECONDS. A value accepted
 * anywhere is accepted everywhere it travels to, so a stored limit can never make a worker refuse
 * to start. Pure: no I/O.
 */

export interface LimitRange {
  min: number;
  max: number;
  /** Whole numbers only. */
  integer: boolean;
  /** Unit of the value ('' for a count); the names of the flags and variables carry it. */
  unit: string;
}

const YEAR_SECONDS = 31_536_000;

export const LIMITS = {
  /** SIGTERM → SIGKILL grace of a reclaim (skill --reclaim-grace, RECLAIM_GRACE_SECONDS, KANBAN_RECLAIM_GRACE_SECONDS). */
  reclaimGraceSeconds: { min: 0, max: 86_400, integer: false, unit: 'seconds' },
  /** Stall limit, 0 = off (skill --heartbeat-timeout, HEARTBEAT_TIMEOUT_SECONDS, KANBAN_HEARTBEAT_TIMEOUT_SECONDS). */
  heartbeatTimeoutSeconds: { min: 0, max: YEAR_SECONDS, integer: false, unit: 'seconds' },
  /** Runtime limit of a run (skill and task --max-runtime, MAX_RUNTIME_SECONDS). */
  maxRuntimeSeconds: { min: 0.1, max: YEAR_SECONDS, integer: false, unit: 'seconds' },
  /** Memory limit of a worker's process group, 0 = off (skill --max-rss-mb, MAX_WORKER_RSS_MB). */
  maxRssMb: { min: 0, max: 16_777_216, integer: true, unit: 'MB' },
  /** Counted failures in a row before a task is blocked (task --max-retries, FAILURE_LIMIT). */
  failureLimit: { min: 1, max: 1000, integer: true, unit: '' },
  /** How long a deferred task waits (worker defer --seconds). */
  deferSeconds: { min: 0, max: YEAR_SECONDS, integer: false, unit: 'seconds' },
  /** Live workers of one skill at once (skill --max-concurrent). */
  maxConcurrent: { min: 1, max: 1_000_000, integer: true, unit: '' },
} as const satisfies Record<string, LimitRange>;

export type LimitName = keyof typeof LIMITS;

/** A task's priority (`add --priority`, a line's `priority`, the board's check): any whole number JavaScript holds exactly. */
export const PRIORITY_RANGE: LimitRange = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, integer: true, unit: '' };

/** "a number from 0 to 86400", "an integer from 1 to 1000": the words of the config parser's messages too. */
export function describeRange(r: LimitRange): string {
  return `${r.integer ? 'an integer' : 'a number'} from ${r.min} to ${r.max}`;
}

/** Null when `value` is inside `r`, else what is wrong with it ("must be …, got …"). */
export function limitProblem(value: unknown, r: LimitRange): string | null {
  const ok = typeof value === 'number' && Number.isFinite(value) && (!r.integer || Number.isInteger(value)) && value >= r.min && value <= r.max;
  return ok ? null : `must be ${describeRange(r)}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`;
}

/**
 * Read a limit from text the supervisor wrote (a worker's KANBAN_* variable): any number JavaScript
 * prints (`String(n)`, so `1e-7` too) inside the range. Returns the number or the problem.
 */
export function readLimit(raw: string, r: LimitRange): { value: number } | { problem: string } {
  const text = raw.trim();
  const n = text === '' ? NaN : Number(text);
  return limitProblem(n, r) === null ? { value: n } : { problem: `must be ${describeRange(r)}, got ${JSON.stringify(raw)}` };
}
