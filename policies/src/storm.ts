/**
 * Pool-level storm breaker: when many different tasks fail within a short window
 * (a broken environment, a full disk), dispatch pauses with backoff instead of
 * burning through every task's failure budget.
 */
export interface StormPolicy {
  /** Distinct failing tasks within the window that trip the breaker. */
  distinctTasks: number;
  windowMs: number;
  basePauseMs: number;
  maxPauseMs: number;
}

export const DEFAULT_STORM: StormPolicy = { distinctTasks: 8, windowMs: 10_000, basePauseMs: 5_000, maxPauseMs: 300_000 };

export interface StormState {
  failures: ReadonlyArray<{ taskId: string; at: number }>;
  pausedUntil: number;
  trips: number;
}

export const initialStorm: StormState = { failures: [], pausedUntil: 0, trips: 0 };

/** Record a counted failure; returns the new state and whether it tripped the breaker. */
export function recordFailure(s: StormState, taskId: string, now: number, p: StormPolicy): { state: StormState; tripped: boolean } {
  const failures = [...s.failures.filter((f) => now - f.at < p.windowMs), { taskId, at: now }];
  const distinct = new Set(failures.map((f) => f.taskId)).size;
  if (distinct >= p.distinctTasks && now >= s.pausedUntil) {
    const pause = Math.min(p.maxPauseMs, p.basePauseMs * Math.pow(2, s.trips));
    return { state: { failures: [], pausedUntil: now + pause, trips: s.trips + 1 }, tripped: true };
  }
  return { state: { ...s, failures }, tripped: false };
}

/** A success anywhere resets the escalation (not a running pause). */
export function recordSuccess(s: StormState): StormState {
  return s.trips === 0 && s.failures.length === 0 ? s : { ...s, failures: [], trips: 0 };
}

export function dispatchPaused(s: StormState, now: number): boolean {
  return now < s.pausedUntil;
}
