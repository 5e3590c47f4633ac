/**
 * Tasks: the operator's writes (create, cancel, block, unblock, retry), each its own transaction,
 * and the reads of tasks (one task, listings, a task's history, counts). Claims are in claims.ts.
 * A write that reads a task to decide locks its row first (FOR UPDATE), as SQLite's single writer
 * would serialise it; a write that makes a task runnable (created, unblocked, retried, cancelled)
 * notifies the board's channel, so another host's supervisor wakes at once.
 */
import type { TaskStatus } from '@kanban-supervisor/policies';
import { TASK_STATUSES } from '@kanban-supervisor/policies';
import { BoardError, BoardInputError } from '../errors.js';
import { newTaskId } from '../ids.js';
import type { AddedTask, BoardCounts, Task, TaskCount, TaskDetail, TaskInput } from '../types.js';
import { PG_HOT_SQL } from './hot-sql.js';
import { blockReason, createdData, placed, taskFilter, validTasks, type ValidTask } from '../validate.js';
import type { Q } from './connection.js';
import { toEvent, toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { boundedJsonSql } from '../view-sql.js';
import { hasUnfinishedParent, insertLinks, lockParents, parentsStatus, relatives } from './graph.js';

export async function createTask(w: Writer, input: TaskInput): Promise<Task> {
  return (await createTasks(w, [input]))[0]!.task;
}

/**
 * Add tasks in one transaction, all or nothing. A key already on the board (or earlier in
 * `inputs`) returns that task, `created: false`. The unique index tasks_key decides between
 * concurrent adds of one key: the second INSERT waits for the first transaction, then does nothing
 * (ON CONFLICT DO NOTHING), and the next statement reads the task the first one committed.
 */
export async function createTasks(w: Writer, inputs: TaskInput[]): Promise<AddedTask[]> {
  const valid = validTasks(inputs);
  if (valid.length === 0) return [];
  const now = Date.now();
  return w.write(async (q) => {
    const known = new Set<string>();
    for (const t of valid) {
      if (known.has(t.skill)) continue;
      // FOR KEY SHARE: the skill cannot be removed before these tasks are committed.
      if (!(await q.get('SELECT 1 FROM skills WHERE name = $1 FOR KEY SHARE', [t.skill]))) {
        const names = (await q.all('SELECT name FROM skills ORDER BY name')).map((r) => String(r.name));
        const where = valid.length > 1 ? `tasks[${valid.indexOf(t)}]: ` : '';
        throw new BoardInputError(
          `${where}unknown skill ${JSON.stringify(t.skill)} on board ${q.path}; registered: ${names.length ? names.join(', ') : '(none)'}`,
        );
      }
      known.add(t.skill);
    }
    const out: AddedTask[] = [];
    for (const t of valid) out.push(await placed(valid, t, () => insertTask(q, t, now)));
    if (out.some((a) => a.created)) await q.notify();
    return out;
  });
}

async function insertTask(q: Q, t: ValidTask, now: number): Promise<AddedTask> {
  // A key already on the board: that task, nothing added (no links either). The INSERT's ON
  // CONFLICT below still decides between concurrent adds of one key.
  if (t.key !== null) {
    const existing = await q.get('SELECT * FROM tasks WHERE key = $1', [t.key]);
    if (existing) return { task: toTask(existing), created: false };
  }
  const status = await parentsStatus(q, t.after);
  for (let i = 0; ; i++) {
    const row = await q.get(
      `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, max_retries, max_runtime_seconds, key)
       VALUES ($1, $2, $3, $4, $11, $5, $6, $6, $7, $8, $9, $10)
       ON CONFLICT DO NOTHING RETURNING *`,
      [newTaskId(), t.title, t.skill, t.payload, t.priority, now, t.notBefore, t.maxRetries, t.maxRuntimeSeconds, t.key, status],
    );
    if (row) {
      const task = toTask(row);
      await insertLinks(q, task.id, t.after, now);
      await q.event(task.id, null, 'created', { ...createdData(t), ...(t.after.length ? { after: t.after, status } : {}) }, now);
      return { task, created: true };
    }
    if (t.key !== null) {
      const existing = await q.get('SELECT * FROM tasks WHERE key = $1', [t.key]);
      if (existing) return { task: toTask(existing), created: false };
    }
    if (i > 10) throw new BoardError('could not allocate a unique task id');
  }
}

export async function getTask(w: Writer, id: string): Promise<Task | null> {
  return w.read(async (q) => {
    const r = await q.get('SELECT * FROM tasks WHERE id = $1', [id]);
    return r ? toTask(r) : null;
  });
}

export async function listTasks(w: Writer, filter: { status?: TaskStatus; skill?: string; limit?: number } = {}): Promise<Task[]> {
  const f = taskFilter(filter);
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.status) where.push(`status = $${params.push(f.status)}`);
  if (f.skill !== undefined) where.push(`skill = $${params.push(f.skill)}`);
  const sql = `SELECT * FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT $${params.push(f.limit)}`;
  return w.read(async (q) => (await q.all(sql, params)).map(toTask));
}

