/**
 * The HTTP view's reads on PostgreSQL: a keyset page of tasks (newest first) and the event feed.
 *
 * Event ids are NOT in commit order here: an identity value is taken at insert, and a transaction
 * that took a smaller id may commit after one that took a larger id. A reader that remembered "the
 * last id seen" would skip the late one for good. So each event carries the id of the transaction
 * that wrote it (`txid`, schema v4), and the feed is read in (txid, id) order, delivering only the
 * events of transactions older than the oldest one still running (`pg_snapshot_xmin` of the
 * statement's snapshot): every such transaction has ended, so nothing can still commit before the
 * cursor. A later commit has a txid at least that xmin, so it comes after the cursor. The price: an
 * event waits while an older transaction is still open (a tick's transaction: milliseconds).
 */
import { BoardInputError } from '../errors.js';
import type { FeedEvent, TaskPage, TaskPageQuery } from '../types.js';
import { feedLimit, likeContains, taskPageQuery } from '../validate.js';
import { toEvent, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { boundedJsonSql, boundedTaskColumns } from '../view-sql.js';

export async function listTasksPage(w: Writer, query: TaskPageQuery): Promise<TaskPage> {
  const f = taskPageQuery(query);
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.status) where.push(`status = $${params.push(f.status)}`);
  if (f.skill !== undefined) where.push(`skill = $${params.push(f.skill)}`);
  if (f.q !== undefined) where.push(`(title ILIKE $${params.push(likeContains(f.q))} ESCAPE '\\' OR id = $${params.push(f.q)})`);
  if (f.after) where.push(`(created_at, id) < ($${params.push(f.after.createdAt)}::bigint, $${params.push(f.after.id)}::text COLLATE "C")`);
  const sql = `SELECT ${boundedTaskColumns()} FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT $${params.push(f.limit + 1)}`;
  return w.read(async (q) => {
    const rows = (await q.all(sql, params)).map(toTask);
    const tasks = rows.slice(0, f.limit);
    const last = tasks.at(-1);
    return { tasks, next: rows.length > f.limit && last ? { createdAt: last.createdAt, id: last.id } : null };
  });
}

/** A cursor: `<txid>.<event id>`, both unsigned decimal. */
function parseCursor(cursor: string): { txid: string; id: string } {
  const m = /^(\d{1,20})\.(\d{1,18})$/.exec(cursor);
  if (!m) throw new BoardInputError(`event cursor ${JSON.stringify(cursor.slice(0, 40))} is not valid on a PostgreSQL board (<transaction id>.<event id>)`);
  return { txid: m[1]!, id: m[2]! };
}

export async function eventsAfter(w: Writer, cursor: string | null, limit: number): Promise<{ events: FeedEvent[]; cursor: string }> {
  const n = feedLimit(limit);
  if (cursor === null) {
    // The feed's end now: every transaction older than the oldest running one is behind it.
    return w.read(async (q) => {
      const r = await q.get('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x');
      return { events: [], cursor: `${String(r!.x)}.0` };
    });
  }
  const c = parseCursor(cursor);
  return w.read(async (q) => {
    const rows = await q.all(
      `SELECT e.id, e.task_id, e.run_id, e.kind, ${boundedJsonSql('e.data')} AS data, e.at, e.txid::text AS txid_text,
              ${boundedTaskColumns('t.', (c) => `t_${c}`)}
         FROM events e LEFT JOIN tasks t ON t.id = e.task_id
        WHERE (e.txid, e.id) > ($1::xid8, $2::bigint) AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.txid, e.id LIMIT $3`,
      [c.txid, c.id, n],
    );
    const events = rows.map((r) => {
      const task: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) if (k.startsWith('t_')) task[k.slice(2)] = v;
      return { ...toEvent(r), cursor: `${String(r.txid_text)}.${String(r.id)}`, task: r.t_id === null ? null : toTask(task) };
    });
    return { events, cursor: events.length ? events.at(-1)!.cursor : cursor };
  });
}
