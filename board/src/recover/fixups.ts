/**
 * Fix-ups keep the recovered board consistent and visible: a task referenced by salvaged runs or
 * events but itself lost gets a `blocked` placeholder task (so foreign keys hold and the loss
 * shows up in `list`); a `running` task whose run was lost is blocked (its worker may still be
 * alive, so it is not re-queued); a reference to a lost run is cleared. Each fix-up adds a
 * `recovery` event to the task and an entry to the report.
 *
 * The task graph (`links`, child waits for parent):
 * - A link naming a task that is not on the new board (lost, and not rebuilt as a placeholder: no
 *   run or event of it survived) is dropped: nothing is known of that task but its id. Each
 *   dropped link is reported (and counted in the links table's `dropped`), and the surviving end
 *   gets a `recovery` event saying so.
 * - A task not yet started (waiting or ready) whose parent was lost (its link dropped, or the
 *   parent rebuilt as a placeholder) is blocked: the parent's result is gone, and a waiting task
 *   would otherwise start as soon as its other parents are done, or wait forever. The operator
 *   decides (unblock it to run without that parent, or cancel it).
 * - A waiting task left with no parent that is not done (its links were lost with damaged pages)
 *   would wait forever: it is blocked too, saying so.
 */
import type { Db } from '../open.js';
import type { RecoverFixup, TableRecovery } from './report.js';

function createTaskPlaceholders(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const missing = dst
    .prepare(
      `SELECT task_id AS id, min(at) AS first FROM (
         SELECT task_id, started_at AS at FROM runs UNION ALL SELECT task_id, at FROM events
       ) WHERE task_id NOT IN (SELECT id FROM tasks) GROUP BY task_id`,
    )
    .all() as Array<{ id: string; first: number | null }>;
  const created = dst.prepare(`SELECT data FROM events WHERE task_id = ? AND kind = 'created' ORDER BY id LIMIT 1`);
  const insert = dst.prepare(
    `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, last_error)
     VALUES (?, ?, ?, 'null', 'blocked', ?, ?, ?, ?)`,
  );
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, NULL, 'recovery', ?, ?)`);
  for (const m of missing) {
    let skill = '(unknown)';
    let priority = 0;
    try {
      const d = created.get(m.id) as { data: string | null } | undefined;
      const j = d?.data ? (JSON.parse(d.data) as { skill?: unknown; priority?: unknown }) : null;
      if (j && typeof j.skill === 'string') skill = j.skill;
      if (j && typeof j.priority === 'number' && Number.isSafeInteger(j.priority)) priority = j.priority;
    } catch {
      /* keep the defaults */
    }
    const reason = `task row lost in board recovery; rebuilt as a placeholder from its runs/events (payload and title lost). Recreate the task if it is still wanted`;
    insert.run(m.id, `(lost in recovery) ${m.id}`, skill, priority, m.first ?? now, now, reason);
    event.run(m.id, JSON.stringify({ action: 'placeholder', reason }), now);
    fixups.push({ taskId: m.id, action: 'placeholder', reason });
  }
}

function fixRunningTasks(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, ?, 'recovery', ?, ?)`);
  const orphanRunning = dst
    .prepare(`SELECT id, current_run_id AS run FROM tasks WHERE status = 'running' AND (current_run_id IS NULL OR current_run_id NOT IN (SELECT id FROM runs))`)
    .all() as Array<{ id: string; run: string | null }>;
  const block = dst.prepare(`UPDATE tasks SET status = 'blocked', current_run_id = NULL, last_error = ?, updated_at = ? WHERE id = ?`);
  for (const t of orphanRunning) {
    const reason = `its run ${t.run ?? '(none)'} was lost in board recovery; its worker may still be running. Check, then unblock to run it again`;
    block.run(reason, now, t.id);
    event.run(t.id, t.run, JSON.stringify({ action: 'blocked', reason }), now);
    fixups.push({ taskId: t.id, action: 'blocked', reason });
  }
  const dangling = dst
    .prepare(`SELECT id, current_run_id AS run FROM tasks WHERE status != 'running' AND current_run_id IS NOT NULL AND current_run_id NOT IN (SELECT id FROM runs)`)
    .all() as Array<{ id: string; run: string }>;
  const clear = dst.prepare(`UPDATE tasks SET current_run_id = NULL, updated_at = ? WHERE id = ?`);
  for (const t of dangling) {
    const reason = `its current run ${t.run} was lost in board recovery; the reference was cleared`;
    clear.run(now, t.id);
    event.run(t.id, t.run, JSON.stringify({ action: 'cleared_run', reason }), now);
    fixups.push({ taskId: t.id, action: 'cleared_run', reason });
  }
}

