/**
 * Accounting: once a run has ended and its processes are gone, the policy's decision (decided in
 * policies' decideAccounting) lands on its task here: done, requeued with the failure counter and
 * the backoff, or blocked at the limit. The counter and the requeue are one write, so the counter is
 * committed before the task can be claimed again; in a BoardTx it commits with the tick's writes.
 */
import type { AccountAction } from '../types.js';
import type { Conn } from './connection.js';
import { toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { releaseChildren } from './graph.js';

/** Apply several accounting decisions in ONE write. */
export async function applyAccountingBatch(c: Conn, w: Writer, items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void> {
  if (items.length === 0) return;
  await w.write(() => {
    for (const { runId, action } of items) accountOne(c, runId, action, now);
  });
}

/**
 * One run: its task gets the decision only while the run is still the task's current one and the
 * task is running (a task cancelled, done or blocked meanwhile keeps that state, and only lets go of
 * the run); the run is marked accounted either way, once.
 */
function accountOne(c: Conn, runId: string, action: AccountAction, now: number): void {
  const r = c.get('SELECT * FROM runs WHERE id = ?', runId);
  if (!r) return;
  const run = toRun(r);
  if (run.accountedAt !== null) return;
  const t = c.get('SELECT * FROM tasks WHERE id = ?', run.taskId);
  const task = t ? toTask(t) : null;
  const mine = task !== null && task.currentRunId === runId;
  if (mine && task.status === 'running' && action.action !== 'leave') {
    switch (action.action) {
      case 'done':
        c.run(
          `UPDATE tasks SET status = 'done', consecutive_failures = 0, last_error = NULL, current_run_id = NULL, updated_at = ? WHERE id = ?`,
          now,
          task.id,
        );
        c.event(task.id, runId, 'done', null, now);
        releaseChildren(c, task.id, now);
        break;
      case 'requeue':
        c.run(
          `UPDATE tasks SET status = 'ready', consecutive_failures = ?, not_before = ?, current_run_id = NULL,
                  last_error = CASE WHEN ? THEN ? ELSE last_error END, updated_at = ? WHERE id = ?`,
          action.consecutiveFailures,
          action.notBefore,
          action.counted ? 1 : 0,
          run.error ?? run.outcome,
          now,
          task.id,
        );
        c.event(
          task.id,
          runId,
          'requeued',
          { outcome: run.outcome, consecutive_failures: action.consecutiveFailures, not_before: action.notBefore, counted: action.counted },
          now,
        );
        break;
      case 'block':
        c.run(
          `UPDATE tasks SET status = 'blocked', consecutive_failures = ?, last_error = ?, current_run_id = NULL, updated_at = ? WHERE id = ?`,
          action.consecutiveFailures,
          action.reason,
          now,
          task.id,
        );
        c.event(task.id, runId, 'blocked', { reason: action.reason, consecutive_failures: action.consecutiveFailures }, now);
        break;
    }
  } else if (mine && task.status !== 'running') {
    c.run('UPDATE tasks SET current_run_id = NULL, updated_at = ? WHERE id = ?', now, task.id);
  }
  c.run('UPDATE runs SET accounted_at = ? WHERE id = ?', now, runId);
}
