/**
 * Fix-ups keep the recovered board consistent and visible: a task referenced by salvaged runs or
 * events but itself lost gets a `blocked` placeholder task (so foreign keys hold and the loss
 * shows up in `list`); a `running` task whose run was lost is blocked (its worker may still be
 * alive, so it is not re-queued); a reference to a lost run is cleared. Each fix-up adds a
 * `recovery` event to the task and an entry to the report.
 */
import type { Db } from '../open.js';
import type { RecoverFixup } from './report.js';

function createTaskPlaceholders(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const missing = dst
    .prepare(
      `SELECT task_id AS id, min(at) AS first FROM (
         SELECT task_id, started_at AS at FROM runs UNION ALL SELECT task_id, at FROM events
       ) WHERE task_id NOT IN (SELECT id FROM tasks) GROUP BY task_id`,
    )
    .all() as Array<{ id: string; first: number | null }>;
  const created = dst.prepare(`SELECT data FROM events WHERE task_id = ? AND kind = 'created' ORDER BY id LIMIT 1`);
  const insert = dst.prepare(
    `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, last_error)
     VALUES (?, ?, ?, 'null', 'blocked', ?, ?, ?, ?)`,
  );
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, NULL, 'recovery', ?, ?)`);
  for (const m of missing) {
    let skill = '(unknown)';
    let priority = 0;
    try {
      const d = created.get(m.id) as { data: string | null } | undefined;
      const j = d?.data ? (JSON.parse(d.data) as { skill?: unknown; priority?: unknown }) : null;
      if (j && typeof j.skill === 'string') skill = j.skill;
      if (j && typeof j.priority === 'number' && Number.isSafeInteger(j.priority)) priority = j.priority;
    } catch {
      /* keep the defaults */
    }
    const reason = `task row lost in board recovery; rebuilt as a placeholder from its runs/events (payload and title lost). Recreate the task if it is still wanted`;
    insert.run(m.id, `(lost in recovery) ${m.id}`, skill, priority, m.first ?? now, now, reason);
    event.run(m.id, JSON.stringify({ action: 'placeholder', reason }), now);
    fixups.push({ taskId: m.id, action: 'placeholder', reason });
  }
}

function fixRunningTasks(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, ?, 'recovery', ?, ?)`);
  const orphanRunning = dst
    .prepare(`SELECT id, current_run_id AS run FROM tasks WHERE status = 'running' AND (current_run_id IS NULL OR current_run_id NOT IN (SELECT id FROM runs))`)
    .all() as Array<{ id: string; run: string | null }>;
  const block = dst.prepare(`UPDATE tasks SET status = 'blocked', current_run_id = NULL, last_error = ?, updated_at = ? WHERE id = ?`);
  for (const t of orphanRunning) {
    const reason = `its run ${t.run ?? '(none)'} was lost in board recovery; its worker may still be running. Check, then unblock to run it again`;
    block.run(reason, now, t.id);
    event.run(t.id, t.run, JSON.stringify({ action: 'blocked', reason }), now);
    fixups.push({ taskId: t.id, action: 'blocked', reason });
  }
  const dangling = dst
    .prepare(`SELECT id, current_run_id AS run FROM tasks WHERE status != 'running' AND current_run_id IS NOT NULL AND current_run_id NOT IN (SELECT id FROM runs)`)
    .all() as Array<{ id: string; run: string }>;
  const clear = dst.prepare(`UPDATE tasks SET current_run_id = NULL, updated_at = ? WHERE id = ?`);
  for (const t of dangling) {
    const reason = `its current run ${t.run} was lost in board recovery; the reference was cleared`;
    clear.run(now, t.id);
    event.run(t.id, t.run, JSON.stringify({ action: 'cleared_run', reason }), now);
    fixups.push({ taskId: t.id, action: 'cleared_run', reason });
  }
}

/** Phase: the fix-ups, in one transaction, appended to `fixups`. */
export function applyFixups(dst: Db, fixups: RecoverFixup[]): void {
  const now = Date.now();
  dst.exec('BEGIN IMMEDIATE');
  try {
    createTaskPlaceholders(dst, now, fixups);
    fixRunningTasks(dst, now, fixups);
    dst.exec('COMMIT');
  } catch (e) {
    if (dst.inTransaction) dst.exec('ROLLBACK');
    throw e;
  }
}
