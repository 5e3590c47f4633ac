/**
 * Claims: the supervisor takes ready tasks (priority order) with a run and a fresh token each, and
 * blocks the ready tasks whose skill is gone. Both run every tick: their statements are PG_HOT_SQL.
 */
import { newRunId, newToken } from '../ids.js';
import type { Claim } from '../types.js';
import { PG_HOT_SQL } from './hot-sql.js';
import { toRun, toSkill, toTask, unprefix } from './rows.js';
import type { Writer } from './tx.js';

/**
 * Claim up to `max` runnable tasks in ONE statement (PG_HOT_SQL.claimBatch): the claim, the run
 * row and the event land together, and concurrent claimers skip each other's rows. The run ids,
 * tokens and log paths are made before the statement, `max` of them (`logPathFor` only names a
 * file); the ones no task took are never used. A `logPathFor` that throws claims nothing.
 * `supervisorId`: the claiming supervisor, recorded on each run (runs.supervisor_id).
 */
export async function claimBatch(w: Writer, max: number, now: number, logPathFor: (runId: string) => string, supervisorId: string | null = null): Promise<Claim[]> {
  if (max <= 0) return [];
  const n = Math.floor(max);
  const runIds = Array.from({ length: n }, () => newRunId());
  const tokens = runIds.map(() => newToken());
  const logPaths = runIds.map((id) => logPathFor(id));
  return w.write(async (q) => {
    const capped = await q.all(PG_HOT_SQL.lockCappedSkills);
    let rows;
    if (capped.length === 0) rows = await q.all(PG_HOT_SQL.claimBatch, [now, n, runIds, tokens, logPaths, now, supervisorId]);
    else {
      const chosen = (await q.all(PG_HOT_SQL.claimCandidates, [now, n])).map((r) => String(r.id));
      if (chosen.length === 0) return [];
      rows = await q.all(PG_HOT_SQL.claimChosen, [now, n, runIds, tokens, logPaths, now, supervisorId, chosen]);
    }
    return rows.map((r): Claim => {
      const task = toTask(r);
      const token = String(r.f_token);
      // The run as the statement inserted it: every other column is at its default.
      const run = toRun({ id: r.current_run_id, task_id: r.id, status: 'starting', started_at: now, log_path: r.f_log_path, stopped_on_request: 0 });
      return { task, run, token, skill: toSkill(unprefix(r, 's_')), readyAt: Number(r.f_ready_at) };
    });
  });
}

/** Block every ready task whose skill is not registered (they could never run); returns them. */
export async function blockUnknownSkillTasks(w: Writer, now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>> {
  // Read first: the common case (nothing to block) must not cost a write transaction every tick.
  const unknown = await w.read((q) => q.all(PG_HOT_SQL.unknownReadySkills));
  if (unknown.length === 0) return [];
  return w.write(async (q) => {
    const blocked: Array<{ taskId: string; skill: string; reason: string }> = [];
    for (const row of await q.all(PG_HOT_SQL.unknownReadySkills)) {
      const skill = String(row.skill);
      const reason = `skill ${JSON.stringify(skill)} is not registered on board ${q.path}`;
      for (const r of await q.all(PG_HOT_SQL.blockSkillTasks, [skill, reason, now])) blocked.push({ taskId: String(r.id), skill, reason });
    }
    return blocked;
  });
}
