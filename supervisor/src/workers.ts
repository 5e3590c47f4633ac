/**
 * The supervised workers: registering and forgetting one, what an unreported end means, and the
 * last look for an adopted worker's remaining processes. Used by the reap, detect, reclaim and
 * dispatch steps.
 */
import { EXIT, EXIT_STATUS_UNKNOWN, STOP_REASON_TEXT, stopOutcome, type ReportMode, type ResultSource, type RunOutcome, type StopReason } from '@kanban-supervisor/policies';
import { scanEnv, type ExitRecord, type ProcessIdentity } from '@kanban-supervisor/reaper';
import { removePayloadFile } from './exit-skills.js';
import type { TickContext, Worker } from './state.js';

/** Start supervising a worker process (spawned by us or adopted). */
export function register(
  ctx: TickContext,
  runId: string,
  taskId: string,
  identity: ProcessIdentity,
  o: {
    own: boolean;
    graceSeconds: number | null;
    stopReason: StopReason | null;
    sigkillRecorded: boolean;
    logPath: string | null;
    skill?: string;
    report?: ReportMode;
    resultFrom?: ResultSource | null;
  },
): Worker {
  const w: Worker = {
    runId,
    taskId,
    skill: o.skill ?? 'unknown',
    identity,
    own: o.own,
    adoptedAt: o.own ? null : Date.now(),
    leaderExit: null,
    term: null,
    graceMs: Math.round((o.graceSeconds ?? ctx.cfg.reclaimGraceSeconds) * 1000),
    stopReason: o.stopReason,
    sigkillRecorded: o.sigkillRecorded,
    cleanup: null,
    rssBytes: null,
    cpuPercent: null,
    logPath: o.logPath,
    report: o.report ?? 'board',
    resultFrom: o.resultFrom ?? null,
  };
  ctx.state.workers.set(runId, w);
  ctx.state.byPid.set(identity.pid, runId);
  return w;
}

/** Stop supervising a worker whose processes are all gone. */
export function forget(ctx: TickContext, w: Worker): void {
  const { workers, byPid } = ctx.state;
  workers.delete(w.runId);
  if (byPid.get(w.identity.pid) === w.runId) byPid.delete(w.identity.pid);
  ctx.reaper.untrack(w.identity.pid);
  ctx.state.reports?.forget(w.runId);
  ctx.state.slots?.close(w.runId);
  if (w.report === 'exit') removePayloadFile(ctx, w.runId);
}

/** The outcome and error a run gets if its worker ended without reporting. */
export function unreportedError(w: Worker, exit: ExitRecord | null): { outcome: RunOutcome; error: string } {
  const how = exit
    ? exit.signal
      ? `was killed by signal ${exit.signal}`
      : `exited with code ${exit.exitCode}`
    : 'disappeared';
  if (w.stopReason) {
    return {
      outcome: stopOutcome(w.stopReason),
      error: `reclaimed (${STOP_REASON_TEXT[w.stopReason]}); worker ${how}`,
    };
  }
  if (w.report === 'exit' && !exit) {
    // An exit-code skill reports by its exit status alone, which only its parent learns: one that
    // ended while adopted (not our child) is abandoned, not counted (exit-skills.ts for the rest).
    return { outcome: 'abandoned', error: EXIT_STATUS_UNKNOWN };
  }
  if (exit && exit.signal === null && exit.exitCode === EXIT.tempFail) {
    // EX_TEMPFAIL: "try again later", as in the system this replaces. Not counted; retried after a backoff delay.
    return { outcome: 'deferred', error: `worker exited with code ${EXIT.tempFail} (EX_TEMPFAIL) without reporting: deferred, not counted` };
  }
  return { outcome: 'crashed', error: `worker ${how} without reporting an outcome` };
}

/**
 * An adopted worker's processes are not our descendants: before its run is declared gone, one
 * more look for processes that carry its run id (escapees that left after the adoption).
 */
export function adoptedRemains(ctx: TickContext, w: Worker): boolean {
  if (w.own) return false;
  const found = (runIdCarriers().get(w.runId) ?? []).filter((p) => !(p.pid === w.identity.pid && p.startTime === w.identity.startTime));
  if (found.length === 0) return false;
  ctx.reaper.addKnown(w.identity, found);
  return true;
}

let carriersOfTurn: Map<string, ProcessIdentity[]> | null = null;

/**
 * Live processes by the KANBAN_RUN_ID they carry: one /proc environ scan per turn of the event
 * loop, however many adopted workers end together (one scan each: 64 × 1,000 processes kept the
 * event loop busy for ~17 s after a restart). Dropped at the next turn.
 */
function runIdCarriers(): Map<string, ProcessIdentity[]> {
  if (!carriersOfTurn) {
    const m = new Map<string, ProcessIdentity[]>();
    for (const { id, env } of scanEnv(['KANBAN_RUN_ID'])) {
      const runId = env.KANBAN_RUN_ID!;
      let list = m.get(runId);
      if (!list) m.set(runId, (list = []));
      list.push(id);
    }
    carriersOfTurn = m;
    setImmediate(() => {
      if (carriersOfTurn === m) carriersOfTurn = null;
    });
  }
  return carriersOfTurn;
}
