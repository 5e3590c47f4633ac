/**
 * The task graph on a SQLite board: links (child waits for parent), a child `waiting` until every
 * parent is done and made `ready` in the transaction that marks its last parent done, links added
 * and removed on existing tasks (a cycle refused, named), cascaded cancels, and the reads (a task's
 * parents and children, what holds waiting tasks, a worker's parents' results).
 * The functions taking only a Conn run inside their caller's write (one transaction).
 */
import { BoardInputError } from '../errors.js';
import type { Json, LinkedTask, ParentPage, RunCredentials, Task, WaitingFor } from '../types.js';
import { cycleOf, GRAPH_SCAN, CASCADE_MAX, notLinkable, parentPageIds } from '../graph-rules.js';
import type { Conn } from './connection.js';
import { HOT_SQL } from './hot-sql.js';
import { parseJson, toTask, type Row } from './rows.js';
import type { Writer } from './tx.js';
import { fence } from './worker.js';

const LINKED = 't.id, t.title, t.status, t.last_error';

function toLinked(r: Row): LinkedTask {
  return { id: String(r.id), title: String(r.title), status: r.status as LinkedTask['status'], lastError: (r.last_error as string | null) ?? null };
}

function taskOrThrow(c: Conn, id: string): Task {
  const r = c.get('SELECT * FROM tasks WHERE id = ?', id);
  if (!r) throw new BoardInputError(`no task ${JSON.stringify(id)} on board ${c.path}`);
  return toTask(r);
}

/** Whether any parent of the task is not done. */
export function hasUnfinishedParent(c: Conn, id: string): boolean {
  return c.get(`SELECT 1 FROM links l JOIN tasks p ON p.id = l.parent WHERE l.child = ? AND p.status <> 'done' LIMIT 1`, id) !== undefined;
}

/**
 * A new task's parents: each must exist (an unknown one is named); returns the status the task
 * starts in (waiting while any parent is not done).
 */
export function parentsStatus(c: Conn, after: string[]): 'waiting' | 'ready' {
  let waiting = false;
  for (const p of after) {
    const r = c.get('SELECT status FROM tasks WHERE id = ?', p);
    if (!r) throw new BoardInputError(`no task ${JSON.stringify(p)} on board ${c.path} (given with --after)`);
    if (r.status !== 'done') waiting = true;
  }
  return waiting ? 'waiting' : 'ready';
}

export function insertLinks(c: Conn, child: string, after: string[], now: number): void {
  for (const p of after) c.run('INSERT INTO links (child, parent, created_at) VALUES (?, ?, ?)', child, p, now);
}

/**
 * The parent is done now: every waiting child whose parents are all done becomes ready, in the
 * caller's transaction (event `released`). Returns how many.
 */
export function releaseChildren(c: Conn, parent: string, now: number): number {
  const rows = c.all(HOT_SQL.childrenToRelease, parent);
  for (const r of rows) {
    c.run(`UPDATE tasks SET status = 'ready', updated_at = ? WHERE id = ? AND status = 'waiting'`, now, String(r.child));
    c.event(String(r.child), null, 'released', { after: parent }, now);
  }
  return rows.length;
}

/** The path of links from `from` up to `to` (both included) if `to` is an ancestor of `from`; bounded. */
function pathUp(c: Conn, from: string, to: string): string[] | null {
  const rows = c.all(
    `WITH RECURSIVE up(id, via) AS (
       SELECT ?, NULL
       UNION
       SELECT l.parent, l.child FROM links l JOIN up ON l.child = up.id
       LIMIT ${GRAPH_SCAN + 1}
     ) SELECT id, via FROM up`,
    from,
  );
  return cycleOf(
    rows.map((r) => ({ id: String(r.id), via: r.via === null ? null : String(r.via) })),
    from,
    to,
    c.path,
  );
}

export async function linkTasks(c: Conn, w: Writer, child: string, parent: string): Promise<Task> {
  const now = Date.now();
  return w.write(() => {
    const ch = taskOrThrow(c, child);
    const pa = taskOrThrow(c, parent);
    const why = notLinkable(ch);
    if (why) throw new BoardInputError(why);
    if (c.get('SELECT 1 FROM links WHERE child = ? AND parent = ?', child, parent)) return ch;
    if (child === parent) throw new BoardInputError(`linking ${child} after itself would close a cycle: ${child} → ${child}`);
    const path = pathUp(c, parent, child);
    if (path) throw new BoardInputError(`linking ${child} after ${parent} would close a cycle: ${[child, ...path].join(' → ')} (each waits for the next)`);
    c.run('INSERT INTO links (child, parent, created_at) VALUES (?, ?, ?)', child, parent, now);
    const waits = ch.status === 'ready' && pa.status !== 'done';
    if (waits) c.run(`UPDATE tasks SET status = 'waiting', updated_at = ? WHERE id = ?`, now, child);
    c.event(child, null, 'linked', { after: parent, ...(waits ? { from: 'ready', to: 'waiting' } : {}) }, now);
    return taskOrThrow(c, child);
  });
}

