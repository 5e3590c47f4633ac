/**
 * The task graph on a PostgreSQL board: links (child waits for parent), a child `waiting` until
 * every parent is done and made `ready` in the transaction that marks its last parent done (with a
 * notification, so a supervisor wakes), links added and removed on existing tasks (a cycle refused,
 * named), cascaded cancels, and the reads.
 *
 * Concurrency (READ COMMITTED): whoever decides a child's status from its parents' locks the child
 * row FOR UPDATE first, then reads the parents in a NEW statement (a fresh snapshot). Two parents
 * finishing at once are then serialised on their common child, and the second sees the first's
 * commit: a child can never be left waiting with all its parents done. Whoever reads a parent's
 * status to decide (an add with --after, a link) holds the parent FOR SHARE, so the parent cannot
 * become done unseen before the link commits (its finishing transaction then finds the link).
 */
import { BoardInputError } from '../errors.js';
import type { Json, LinkedTask, ParentPage, RunCredentials, Task, WaitingFor } from '../types.js';
import { CASCADE_MAX, cycleOf, GRAPH_SCAN, notLinkable, parentPageIds } from '../graph-rules.js';
import type { Q } from './connection.js';
import { PG_HOT_SQL } from './hot-sql.js';
import { parseJson, toTask, type Row } from './rows.js';
import type { Writer } from './tx.js';
import { fence } from './worker.js';

const LINKED = 't.id, t.title, t.status, t.last_error';

function toLinked(r: Row): LinkedTask {
  return { id: String(r.id), title: String(r.title), status: r.status as LinkedTask['status'], lastError: (r.last_error as string | null) ?? null };
}

async function lockTask(q: Q, id: string, mode: 'UPDATE' | 'SHARE'): Promise<Task> {
  const r = await q.get(`SELECT * FROM tasks WHERE id = $1 FOR ${mode}`, [id]);
  if (!r) throw new BoardInputError(`no task ${JSON.stringify(id)} on board ${q.path}`);
  return toTask(r);
}

async function reread(q: Q, id: string): Promise<Task> {
  return toTask((await q.get('SELECT * FROM tasks WHERE id = $1', [id]))!);
}

/** Whether any parent of the task is not done (call with the task's row locked). */
export async function hasUnfinishedParent(q: Q, id: string): Promise<boolean> {
  return (await q.get(`SELECT 1 FROM links l JOIN tasks p ON p.id = l.parent WHERE l.child = $1 AND p.status <> 'done' LIMIT 1`, [id])) !== undefined;
}

/**
 * An existing task about to be made runnable again (retry, unblock): hold its parents FOR SHARE
 * (id order) before `hasUnfinishedParent` decides waiting or ready, as an add with --after does. A
 * parent finishing at the same time then commits first (and the decision sees it done) or after
 * (and finds the task waiting), and a prune cannot remove a parent unseen (it locks FOR UPDATE).
 */
export async function lockParents(q: Q, id: string): Promise<void> {
  await q.all('SELECT p.id FROM links l JOIN tasks p ON p.id = l.parent WHERE l.child = $1 ORDER BY p.id FOR SHARE OF p', [id]);
}

/**
 * A new task's parents, held FOR SHARE until the add commits: each must exist (an unknown one is
 * named); returns the status the task starts in (waiting while any parent is not done).
 */
export async function parentsStatus(q: Q, after: string[]): Promise<'waiting' | 'ready'> {
  if (after.length === 0) return 'ready';
  const rows = await q.all('SELECT id, status FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR SHARE', [after]);
  const found = new Map(rows.map((r) => [String(r.id), String(r.status)]));
  for (const p of after) {
    if (!found.has(p)) throw new BoardInputError(`no task ${JSON.stringify(p)} on board ${q.path} (given with --after)`);
  }
  return [...found.values()].some((s) => s !== 'done') ? 'waiting' : 'ready';
}

export async function insertLinks(q: Q, child: string, after: string[], now: number): Promise<void> {
  if (after.length === 0) return;
  await q.run('INSERT INTO links (child, parent, created_at) SELECT $1, p, $3 FROM unnest($2::text[]) AS p', [child, after, now]);
}

/**
 * The parent is done now: every waiting child whose parents are all done becomes ready, in the
 * caller's transaction (event `released`), and supervisors are notified. Returns how many.
 */
