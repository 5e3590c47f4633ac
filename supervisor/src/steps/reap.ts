/**
 * Step: reap. Collects the exits Node reported and the ends of adopted workers, from memory and
 * /proc; writes nothing to the board (what it observes is held in `state.heldObs`, written at the
 * accounting, so the tick's write lock is taken as late as possible). Also runs in quarantine.
 * Starts with the strays' termination and ends with the orphan scan (services/orphan-scan.ts).
 */
import { alive, groupEmpty, isGone, processTable, type ProcessIdentity } from '@kanban-supervisor/reaper';
import { reapStrays, scanOrphans } from '../services/orphan-scan.js';
import { exitObservation } from '../exit-skills.js';
import type { HeldObservation, TickContext, Worker } from '../state.js';
import { adoptedRemains, forget, unreportedError } from '../workers.js';

/** The grace strays get between their SIGTERM and SIGKILL (none when a stop is hurried). */
const STRAY_GRACE_MS = 5000;

export function reap(ctx: TickContext, now: number): void {
  const s = ctx.state;
  const { reaper, log } = ctx;
  if (s.strays.size) reapStrays(ctx, s.stopping?.hurry ? 0 : STRAY_GRACE_MS, now);
  const exits = s.pendingExits.concat(reaper.drainExits());
  s.pendingExits = [];
  const obs: HeldObservation[] = [];
  const gone: Worker[] = [];
  // Fast path: an empty process group is gone (escapees from the group re-parent to us, the
  // child subreaper, and are handled below); otherwise one /proc scan for every exit of this tick.
  let table: ReturnType<typeof processTable> | undefined;
  const goneNow = (id: ProcessIdentity) => (reaper.subreaperActive && groupEmpty(id.pgid) && !alive(id)) || isGone(id, (table ??= processTable()));
  for (const ex of exits) {
    const runId = s.byPid.get(ex.pid);
    const w = runId ? s.workers.get(runId) : undefined;
    if (!w) continue;
    w.leaderExit = ex;
    const isAllGone = goneNow(w.identity);
    if (w.report === 'exit' && !w.stopReason) {
      // An exit-code skill: its exit status is its report (settled with its log at the accounting).
      obs.push(exitObservation(w, ex, isAllGone));
    } else {
      const u = unreportedError(w, ex);
      obs.push({ runId: w.runId, at: ex.at, exitCode: ex.exitCode, signal: ex.signal, gone: isAllGone, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
    }
    if (isAllGone) gone.push(w);
    else w.cleanup = reaper.cleanupAfterExit(w.identity);
    log.info({ event: 'worker_exited', task: w.taskId, run: w.runId, workerPid: ex.pid, exitCode: ex.exitCode, signal: ex.signal }, 'worker exited');
  }
  for (const w of s.workers.values()) {
    if (obs.some((o) => o.runId === w.runId)) continue;
    if (w.leaderExit) {
      // The leader is gone; whatever it left in its group (or tree, or escapees) is being terminated.
      w.cleanup = reaper.cleanupAfterExit(w.identity);
      // An own worker whose group and tree are empty is gone: its escapees re-parent to us, the
      // child subreaper, and end as orphans. Without a subreaper (the portable backend) they go to
      // init: the run lasts until the cleanup has seen the last of its known escapees go.
      if ((w.cleanup.phase === 'gone' || (w.own && reaper.subreaperActive && isGone(w.identity))) && !adoptedRemains(ctx, w)) {
        const u = w.own ? null : unreportedError(w, null);
        obs.push({ runId: w.runId, at: now, gone: true, ...(u ? { outcomeIfUnreported: u.outcome, errorIfUnreported: u.error } : {}) });
        gone.push(w);
      }
    } else if (!w.own && !alive(w.identity)) {
      // Adopted worker: no exit status to collect; its outcome comes from its own report.
      // What it leaves (group, tree, escapees carrying its run id) is cleaned up first.
      log.info({ event: 'worker_exited', task: w.taskId, run: w.runId, workerPid: w.identity.pid, adopted: true }, 'adopted worker exited');
      if (reaper.liveMembers(w.identity).length === 0 && !adoptedRemains(ctx, w)) {
        const u = unreportedError(w, null);
        obs.push({ runId: w.runId, at: now, gone: true, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
        gone.push(w);
      } else {
        w.leaderExit = { pid: w.identity.pid, exitCode: null, signal: null, at: now };
        w.cleanup = reaper.cleanupAfterExit(w.identity);
      }
    }
  }
  for (const w of gone) forget(ctx, w);
  // They go on the board with the accounting (its transaction writes what is held first): the
  // tick's write lock is taken as late as possible, after the /proc work below and detect's reads,
  // so that workers waiting to write find it free more often (measured: lock held per tick halved).
  s.heldObs.push(...obs);
  scanOrphans(ctx, exits.length, now);
}
