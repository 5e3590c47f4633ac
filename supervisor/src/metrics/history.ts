/**
 * The supervisor's recent history for the page's plots: one point per minute over the last hour
 * (runs done and failed, pool use, dispatch latency p50/p99), in a ring buffer of 60 minutes.
 * Pure aggregation in memory (no I/O, no clock of its own: every call takes `now`); nothing here
 * decides anything, so it lives with the metrics, not in policies.
 */

/** One minute of history: the shape the HTTP view serves (web/src/view.ts), defined there once. */
import type { HistoryPoint } from '@kanban-supervisor/web';
export type { HistoryPoint };

export const MINUTE_MS = 60_000;
/** Minutes kept (the last hour). */
export const HISTORY_MINUTES = 60;
/** Latencies kept per minute for its quantiles (beyond it, a uniform sample: reservoir sampling). */
export const LATENCY_SAMPLES = 2048;

interface Slot {
  minute: number;
  done: number;
  failed: number;
  poolUsed: number;
  poolSize: number;
  latencies: number[];
  /** Latencies seen this minute (≥ latencies.length once the reservoir is full). */
  seen: number;
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantileOf(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

export class MinuteHistory {
  private readonly slots: Array<Slot | null> = new Array<Slot | null>(HISTORY_MINUTES).fill(null);

  constructor(private readonly random: () => number = Math.random) {}

  /** The slot of `now`'s minute (a slot an hour old is reused). */
  private slot(now: number): Slot {
    const minute = Math.floor(now / MINUTE_MS);
    const i = ((minute % HISTORY_MINUTES) + HISTORY_MINUTES) % HISTORY_MINUTES;
    let s = this.slots[i];
    if (!s || s.minute !== minute) {
      s = { minute, done: 0, failed: 0, poolUsed: 0, poolSize: 0, latencies: [], seen: 0 };
      this.slots[i] = s;
    }
    return s;
  }

  addRuns(done: number, failed: number, now: number): void {
    if (done === 0 && failed === 0) return;
    const s = this.slot(now);
    s.done += done;
    s.failed += failed;
  }

  addPool(used: number, size: number, now: number): void {
    const s = this.slot(now);
    s.poolUsed = Math.max(s.poolUsed, used);
    s.poolSize = size;
  }

  addDispatch(latencyMs: number, now: number): void {
    const s = this.slot(now);
    s.seen++;
    if (s.latencies.length < LATENCY_SAMPLES) s.latencies.push(latencyMs);
    else {
      const j = Math.floor(this.random() * s.seen);
      if (j < LATENCY_SAMPLES) s.latencies[j] = latencyMs;
    }
  }

  /**
   * The points of the last hour up to `now`'s minute, oldest first: one per minute, minutes with
   * nothing recorded included (zeros, no latency), none before the first minute recorded.
   */
  points(now: number): HistoryPoint[] {
    const last = Math.floor(now / MINUTE_MS);
    const first = last - HISTORY_MINUTES + 1;
    const byMinute = new Map<number, Slot>();
    for (const s of this.slots) if (s && s.minute >= first && s.minute <= last) byMinute.set(s.minute, s);
    if (byMinute.size === 0) return [];
    const start = Math.min(...byMinute.keys());
    const out: HistoryPoint[] = [];
    for (let m = start; m <= last; m++) {
      const s = byMinute.get(m);
      const sorted = s ? [...s.latencies].sort((a, b) => a - b) : [];
      out.push({
        at: m * MINUTE_MS,
        done: s?.done ?? 0,
        failed: s?.failed ?? 0,
        poolUsed: s?.poolUsed ?? 0,
        poolSize: s?.poolSize ?? 0,
        dispatchP50Ms: roundMs(quantileOf(sorted, 0.5)),
        dispatchP99Ms: roundMs(quantileOf(sorted, 0.99)),
      });
    }
    return out;
  }
}

function roundMs(v: number | null): number | null {
  return v === null ? null : Math.round(v * 10) / 10;
}