export async function releaseChildren(q: Q, parent: string, now: number): Promise<number> {
  const locked = await q.all(PG_HOT_SQL.lockWaitingChildren, [parent]);
  if (locked.length === 0) return 0;
  const released = await q.all(PG_HOT_SQL.releaseChildren, [locked.map((r) => String(r.id)), now, parent]);
  if (released.length > 0) await q.notify();
  return released.length;
}

/** The path of links from `from` up to `to` (both included) if `to` is an ancestor of `from`; bounded. */
async function pathUp(q: Q, from: string, to: string): Promise<string[] | null> {
  const rows = await q.all(
    `WITH RECURSIVE up(id, via) AS (
       SELECT $1::text COLLATE "C", NULL::text COLLATE "C"
       UNION
       SELECT l.parent, l.child FROM links l JOIN up ON l.child = up.id
     ) SELECT id, via FROM up LIMIT ${GRAPH_SCAN + 1}`,
    [from],
  );
  return cycleOf(
    rows.map((r) => ({ id: String(r.id), via: r.via === null ? null : String(r.via) })),
    from,
    to,
    q.path,
  );
}

export async function linkTasks(w: Writer, child: string, parent: string): Promise<Task> {
  const now = Date.now();
  return w.write(async (q) => {
    // The parent first (FOR SHARE: it cannot become done unseen), then the child: the order a
    // finishing parent takes them in (itself, then its children), so the two never deadlock.
    const pa = await lockTask(q, parent, 'SHARE');
    const ch = await lockTask(q, child, 'UPDATE');
    const why = notLinkable(ch);
    if (why) throw new BoardInputError(why);
    if (await q.get('SELECT 1 FROM links WHERE child = $1 AND parent = $2', [child, parent])) return ch;
    if (child === parent) throw new BoardInputError(`linking ${child} after itself would close a cycle: ${child} → ${child}`);
    const path = await pathUp(q, parent, child);
    if (path) throw new BoardInputError(`linking ${child} after ${parent} would close a cycle: ${[child, ...path].join(' → ')} (each waits for the next)`);
    await q.run('INSERT INTO links (child, parent, created_at) VALUES ($1, $2, $3)', [child, parent, now]);
    const waits = ch.status === 'ready' && pa.status !== 'done';
    if (waits) await q.run(`UPDATE tasks SET status = 'waiting', updated_at = $1 WHERE id = $2`, [now, child]);
    await q.event(child, null, 'linked', { after: parent, ...(waits ? { from: 'ready', to: 'waiting' } : {}) }, now);
    return reread(q, child);
  });
}

export async function unlinkTasks(w: Writer, child: string, parent: string): Promise<Task> {
  const now = Date.now();
  return w.write(async (q) => {
    const ch = await lockTask(q, child, 'UPDATE');
    if (!(await q.get('SELECT 1 FROM tasks WHERE id = $1', [parent]))) throw new BoardInputError(`no task ${JSON.stringify(parent)} on board ${q.path}`);
    if ((await q.run('DELETE FROM links WHERE child = $1 AND parent = $2', [child, parent])) === 0) {
      throw new BoardInputError(`task ${child} does not wait for ${parent} (no such link on board ${q.path})`);
    }
    const frees = ch.status === 'waiting' && !(await hasUnfinishedParent(q, child));
    if (frees) {
      await q.run(`UPDATE tasks SET status = 'ready', updated_at = $1 WHERE id = $2`, [now, child]);
      await q.notify();
    }
    await q.event(child, null, 'unlinked', { after: parent, ...(frees ? { from: 'waiting', to: 'ready' } : {}) }, now);
    return reread(q, child);
  });
}

