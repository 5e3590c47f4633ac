/**
 * Step: dispatch. Fills the free slots: claims as many runnable tasks as there are free slots in
 * one write, commits the tick's transaction (the claims, and with them every earlier write of the
 * tick: exits, verdicts, failure counters) before any worker starts, then spawns them. What the
 * spawns record (pid, group, start time, boot id) goes into the next tick's transaction; a claim
 * that could not start is ended (and its task blocked, for a command that is not executable) in
 * this tick's transaction, written after every spawn of the batch.
 *
 * Nothing is claimed while stopping or quarantined, while the storm breaker pauses dispatch,
 * after a spawn failed for a fault of the supervisor's own (SPAWN_FAULT_HOLD_MS), while the run
 * logs' folder is not ours, or while workers could not open the board by path.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { dispatchPaused, nextSpawnMs, spawnSlice } from '@kanban-supervisor/policies';
import { isOwnDirectory, resolveExecutable } from '@kanban-supervisor/reaper';
import { payloadEnv, removePayloadFile } from '../exit-skills.js';
import { probeAccess } from '../services/access-probe.js';
import type { TickContext } from '../state.js';
import type { TickTx } from '../tick-tx.js';
import { workerEnv } from '../worker-env.js';
import { register } from '../workers.js';

/** Dispatch pauses this long after a spawn failed for a fault of the supervisor's own. */
const SPAWN_FAULT_HOLD_MS = 5000;

