/**
 * Retention (issue 16) on a PostgreSQL board, as on SQLite (../sqlite/retention.ts): one bounded
 * batch of finished tasks, found by a seek of tasks_finished, removed with their runs, events and
 * links in one transaction, never a parent of a task that is not finished. The tasks are locked
 * (FOR UPDATE SKIP LOCKED): an operator's retry of one of them either waits for the batch or the
 * batch skips it.
 *
 * Task graph (READ COMMITTED): whatever makes a task unfinished while it has a parent (an add with
 * --after, a link, a retry or unblock of the child) holds that parent FOR SHARE first (graph.ts),
 * so once this batch holds its tasks FOR UPDATE no such change can commit unseen: the children are
 * read again in a new statement (a fresh snapshot, taken after the locks) and a task that gained an
 * unfinished child in between is left out.
 */
import type { PruneBatch, PruneQuery } from '../types.js';
import { pruneQuery } from '../validate.js';
import type { Writer } from './tx.js';

export async function pruneBatch(w: Writer, query: PruneQuery): Promise<PruneBatch> {
  const q = pruneQuery(query);
  let begun = 0;
  const out = await w.write(async (db) => {
    begun = performance.now(); // the transaction holds the write lock from here (a wait for it is not counted)
    let ids = (
      await db.all(
        `SELECT t.id FROM tasks t
          WHERE t.status IN ('done', 'cancelled') AND t.status = ANY($1::text[]) AND t.updated_at < $2
            AND t.current_run_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = t.id AND (r.exited_at IS NULL OR r.accounted_at IS NULL))
            AND NOT EXISTS (SELECT 1 FROM links l JOIN tasks ch ON ch.id = l.child
                             WHERE l.parent = t.id AND ch.status NOT IN ('done', 'cancelled'))
          ORDER BY t.updated_at LIMIT $3
            FOR UPDATE OF t SKIP LOCKED`,
        [q.statuses, q.before, q.limit],
      )
    ).map((r) => String(r.id));
    const full = ids.length === q.limit;
    const held = new Set(
      ids.length === 0 ? [] : (
        await db.all(
          `SELECT DISTINCT l.parent FROM links l JOIN tasks ch ON ch.id = l.child
            WHERE l.parent = ANY($1::text[]) AND ch.status NOT IN ('done', 'cancelled')`,
          [ids],
        )
      ).map((r) => String(r.parent)),
    );
    if (held.size > 0) ids = ids.filter((id) => !held.has(id));
    if (ids.length === 0) return { tasks: 0, runs: 0, events: 0, links: 0, logPaths: [] as string[], full };
    const events = await db.run(`DELETE FROM events WHERE task_id = ANY($1::text[])`, [ids]);
    const deletedRuns = await db.all(`DELETE FROM runs WHERE task_id = ANY($1::text[]) RETURNING log_path`, [ids]);
    // Links both ways (a pruned task's parents, and its children: finished, or it would be kept).
    const links =
      (await db.run(`DELETE FROM links WHERE child = ANY($1::text[])`, [ids])) +
      (await db.run(`DELETE FROM links WHERE parent = ANY($1::text[])`, [ids]));
    const tasks = await db.run(`DELETE FROM tasks WHERE id = ANY($1::text[])`, [ids]);
    const logPaths = deletedRuns.filter((r) => r.log_path !== null && r.log_path !== undefined).map((r) => String(r.log_path));
    return { tasks, runs: deletedRuns.length, events, links, logPaths, full };
  });
  return { tasks: out.tasks, runs: out.runs, events: out.events, links: out.links, logPaths: out.logPaths, holdMs: performance.now() - begun, more: out.full };
}
