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
 *
 * Transaction ids are server-wide, so the snapshot's xmin also counts transactions of other
 * databases of the server, which can never write this board's events: a long one (a bulk load, a
 * migration elsewhere) would hold the feed back for as long as it runs. The bound is therefore the
 * oldest transaction still running in the snapshot that is not known to belong to another database
 * (pg_stat_activity, read after the statement's snapshot was taken: one that ended in between is not
 * listed and is kept, which only delays; so is one the role may not see), else the snapshot's xmax.
 */
import { BoardInputError } from '../errors.js';
import type { FeedEvent, Task, TaskPage, TaskPageQuery } from '../types.js';
import { feedLimit, likeContains, taskPageQuery } from '../validate.js';
import { toEvent, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { boundedJsonSql, boundedTaskColumns } from '../view-sql.js';

/** The feed's bound in the statement's snapshot (see the file's comment): events of transactions below it are final. */
const FEED_BOUND = `COALESCE(
  (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                       WHERE a.backend_xid = xid(x)
                         AND a.datid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = current_database()))),
  pg_snapshot_xmax(pg_current_snapshot()))`;

export async function listTasksPage(w: Writer, query: TaskPageQuery): Promise<TaskPage> {
  const f = taskPageQuery(query);
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.status) where.push(`status = $${params.push(f.status)}`);
  if (f.skill !== undefined) where.push(`skill = $${params.push(f.skill)}`);
  if (f.after) where.push(`(created_at, id) < ($${params.push(f.after.createdAt)}::bigint, $${params.push(f.after.id)}::text COLLATE "C")`);
  const cond = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  const order = 'ORDER BY created_at DESC, id DESC';
  return w.read(async (q) => {
    if (f.q === undefined) {
      const rows = (await q.all(`SELECT ${boundedTaskColumns()} FROM tasks${cond} ${order} LIMIT $${params.length + 1}`, [...params, f.limit + 1])).map(toTask);
      return page(rows, f.limit);
    }
    // An exact task id, wherever it is.
    if (!f.after) {
      const exact = await q.all(`SELECT ${boundedTaskColumns()} FROM tasks WHERE id = $${params.length + 1}${where.length ? ` AND ${where.join(' AND ')}` : ''}`, [...params, f.q]);
      if (exact.length) return { tasks: [toTask(exact[0]!)], next: null };
    }
    // A substring of the title: among the next TASK_SEARCH_SCAN tasks of the filter, at most.
    const n = params.length;
    const rows = (
      await q.all(`SELECT ${boundedTaskColumns()} FROM (SELECT * FROM tasks${cond} ${order} LIMIT $${n + 1}) s WHERE title ILIKE $${n + 2} ESCAPE '\\' ${order} LIMIT $${n + 3}`, [
        ...params,
        f.scan,
        likeContains(f.q),
        f.limit + 1,
      ])
    ).map(toTask);
    if (rows.length > f.limit) return page(rows, f.limit);
    const edge = (await q.all(`SELECT created_at, id FROM tasks${cond} ${order} LIMIT 1 OFFSET $${n + 1}`, [...params, f.scan - 1]))[0];
    return edge ? { tasks: rows, next: { createdAt: Number(edge.created_at), id: String(edge.id) }, partial: true } : { tasks: rows, next: null };
  });
}

function page(rows: Task[], limit: number): TaskPage {
  const tasks = rows.slice(0, limit);
  const last = tasks.at(-1);
  return { tasks, next: rows.length > limit && last ? { createdAt: last.createdAt, id: last.id } : null };
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
    // The feed's end now: every transaction below the bound is behind it.
    return w.read(async (q) => {
      const r = await q.get(`SELECT ${FEED_BOUND}::text AS x`);
      return { events: [], cursor: `${String(r!.x)}.0` };
    });
  }
  const c = parseCursor(cursor);
  return w.read(async (q) => {
    const rows = await q.all(
      `SELECT e.id, e.task_id, e.run_id, e.kind, ${boundedJsonSql('e.data')} AS data, e.at, e.txid::text AS txid_text,
              ${boundedTaskColumns('t.', (c) => `t_${c}`)}
         FROM events e LEFT JOIN tasks t ON t.id = e.task_id
        WHERE (e.txid, e.id) > ($1::xid8, $2::bigint) AND e.txid < ${FEED_BOUND}
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