export async function dispatch(ctx: TickContext, tx: TickTx, now: number): Promise<void> {
  const s = ctx.state;
  const { cfg, log, reaper } = ctx;
  if (s.stopping || s.quarantine) return;
  if (dispatchPaused(s.storm, now)) return;
  if (now < s.spawnHeldUntil) return;
  if (!logDirReady(ctx)) return;
  const blocked = await tx.blockUnknownSkillTasks(now);
  for (const b of blocked) tx.logCommitted(() => log.warn({ event: 'task_blocked', task: b.taskId, run: null, workerPid: null, reason: b.reason }, 'task blocked'));
  const free = cfg.maxConcurrentWorkers - s.workers.size;
  if (free <= 0) return;
  // A worker could not open the board: hold the claims until it can (logged once by the probe).
  if (!probeAccess(ctx, now)) return;
  // One write claims as many tasks as there are free slots, or as the tick can spawn without
  // holding the event loop long (a slice, policies spawnSlice); the next tick follows at once.
  const slice = spawnSlice(free, s.spawnMs);
  const claims = await tx.claimBatch(slice, Date.now(), (runId) => join(ctx.logDir, `${runId}.log`));
  if (claims.length === 0) return;
  // The claims (with every other write of this tick) are on the board before any worker starts.
  await tx.commit();
  // The board writes for claims that could not start wait until every spawn of the batch is done:
  // the first of them takes the write lock, which must not be held while the others spawn.
  const unstarted: Array<() => Promise<void>> = [];
  const spawns = claims.map(async (claim) => {
    const { task, run, skill, token } = claim;
    const fields = { task: task.id, run: run.id, skill: skill.name };
    const env = workerEnv(ctx, skill, {
      taskId: task.id,
      runId: run.id,
      token,
      graceSeconds: skill.reclaimGraceSeconds ?? cfg.reclaimGraceSeconds,
      heartbeatTimeoutSeconds: skill.heartbeatTimeoutSeconds ?? cfg.heartbeatTimeoutSeconds,
      report: skill.report,
    });
    const cwd = skill.cwd ?? undefined;
    if (!resolveExecutable(skill.argv[0]!, env.PATH ?? '', cwd)) {
      const reason = `skill ${JSON.stringify(skill.name)}: command ${JSON.stringify(skill.argv[0])} is not an executable file${skill.argv[0]!.includes('/') ? '' : ' on PATH'}`;
      unstarted.push(async () => {
        await tx.endUnspawned(run.id, 'spawn_failed', reason, Date.now());
        await tx.applyAccountingBatch([{ runId: run.id, action: { action: 'block', consecutiveFailures: task.consecutiveFailures, reason } }], Date.now());
        tx.logCommitted(() => {
          log.warn({ event: 'task_blocked', ...fields, workerPid: null, reason }, 'task blocked before spawning');
          ctx.metrics.runsAccounted([{ outcome: 'spawn_failed', skill: skill.name }]); // accounted here, not by the account step
        });
      });
      return null;
    }
    let payloadFile = false;
    if (skill.report === 'exit') {
      // An exit-code worker's payload: in its environment, or a file next to its log when large.
      try {
        const vars = payloadEnv(ctx, run.id, task.payload);
        payloadFile = vars.KANBAN_PAYLOAD_FILE !== undefined;
        Object.assign(env, vars);
      } catch (e) {
        // The supervisor's own fault (its logs folder), as a log it cannot open: abandoned, not counted.
        const error = `the supervisor could not write the worker's payload file (not the task's fault, not counted): ${(e as Error).message}`;
        s.spawnHeldUntil = Date.now() + SPAWN_FAULT_HOLD_MS;
        unstarted.push(async () => {
          await tx.endUnspawned(run.id, 'abandoned', error, Date.now());
          tx.logCommitted(() => log.warn({ event: 'spawn_failed', ...fields, workerPid: null, code: (e as NodeJS.ErrnoException).code ?? 'EIO', fault: 'supervisor', error }, 'spawn failed'));
        });
        return null;
      }
    }
    // A reporting worker's heartbeat slot (services/beat-slots.ts), made before it starts.
    if (skill.report !== 'exit' && s.slots) {
      const slot = s.slots.create({ taskId: task.id, runId: run.id, token });
      if (slot) env.KANBAN_HEARTBEAT_SLOT = slot;
    }
    let res: Awaited<ReturnType<typeof reaper.spawn>>;
    try {
      res = await reaper.spawn({ argv: skill.argv, cwd, env, logPath: run.logPath! });
    } catch (e) {
      s.slots?.close(run.id); // no worker holds it
      throw e;
    }
    // The spawns of a slice run one after another (each holds the thread until its child exec'd):
    // a spawn's own duration is the reaper's measure, not the time until this line runs again (that
    // counts every spawn of the slice before it). A spawn that failed measured nothing.
    const spawnMs = res.ok ? res.durationMs : 0;
    if (res.ok) s.spawnMs = nextSpawnMs(s.spawnMs, spawnMs);
    if (!res.ok) {
      if (payloadFile) removePayloadFile(ctx, run.id);
      s.slots?.close(run.id);
      const ours = res.fault === 'supervisor';
      const error = ours
        ? `the supervisor could not start the worker (not the task's fault, not counted): ${res.message}`
        : `spawn of skill ${skill.name} failed: ${res.message}`;
      // The supervisor's own fault (its log folder, descriptors, memory): the run ends abandoned
      // (not counted, the task ready again) and dispatch pauses a few seconds instead of looping.
      if (ours) s.spawnHeldUntil = Date.now() + SPAWN_FAULT_HOLD_MS;
      unstarted.push(async () => {
        await tx.endUnspawned(run.id, ours ? 'abandoned' : 'spawn_failed', error, Date.now());
        tx.logCommitted(() => log.warn({ event: 'spawn_failed', ...fields, workerPid: null, code: res.code, fault: res.fault, error }, 'spawn failed'));
      });
      return null;
    }
    const id = res.identity;
    register(ctx, run.id, task.id, id, {
      own: true,
      graceSeconds: skill.reclaimGraceSeconds,
      stopReason: null,
      sigkillRecorded: false,
      logPath: run.logPath,
      skill: skill.name,
      report: skill.report,
      resultFrom: skill.resultFrom,
    });
    // The claim committed before the spawn: the latency and the spawn's duration are facts already.
    ctx.metrics.spawned(claim.readyAt, Date.now(), spawnMs);
    return { claim, id, fields };
  });
  const settled = await Promise.allSettled(spawns);
  const written = await Promise.allSettled(unstarted.map((write) => write()));
  const started = settled.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []));
  // The spawns (pid, pgid, start time, boot id) go into the next tick's transaction. Until then a
  // supervisor that dies finds these workers by their run id in /proc (detect).
  if (started.length) {
    s.pendingSpawns.push({
      at: Date.now(),
      items: started.map(({ claim, id }) => ({ runId: claim.run.id, info: { pid: id.pid, pgid: id.pgid, procStartTime: id.startTime, bootId: id.bootId } })),
    });
  }
  for (const { claim, id, fields } of started) {
    log.info({ event: 'spawned', ...fields, workerPid: id.pid, attempt: claim.task.consecutiveFailures + 1, log: claim.run.logPath }, 'worker spawned');
  }
  // A full slice committed and started while slots stay free: the loop ticks again at once. Only
  // then: a commit that failed (a full disk) or spawns that all failed wait for the next tick,
  // never a loop of ticks as fast as they fail.
  s.dispatchMore = slice < free && claims.length === slice && started.length > 0;
  const failed = [...settled, ...written].find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * The run logs' folder must be a real folder of ours before anything is claimed (a worker may have
 * removed it or put a file there): recreated when missing; otherwise dispatch waits, said once.
 */
function logDirReady(ctx: TickContext): boolean {
  const s = ctx.state;
  if (!existsSync(ctx.logDir)) {
    try {
      mkdirSync(ctx.logDir, { recursive: true, mode: 0o700 });
    } catch {
      /* judged below */
    }
  }
  const ok = isOwnDirectory(ctx.logDir);
  if (ok !== s.logDirOk) {
    s.logDirOk = ok;
    if (ok) ctx.log.info({ event: 'logs_usable', dir: ctx.logDir }, 'the run logs folder is usable again: dispatch resumes');
    else ctx.log.error({ event: 'logs_unusable', dir: ctx.logDir }, 'the run logs folder is not a folder of this user: dispatch waits');
  }
  return ok;
}
