/**
 * The SQLite side of `migrate` (../migrate-board.ts): a board read through a read-only connection
 * (no WAL change, no migration, no write), in ONE read transaction, so every count and every batch
 * comes from the same snapshot whatever other connections commit meanwhile.
 *
 * Rows come as arrays in `COPY_COLUMNS` order, keyed by rowid (the insertion order: the order of
 * runs of one millisecond and of events), with INTEGER values as BigInt so that no value is rounded
 * on its way to PostgreSQL.
 */
import type Database from 'better-sqlite3';
import { BoardDamagedError, BoardPathError } from '../errors.js';
import { SCHEMA_VERSION } from '../schema.js';
import { openReadonlyConn, type Conn } from './connection.js';

/** The tables `migrate` copies, in the order it copies them (a run names its task). */
export const COPY_TABLES = ['skills', 'tasks', 'links', 'runs', 'events'] as const;
export type CopyTable = (typeof COPY_TABLES)[number];
export type CopyCounts = Record<CopyTable, number>;

/**
 * The columns copied, the same on both backends. The first column of each row read is the SQLite
 * rowid: runs keep it as `seq` (the tie-break of runs started in one millisecond), events are keyed
 * by it (`id` is the rowid); skills and tasks only use it to page.
 */
export const COPY_COLUMNS: Record<CopyTable, readonly string[]> = {
  skills: ['name', 'argv', 'cwd', 'env', 'pass_env', 'max_runtime_seconds', 'heartbeat_timeout_seconds', 'reclaim_grace_seconds', 'max_rss_mb', 'created_at', 'updated_at', 'max_concurrent', 'report', 'result_from'],
  tasks: [
    'id', 'title', 'skill', 'payload', 'status', 'priority', 'created_at', 'updated_at', 'not_before', 'consecutive_failures',
    'max_retries', 'max_runtime_seconds', 'last_error', 'result', 'current_run_id', 'key',
  ],
  links: ['child', 'parent', 'created_at'],
  runs: [
    'id', 'task_id', 'token', 'status', 'outcome', 'pid', 'pgid', 'proc_start_time', 'boot_id', 'started_at', 'heartbeat_at',
    'progress', 'ended_at', 'exit_code', 'signal', 'error', 'log_path', 'stop_reason', 'sigterm_at', 'sigkill_at', 'exited_at',
    'accounted_at', 'defer_until', 'stopped_on_request', 'report_seq',
  ],
  events: ['task_id', 'run_id', 'kind', 'data', 'at', 'seq'],
};

/** A run whose processes were never confirmed gone: its worker may still be alive. */
export interface UnexitedRun {
  id: string;
  taskId: string;
  pid: number | null;
  procStartTime: number | null;
  bootId: string | null;
}

const nOrNull = (v: unknown) => (v === null || v === undefined ? null : Number(v));

export class SqliteSource {
  private constructor(
    private readonly c: Conn,
    readonly path: string,
    readonly schemaVersion: number,
  ) {}

  /**
   * Open the board at `abs` (a resolved path) read-only and check it; `begin()` then starts the
   * snapshot. A file that is not a SQLite database, or a database that is not a kanban board, is a
   * BoardPathError naming it; a board older than this build is refused (it cannot be migrated
   * read-only), one newer too (SchemaTooNewError).
   */
  static open(abs: string): SqliteSource {
    let c: Conn;
    try {
      c = openReadonlyConn(abs, 5000);
    } catch (e) {
      if (e instanceof BoardDamagedError && e.detail.startsWith('not a SQLite database')) {
        throw new BoardPathError(abs, `is not a SQLite board: ${e.detail.slice('not a SQLite database: '.length)}`, { cause: e });
      }
      throw e;
    }
    try {
      const version = Number(c.db.pragma('user_version', { simple: true }));
      const tables = new Set((c.db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table'`).all() as Array<{ name: string }>).map((r) => r.name));
      const missing = COPY_TABLES.filter((t) => !tables.has(t));
      if (version === 0 || missing.length) {
        throw new BoardPathError(abs, `is a SQLite database but not a kanban board (schema version ${version}${missing.length ? `, no table ${missing.join(', ')}` : ''})`);
      }
      if (version < SCHEMA_VERSION) {
        throw new BoardPathError(
          abs,
          `has schema version ${version}, older than this build's (${SCHEMA_VERSION}), and is only read here: bring it up to date first with \`kanban-supervisor --db ${abs} init\``,
        );
      }
      return new SqliteSource(c, abs, version);
    } catch (e) {
      c.close();
      throw c.wrap(e);
    }
  }

  /** Start the snapshot: every later read sees the board as it is now, whatever is committed meanwhile. */
  begin(): void {
    try {
      this.c.db.exec('BEGIN');
      // A read transaction starts at its first read.
      this.c.db.prepare('SELECT count(*) FROM tasks').get();
    } catch (e) {
      throw this.c.wrap(e);
    }
  }

  private stmt(sql: string): Database.Statement {
    return this.c.db.prepare(sql);
  }

  counts(): CopyCounts {
    const n = (t: CopyTable) => Number((this.stmt(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n);
    return { skills: n('skills'), tasks: n('tasks'), links: n('links'), runs: n('runs'), events: n('events') };
  }

  /** Runs whose processes were never confirmed gone (exited_at unset), in start order. */
  unexitedRuns(): UnexitedRun[] {
    return (this.stmt('SELECT id, task_id, pid, proc_start_time, boot_id FROM runs WHERE exited_at IS NULL ORDER BY started_at, rowid').all() as Array<Record<string, unknown>>).map(
      (r) => ({ id: String(r.id), taskId: String(r.task_id), pid: nOrNull(r.pid), procStartTime: nOrNull(r.proc_start_time), bootId: (r.boot_id as string | null) ?? null }),
    );
  }

  /** The rows of `table` in rowid order, `size` at a time: each row is [rowid, ...COPY_COLUMNS[table]]. */
  *batches(table: CopyTable, size: number): Generator<unknown[][]> {
    const s = this.stmt(`SELECT rowid, ${COPY_COLUMNS[table].join(', ')} FROM ${table} WHERE rowid > ? ORDER BY rowid LIMIT ?`);
    s.raw(true);
    s.safeIntegers(true);
    let after: unknown = -1n;
    for (;;) {
      const rows = s.all(after, size) as unknown[][];
      if (rows.length === 0) return;
      yield rows;
      if (rows.length < size) return;
      after = rows[rows.length - 1]![0];
    }
  }

  /** End the snapshot and close (never throws). */
  close(): void {
    this.c.rollbackQuietly();
    try {
      this.c.close();
    } catch {
      /* a read-only connection has nothing to lose */
    }
  }
}
