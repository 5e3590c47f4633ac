/**
 * Pure decisions of the supervisor: no clock reads, no randomness of their own
 * (callers pass `now` and a random source), no I/O.
 */
import type { ReclaimReason } from './reasons.js';
import { SLOT_ACK_WAIT_MS } from './beat-slot.js';

export const RUN_OUTCOMES = [
  'completed',
  'failed',
  'crashed',
  'spawn_failed',
  'timed_out',
  'stalled',
  'memory_exceeded',
  'cancelled',
  'deferred',
  'abandoned',
] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

/** `waiting`: a task whose parents (the task graph) are not all done yet; it becomes `ready` when the last one is. */
export const TASK_STATUSES = ['waiting', 'ready', 'running', 'done', 'blocked', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Outcomes the worker (or its skill) is to blame for: they count toward the failure limit. */
const COUNTED: ReadonlySet<RunOutcome> = new Set<RunOutcome>([
  'failed',
  'crashed',
  'spawn_failed',
  'timed_out',
  'stalled',
  'memory_exceeded',
]);

export function countsAsFailure(outcome: RunOutcome): boolean {
  return COUNTED.has(outcome);
}

export interface BackoffPolicy {
  baseSeconds: number;
  factor: number;
  maxSeconds: number;
  /** Fraction of the delay that is randomised, e.g. 0.2 → ±10 %. */
  jitter?: number;
}

/**
 * Delay before try n+1 after the n-th consecutive failure (n >= 1):
 * base · factor^(n-1), capped at max, with symmetric jitter. `random` is in [0, 1).
 */
export function retryDelayMs(failures: number, p: BackoffPolicy, random: number = 0.5): number {
  const n = Math.max(1, Math.floor(failures));
  const raw = p.baseSeconds * Math.pow(p.factor, n - 1);
  const capped = Math.min(raw, p.maxSeconds);
  const j = p.jitter ?? 0.2;
  const scaled = capped * (1 - j / 2 + j * Math.min(Math.max(random, 0), 1));
  return Math.round(Math.min(scaled, p.maxSeconds) * 1000);
}

/** The failure limit that applies to a task: its own max_retries wins over the global one. */
export function failureLimitFor(taskMaxRetries: number | null | undefined, globalLimit: number): number {
  return taskMaxRetries != null && taskMaxRetries >= 0 ? Math.max(1, taskMaxRetries) : globalLimit;
}

export type AccountingDecision =
  | { action: 'done'; consecutiveFailures: 0 }
  | { action: 'requeue'; consecutiveFailures: number; notBefore: number; counted: boolean }
  | { action: 'block'; consecutiveFailures: number; reason: string }
  | { action: 'leave' };

export interface AccountInput {
  outcome: RunOutcome;
  consecutiveFailures: number;
  taskMaxRetries: number | null;
  taskStatus: TaskStatus;
  error: string | null;
  /** For `deferred`: when the worker asked to be retried. */
  deferUntil: number | null;
  now: number;
  random: number;
}

/** What accounting reads of an ended run and its task (structural: the board's Run and Task fit). */
export interface AccountedRun {
  id: string;
  outcome: RunOutcome | null;
  error: string | null;
  deferUntil: number | null;
}
export interface AccountedTask {
  status: TaskStatus;
  consecutiveFailures: number;
  maxRetries: number | null;
  currentRunId: string | null;
}

/**
 * The input of decideAccounting for a run that ended and its task. A run with no outcome is a
 * crash; a task that no longer points at the run was moved on by someone else (decided: leave).
 */
export function accountInput(run: AccountedRun, task: AccountedTask, now: number, random: number): AccountInput {
  return {
    outcome: run.outcome ?? 'crashed',
    consecutiveFailures: task.consecutiveFailures,
    taskMaxRetries: task.maxRetries,
    taskStatus: task.currentRunId === run.id ? task.status : 'cancelled',
    error: run.error,
    deferUntil: run.deferUntil,
    now,
    random,
  };
}

export interface AccountPolicy {
  failureLimit: number;
  backoff: BackoffPolicy;
}

/** What to do with a task once its run has ended and its processes are gone. */
export function decideAccounting(input: AccountInput, policy: AccountPolicy): AccountingDecision {
  // A task cancelled, done or blocked by someone else keeps that state.
  if (input.taskStatus !== 'running') return { action: 'leave' };
  const { outcome } = input;
  if (outcome === 'completed') return { action: 'done', consecutiveFailures: 0 };
  if (outcome === 'deferred') {
    return {
      action: 'requeue',
      consecutiveFailures: input.consecutiveFailures,
      // A defer with no time of its own (a worker that exited 75): one backoff step, not counted.
      notBefore: input.deferUntil ?? input.now + retryDelayMs(1, policy.backoff, input.random),
      counted: false,
    };
  }
  if (!countsAsFailure(outcome)) {
    // cancelled (task not cancelled though: treat as not counted), abandoned
    return { action: 'requeue', consecutiveFailures: input.consecutiveFailures, notBefore: input.now, counted: false };
  }
  const failures = input.consecutiveFailures + 1;
  const limit = failureLimitFor(input.taskMaxRetries, policy.failureLimit);
  if (failures >= limit) {
    const why = input.error ? `: ${input.error}` : '';
    return {
      action: 'block',
      consecutiveFailures: failures,
      reason: `${outcome} ${failures} time${failures === 1 ? '' : 's'} in a row (limit ${limit})${why}`,
    };
  }
  return {
    action: 'requeue',
    consecutiveFailures: failures,
    notBefore: input.now + retryDelayMs(failures, policy.backoff, input.random),
    counted: true,
  };
}


export interface LiveRunView {
  startedAt: number;
  heartbeatAt: number | null;
  /** Effective limits, seconds; 0 or null = off. */
  maxRuntimeSeconds: number | null;
  heartbeatTimeoutSeconds: number | null;
  maxRssMb: number | null;
  rssBytes: number | null;
  taskCancelled: boolean;
  /** Set when the run already ended (the worker reported) but its process lives on. */
  endedAt: number | null;
  /** Shared boards: another supervisor took the run over (its fence closed, stop reason lease_lost) and no SIGTERM was sent yet. */
  leaseLost?: boolean;
  /**
   * When this supervisor adopted the run's worker (null: it spawned it). Counts as a heartbeat: the
   * previous supervisor may have answered the worker's last beats from memory and died before it
   * wrote their time (at most MEMORY_BEAT_WRITE_MS of them), so a live worker is never judged
   * stalled on the board's time alone right after a restart.
   */
  adoptedAt?: number | null;
  /**
   * The latest heartbeat of the run this supervisor heard and vouched for (answered from memory or
   * read in the worker's slot), whose time reaches the board up to MEMORY_BEAT_WRITE_MS later
   * (null: none). Counts as a heartbeat: the worker beat then.
   */
  heardAt?: number | null;
}

/** Seconds a worker may linger after it reported its outcome before it is reclaimed. */
export const EXIT_AFTER_REPORT_SECONDS = 10;

/** Whether a live run must be reclaimed now, and why. First matching reason wins. */
export function reclaimReason(run: LiveRunView, now: number): ReclaimReason | null {
  if (run.leaseLost) return 'lease_lost';
  if (run.endedAt != null) {
    return now - run.endedAt >= EXIT_AFTER_REPORT_SECONDS * 1000 ? 'hung_after_report' : null;
  }
  if (run.taskCancelled) return 'cancelled';
  if (run.maxRuntimeSeconds && now - run.startedAt >= run.maxRuntimeSeconds * 1000) return 'timed_out';
  if (run.heartbeatTimeoutSeconds) {
    // A fresh run has not heartbeated yet: its start counts as the first beat (its adoption too).
    const last = Math.max(run.heartbeatAt ?? 0, run.startedAt, run.adoptedAt ?? 0, run.heardAt ?? 0);
    if (now - last >= run.heartbeatTimeoutSeconds * 1000) return 'stalled';
  }
  if (run.maxRssMb && run.rssBytes != null && run.rssBytes > run.maxRssMb * 1024 * 1024) return 'memory_exceeded';
  return null;
}

/** When the SIGKILL is due for a reclaim that sent SIGTERM at `sigtermAt`. */
export function killDeadline(sigtermAt: number, graceSeconds: number): number {
  return sigtermAt + Math.round(graceSeconds * 1000);
}

/** Pick the first non-null of a per-task, per-skill and global value (seconds). */
export function effectiveLimit(...values: Array<number | null | undefined>): number | null {
  for (const v of values) if (v != null) return v;
  return null;
}

/**
 * Whether a run that looks dead is old enough to be judged crashed.
 * Younger runs may still be starting (the pid was not recorded yet, or /proc lags).
 */
export function pastCrashGrace(startedAt: number, now: number, crashGraceSeconds: number): boolean {
  return now - startedAt >= crashGraceSeconds * 1000;
}

/**
 * How long a worker whose run was fenced out (its handler aborted, its hooks run within the
 * shutdown budget) waits for the SIGTERM that usually follows before it exits 3 on its own.
 */
export const FENCED_SIGNAL_WAIT_MS = 1500;

/**
 * How long a worker waits for the report channel's answer before it takes another path, ms (the
 * worker runtimes' channel timeout; docs/worker-protocol.md). A heartbeat not answered in that time
 * is dropped and the next one goes to the board directly, so a worker whose supervisor is stuck
 * still learns within about one more heartbeat that its run was fenced out.
 */
export const REPORT_ANSWER_TIMEOUT_MS = 5000;

/**
 * Shared boards: when a supervisor takes over the runs of another whose lease expired, the tasks
 * are claimable again only after this delay, the time a fenced worker still running on the lost
 * host needs to stop by itself: its next automatic heartbeat is refused (one heartbeat interval;
 * through the report channel of a supervisor that is stuck, a beat waits REPORT_ANSWER_TIMEOUT_MS
 * for nothing and the next goes to the board directly), it runs its shutdown hooks (within the grace), waits for a SIGTERM that does not come
 * (FENCED_SIGNAL_WAIT_MS) and exits 3; plus a margin. A beat in the worker's heartbeat slot is
 * reported once it was not acknowledged within SLOT_ACK_WAIT_MS (policies beat-slot.ts), which
 * the delay counts too. A worker that never heartbeats is only
 * stopped by its own supervisor coming back (or its host going down): give such skills a
 * heartbeat timeout on shared boards.
 */
export function takeoverRequeueDelayMs(heartbeatTimeoutSeconds: number | null, graceSeconds: number): number {
  // Two heartbeat intervals: a beat sent just before the fence closed passes, and timers run late on a busy host.
  return 2 * heartbeatIntervalMs(heartbeatTimeoutSeconds) + SLOT_ACK_WAIT_MS + REPORT_ANSWER_TIMEOUT_MS + Math.round(Math.max(0, graceSeconds) * 1000) + FENCED_SIGNAL_WAIT_MS + 1000;
}

/** How often the supervisor polls between ticks while a slot is free or it is stopping, ms (another process's commit may be a task to dispatch at once; exits to collect). */
export const DISPATCH_POLL_MS = 25;

/**
 * How often it polls while only an event stream follows the board (a full pool, a page open), ms:
 * other processes' commits reach the stream within this; the supervisor's own commits go to it
 * after each tick without waiting. Slower than DISPATCH_POLL_MS because a timer's wake-ups are what
 * a poll costs (a 25 ms one: about half a percent of a core on the bench's VM) and a person
 * watching a page does not see 25 ms from 200.
 */
export const WATCH_POLL_MS = 200;

/**
 * The supervisor's poll period now, ms, or null for no poll at all: a full pool with nothing
 * watching sleeps between ticks (its workers' exits wake it by themselves: SIGCHLD). `dispatchMs`:
 * the dispatch period (DISPATCH_POLL_MS unless configured); the watch period is never quicker.
 */
export function pollPeriodMs(o: { stopped: boolean; stopping: boolean; freeSlot: boolean; watched: boolean }, dispatchMs = DISPATCH_POLL_MS): number | null {
  if (o.stopped) return null;
  if (o.stopping || o.freeSlot) return dispatchMs;
  return o.watched ? Math.max(dispatchMs, WATCH_POLL_MS) : null;
}

/**
 * How often the supervisor writes the times of the bare heartbeats it answered from memory (and of
 * those it read in heartbeat slots) on the board, ms: all runs' together, with the first
 * transaction once this long passed since the last time, not with every tick. 64 workers at 1 Hz
 * were 64 fenced writes and a commit with its fsync every second; now a tick between two such
 * writes has none of them. The supervisor's own verdicts use the beats it heard (LiveRunView
 * heardAt); what lags is the board's time as other processes read it (`status` from the CLI,
 * another supervisor after a restart, which counts its adoption as a heartbeat).
 */
export const MEMORY_BEAT_WRITE_MS = 5000;

/**
 * How long after the supervisor's last tick commit (and, on a shared board, its last lease
 * renewal) it may still answer a run's bare heartbeat from memory, ms: two ticks and a second,
 * and on a shared board at most half the lease. A supervisor whose ticks stop committing (a stuck
 * board, a lost lease) stops answering from memory well before its lease can expire: its workers'
 * beats go through a transaction again, and a worker whose run was taken over learns it as
 * takeoverRequeueDelayMs counts on.
 */
export function memoryBeatFreshMs(tickIntervalMs: number, leaseMs: number | null): number {
  const fresh = 2 * tickIntervalMs + 1000;
  return leaseMs === null ? fresh : Math.min(fresh, Math.floor(leaseMs / 2));
}

/**
 * Whether the supervisor may answer a bare heartbeat (no progress) of a run whose credentials a
 * committed heartbeat already proved from memory, its time written within MEMORY_BEAT_WRITE_MS:
 * the run's worker is live and not being stopped, the supervisor is neither stopping nor
 * quarantined, and its ticks (and lease) committed recently (memoryBeatFreshMs). Otherwise the
 * beat goes through a transaction, fenced, and is answered once that committed. Every time here
 * (now, tickCommittedAt, lease.renewedAt) is on a monotonic clock (performance.now()): on the wall
 * clock, a step back while the tick is stuck kept an old commit "recent" for as long as the step.
 */
export function heartbeatFromMemory(o: {
  now: number;
  workerLive: boolean;
  stopping: boolean;
  quarantined: boolean;
  tickIntervalMs: number;
  /** When a tick transaction last committed, monotonic ms (null: never). */
  tickCommittedAt: number | null;
  /** Shared board: the lease, ms, and when it was last renewed (null: never); null on a board of one host. */
  lease: { ms: number; renewedAt: number | null } | null;
}): boolean {
  if (!o.workerLive || o.stopping || o.quarantined) return false;
  const fresh = memoryBeatFreshMs(o.tickIntervalMs, o.lease?.ms ?? null);
  if (o.tickCommittedAt === null || o.now - o.tickCommittedAt > fresh) return false;
  return o.lease === null || (o.lease.renewedAt !== null && o.now - o.lease.renewedAt <= fresh);
}

/** Interval between automatic worker heartbeats for a heartbeat timeout (seconds). */
export function heartbeatIntervalMs(heartbeatTimeoutSeconds: number | null): number {
  if (!heartbeatTimeoutSeconds || heartbeatTimeoutSeconds <= 0) return 30_000;
  return Math.max(100, Math.min(30_000, Math.floor((heartbeatTimeoutSeconds * 1000) / 3)));
}

/**
 * Time a worker keeps for its shutdown hooks out of the announced grace: keep a margin
 * (a quarter of the grace, at least 250 ms, at most 5 s) for closing the database.
 */
export function shutdownBudgetMs(graceSeconds: number): number {
  const grace = Math.max(0, graceSeconds * 1000);
  const margin = Math.min(5000, Math.max(250, grace / 4));
  return Math.max(0, Math.floor(grace - margin));
}

/** Delay before the n-th re-probe (n >= 0) of a quarantined board: first, doubling, capped at 30 min. */
export function quarantineProbeDelayMs(attempt: number, firstSeconds: number): number {
  return Math.round(Math.min(firstSeconds * Math.pow(2, Math.max(0, attempt)), 1800) * 1000);
}

/**
 * Waiting at start for a PostgreSQL board whose server cannot be reached (a transient failure:
 * board classifyStartFailure): 0.5 s before the second attempt, doubling up to 10 s; a warning at
 * the first failure, then at most every 30 s.
 */
export const BOARD_CONNECT_RETRY = { firstMs: 500, maxMs: 10_000, warnEveryMs: 30_000 } as const;

/** Delay after the n-th failed attempt (n >= 1) to reach the board at start. */
export function boardConnectDelayMs(failures: number): number {
  const n = Math.max(1, Math.floor(failures));
  return Math.min(BOARD_CONNECT_RETRY.firstMs * Math.pow(2, n - 1), BOARD_CONNECT_RETRY.maxMs);
}

/** Whether a failed attempt to reach the board at start is warned about: the first, then one per 30 s. */
export function warnUnreachable(lastWarnAt: number | null, now: number): boolean {
  return lastWarnAt === null || now - lastWarnAt >= BOARD_CONNECT_RETRY.warnEveryMs;
}
