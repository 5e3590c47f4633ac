/**
 * Retention (issue 16) on a PostgreSQL board, as on SQLite (../sqlite/retention.ts): one bounded
 * batch of finished tasks, found by a seek of tasks_finished, removed with their runs and events in
 * one transaction. The tasks are locked (FOR UPDATE SKIP LOCKED): an operator's retry of one of
 * them either waits for the batch or the batch skips it.
 *
 * TODO(task graph, issue 16 "Dependencies"): once `task_links` exists, delete the removed tasks'
 * links in the same batch, and skip a task that is the parent of a task not finished.
 */
import type { PruneBatch, PruneQuery } from '../types.js';
import { pruneQuery } from '../validate.js';
import type { Writer } from './tx.js';

export async function pruneBatch(w: Writer, query: PruneQuery): Promise<PruneBatch> {
  const q = pruneQuery(query);
  let begun = 0;
  const out = await w.write(async (db) => {
    begun = performance.now(); // the transaction holds the write lock from here (a wait for it is not counted)
    const ids = (
      await db.all(
        `SELECT t.id FROM tasks t
          WHERE t.status IN ('done', 'cancelled') AND t.status = ANY($1::text[]) AND t.updated_at < $2
            AND t.current_run_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = t.id AND (r.exited_at IS NULL OR r.accounted_at IS NULL))
          ORDER BY t.updated_at LIMIT $3
            FOR UPDATE OF t SKIP LOCKED`,
        [q.statuses, q.before, q.limit],
      )
    ).map((r) => String(r.id));
    if (ids.length === 0) return { tasks: 0, runs: 0, events: 0, logPaths: [] as string[], full: false };
    const events = await db.run(`DELETE FROM events WHERE task_id = ANY($1::text[])`, [ids]);
    const deletedRuns = await db.all(`DELETE FROM runs WHERE task_id = ANY($1::text[]) RETURNING log_path`, [ids]);
    const tasks = await db.run(`DELETE FROM tasks WHERE id = ANY($1::text[])`, [ids]);
    const logPaths = deletedRuns.filter((r) => r.log_path !== null && r.log_path !== undefined).map((r) => String(r.log_path));
    return { tasks, runs: deletedRuns.length, events, logPaths, full: ids.length === q.limit };
  });
  return { tasks: out.tasks, runs: out.runs, events: out.events, logPaths: out.logPaths, holdMs: performance.now() - begun, more: out.full };
}
