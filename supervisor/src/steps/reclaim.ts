/**
 * Step: reclaim. A live run past its limits (runtime, heartbeat, memory), cancelled, hung after
 * reporting, or abandoned by a stopping supervisor is reclaimed: its fence is closed and committed
 * (beginReclaim, then commit) before the SIGTERM, so a reclaimed worker can no longer write. A
 * reclaim is a state machine across ticks, never a sleep: SIGTERM now, SIGKILL at the grace's end
 * (recorded and committed), and the run ends only once its whole process group is confirmed gone.
 *
 * Also runs in quarantine (`tx` null): signals go on from memory, nothing is written.
 */
import type { LiveRun } from '@kanban-supervisor/board';
import { effectiveLimit, heartbeatTimeoutFor, reclaimReason, STOP_REASON_TEXT, type StopReason } from '@kanban-supervisor/policies';
import type { TickContext, Worker } from '../state.js';
import type { TickTx } from '../tick-tx.js';
import { adoptedRemains, forget, unreportedError } from '../workers.js';

/** `live`: the board's live runs, read in this tick's transaction (none in quarantine). */
export async function reclaim(ctx: TickContext, tx: TickTx | null, live: LiveRun[], now: number): Promise<void> {
  const s = ctx.state;
  const { cfg, reaper, log } = ctx;
  const runs = new Map(live.map((r) => [r.id, r]));
  for (const w of s.workers.values()) {
    if (w.leaderExit) continue; // being cleaned up in reap
    if (w.term) {
      const grace = s.stopping?.hurry ? 0 : w.graceMs;
      w.term = reaper.terminate(w.identity, grace, now);
      if (w.term.phase === 'kill' && !w.sigkillRecorded) {
        if (tx && !s.quarantine) {
          await tx.recordSigkill(w.runId, w.term.sigkillAt ?? now);
          // Committed at once: the rest of this loop scans /proc for every other worker, and the
          // board's write lock must not be held across that.
          await tx.commit();
        }
        // Only once it is on the board (a failed write is retried at the next tick).
        w.sigkillRecorded = true;
        log.warn({ event: 'sigkill_sent', task: w.taskId, run: w.runId, workerPid: w.identity.pid, reason: w.stopReason }, 'SIGKILL sent');
      }
      if (w.term.phase === 'gone') confirmGone(ctx, w, now);
      continue;
    }
    const run = runs.get(w.runId);
    if (!run || !tx) continue;
    let reason: StopReason | null = s.stopping && !ctx.opts.detachOnExit && run.status !== 'ended' ? 'abandoned' : null;
    reason ??= reclaimReason(
      {
        startedAt: run.startedAt,
        heartbeatAt: run.heartbeatAt,
        maxRuntimeSeconds: effectiveLimit(run.taskMaxRuntimeSeconds, run.skillMaxRuntimeSeconds, cfg.maxRuntimeSeconds),
        heartbeatTimeoutSeconds: heartbeatTimeoutFor(run.skillReport, run.skillHeartbeatTimeoutSeconds, cfg.heartbeatTimeoutSeconds),
        maxRssMb: effectiveLimit(run.skillMaxRssMb, cfg.maxWorkerRssMb),
        rssBytes: w.rssBytes,
        taskCancelled: run.taskStatus === 'cancelled',
        endedAt: run.status === 'ended' ? run.endedAt : null,
        // Taken over by another supervisor while this one was away: its fence is closed, stop it now.
        leaseLost: run.stopReason === 'lease_lost' && run.sigtermAt === null,
        adoptedAt: w.adoptedAt,
        // Beats it heard whose time is not on the board yet (written every MEMORY_BEAT_WRITE_MS).
        heardAt: s.reports?.heardAt(w.runId) ?? null,
      },
      now,
    );
    if (!reason) continue;
    // Close the run's fence first, then signal: a reclaimed worker can no longer write.
    if (!(await tx.beginReclaim(w.runId, reason, now))) continue;
    await tx.commit(); // the fence is on the board before the signal goes
    ctx.metrics.reclaimed(reason);
    w.stopReason = reason;
    w.term = reaper.terminate(w.identity, s.stopping?.hurry ? 0 : w.graceMs, now);
    log.warn(
      { event: 'sigterm_sent', task: w.taskId, run: w.runId, workerPid: w.identity.pid, reason, graceMs: w.graceMs },
      `reclaiming worker: ${STOP_REASON_TEXT[reason]}`,
    );
  }
}

/** A reclaimed worker whose whole group is gone but whose exit Node has not reported (adopted). */
function confirmGone(ctx: TickContext, w: Worker, now: number): void {
  if (w.own && !w.leaderExit) return; // the exit event will come through reap with its status
  if (adoptedRemains(ctx, w)) return; // escapees: terminated with it on the next ticks
  const u = unreportedError(w, null);
  ctx.state.heldObs.push({ runId: w.runId, at: now, gone: true, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
  forget(ctx, w);
}