export async function cancelCascade(w: Writer, id: string): Promise<string[]> {
  const now = Date.now();
  return w.write(async (q) => {
    const t = await lockTask(q, id, 'UPDATE');
    if (t.status === 'done') throw new BoardInputError(`task ${id} is done; it cannot be cancelled`);
    const rows = await q.all(
      `WITH RECURSIVE down(id) AS (
         SELECT $1::text COLLATE "C"
         UNION
         SELECT l.child FROM links l JOIN down ON l.parent = down.id JOIN tasks t ON t.id = l.child WHERE t.status = 'waiting'
       ) SELECT id FROM down LIMIT ${CASCADE_MAX + 2}`,
      [id],
    );
    if (rows.length > CASCADE_MAX + 1) throw new BoardInputError(`cancelling ${id} with --cascade would cancel more than ${CASCADE_MAX} waiting tasks; nothing was cancelled`);
    if (t.status !== 'cancelled') {
      await q.run(
        `UPDATE tasks SET status = 'cancelled', updated_at = $1, current_run_id = CASE WHEN status = 'running' THEN current_run_id ELSE NULL END WHERE id = $2`,
        [now, id],
      );
      await q.event(id, t.currentRunId, 'cancelled', { from: t.status, cascade: true }, now);
      if (t.status === 'running') await q.notify();
    }
    const below = rows.slice(1).map((r) => String(r.id));
    const done = await q.all(
      `WITH c AS (
         UPDATE tasks SET status = 'cancelled', current_run_id = NULL, updated_at = $2 WHERE id = ANY($1::text[]) AND status = 'waiting' RETURNING id
       ), logged AS (
         INSERT INTO events (task_id, run_id, kind, data, at)
         SELECT id, NULL, 'cancelled', json_build_object('from', 'waiting', 'cascade_from', $3::text)::text, $2 FROM c
       ) SELECT id FROM c`,
      [below, now, id],
    );
    const got = new Set(done.map((r) => String(r.id)));
    return [id, ...below.filter((x) => got.has(x))];
  });
}

/** A task's parents and its first 1,000 children (showTask, inside its read). */
export async function relatives(q: Q, id: string): Promise<{ parents: LinkedTask[]; children: LinkedTask[] }> {
  return {
    parents: (await q.all(`SELECT ${LINKED} FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = $1 ORDER BY l.parent`, [id])).map(toLinked),
    children: (await q.all(`SELECT ${LINKED} FROM links l JOIN tasks t ON t.id = l.child WHERE l.parent = $1 ORDER BY l.child LIMIT 1000`, [id])).map(toLinked),
  };
}

export async function waitingFor(w: Writer, taskIds: string[]): Promise<WaitingFor[]> {
  const ids = [...new Set(taskIds)].slice(0, 500);
  if (ids.length === 0) return [];
  return w.read(async (q) =>
    (
      await q.all(
        `SELECT l.child, ${LINKED} FROM links l JOIN tasks t ON t.id = l.parent
          WHERE l.child = ANY($1::text[]) AND t.status <> 'done' ORDER BY l.child, l.parent`,
        [ids],
      )
    ).map((r) => ({ taskId: String(r.child), parent: toLinked(r) })),
  );
}

export async function parentResults(w: Writer, cred: RunCredentials, owner: string | null = null): Promise<Record<string, Json | null>> {
  return w.read(async (q) => {
    await fence(q, cred, { lock: false, owner });
    const out: Record<string, Json | null> = {};
    for (const r of await q.all('SELECT t.id, t.result FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = $1 ORDER BY l.parent', [cred.taskId])) {
      out[String(r.id)] = parseJson(r.result);
    }
    return out;
  });
}

export async function parentIds(w: Writer, cred: RunCredentials, owner: string | null = null): Promise<string[]> {
  return w.read(async (q) => {
    await fence(q, cred, { lock: false, owner });
    return (await q.all('SELECT parent FROM links WHERE child = $1 ORDER BY parent', [cred.taskId])).map((r) => String(r.parent));
  });
}

/** octet_length of a TOASTed value reads its size, not the value. */
export async function parentPage(w: Writer, cred: RunCredentials, after: string | null, maxBytes: number, owner: string | null = null): Promise<ParentPage> {
  return w.read(async (q) => {
    await fence(q, cred, { lock: false, owner });
    const sizes = (
      await q.all('SELECT l.parent AS id, octet_length(t.result) AS bytes FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = $1 AND l.parent > $2 ORDER BY l.parent', [
        cred.taskId,
        after ?? '',
      ])
    ).map((r) => ({ id: String(r.id), bytes: Number(r.bytes ?? 0) }));
    const { ids, next } = parentPageIds(sizes, maxBytes);
    const results: Record<string, Json | null> = {};
    if (ids.length > 0) {
      for (const r of await q.all('SELECT id, result FROM tasks WHERE id = ANY($1::text[]) ORDER BY id', [ids])) results[String(r.id)] = parseJson(r.result);
    }
    return { results, next };
  });
}
