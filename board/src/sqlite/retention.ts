/**
 * Retention (issue 16): one bounded batch of finished tasks removed with their runs, events and
 * links, in one write. The batch is found by a seek of tasks_finished (finished tasks by their last
 * change), so a batch costs its own rows, not the board's; the caller sizes batches so that none
 * holds the write lock long (policies nextPruneBatchSize) and deletes the returned log files after it.
 * Task graph: a task that is the parent of a task not finished (waiting, ready, running, blocked)
 * is kept, so its child still shows what it waits for and reads its result; the links of a pruned
 * task go with it (both ways: its children, all finished, simply lose that parent).
 */
import type { PruneBatch, PruneQuery } from '../types.js';
import { pruneQuery } from '../validate.js';
import type { Conn } from './connection.js';
import type { Writer } from './tx.js';

export async function pruneBatch(c: Conn, w: Writer, query: PruneQuery): Promise<PruneBatch> {
  const q = pruneQuery(query);
  const statuses = JSON.stringify(q.statuses);
  let begun = 0;
  const out = await w.write(() => {
    begun = performance.now(); // the transaction holds the write lock from here (a wait for it is not counted)
    // Never a task whose run has not ended and been accounted (a cancelled task's worker may still
    // be stopping), nor one still holding a current run.
    const ids = c
      .all(
        `SELECT t.id FROM tasks t INDEXED BY tasks_finished
          WHERE t.status IN ('done', 'cancelled') AND t.status IN (SELECT value FROM json_each(?)) AND t.updated_at < ?
            AND t.current_run_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = t.id AND (r.exited_at IS NULL OR r.accounted_at IS NULL))
            AND NOT EXISTS (SELECT 1 FROM links l INDEXED BY links_parent JOIN tasks ch ON ch.id = l.child
                             WHERE l.parent = t.id AND ch.status NOT IN ('done', 'cancelled'))
          ORDER BY t.updated_at LIMIT ?`,
        statuses,
        q.before,
        q.limit,
      )
      .map((r) => String(r.id));
    if (ids.length === 0) return { tasks: 0, runs: 0, events: 0, links: 0, logPaths: [] as string[], full: false };
    const list = JSON.stringify(ids);
    const logPaths = c
      .all(`SELECT log_path FROM runs WHERE task_id IN (SELECT value FROM json_each(?)) AND log_path IS NOT NULL`, list)
      .map((r) => String(r.log_path));
    const events = c.run(`DELETE FROM events WHERE task_id IN (SELECT value FROM json_each(?))`, list).changes;
    const runs = c.run(`DELETE FROM runs WHERE task_id IN (SELECT value FROM json_each(?))`, list).changes;
    // Links both ways (a pruned task's parents, and its children: finished, or it would be kept).
    const links =
      c.run(`DELETE FROM links WHERE child IN (SELECT value FROM json_each(?))`, list).changes +
      c.run(`DELETE FROM links INDEXED BY links_parent WHERE parent IN (SELECT value FROM json_each(?))`, list).changes;
    const tasks = c.run(`DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?))`, list).changes;
    return { tasks, runs, events, links, logPaths, full: ids.length === q.limit };
  });
  return { tasks: out.tasks, runs: out.runs, events: out.events, links: out.links, logPaths: out.logPaths, holdMs: performance.now() - begun, more: out.full };
}
