/**
 * The HTTP view's reads: a keyset page of tasks (newest first) and the event feed in commit order.
 * SQLite has one writer at a time, so an event's id (its rowid, assigned at insert inside the
 * writer's transaction) grows in commit order: the feed's cursor is the last event id delivered.
 * Long JSON values (payload, result, event data) are read bounded (view-sql.ts).
 */
import { BoardInputError } from '../errors.js';
import type { FeedEvent, Task, TaskPage, TaskPageQuery } from '../types.js';
import { feedLimit, likeContains, taskPageQuery } from '../validate.js';
import type { Conn } from './connection.js';
import { toEvent, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { boundedJsonSql, boundedTaskColumns } from '../view-sql.js';

export async function listTasksPage(c: Conn, w: Writer, query: TaskPageQuery): Promise<TaskPage> {
  const f = taskPageQuery(query);
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.status) where.push('status = ?'), params.push(f.status);
  if (f.skill !== undefined) where.push('skill = ?'), params.push(f.skill);
  if (f.after) where.push('(created_at < ? OR (created_at = ? AND id < ?))'), params.push(f.after.createdAt, f.after.createdAt, f.after.id);
  const cond = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  const order = 'ORDER BY created_at DESC, id DESC';
  return w.read(() => {
    if (f.q === undefined) {
      const rows = c.all(`SELECT ${boundedTaskColumns()} FROM tasks${cond} ${order} LIMIT ?`, ...params, f.limit + 1).map(toTask);
      return page(rows, f.limit);
    }
    // An exact task id, wherever it is.
    if (!f.after) {
      const exact = c.get(`SELECT ${boundedTaskColumns()} FROM tasks WHERE id = ?${where.length ? ` AND ${where.join(' AND ')}` : ''}`, f.q, ...params);
      if (exact) return { tasks: [toTask(exact)], next: null };
    }
    // A substring of the title: among the next TASK_SEARCH_SCAN tasks of the filter, at most.
    const rows = c
      .all(`SELECT ${boundedTaskColumns()} FROM (SELECT * FROM tasks${cond} ${order} LIMIT ?) WHERE title LIKE ? ESCAPE '\\' ${order} LIMIT ?`, ...params, f.scan, likeContains(f.q), f.limit + 1)
      .map(toTask);
    if (rows.length > f.limit) return page(rows, f.limit);
    const edge = c.get(`SELECT created_at, id FROM tasks${cond} ${order} LIMIT 1 OFFSET ?`, ...params, f.scan - 1);
    return edge ? { tasks: rows, next: { createdAt: Number(edge.created_at), id: String(edge.id) }, partial: true } : { tasks: rows, next: null };
  });
}

function page(rows: Task[], limit: number): TaskPage {
  const tasks = rows.slice(0, limit);
  const last = tasks.at(-1);
  return { tasks, next: rows.length > limit && last ? { createdAt: last.createdAt, id: last.id } : null };
}

function parseCursor(cursor: string): number {
  if (!/^\d{1,18}$/.test(cursor)) throw new BoardInputError(`event cursor ${JSON.stringify(cursor.slice(0, 40))} is not valid on a SQLite board (an event id)`);
  return Number(cursor);
}

export async function eventsAfter(c: Conn, w: Writer, cursor: string | null, limit: number): Promise<{ events: FeedEvent[]; cursor: string }> {
  const n = feedLimit(limit);
  const after = cursor === null ? null : parseCursor(cursor);
  return w.read(() => {
    if (after === null) {
      const r = c.get('SELECT max(id) AS id FROM events');
      return { events: [], cursor: String(Number(r?.id ?? 0)) };
    }
    const rows = c.all(`SELECT id, task_id, run_id, kind, ${boundedJsonSql('data')} AS data, at FROM events WHERE id > ? ORDER BY id LIMIT ?`, after, n);
    const tasks = new Map<string, FeedEvent['task']>();
    const events = rows.map((r) => {
      const e = toEvent(r);
      if (!tasks.has(e.taskId)) {
        const t = c.get(`SELECT ${boundedTaskColumns()} FROM tasks WHERE id = ?`, e.taskId);
        tasks.set(e.taskId, t ? toTask(t) : null);
      }
      return { ...e, cursor: String(e.id), task: tasks.get(e.taskId)! };
    });
    return { events, cursor: events.length ? events.at(-1)!.cursor : String(after) };
  });
}
