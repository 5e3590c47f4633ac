/**
 * The PostgreSQL side of `migrate` (../migrate-board.ts): is the target free (no live supervisor,
 * no rows), and the copy itself, in ONE transaction on one connection: a failure anywhere (a row
 * PostgreSQL refuses, a lost connection) rolls every batch back and leaves the target as it was.
 *
 * Batches are multi-row INSERT statements (one statement per batch). Ids, tokens, timestamps and
 * statuses are copied as they are; `runs.seq` takes the SQLite rowid and `events.id` the SQLite id
 * (both identities, inserted with OVERRIDING SYSTEM VALUE), so every ordering of the board (runs
 * of one millisecond, events of a task) is the same on both sides; the identity sequences are then
 * set past the copied values so the next run or event comes after them.
 */
import type pg from 'pg';
import { BoardOwnedError, BoardPathError } from '../errors.js';
import { COPY_COLUMNS, COPY_TABLES, type CopyCounts, type CopyTable } from '../sqlite/export.js';
import type { PgConn } from './connection.js';
import { hostLockKey } from './host-lock.js';

/** Rows per INSERT statement. */
export const IMPORT_BATCH_ROWS = 1000;

/** The columns written per table: the SQLite rowid as `seq` (runs) or `id` (events), then the shared columns. */
function insertColumns(table: CopyTable): string[] {
  const first = table === 'runs' ? ['seq'] : table === 'events' ? ['id'] : [];
  return [...first, ...COPY_COLUMNS[table]];
}

/** `INSERT … VALUES ($1, …), (…)` for `rows` rows of `table` (identities given: OVERRIDING SYSTEM VALUE). */
function insertSql(table: CopyTable, rows: number): string {
  const cols = insertColumns(table);
  const tuples: string[] = [];
  let p = 0;
  for (let i = 0; i < rows; i++) tuples.push(`(${cols.map(() => `$${++p}`).join(', ')})`);
  const overriding = table === 'runs' || table === 'events' ? ' OVERRIDING SYSTEM VALUE' : '';
  return `INSERT INTO ${table} (${cols.join(', ')})${overriding} VALUES ${tuples.join(', ')}`;
}

/** A batch read from SQLite ([rowid, ...columns] per row) as the INSERT's parameters. */
function params(table: CopyTable, rows: unknown[][]): unknown[] {
  const out: unknown[] = [];
  // skills, tasks and links: the rowid only paged the read.
  const skip = table === 'runs' || table === 'events' ? 0 : 1;
  for (const r of rows) for (let i = skip; i < r.length; i++) out.push(r[i] ?? null);
  return out;
}

async function tableCounts(db: pg.ClientBase): Promise<CopyCounts> {
  const r = await db.query<CopyCounts>(
    `SELECT (SELECT count(*) FROM skills) AS skills, (SELECT count(*) FROM tasks) AS tasks, (SELECT count(*) FROM links) AS links,
            (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM events) AS events`,
  );
  const row = r.rows[0]!;
  return { skills: Number(row.skills), tasks: Number(row.tasks), links: Number(row.links), runs: Number(row.runs), events: Number(row.events) };
}

export const countsText = (c: CopyCounts) => COPY_TABLES.map((t) => `${t} ${c[t]}`).join(', ');

/**
 * Refuse a target a supervisor may use, or that holds rows, inside the caller's transaction:
 * - a supervisors row not marked stopped whose lease has not expired (`now`): BoardOwnedError;
 * - a host's ownership held (its session advisory lock): BoardOwnedError. The lock of every host
 *   the board has seen is taken here for the transaction, so none of them starts meanwhile;
 * - skills, tasks, runs or events already there: BoardPathError naming the counts (boards are
 *   never merged).
 */
export async function checkTarget(db: pg.ClientBase, c: PgConn, now: number): Promise<void> {
  // A board of schema version 1 has no supervisors table yet (init adds it before the copy).
  const hasSupervisors = (await db.query<{ has: boolean }>(`SELECT to_regclass('supervisors') IS NOT NULL AS has`)).rows[0]?.has === true;
  if (hasSupervisors) await checkSupervisors(db, c, now);
  const counts = await tableCounts(db);
  if (COPY_TABLES.some((t) => counts[t] > 0)) {
    throw new BoardPathError(
      c.location,
      `is not empty (${countsText(counts)}): migrate copies a board into an empty one and never merges boards; give another schema (?schema=NAME) or an empty board`,
    );
  }
}

