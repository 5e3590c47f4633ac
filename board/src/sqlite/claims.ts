/**
 * Claims: the supervisor takes ready tasks (priority order) with a run and a fresh token each, and
 * blocks the ready tasks whose skill is gone. Both run every tick: their statements are HOT_SQL.
 */
import { newRunId, newToken } from '../ids.js';
import type { Claim } from '../types.js';
import type { Conn } from './connection.js';
import { HOT_SQL } from './hot-sql.js';
import { toRun, toSkill, toTask } from './rows.js';
import type { Writer } from './tx.js';

/**
 * Claim up to `max` runnable tasks in ONE write (one commit per tick, not per task). The claim
 * and the run row land together: a task is `running` only with its run, and one claimer wins.
 */
export async function claimBatch(c: Conn, w: Writer, max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]> {
  if (max <= 0) return [];
  return w.write(() => {
    const claims: Claim[] = [];
    const rows = c.all(HOT_SQL.claimReady, now, max);
    for (const t of rows) {
      const task = toTask(t);
      const skill = toSkill(c.get('SELECT * FROM skills WHERE name = ?', task.skill)!);
      const runId = newRunId();
      const token = newToken();
      const logPath = logPathFor(runId);
      c.run(
        `INSERT INTO runs (id, task_id, token, status, started_at, log_path) VALUES (?, ?, ?, 'starting', ?, ?)`,
        runId,
        task.id,
        token,
        now,
        logPath,
      );
      c.run(`UPDATE tasks SET status = 'running', current_run_id = ?, updated_at = ? WHERE id = ?`, runId, now, task.id);
      c.event(task.id, runId, 'claimed', { attempt: task.consecutiveFailures + 1 }, now);
      const run = toRun(c.get('SELECT * FROM runs WHERE id = ?', runId)!);
      claims.push({ task: { ...task, status: 'running', currentRunId: runId, updatedAt: now }, run, token, skill, readyAt: Math.max(task.updatedAt, task.notBefore) });
    }
    return claims;
  });
}

/** Block every ready task whose skill is not registered (they could never run); returns them. */
export async function blockUnknownSkillTasks(c: Conn, w: Writer, now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>> {
  // Read first: the common case (nothing to block) must not cost a write transaction every tick,
  // nor a scan of the ready queue: one index seek per distinct skill of the ready tasks.
  const unknown = await w.read(() => unknownReadySkills(c));
  if (unknown.length === 0) return [];
  return w.write(() => {
    const blocked: Array<{ taskId: string; skill: string; reason: string }> = [];
    for (const skill of unknownReadySkills(c)) {
      const reason = `skill ${JSON.stringify(skill)} is not registered on board ${c.path}`;
      const rows = c.all(HOT_SQL.readyTasksOfSkill, skill);
      for (const r of rows) {
        const taskId = String(r.id);
        c.run(`UPDATE tasks SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?`, reason, now, taskId);
        c.event(taskId, null, 'blocked', { reason }, now);
        blocked.push({ taskId, skill, reason });
      }
    }
    return blocked;
  });
}

/** The skills that ready tasks name but the board does not have (a loose scan of tasks_ready_skill). */
function unknownReadySkills(c: Conn): string[] {
  const unknown: string[] = [];
  let row = c.get(HOT_SQL.firstReadySkill);
  while (row) {
    const skill = String(row.skill);
    if (!c.get('SELECT 1 FROM skills WHERE name = ?', skill)) unknown.push(skill);
    row = c.get(HOT_SQL.nextReadySkill, skill);
  }
  return unknown;
}