export async function unlinkTasks(c: Conn, w: Writer, child: string, parent: string): Promise<Task> {
  const now = Date.now();
  return w.write(() => {
    const ch = taskOrThrow(c, child);
    taskOrThrow(c, parent);
    if (c.run('DELETE FROM links WHERE child = ? AND parent = ?', child, parent).changes === 0) {
      throw new BoardInputError(`task ${child} does not wait for ${parent} (no such link on board ${c.path})`);
    }
    const frees = ch.status === 'waiting' && !hasUnfinishedParent(c, child);
    if (frees) c.run(`UPDATE tasks SET status = 'ready', updated_at = ? WHERE id = ?`, now, child);
    c.event(child, null, 'unlinked', { after: parent, ...(frees ? { from: 'waiting', to: 'ready' } : {}) }, now);
    return taskOrThrow(c, child);
  });
}

/** The task and every task waiting on it, transitively (ids, the task first); bounded. */
function waitingDescendants(c: Conn, id: string): string[] {
  const rows = c.all(
    `WITH RECURSIVE down(id) AS (
       SELECT ?
       UNION
       SELECT l.child FROM links l JOIN down ON l.parent = down.id JOIN tasks t ON t.id = l.child WHERE t.status = 'waiting'
       LIMIT ${CASCADE_MAX + 2}
     ) SELECT id FROM down`,
    id,
  );
  if (rows.length > CASCADE_MAX + 1) throw new BoardInputError(`cancelling ${id} with --cascade would cancel more than ${CASCADE_MAX} waiting tasks; nothing was cancelled`);
  return rows.map((r) => String(r.id));
}

export async function cancelCascade(c: Conn, w: Writer, id: string): Promise<string[]> {
  const now = Date.now();
  return w.write(() => {
    const t = taskOrThrow(c, id);
    if (t.status === 'done') throw new BoardInputError(`task ${id} is done; it cannot be cancelled`);
    const ids = waitingDescendants(c, id);
    const cancelled: string[] = [];
    if (t.status !== 'cancelled') {
      c.run(
        `UPDATE tasks SET status = 'cancelled', updated_at = ?, current_run_id = CASE WHEN status = 'running' THEN current_run_id ELSE NULL END WHERE id = ?`,
        now,
        id,
      );
      c.event(id, t.currentRunId, 'cancelled', { from: t.status, cascade: true }, now);
    }
    cancelled.push(id);
    for (const d of ids.slice(1)) {
      c.run(`UPDATE tasks SET status = 'cancelled', current_run_id = NULL, updated_at = ? WHERE id = ? AND status = 'waiting'`, now, d);
      c.event(d, null, 'cancelled', { from: 'waiting', cascade_from: id }, now);
      cancelled.push(d);
    }
    return cancelled;
  });
}

/** A task's parents and its first 1,000 children (showTask, inside its read). */
export function relatives(c: Conn, id: string): { parents: LinkedTask[]; children: LinkedTask[] } {
  return {
    parents: c.all(`SELECT ${LINKED} FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = ? ORDER BY l.parent`, id).map(toLinked),
    children: c.all(`SELECT ${LINKED} FROM links l JOIN tasks t ON t.id = l.child WHERE l.parent = ? ORDER BY l.child LIMIT 1000`, id).map(toLinked),
  };
}

export async function waitingFor(c: Conn, w: Writer, taskIds: string[]): Promise<WaitingFor[]> {
  const ids = [...new Set(taskIds)].slice(0, 500);
  if (ids.length === 0) return [];
  return w.read(() =>
    c
      .all(
        `SELECT l.child, ${LINKED} FROM links l JOIN tasks t ON t.id = l.parent
          WHERE l.child IN (${ids.map(() => '?').join(', ')}) AND t.status <> 'done' ORDER BY l.child, l.parent`,
        ...ids,
      )
      .map((r) => ({ taskId: String(r.child), parent: toLinked(r) })),
  );
}

export async function parentResults(c: Conn, w: Writer, cred: RunCredentials): Promise<Record<string, Json | null>> {
  return w.read(() => {
    fence(c, cred);
    const out: Record<string, Json | null> = {};
    for (const r of c.all('SELECT t.id, t.result FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = ? ORDER BY l.parent', cred.taskId)) {
      out[String(r.id)] = parseJson(r.result);
    }
    return out;
  });
}

export async function parentIds(c: Conn, w: Writer, cred: RunCredentials): Promise<string[]> {
  return w.read(() => {
    fence(c, cred);
    return c.all('SELECT parent FROM links WHERE child = ? ORDER BY parent', cred.taskId).map((r) => String(r.parent));
  });
}

/** octet_length reads a value's size from its record header, not the value (SQLite 3.43+). */
export async function parentPage(c: Conn, w: Writer, cred: RunCredentials, after: string | null, maxBytes: number): Promise<ParentPage> {
  return w.read(() => {
    fence(c, cred);
    const sizes = c
      .all('SELECT l.parent AS id, octet_length(t.result) AS bytes FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = ? AND l.parent > ? ORDER BY l.parent', cred.taskId, after ?? '')
      .map((r) => ({ id: String(r.id), bytes: Number(r.bytes ?? 0) }));
    const { ids, next } = parentPageIds(sizes, maxBytes);
    const results: Record<string, Json | null> = {};
    if (ids.length > 0) {
      for (const r of c.all(`SELECT id, result FROM tasks WHERE id IN (${ids.map(() => '?').join(', ')}) ORDER BY id`, ...ids)) {
        results[String(r.id)] = parseJson(r.result);
      }
    }
    return { results, next };
  });
}
