/**
 * What the HTTP server sees of the supervisor: the view the supervisor builds (supervisor/src/http.ts)
 * and hands to startHttpServer. The server never touches the supervisor's own connection or state:
 * reads go through `reads` (a connection of their own), writes through `operator` (run by the
 * supervisor's loop between ticks, on a connection of their own).
 */
import type { BoardReads, OperatorOps } from '@kanban-supervisor/board';

/** One minute of the supervisor's recent history (the page's plots). */
export interface HistoryPoint {
  /** The minute's start, ms since the epoch (a multiple of 60,000). */
  at: number;
  /** Runs that ended completed in this minute (accounting committed). */
  done: number;
  /** Runs that ended with an outcome counted as a failure (failed, crashed, timed out…). */
  failed: number;
  /** The most pool slots in use at a tick of this minute. */
  poolUsed: number;
  /** The pool's size (MAX_CONCURRENT_WORKERS) at the last tick of this minute. */
  poolSize: number;
  /** Dispatch latency (ready → spawned) of this minute's spawns, ms; null without spawns. */
  dispatchP50Ms: number | null;
  dispatchP99Ms: number | null;
}

export interface Probe {
  ok: boolean;
  reason?: string;
}

/** The board reads the web side makes (through the supervisor's read-only handle). */
export type ViewReads = Pick<BoardReads, 'listTasksPage' | 'counts' | 'showTask' | 'getRun' | 'getTask' | 'eventsAfter'>;

export interface SupervisorView {
  /** The board as logs and messages name it (a PostgreSQL URL's password masked). */
  readonly boardLabel: string;
  /** /healthz: the tick loop is alive (its last tick younger than 3 tick intervals). */
  health(): Probe & { lastTickAgoMs: number };
  /** /readyz: this supervisor owns the board and dispatches (else: standby, quarantined, storm-paused, stopping, not owner). */
  readiness(): Probe;
  /** The same JSON as `kanban-supervisor status --json`. */
  status(): Promise<unknown>;
  /** Reads, on a connection of their own (SQLite: a second, query-only connection; PostgreSQL: a small pool). */
  readonly reads: ViewReads;
  /** Run a state-changing action: queued, run by the supervisor's loop between ticks on a connection of its own. */
  operator<T>(fn: (ops: OperatorOps) => Promise<T>): Promise<T>;
  /** A run's log file (null: none recorded, or no such run). */
  logPathOf(runId: string): Promise<string | null>;
  /** The Prometheus exposition. */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Per-minute points of the last hour. */
  history(): HistoryPoint[];
  /** Called after each committed tick, operator write and board change seen on the change feed; returns the unsubscribe. */
  onCommit(listener: () => void): () => void;
}
