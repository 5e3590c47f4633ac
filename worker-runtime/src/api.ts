/**
 * What a skill's handler works with (runtime.ts runs it): its task, its context (heartbeat, event,
 * onShutdown, defer, the abort signal), its result, the options of `runWorker`, and the errors it
 * may see (WorkerStoppedError as the abort reason on a signal; DeferRequest from `ctx.defer()`).
 */
import type { Json, NotCurrentError } from '@kanban-supervisor/board/light';

/** What the handler sees of its task. */
export interface WorkerTask {
  id: string;
  title: string;
  skill: string;
  payload: Json;
}

/** Why the worker is stopping early: a signal, or the run was fenced out. */
export type StopReason = WorkerStoppedError | NotCurrentError;

export type ShutdownHook = (reason: StopReason) => unknown;

export interface WorkerContext {
  readonly task: WorkerTask;
  /** The results of the task's parents (task graph: `add --after`), by task id; empty without parents. */
  readonly parents: Readonly<Record<string, Json | null>>;
  readonly runId: string;
  /** Aborted on SIGTERM/SIGINT (reason: WorkerStoppedError) or when the run is fenced out (reason: NotCurrentError). */
  readonly signal: AbortSignal;
  /**
   * Record a heartbeat, with optional progress. Rejects with NotCurrentError when fenced out, and
   * BoardInputError for progress that is not JSON. A heartbeat the board cannot take (not writable,
   * busy, failing) is said on stderr and tried again later; it never rejects, never fails the run.
   */
  heartbeat(progress?: Json): Promise<void>;
  /** Append an event to the task's history. Rejects with NotCurrentError when fenced out. */
  event(kind: string, data?: Json): Promise<void>;
  /**
   * Register a hook that runs when the worker stops before its handler finished: on SIGTERM/SIGINT,
   * or after the handler settled once the run was fenced out. Hooks run concurrently, within the
   * shutdown budget derived from KANBAN_RECLAIM_GRACE_SECONDS; a second signal skips them.
   */
  onShutdown(fn: ShutdownHook): void;
  /**
   * End the run `deferred`: the task goes back to ready after `seconds`. Throws a DeferRequest to
   * end the handler (`return ctx.defer(60)` reads well); even if the handler swallows it, the run ends deferred.
   */
  defer(seconds: number, reason?: string): never;
}

export type WorkerResult = Json | undefined | void;
export type WorkerHandler = (ctx: WorkerContext) => WorkerResult | Promise<WorkerResult>;

export interface RunWorkerOptions {
  /** Automatic heartbeats while the handler runs (default true). */
  autoHeartbeat?: boolean;
  /** Override the automatic heartbeat interval (default: derived from KANBAN_HEARTBEAT_TIMEOUT_SECONDS). */
  heartbeatIntervalMs?: number;
  /** Environment to read KANBAN_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** The abort reason of `ctx.signal` when the worker got SIGTERM or SIGINT. */
export class WorkerStoppedError extends Error {
  override name = 'WorkerStoppedError';
  constructor(readonly signal: 'SIGTERM' | 'SIGINT') {
    super(`the worker received ${signal} and is stopping`);
  }
}

/** Thrown by `ctx.defer()`; the runtime turns it into a `deferred` report. */
export class DeferRequest extends Error {
  override name = 'DeferRequest';
  constructor(readonly seconds: number, readonly reason?: string) {
    super(`deferred for ${seconds} s${reason ? `: ${reason}` : ''}`);
  }
}