async function checkSupervisors(db: pg.ClientBase, c: PgConn, now: number): Promise<void> {
  const owner = (r: Record<string, unknown>) =>
    `supervisor pid ${String(r.pid)} on host ${String(r.host)} (host id ${String(r.host_id)}) since ${new Date(Number(r.started_at)).toISOString()}`;
  const leased = await db.query(
    `SELECT host_id, host, pid, started_at, lease_expires_at FROM supervisors
      WHERE stopped_at IS NULL AND lease_expires_at > $1 ORDER BY started_at DESC, id DESC LIMIT 1`,
    [now],
  );
  if (leased.rows[0]) {
    const r = leased.rows[0] as Record<string, unknown>;
    throw new BoardOwnedError(
      c.location,
      `${owner(r)} (its lease runs until ${new Date(Number(r.lease_expires_at)).toISOString()}; stop it first, or if it is dead, wait for its lease to expire)`,
    );
  }
  const hosts = await db.query(`SELECT DISTINCT host_id FROM supervisors ORDER BY host_id`);
  for (const h of hosts.rows as Array<{ host_id: string }>) {
    const got = await db.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS ok', [hostLockKey(c.schema, h.host_id)]);
    if (got.rows[0]?.ok) continue;
    const row = await db.query(`SELECT host_id, host, pid, started_at FROM supervisors WHERE host_id = $1 ORDER BY started_at DESC, id DESC LIMIT 1`, [h.host_id]);
    throw new BoardOwnedError(c.location, `${row.rows[0] ? owner(row.rows[0] as Record<string, unknown>) : `a supervisor of host id ${h.host_id}`} (it holds its host's lock); stop it first`);
  }
}

/** Check the target read-only (a dry run): the same refusals, nothing written. */
export async function checkTargetReadonly(c: PgConn, now: number): Promise<void> {
  const client = await c.connect();
  let broken = false;
  try {
    await client.query('BEGIN READ ONLY');
    await checkTarget(client, c, now);
  } catch (e) {
    throw c.wrap(e);
  } finally {
    await client.query('ROLLBACK').catch(() => (broken = true));
    client.release(broken);
  }
}

/** Where a batch failed, for the message: the table, the rows, and what PostgreSQL said. */
export class ImportError extends Error {
  override name = 'ImportError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Copy every batch `read` yields into the target in ONE transaction: the target re-checked first
 * (checkTarget, under the hosts' locks), then the tables in COPY_TABLES order, one INSERT per
 * batch; the counts checked against `expected`; the identity sequences moved past the copied ids;
 * the board's channel notified (delivered at commit). Any failure rolls everything back.
 */
export async function importRows(
  c: PgConn,
  read: (table: CopyTable) => Iterable<unknown[][]>,
  expected: CopyCounts,
  now: number,
  progress?: (table: CopyTable, done: number, total: number) => void,
): Promise<void> {
  const client = await c.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    await checkTarget(client, c, now);
    const maxRowid: Partial<Record<CopyTable, bigint>> = {};
    for (const table of COPY_TABLES) {
      let done = 0;
      for (const rows of read(table)) {
        try {
          await client.query(insertSql(table, rows.length), params(table, rows));
        } catch (e) {
          const msg = (c.wrap(e) as Error)?.message ?? String(e);
          const code = (e as { code?: unknown }).code;
          throw new ImportError(`copying ${table} rows ${done + 1}-${done + rows.length} of ${expected[table]}: ${msg}${typeof code === 'string' ? ` (SQLSTATE ${code})` : ''}`, { cause: e });
        }
        done += rows.length;
        maxRowid[table] = rows[rows.length - 1]![0] as bigint;
        progress?.(table, done, expected[table]);
      }
      if (done !== expected[table]) throw new ImportError(`read ${done} ${table} rows from the SQLite board, expected ${expected[table]}`);
    }
    const got = await tableCounts(client);
    for (const t of COPY_TABLES) {
      if (got[t] !== expected[t]) throw new ImportError(`the target holds ${got[t]} ${t} rows after the copy, expected ${expected[t]}`);
    }
    // The next run or event gets an identity after every copied one (nextval returns max + 1).
    for (const [table, col] of [['runs', 'seq'], ['events', 'id']] as const) {
      const max = maxRowid[table];
      if (max !== undefined) await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), $3)`, [table, col, String(max)]);
    }
    await client.query('SELECT pg_notify($1, $2)', [c.channel, 'tasks']);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw c.wrap(e);
  } finally {
    client.release(broken);
  }
}
