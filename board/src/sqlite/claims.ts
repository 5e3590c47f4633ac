/**
 * Claims: the supervisor takes ready tasks (priority order) with a run and a fresh token each, and
 * blocks the ready tasks whose skill is gone. Both run every tick: their statements are HOT_SQL.
 */
import { newRunId, newToken } from '../ids.js';
import type { Claim } from '../types.js';
import type { Conn } from './connection.js';
import { HOT_SQL } from './hot-sql.js';
import { toRun, toSkill, toTask, type Row } from './rows.js';
import type { Writer } from './tx.js';

/**
 * Claim up to `max` runnable tasks in ONE write (one commit per tick, not per task). The claim
 * and the run row land together: a task is `running` only with its run, and one claimer wins.
 */
export async function claimBatch(c: Conn, w: Writer, max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]> {
  if (max <= 0) return [];
  return w.write(() => {
    const claims: Claim[] = [];
    const capped = c.all(HOT_SQL.cappedSkills);
    const rows = capped.length === 0 ? c.all(HOT_SQL.claimReady, now, max) : cappedCandidates(c, capped, now, max);
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

/**
 * The claim with per-skill caps (some skill has one): each registered skill with ready tasks and
 * room (its cap minus its live runs; the batch size for an uncapped skill) gives its first tasks
 * in claim order by one seek of tasks_ready_skill_order, and the batch is the first `max` of
 * those in claim order. A full skill is never walked: its backlog, however long and whatever its
 * priority, costs nothing and holds nothing back. The cost is one seek per skill with ready
 * tasks (a loose scan of tasks_ready_skill) plus the live runs (the pool's size).
 */
function cappedCandidates(c: Conn, capped: Row[], now: number, max: number): Row[] {
  const caps = new Map(capped.map((r) => [String(r.name), Number(r.max_concurrent)]));
  const live = new Map<string, number>();
  for (const r of c.all(HOT_SQL.liveSkills)) live.set(String(r.skill), (live.get(String(r.skill)) ?? 0) + 1);
  const candidates: Row[] = [];
  let row = c.get(HOT_SQL.firstReadySkill);
  while (row) {
    const skill = String(row.skill);
    const cap = caps.get(skill);
    const room = Math.min(max, cap === undefined ? max : cap - (live.get(skill) ?? 0));
    if (room > 0 && (cap !== undefined || c.get('SELECT 1 FROM skills WHERE name = ?', skill))) {
      candidates.push(...c.all(HOT_SQL.readyOfSkill, skill, now, room));
    }
    row = c.get(HOT_SQL.nextReadySkill, skill);
  }
  return candidates.sort(claimOrder).slice(0, max);
}

/** Claim order: priority (highest first), then age, then id (tasks_ready's order). */
function claimOrder(a: Row, b: Row): number {
  const pa = Number(a.priority);
  const pb = Number(b.priority);
  if (pa !== pb) return pb - pa;
  const ca = Number(a.created_at);
  const cb = Number(b.created_at);
  if (ca !== cb) return ca - cb;
  const ia = String(a.id);
  const ib = String(b.id);
  return ia < ib ? -1 : ia > ib ? 1 : 0;
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