/** Links naming a task that is not on the new board are dropped; returns the lost parents of each child on the board. */
function dropDanglingLinks(dst: Db, now: number, fixups: RecoverFixup[], links: TableRecovery | undefined): Map<string, string[]> {
  const dangling = dst
    .prepare(
      `SELECT rowid AS r, child, parent, child IN (SELECT id FROM tasks) AS childHere, parent IN (SELECT id FROM tasks) AS parentHere
         FROM links WHERE child NOT IN (SELECT id FROM tasks) OR parent NOT IN (SELECT id FROM tasks) ORDER BY child, parent`,
    )
    .all() as Array<{ r: number; child: string; parent: string; childHere: number; parentHere: number }>;
  const del = dst.prepare(`DELETE FROM links WHERE rowid = ?`);
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, NULL, 'recovery', ?, ?)`);
  const lostParents = new Map<string, string[]>();
  for (const l of dangling) {
    del.run(l.r);
    let reason: string;
    if (l.childHere) {
      reason = `its parent ${l.parent} was lost in board recovery (its row and its result; no run or event of it survived); the link was dropped`;
      event.run(l.child, JSON.stringify({ action: 'dropped_link', parent: l.parent, reason }), now);
      lostParents.set(l.child, [...(lostParents.get(l.child) ?? []), l.parent]);
    } else if (l.parentHere) {
      reason = `task ${l.child} was lost in board recovery (no run or event of it survived); its link after ${l.parent} was dropped`;
      event.run(l.parent, JSON.stringify({ action: 'dropped_link', child: l.child, reason }), now);
    } else {
      reason = `tasks ${l.child} and ${l.parent} were both lost in board recovery; the link between them was dropped`;
    }
    fixups.push({ taskId: l.child, action: 'dropped_link', parent: l.parent, reason });
  }
  if (links && dangling.length > 0) {
    links.dropped += dangling.length;
    links.salvaged -= dangling.length;
    if (links.status === 'complete') links.status = 'partial';
    links.notes.push(`${dangling.length} link(s) dropped: they name a task that was lost (see the fix-ups)`);
  }
  return lostParents;
}

/** Tasks not yet started whose parent was lost (a dropped link, or a placeholder parent) are blocked. */
function blockChildrenOfLostParents(dst: Db, now: number, fixups: RecoverFixup[], lostParents: Map<string, string[]>): void {
  const placeholders = fixups.filter((f) => f.action === 'placeholder').map((f) => f.taskId);
  const ofPlaceholder = new Map<string, string[]>();
  if (placeholders.length) {
    const rows = dst
      .prepare(`SELECT child, parent FROM links INDEXED BY links_parent WHERE parent IN (SELECT value FROM json_each(?)) ORDER BY child, parent`)
      .all(JSON.stringify(placeholders)) as Array<{ child: string; parent: string }>;
    for (const r of rows) ofPlaceholder.set(r.child, [...(ofPlaceholder.get(r.child) ?? []), r.parent]);
  }
  const status = dst.prepare(`SELECT status FROM tasks WHERE id = ?`).pluck();
  const block = dst.prepare(`UPDATE tasks SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?`);
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, NULL, 'recovery', ?, ?)`);
  for (const child of [...new Set([...lostParents.keys(), ...ofPlaceholder.keys()])].sort()) {
    const was = status.get(child) as string | undefined;
    if (was !== 'waiting' && was !== 'ready') continue; // started or ended: it keeps its state (the event or the placeholder says what was lost)
    const dropped = lostParents.get(child) ?? [];
    const rebuilt = ofPlaceholder.get(child) ?? [];
    const parts = [
      ...(dropped.length ? [`${dropped.join(', ')} (link dropped)`] : []),
      ...(rebuilt.length ? [`${rebuilt.join(', ')} (rebuilt as a blocked placeholder)`] : []),
    ];
    const reason =
      `it was ${was}, and its parent(s) ${parts.join('; ')} were lost in board recovery with their results. Check, then ` +
      (rebuilt.length ? 'unlink it from the placeholder(s) and unblock it to run without them, or cancel it' : 'unblock it to run without them, or cancel it');
    block.run(reason, now, child);
    event.run(child, JSON.stringify({ action: 'blocked', from: was, lost_parents: [...dropped, ...rebuilt], reason }), now);
    fixups.push({ taskId: child, action: 'blocked_child', reason });
  }
}

/** A waiting task with no parent left that is not done would wait forever: blocked. */
function blockStuckWaiting(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const stuck = dst
    .prepare(
      `SELECT t.id, (SELECT count(*) FROM links l WHERE l.child = t.id) AS parents FROM tasks t
        WHERE t.status = 'waiting' AND NOT EXISTS (SELECT 1 FROM links l JOIN tasks p ON p.id = l.parent WHERE l.child = t.id AND p.status <> 'done')
        ORDER BY t.id`,
    )
    .all() as Array<{ id: string; parents: number }>;
  const block = dst.prepare(`UPDATE tasks SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?`);
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, NULL, 'recovery', ?, ?)`);
  for (const t of stuck) {
    const reason =
      `it was waiting, but ${t.parents > 0 ? 'every parent of it on the recovered board is done' : 'none of its links survived'}: ` +
      `a link it waited on (or its release) was lost in board recovery. Check what it should wait for (link it), then unblock it`;
    block.run(reason, now, t.id);
    event.run(t.id, JSON.stringify({ action: 'blocked', from: 'waiting', reason }), now);
    fixups.push({ taskId: t.id, action: 'blocked_child', reason });
  }
}

/** Phase: the fix-ups, in one transaction, appended to `fixups` (the links table's report counts dropped links). */
export function applyFixups(dst: Db, fixups: RecoverFixup[], tables: TableRecovery[]): void {
  const now = Date.now();
  const links = tables.find((t) => t.table === 'links');
  if (links && links.status !== 'complete') {
    links.notes.push('links were lost: a waiting task may show fewer parents than it waited for, and could start before one of them is done');
  }
  dst.exec('BEGIN IMMEDIATE');
  try {
    createTaskPlaceholders(dst, now, fixups);
    fixRunningTasks(dst, now, fixups);
    const lostParents = dropDanglingLinks(dst, now, fixups, links);
    blockChildrenOfLostParents(dst, now, fixups, lostParents);
    blockStuckWaiting(dst, now, fixups);
    dst.exec('COMMIT');
  } catch (e) {
    if (dst.inTransaction) dst.exec('ROLLBACK');
    throw e;
  }
}
