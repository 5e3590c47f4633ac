/**
 * Scheduling and retention decisions (issue 16): durations as operators write them, a task's
 * not-before time from `--delay`/`--at`, and the size of the next retention batch. Pure: no I/O.
 */
import { ConfigError } from './config.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** The longest delay or retention a duration may say: 10 years. */
export const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/**
 * `30s`, `5m`, `2h`, `7d`, `1w`, `250ms`, `1.5h` (a bare number is seconds) as ms. `name` is what
 * the message blames (a flag or a field).
 */
export function parseDuration(name: string, raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(raw);
  if (!m) throw new ConfigError(`${name} must be a duration such as 30s, 5m, 2h or 7d, got ${JSON.stringify(raw)}`);
  const ms = Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!);
  if (!Number.isFinite(ms) || ms > MAX_DURATION_MS) throw new ConfigError(`${name} must be at most 10 years, got ${JSON.stringify(raw)}`);
  return ms;
}

/**
 * An ISO-8601 time with a date and a time of day and an offset (`2026-12-24T09:00:00Z`,
 * `2026-12-24T10:00:00+01:00`) as ms since the epoch. Without an offset the time would depend on the
 * machine's zone: refused.
 */
export function parseIsoTime(name: string, raw: string): number {
  const text = raw.trim();
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|([+-])(\d{2}):?(\d{2}))$/i.exec(text);
  if (!m) {
    throw new ConfigError(`${name} must be an ISO-8601 time with its offset, e.g. 2026-12-24T09:00:00Z, got ${JSON.stringify(raw)}`);
  }
  // Every field in its range, the day in its month: Date.parse takes 2026-02-30 for March 2.
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(Number) as [number, number, number, number, number, number];
  // (setUTCFullYear, not Date.UTC: that one reads years 0-99 as 1900-1999.)
  const daysInMonth = month >= 1 && month <= 12 ? new Date(new Date(0).setUTCFullYear(year, month, 0)).getUTCDate() : 0;
  const bad =
    month < 1 || month > 12 ? `month ${m[2]}` :
    day < 1 || day > daysInMonth ? `day ${m[3]} (${year}-${m[2]} has ${daysInMonth} days)` :
    hour > 23 ? `hour ${m[4]}` :
    minute > 59 ? `minute ${m[5]}` :
    second > 59 ? `second ${m[6]}` :
    m[9] !== undefined && (Number(m[10]) > 23 || Number(m[11]) > 59) ? `offset ${m[8]}` : null;
  if (bad) throw new ConfigError(`${name} is not a valid time: ${JSON.stringify(raw)} has no ${bad}`);
  const t = Date.parse(text);
  if (!Number.isFinite(t)) throw new ConfigError(`${name} is not a valid time: ${JSON.stringify(raw)}`);
  return t;
}

/** A task's not-before time from a delay (ms) or an absolute time: whichever was given (never both). */
export function notBeforeOf(now: number, delayMs: number | null, at: number | null): number {
  if (delayMs !== null && at !== null) throw new ConfigError('give --delay or --at, not both');
  if (delayMs !== null) return delayMs > 0 ? now + delayMs : 0;
  if (at !== null) return at > now ? at : 0;
  return 0;
}

/** Retention batches: the first size, and its bounds. */
export const PRUNE_BATCH = { first: 100, min: 10, max: 5000 } as const;
/** The most a retention batch may hold the write lock, ms (the figure `prune` prints). */
export const PRUNE_HOLD_LIMIT_MS = 50;
/**
 * What a batch is sized to hold the write lock, ms: well under the limit, because a worker's
 * heartbeat that arrives during a batch waits for all of it (heartbeat p99 target 20 ms).
 */
export const PRUNE_HOLD_TARGET_MS = 8;

/**
 * The next batch's size from the last one's: halved when it held the lock longer than the target
 * (a batch of tasks with many events is slow), grown by half when it took under a third of it.
 */
export function nextPruneBatchSize(size: number, holdMs: number): number {
  let next = size;
  if (holdMs > PRUNE_HOLD_TARGET_MS) next = Math.floor(size / 2);
  else if (holdMs < PRUNE_HOLD_TARGET_MS / 3) next = Math.floor(size * 1.5);
  return Math.max(PRUNE_BATCH.min, Math.min(PRUNE_BATCH.max, next));
}

/**
 * The pause after a batch before the next, ms: the write lock stays free at least three times as
 * long as the batch held it, and at least 30 ms, so that writers waiting in SQLite's busy handler
 * (it sleeps up to 25 ms between tries at first) get in between two batches instead of starving.
 */
export function prunePauseMs(holdMs: number): number {
  return Math.max(30, Math.ceil(3 * holdMs));
}

/**
 * Spawn slices. A spawn blocks the supervisor's event loop until the child has exec'd (posix_spawn
 * waits for it): a few ms on an idle host, 50-100 ms when the CPUs are saturated (a fleet of
 * workers starting at once). Claiming every free slot in one tick would then hold the loop for
 * seconds, and no report on the channel is answered meanwhile (workers time out and write the board
 * directly, which makes it worse). So a tick claims only as many tasks as it can spawn within
 * `budgetMs`, judged from the recent spawn durations, at least `min`; the next tick follows at once
 * while slots are still free (the reports that arrived meanwhile ride its transaction).
 */
export const SPAWN_SLICE = { budgetMs: 50, min: 2, first: 8 } as const;

/** How many tasks a tick claims: `free` slots, given the recent spawn duration (ms; null: none yet). */
export function spawnSlice(free: number, spawnMs: number | null): number {
  if (free <= 0) return 0;
  if (spawnMs === null) return Math.min(free, SPAWN_SLICE.first);
  const fit = Math.floor(SPAWN_SLICE.budgetMs / Math.max(0.1, spawnMs));
  return Math.min(free, Math.max(SPAWN_SLICE.min, fit));
}

/** The recent spawn duration after one more spawn took `ms` (moving average, weight 0.3 to the new one). */
export function nextSpawnMs(prev: number | null, ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) return prev ?? 0;
  return prev === null ? ms : prev * 0.7 + ms * 0.3;
}
