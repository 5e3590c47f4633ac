/**
 * Accounting: once a run has ended and its processes are gone, the policy's decision (decided in
 * policies' decideAccounting) lands on its task here: done, requeued with the failure counter and
 * the backoff, or blocked at the limit. The counter and the requeue are one write, so the counter is
 * committed before the task can be claimed again; in a BoardTx it commits with the tick's writes.
 * The run, then its task, are locked (FOR UPDATE) before the decision is applied: the same order
 * as the worker's fence, so the two never deadlock.
 */
import type { AccountAction } from '../types.js';
import type { Q } from './connection.js';
import { toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { releaseChildren } from './graph.js';

/** Apply several accounting decisions in ONE write. */
export async function applyAccountingBatch(w: Writer, items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void> {
  if (items.length === 0) return;
  await w.write(async (q) => {
    for (const { runId, action } of items) await accountOne(q, runId, action, now);
  });
}

/**
 * One run: its task gets the decision only while the run is still the task's current one and the
 * task is running (a task cancelled, done or blocked meanwhile keeps that state, and only lets go of
 * the run); the run is marked accounted either way, once.
 */
export async function accountOne(q: Q, runId: string, action: AccountAction, now: number): Promise<void> {
  const r = await q.get('SELECT * FROM runs WHERE id = $1 FOR UPDATE', [runId]);
  if (!r) return;
  const run = toRun(r);
  if (run.accountedAt !== null) return;
  const t = await q.get('SELECT * FROM tasks WHERE id = $1 FOR UPDATE', [run.taskId]);
  const task = t ? toTask(t) : null;
  const mine = task !== null && task.currentRunId === runId;
  if (mine && task.status === 'running' && action.action !== 'leave') {
    switch (action.action) {
      case 'done':
        await q.run(
          `UPDATE tasks SET status = 'done', consecutive_failures = 0, last_error = NULL, current_run_id = NULL, updated_at = $1 WHERE id = $2`,
          [now, task.id],
        );
        await q.event(task.id, runId, 'done', null, now);
        await releaseChildren(q, task.id, now);
        break;
      case 'requeue':
        await q.run(
          `UPDATE tasks SET status = 'ready', consecutive_failures = $1, not_before = $2, current_run_id = NULL,
                  last_error = CASE WHEN $3::boolean THEN $4 ELSE last_error END, updated_at = $5 WHERE id = $6`,
          [action.consecutiveFailures, action.notBefore, action.counted, run.error ?? run.outcome, now, task.id],
        );
        await q.event(
          task.id,
          runId,
          'requeued',
          { outcome: run.outcome, consecutive_failures: action.consecutiveFailures, not_before: action.notBefore, counted: action.counted },
          now,
        );
        await q.notify(); // ready again: another host's supervisor may take it
        break;
      case 'block':
        await q.run(
          `UPDATE tasks SET status = 'blocked', consecutive_failures = $1, last_error = $2, current_run_id = NULL, updated_at = $3 WHERE id = $4`,
          [action.consecutiveFailures, action.reason, now, task.id],
        );
        await q.event(task.id, runId, 'blocked', { reason: action.reason, consecutive_failures: action.consecutiveFailures }, now);
        break;
    }
  } else if (mine && task.status !== 'running') {
    await q.run('UPDATE tasks SET current_run_id = NULL, updated_at = $1 WHERE id = $2', [now, task.id]);
  }
  await q.run('UPDATE runs SET accounted_at = $1 WHERE id = $2', [now, runId]);
}
