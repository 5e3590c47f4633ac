/**
 * Step: detect. Live runs on the board that no worker of ours runs (inherited from a supervisor
 * that died or stopped detached) are adopted when their processes live, and judged when they are
 * gone: crashed, abandoned (never started, or the machine rebooted, or an exit-code skill's worker
 * whose exit status died with its supervisor), or ended as reported.
 *
 * detect never writes: everything it learns is held for the accounting (spawns found by run id in
 * `state.pendingSpawns`, then exits and verdicts in `state.heldObs`), so the board's write lock is
 * not held across its /proc work (the environ scan, one process-table scan per adopted worker:
 * seconds with many processes). Its log lines wait for the tick's commit.
 */
import type { ExitObservation, LiveRun, Run } from '@kanban-supervisor/board';
import { EXIT_STATUS_UNKNOWN, pastCrashGrace, stopOutcome, type RunOutcome } from '@kanban-supervisor/policies';
import { alive, findAllByEnv, isGone, readStat, type ProcessIdentity } from '@kanban-supervisor/reaper';
import type { SpawnBatch, TickContext, Worker } from '../state.js';
import type { TickTx } from '../tick-tx.js';
import { register } from '../workers.js';

/** A run with no recorded process and none found is looked for again this long before it ends abandoned. */
const UNSTARTED_CONFIRM_MS = 1000;

/** `live`: the board's live runs, read in this tick's transaction. */
export function detect(ctx: TickContext, tx: TickTx, live: LiveRun[], now: number): void {
  const s = ctx.state;
  const obs: ExitObservation[] = [];
  const spawns: SpawnBatch['items'] = [];
  // Runs whose end is observed but not on the board yet (written at the accounting, or waiting
  // for a retry after a failed write): not crashes to detect.
  const observed = new Set(s.heldObs.map((o) => o.runId));
  const inherited = live.filter((run) => !s.workers.has(run.id) && !observed.has(run.id));
  for (const id of s.envScanned) if (!inherited.some((r) => r.id === id)) s.envScanned.delete(id);
  for (const id of s.unstartedSeen.keys()) if (!inherited.some((r) => r.id === id)) s.unstartedSeen.delete(id);
  // One /proc environ scan finds every process that carries one of these runs' KANBAN_RUN_ID: the
  // worker of a run whose pid was never recorded (its supervisor died between spawn and record),
  // and escapees that left the worker's group and tree (setsid, double fork) before a restart.
  // Each inherited run is scanned for once; one with no process yet, again until it is decided.
  const toScan = inherited.filter((r) => !s.envScanned.has(r.id) || (r.pid === null && r.status !== 'ended'));
  const carriersOf = toScan.length ? findAllByEnv('KANBAN_RUN_ID', toScan.map((r) => r.id)) : new Map<string, ProcessIdentity[]>();
  for (const r of toScan) s.envScanned.add(r.id);
  for (const run of inherited) {
    const carriers = carriersOf.get(run.id) ?? [];
    let id = identityOf(run);
    if (!id) {
      // The worker leads its own session and group, and starts before anything it starts: if it
      // lives, it is the earliest carrier. An earliest carrier that does not lead its session is
      // a descendant (or an escapee) of a leader already gone.
      const first = [...carriers].sort((a, b) => a.startTime - b.startTime || a.pid - b.pid)[0];
      const leads = !!first && first.pid === first.pgid && readStat(first.pid)?.sid === first.pid;
      if (first && !leads) {
        // Its leader is gone before anyone recorded it: what carries its run id is cleaned up,
        // and the run ends with what it reported (or as a crash).
        const w = adopt(ctx, run, first, carriers.filter((c) => c !== first));
        w.leaderExit = { pid: first.pid, exitCode: null, signal: null, at: now };
        continue;
      }
      const found = first;
      if (found) {
        id = found;
        // Recorded with the accounting (the transaction writes held spawns first), not here: a
        // write here would take the board's write lock for the rest of the tick's /proc work.
        spawns.push({ runId: run.id, info: { pid: found.pid, pgid: found.pgid, procStartTime: found.startTime, bootId: found.bootId } });
      } else if (run.status === 'ended') {
        obs.push({ runId: run.id, at: now, gone: true });
        continue;
      } else {
        // No process was recorded and none carries the run id: the supervisor that claimed the
        // task died before starting its worker. Looked for twice, a second apart (a process
        // between fork and exec does not carry the id yet); then the run ends abandoned (not
        // counted against the task) and the task is ready again at once, with no crash grace.
        const seen = s.unstartedSeen.get(run.id);
        if (seen === undefined) s.unstartedSeen.set(run.id, now);
        if (seen === undefined || now - seen < UNSTARTED_CONFIRM_MS) continue;
        s.unstartedSeen.delete(run.id);
        const error = 'the worker was never started (its supervisor stopped between claiming the task and spawning it)';
        obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: error });
        tx.logCommitted(() => ctx.log.warn({ event: 'run_abandoned', task: run.taskId, run: run.id, workerPid: null, error }, 'run never started: abandoned (not counted)'));
        continue;
      }
    }
    const escapees = carriers.filter((c) => c.pid !== id!.pid);
    if (id.bootId === ctx.boot && alive(id)) {
      adopt(ctx, run, id, escapees);
      continue;
    }
    if (id.bootId === ctx.boot && (!isGone(id) || escapees.length > 0)) {
      // Leader gone but part of its group, its tree or its escapees lives on: adopt it so that
      // cleanup finishes the job.
      const w = adopt(ctx, run, id, escapees);
      w.leaderExit = { pid: id.pid, exitCode: null, signal: null, at: now };
      continue;
    }
    if (id.bootId !== ctx.boot) {
      obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: 'the machine rebooted under the run' });
      continue;
    }
    if (run.status === 'ended') {
      // It reported, and its processes are gone: only the exit is left to record.
      obs.push({ runId: run.id, at: now, gone: true });
      continue;
    }
    if (!pastCrashGrace(run.startedAt, now, ctx.cfg.crashGraceSeconds)) continue;
    // An exit-code skill's worker reports by its exit status, which only its parent (a supervisor
    // now gone) could learn: its run is abandoned, not counted, and the task runs again.
    const exitSkill = run.skillReport === 'exit' && !run.stopReason;
    const error = exitSkill ? EXIT_STATUS_UNKNOWN : `worker pid ${id.pid} is gone (or a zombie, or its pid was reused) without reporting an outcome`;
    const outcome: RunOutcome = run.stopReason ? stopOutcome(run.stopReason) : exitSkill ? 'abandoned' : 'crashed';
    obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: outcome, errorIfUnreported: error });
    tx.logCommitted(() => ctx.log.warn({ event: 'crash_detected', task: run.taskId, run: run.id, workerPid: run.pid, outcome, error }, `run ${outcome}`));
  }
  if (spawns.length) s.pendingSpawns.push({ at: now, items: spawns });
  s.heldObs.push(...obs);
}