/** A task with its runs and its last 1,000 events. */
export async function showTask(w: Writer, id: string, boundedEvents = false): Promise<TaskDetail | null> {
  const data = boundedEvents ? boundedJsonSql('data') : 'data';
  return w.read(async (q) => {
    const t = await q.get('SELECT * FROM tasks WHERE id = $1', [id]);
    if (!t) return null;
    const runs = (await q.all('SELECT * FROM runs WHERE task_id = $1 ORDER BY started_at, id', [id])).map((r) => toRun(r));
    const events = (await q.all(`SELECT * FROM (SELECT id, task_id, run_id, kind, ${data} AS data, at FROM events WHERE task_id = $1 ORDER BY id DESC LIMIT 1000) e ORDER BY id`, [id])).map(toEvent);
    return { task: toTask(t), runs, events, ...(await relatives(q, id)) };
  });
}

/** The task, its row locked for the rest of the transaction; BoardInputError if there is none. */
async function lockTask(q: Q, id: string): Promise<Task> {
  const r = await q.get('SELECT * FROM tasks WHERE id = $1 FOR UPDATE', [id]);
  if (!r) throw new BoardInputError(`no task ${JSON.stringify(id)} on board ${q.path}`);
  return toTask(r);
}

async function reread(q: Q, id: string): Promise<Task> {
  return toTask((await q.get('SELECT * FROM tasks WHERE id = $1', [id]))!);
}

export async function cancelTask(w: Writer, id: string): Promise<Task> {
  const now = Date.now();
  return w.write(async (q) => {
    const t = await lockTask(q, id);
    if (t.status === 'cancelled') return t;
    if (t.status === 'done') throw new BoardInputError(`task ${id} is done; it cannot be cancelled`);
    // A running task keeps current_run_id: the supervisor reclaims its worker (outcome `cancelled`).
    await q.run(
      `UPDATE tasks SET status = 'cancelled', updated_at = $1, current_run_id = CASE WHEN status = 'running' THEN current_run_id ELSE NULL END WHERE id = $2`,
      [now, id],
    );
    await q.event(id, t.currentRunId, 'cancelled', { from: t.status }, now);
    if (t.status === 'running') await q.notify(); // the supervisor stops its worker now, not next tick
    return reread(q, id);
  });
}

export async function blockTask(w: Writer, id: string, reason: string): Promise<Task> {
  blockReason(reason);
  const now = Date.now();
  return w.write(async (q) => {
    const t = await lockTask(q, id);
    if (t.status !== 'ready' && t.status !== 'blocked') {
      throw new BoardInputError(`task ${id} is ${t.status}; only a ready task can be blocked`);
    }
    await q.run(`UPDATE tasks SET status = 'blocked', last_error = $1, updated_at = $2 WHERE id = $3`, [reason, now, id]);
    await q.event(id, null, 'blocked', { reason, by: 'operator' }, now);
    return reread(q, id);
  });
}

