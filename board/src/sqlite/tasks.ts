/**
 * Tasks: the operator's writes (create, cancel, block, unblock, retry), each its own transaction,
 * and the reads of tasks (one task, listings, a task's history, counts). Claims are in claims.ts.
 */
import type { TaskStatus } from '@kanban-supervisor/policies';
import { TASK_STATUSES } from '@kanban-supervisor/policies';
import { BoardError, BoardInputError } from '../errors.js';
import { newTaskId } from '../ids.js';
import type { AddedTask, BoardCounts, Task, TaskCount, TaskDetail, TaskInput } from '../types.js';
import { HOT_SQL } from './hot-sql.js';
import { blockReason, createdData, placed, taskFilter, validTasks, type ValidTask } from '../validate.js';
import type { Conn } from './connection.js';
import { toEvent, toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { boundedJsonSql } from '../view-sql.js';
import { hasUnfinishedParent, insertLinks, parentsStatus, relatives } from './graph.js';

export async function createTask(c: Conn, w: Writer, input: TaskInput): Promise<Task> {
  return (await createTasks(c, w, [input]))[0]!.task;
}

/**
 * Add tasks in one write, all or nothing. A key already on the board (or earlier in `inputs`)
 * returns that task, `created: false`; the unique index tasks_key backs the check (the write is
 * one BEGIN IMMEDIATE, so concurrent adds of one key are serialised: exactly one creates it).
 */
export async function createTasks(c: Conn, w: Writer, inputs: TaskInput[]): Promise<AddedTask[]> {
  const valid = validTasks(inputs);
  if (valid.length === 0) return [];
  const now = Date.now();
  return w.write(() => {
    const known = new Set<string>();
    for (const t of valid) {
      if (known.has(t.skill)) continue;
      if (!c.get('SELECT 1 FROM skills WHERE name = ?', t.skill)) {
        const names = c.all('SELECT name FROM skills ORDER BY name').map((r) => String(r.name));
        const where = valid.length > 1 ? `tasks[${valid.indexOf(t)}]: ` : '';
        throw new BoardInputError(
          `${where}unknown skill ${JSON.stringify(t.skill)} on board ${c.path}; registered: ${names.length ? names.join(', ') : '(none)'}`,
        );
      }
      known.add(t.skill);
    }
    const out: AddedTask[] = [];
    for (const t of valid) {
      if (t.key !== null) {
        const existing = c.get('SELECT * FROM tasks WHERE key = ?', t.key);
        if (existing) {
          out.push({ task: toTask(existing), created: false });
          continue;
        }
      }
      out.push({ task: placed(valid, t, () => insertTask(c, t, now)), created: true });
    }
    return out;
  });
}

function insertTask(c: Conn, t: ValidTask, now: number): Task {
  const status = parentsStatus(c, t.after);
  for (let i = 0; ; i++) {
    const id = newTaskId();
    if (c.get('SELECT 1 FROM tasks WHERE id = ?', id)) {
      if (i > 10) throw new BoardError('could not allocate a unique task id');
      continue;
    }
    c.run(
      `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, max_retries, max_runtime_seconds, key)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      id,
      t.title,
      t.skill,
      t.payload,
      status,
      t.priority,
      now,
      now,
      t.notBefore,
      t.maxRetries,
      t.maxRuntimeSeconds,
      t.key,
    );
    insertLinks(c, id, t.after, now);
    c.event(id, null, 'created', { ...createdData(t), ...(t.after.length ? { after: t.after, status } : {}) }, now);
    return toTask(c.get('SELECT * FROM tasks WHERE id = ?', id)!);
  }
}

export async function getTask(c: Conn, w: Writer, id: string): Promise<Task | null> {
  return w.read(() => {
    const r = c.get('SELECT * FROM tasks WHERE id = ?', id);
    return r ? toTask(r) : null;
  });
}

export async function listTasks(c: Conn, w: Writer, filter: { status?: TaskStatus; skill?: string; limit?: number } = {}): Promise<Task[]> {
  const f = taskFilter(filter);
  const where = [...(f.status ? ['status = ?'] : []), ...(f.skill !== undefined ? ['skill = ?'] : [])];
  const params = [...(f.status ? [f.status] : []), ...(f.skill !== undefined ? [f.skill] : [])];
  return w.read(() =>
    c.all(`SELECT * FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ?`, ...params, f.limit).map(toTask),
  );
}

/** A task with its runs and its last 1,000 events. */
export async function showTask(c: Conn, w: Writer, id: string, boundedEvents = false): Promise<TaskDetail | null> {
  const data = boundedEvents ? boundedJsonSql('data') : 'data';
  return w.read(() => {
    const t = c.get('SELECT * FROM tasks WHERE id = ?', id);
    if (!t) return null;
    const runs = c.all('SELECT * FROM runs WHERE task_id = ? ORDER BY started_at, id', id).map((r) => toRun(r));
    const events = c.all(`SELECT * FROM (SELECT id, task_id, run_id, kind, ${data} AS data, at FROM events WHERE task_id = ? ORDER BY id DESC LIMIT 1000) ORDER BY id`, id).map(toEvent);
    return { task: toTask(t), runs, events, ...relatives(c, id) };
  });
}

function taskOrThrow(c: Conn, id: string): Task {
  const r = c.get('SELECT * FROM tasks WHERE id = ?', id);
  if (!r) throw new BoardInputError(`no task ${JSON.stringify(id)} on board ${c.path}`);
  return toTask(r);
}

export async function cancelTask(c: Conn, w: Writer, id: string): Promise<Task> {
  const now = Date.now();
  return w.write(() => {
    const t = taskOrThrow(c, id);
    if (t.status === 'cancelled') return t;
    if (t.status === 'done') throw new BoardInputError(`task ${id} is done; it cannot be cancelled`);
    // A running task keeps current_run_id: the supervisor reclaims its worker (outcome `cancelled`).
    c.run(
      `UPDATE tasks SET status = 'cancelled', updated_at = ?, current_run_id = CASE WHEN status = 'running' THEN current_run_id ELSE NULL END WHERE id = ?`,
      now,
      id,
    );
    c.event(id, t.currentRunId, 'cancelled', { from: t.status }, now);
    return taskOrThrow(c, id);
  });
}

export async function blockTask(c: Conn, w: Writer, id: string, reason: string): Promise<Task> {
  blockReason(reason);
  const now = Date.now();
  return w.write(() => {
    const t = taskOrThrow(c, id);
    if (t.status !== 'ready' && t.status !== 'blocked') {
      throw new BoardInputError(`task ${id} is ${t.status}; only a ready task can be blocked`);
    }
    c.run(`UPDATE tasks SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?`, reason, now, id);
    c.event(id, null, 'blocked', { reason, by: 'operator' }, now);
    return taskOrThrow(c, id);
  });
}

export async function unblockTask(c: Conn, w: Writer, id: string): Promise<Task> {
  const now = Date.now();
  return w.write(() => {
    const t = taskOrThrow(c, id);
    if (t.status !== 'blocked') throw new BoardInputError(`task ${id} is ${t.status}, not blocked`);
    c.run(
      `UPDATE tasks SET status = ?, consecutive_failures = 0, last_error = NULL, not_before = 0, updated_at = ? WHERE id = ?`,
      hasUnfinishedParent(c, id) ? 'waiting' : 'ready',
      now,
      id,
    );
    c.event(id, null, 'unblocked', null, now);
    return taskOrThrow(c, id);
  });
}

export async function retryTask(c: Conn, w: Writer, id: string): Promise<Task> {
  const now = Date.now();
  return w.write(() => {
    const t = taskOrThrow(c, id);
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
    const live = c.get(
      `SELECT id FROM runs WHERE task_id = ? AND (exited_at IS NULL OR (status = 'ended' AND accounted_at IS NULL)) ORDER BY started_at DESC LIMIT 1`,
      id,
    );
    if (t.currentRunId !== null || live) {
      throw new BoardInputError(
        `task ${id} is ${t.status} but its run ${String(live?.id ?? t.currentRunId)} has not ended yet (its worker may still be stopping); retry it once the run has ended`,
      );
    }
    c.run(
      `UPDATE tasks SET status = ?, consecutive_failures = 0, last_error = NULL, not_before = 0, result = NULL, updated_at = ? WHERE id = ?`,
      hasUnfinishedParent(c, id) ? 'waiting' : 'ready',
      now,
      id,
    );
    c.event(id, null, 'retried', { from: t.status, consecutive_failures: t.consecutiveFailures }, now);
    return taskOrThrow(c, id);
  });
}

export async function counts(c: Conn, w: Writer): Promise<BoardCounts> {
  return w.read(() => {
    const tasks = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
    for (const r of c.all('SELECT status, count(*) AS n FROM tasks GROUP BY status')) {
      tasks[r.status as TaskStatus] = Number(r.n);
    }
    const live = Number(c.get('SELECT count(*) AS n FROM runs WHERE exited_at IS NULL')!.n);
    return { tasks, liveRuns: live };
  });
}

/**
 * Tasks by status and skill (metrics): one GROUP BY, read on whatever connection asks (an HTTP
 * view's own read-only one). It reads every task row once (tens of ms at 100,000 tasks); its
 * answer is bounded by statuses × skills.
 */
export async function taskCountsBySkill(c: Conn, w: Writer): Promise<TaskCount[]> {
  return w.read(() => c.all(HOT_SQL.taskCountsBySkill).map((r) => ({ status: r.status as TaskStatus, skill: String(r.skill), count: Number(r.n) })));
}

/** True when nothing is ready (now or later), running, or awaiting accounting. */
export async function idle(c: Conn, w: Writer): Promise<boolean> {
  return w.read(() => {
    const r = c.get(
      `SELECT EXISTS (SELECT 1 FROM tasks WHERE status IN ('ready', 'running'))
           OR EXISTS (SELECT 1 FROM runs WHERE exited_at IS NULL)
           OR EXISTS (SELECT 1 FROM runs WHERE status = 'ended' AND accounted_at IS NULL) AS busy`,
    )!;
    return Number(r.busy) === 0;
  });
}

/** The earliest not-before after `now` of a ready task (the supervisor's next wake-up): one seek of tasks_ready_due. */
export async function nextDueAt(c: Conn, w: Writer, now: number): Promise<number | null> {
  return w.read(() => {
    const r = c.get(HOT_SQL.nextDue, now);
    return r ? Number(r.not_before) : null;
  });
}