function identityOf(run: Run): ProcessIdentity | null {
  if (run.pid === null || run.procStartTime === null || run.bootId === null) return null;
  return { pid: run.pid, pgid: run.pgid ?? run.pid, startTime: run.procStartTime, bootId: run.bootId };
}

/** Supervise a worker we did not spawn; a reclaim its previous supervisor began is resumed. */
function adopt(ctx: TickContext, run: LiveRun, id: ProcessIdentity, escapees: ProcessIdentity[] = []): Worker {
  const { reaper } = ctx;
  reaper.track(id);
  // Processes that left the worker's group and tree but carry its run id are its own.
  if (escapees.length) reaper.addKnown(id, escapees);
  const w = register(ctx, run.id, run.taskId, id, {
    own: false,
    graceSeconds: run.skillReclaimGraceSeconds,
    stopReason: run.stopReason,
    sigkillRecorded: run.sigkillAt !== null,
    logPath: run.logPath,
    skill: run.taskSkill,
    report: run.skillReport,
  });
  // Its heartbeat slot, when it has one: its beats keep reaching the board through this supervisor.
  if (run.skillReport !== 'exit' && run.stopReason === null) ctx.state.slots?.adopt({ taskId: run.taskId, runId: run.id, token: run.token });
  if (run.stopReason !== null && run.sigtermAt !== null) {
    // Its reclaim had begun under the previous supervisor: resume it where it stood (SIGTERM
    // again, SIGKILL at the original SIGTERM time + grace, or at once if that has passed).
    reaper.resumeTermination(id, run.sigtermAt, run.sigkillAt);
    w.term = { pid: id.pid, phase: run.sigkillAt === null ? 'term' : 'kill', sigtermAt: run.sigtermAt, sigkillAt: run.sigkillAt, remaining: [] };
  }
  ctx.log.info(
    { event: 'adopted', task: run.taskId, run: run.id, workerPid: id.pid, escapees: escapees.map((e) => e.pid), reclaiming: run.stopReason },
    run.stopReason ? 'adopted a worker being reclaimed: resuming its reclaim' : 'adopted a live worker',
  );
  return w;
}
