/**
 * A scrape: the gauges read at scrape time are set from the supervisor's memory and from ONE read
 * of the board (tasks by status and skill), then the registry is rendered in Prometheus' text
 * format.
 *
 * The board read goes through `reads`, a handle of its own (the HTTP view's read-only connection),
 * never the supervisor's tick connection; its answer is cached for up to 1 s and shared by
 * concurrent scrapes, so scrapes cost the board at most one GROUP BY a second. The board's file
 * sizes come from fs.statSync on the paths: the board file is never opened through fs (closing a
 * descriptor of it would drop the SQLite connection's POSIX locks).
 */
import { statSync } from 'node:fs';
import type { BoardReads, TaskCount } from '@kanban-supervisor/board';
import { TASK_STATUSES, dispatchPaused } from '@kanban-supervisor/policies';
import type { TickContext } from '../state.js';
import type { HistoryPoint } from './history.js';

/** What a scrape reads from the board. */
export type MetricsReads = Pick<BoardReads, 'taskCountsBySkill'>;

/** The task counts are read again once older than this (ms). */
export const TASK_COUNTS_MAX_AGE_MS = 1000;

const cache = new WeakMap<object, { at: number; counts: Promise<TaskCount[]> }>();

/** The task counts, read at most once per TASK_COUNTS_MAX_AGE_MS (concurrent scrapes share one read). */
function taskCounts(ctx: TickContext, reads: MetricsReads, now: number): Promise<TaskCount[]> {
  const key = ctx.metrics;
  const c = cache.get(key);
  if (c && now - c.at < TASK_COUNTS_MAX_AGE_MS) return c.counts;
  const counts = reads.taskCountsBySkill();
  cache.set(key, { at: now, counts });
  // A failed read is not cached: the next scrape reads again.
  counts.catch(() => {
    if (cache.get(key)?.counts === counts) cache.delete(key);
  });
  return counts;
}

/** Size of a file, or null when it is missing (or unreadable). Never opens it. */
function sizeOf(path: string): number | null {
  try {
    return statSync(path, { throwIfNoEntry: false })?.size ?? null;
  } catch {
    return null;
  }
}

/** Set the scrape-time gauges (everything but the task counts) from the supervisor's memory. */
export function collectState(ctx: TickContext, now = Date.now()): void {
  const m = ctx.metrics;
  const s = ctx.state;
  m.poolCapacity.set(ctx.cfg.maxConcurrentWorkers);
  m.poolInUse.set(s.workers.size);
  m.quarantined.set(s.quarantine ? 1 : 0);
  m.stormPaused.set(dispatchPaused(s.storm, now) ? 1 : 0);
  const workers = new Map<string, number>();
  const rss = new Map<string, number>();
  for (const w of s.workers.values()) {
    workers.set(w.skill, (workers.get(w.skill) ?? 0) + 1);
    if (w.rssBytes !== null) rss.set(w.skill, (rss.get(w.skill) ?? 0) + w.rssBytes);
  }
  m.workers.reset();
  for (const [skill, n] of workers) m.workers.set({ skill }, n);
  m.workerRss.reset();
  for (const [skill, bytes] of rss) m.workerRss.set({ skill }, bytes);
  m.boardSize.reset();
  if (ctx.kind === 'sqlite') {
    const db = sizeOf(ctx.boardPath);
    const wal = sizeOf(`${ctx.boardPath}-wal`);
    if (db !== null) m.boardSize.set({ file: 'db' }, db);
    m.boardSize.set({ file: 'wal' }, wal ?? 0);
  }
}

/** Set the task gauges: every status of each skill with tasks (0 where it has none). */
function setTaskCounts(ctx: TickContext, counts: TaskCount[]): void {
  const g = ctx.metrics.tasks;
  g.reset();
  const skills = new Set(counts.map((c) => c.skill));
  for (const skill of skills) for (const status of TASK_STATUSES) g.set({ status, skill }, 0);
  for (const c of counts) g.set({ status: c.status, skill: c.skill }, c.count);
}

/** The metrics in Prometheus' text format (GET /metrics). */
export async function renderMetrics(ctx: TickContext, reads: MetricsReads): Promise<{ contentType: string; body: string }> {
  const m = ctx.metrics;
  m.enableDefaults();
  const now = Date.now();
  collectState(ctx, now);
  try {
    setTaskCounts(ctx, await taskCounts(ctx, reads, now));
  } catch (e) {
    m.tasks.reset();
    m.scrapeReadErrors.inc();
    ctx.log.warn({ event: 'metrics_read_failed', err: e }, 'metrics: reading the task counts failed');
  }
  // prom-client spells NaN "Nan" (e.g. the event loop lag before its first sample); the text
  // format's spelling is "NaN" (what strict parsers accept).
  const body = (await m.registry.metrics()).replace(/ Nan$/gm, ' NaN');
  return { contentType: m.registry.contentType, body };
}

/** The last hour, per minute, for the page's plots (GET /api/history). */
export function history(ctx: TickContext, now = Date.now()): HistoryPoint[] {
  return ctx.metrics.history.points(now);
}