export async function unblockTask(w: Writer, id: string): Promise<Task> {
  const now = Date.now();
  return w.write(async (q) => {
    const t = await lockTask(q, id);
    if (t.status !== 'blocked') throw new BoardInputError(`task ${id} is ${t.status}, not blocked`);
    await lockParents(q, id);
    await q.run(
      `UPDATE tasks SET status = $3, consecutive_failures = 0, last_error = NULL, not_before = 0, updated_at = $1 WHERE id = $2`,
      [now, id, (await hasUnfinishedParent(q, id)) ? 'waiting' : 'ready'],
    );
    await q.event(id, null, 'unblocked', null, now);
    await q.notify();
    return reread(q, id);
  });
}

export async function retryTask(w: Writer, id: string): Promise<Task> {
  const now = Date.now();
  return w.write(async (q) => {
    const t = await lockTask(q, id);
    if (t.status === 'running') {
      throw new BoardInputError(
        `task ${id} is running (run ${t.currentRunId ?? '?'}); it is retried only once it has ended (blocked, cancelled or done): cancel it first to stop it`,
      );
    }
    if (t.status === 'ready') {
      const when = t.notBefore > now ? ` (waiting until ${new Date(t.notBefore).toISOString()})` : '';
      throw new BoardInputError(`task ${id} is ready${when}: it will run without a retry`);
    }
    // Fenced against a live run: a cancelled task keeps its run until the worker is gone, and a
    // done task's worker may still be exiting. Made ready now, it could get a second live worker.
    const live = await q.get(
      `SELECT id FROM runs WHERE task_id = $1 AND (exited_at IS NULL OR (status = 'ended' AND accounted_at IS NULL)) ORDER BY started_at DESC LIMIT 1`,
      [id],
    );
    if (t.currentRunId !== null || live) {
      throw new BoardInputError(
        `task ${id} is ${t.status} but its run ${String(live?.id ?? t.currentRunId)} has not ended yet (its worker may still be stopping); retry it once the run has ended`,
      );
    }
    await lockParents(q, id);
    await q.run(
      `UPDATE tasks SET status = $3, consecutive_failures = 0, last_error = NULL, not_before = 0, result = NULL, updated_at = $1 WHERE id = $2`,
      [now, id, (await hasUnfinishedParent(q, id)) ? 'waiting' : 'ready'],
    );
    await q.event(id, null, 'retried', { from: t.status, consecutive_failures: t.consecutiveFailures }, now);
    await q.notify();
    return reread(q, id);
  });
}

export async function counts(w: Writer): Promise<BoardCounts> {
  return w.read(async (q) => {
    const tasks = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
    for (const r of await q.all('SELECT status, count(*) AS n FROM tasks GROUP BY status')) tasks[r.status as TaskStatus] = Number(r.n);
    const live = Number((await q.get('SELECT count(*) AS n FROM runs WHERE exited_at IS NULL'))!.n);
    return { tasks, liveRuns: live };
  });
}

/** Tasks by status and skill (metrics): one GROUP BY; its answer is bounded by statuses × skills. */
export async function taskCountsBySkill(w: Writer): Promise<TaskCount[]> {
  return w.read(async (q) => (await q.all(PG_HOT_SQL.taskCountsBySkill)).map((r) => ({ status: r.status as TaskStatus, skill: String(r.skill), count: Number(r.n) })));
}

/** True when nothing is ready (now or later), running, or awaiting accounting. */
export async function idle(w: Writer): Promise<boolean> {
  return w.read(async (q) => {
    const r = (await q.get(
      `SELECT EXISTS (SELECT 1 FROM tasks WHERE status IN ('ready', 'running'))
           OR EXISTS (SELECT 1 FROM runs WHERE exited_at IS NULL AND accounted_at IS NULL)
           OR EXISTS (SELECT 1 FROM runs WHERE status = 'ended' AND accounted_at IS NULL) AS busy`,
    ))!;
    return r.busy !== true;
  });
}

/** The earliest not-before after `now` of a ready task (the supervisor's next wake-up): one seek of tasks_ready_due. */
export async function nextDueAt(w: Writer, now: number): Promise<number | null> {
  return w.read(async (q) => {
    const r = await q.get(PG_HOT_SQL.nextDue, [now]);
    return r ? Number(r.not_before) : null;
  });
}
