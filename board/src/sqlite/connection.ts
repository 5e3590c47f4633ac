/**
 * One connection to a SQLite board: opening it (hardened open in ../open.ts: WAL once, migrations,
 * per-connection pragmas), its statement cache, closing it, and the abilities only a local SQLite
 * connection has (change version, WAL checkpoints, busy timeout, synchronous close).
 *
 * Every operation module runs its statements through a `Conn`; none holds a statement of its own.
 */
import type Database from 'better-sqlite3';
import { BoardDamagedError, NotABoardError, classifyError } from '../errors.js';
import { openDatabase, resolveBoardPath, type Db, type OpenOptions } from '../open.js';
import type { Json } from '../types.js';
import type { Row } from './rows.js';

export class Conn {
  private readonly stmts = new Map<string, Database.Statement>();

  constructor(
    readonly path: string,
    readonly db: Db,
  ) {}

  /** The prepared statement of `sql`, prepared once per connection. */
  stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  get(sql: string, ...params: unknown[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }

  all(sql: string, ...params: unknown[]): Row[] {
    return this.stmt(sql).all(...params) as Row[];
  }

  run(sql: string, ...params: unknown[]): Database.RunResult {
    return this.stmt(sql).run(...params);
  }

  /** Append an event to a task's history (inside the caller's transaction). */
  event(taskId: string, runId: string | null, kind: string, data: Json | null, at: number, seq: string | null = null): void {
    this.run(
      'INSERT INTO events (task_id, run_id, kind, data, at, seq) VALUES (?, ?, ?, ?, ?, ?)',
      taskId,
      runId,
      kind,
      data === null ? null : JSON.stringify(data),
      at,
      seq,
    );
  }

  /** A SQLite error that means damage, as BoardDamagedError naming the board; any other error as is. */
  wrap(e: unknown): unknown {
    if (classifyError(e) === 'damaged' && !(e instanceof BoardDamagedError) && !(e instanceof NotABoardError)) {
      return new BoardDamagedError(this.path, (e as Error).message, { cause: e });
    }
    return e;
  }

  /** Roll back the open transaction, if any; a failing ROLLBACK never hides the error being handled. */
  rollbackQuietly(): void {
    if (!this.db.open || !this.db.inTransaction) return;
    try {
      this.stmt('ROLLBACK').run();
    } catch {
      /* keep the original error (closing the connection rolls back too) */
    }
  }

  /** Close, after a checkpoint if asked (a busy or failed checkpoint is harmless: the WAL stays valid). */
  close(checkpoint: 'PASSIVE' | 'TRUNCATE' | null = null): void {
    if (!this.db.open) return;
    if (checkpoint) {
      try {
        this.db.pragma(`wal_checkpoint(${checkpoint})`);
      } catch {
        /* a busy or failed checkpoint is harmless: the WAL stays valid */
      }
    }
    this.stmts.clear();
    this.db.close();
  }
}

/** Open the board at `path` read-write (created unless `opts.create` is false). */
export function openConn(path: string, opts: OpenOptions = {}): Conn {
  const abs = resolveBoardPath(path, { allowHardLinks: true });
  return new Conn(abs, openDatabase(abs, opts));
}

/** Open read-only (no WAL change, no migration): for inspecting a board one does not own. */
export function openReadonlyConn(path: string, busyTimeoutMs: number): Conn {
  const abs = resolveBoardPath(path, { allowHardLinks: true });
  return new Conn(abs, openDatabase(abs, { readonly: true, busyTimeoutMs }));
}

/**
 * Checkpoint without waiting (PASSIVE; then TRUNCATE when everything was checkpointed, so the
 * -wal shrinks) and close. Never throws: a busy or failed checkpoint leaves a valid WAL.
 */
export function checkpointFreeAndClose(c: Conn): void {
  try {
    if (!c.db.open) return;
    try {
      const rows = c.db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      const r = rows[0];
      if (r && r.busy === 0 && r.log > 0 && r.log === r.checkpointed) {
        c.db.pragma('busy_timeout = 0');
        c.db.pragma('wal_checkpoint(TRUNCATE)');
      }
    } catch {
      /* harmless */
    }
    c.close(null);
  } catch {
    /* SQLite recovers from an unclosed connection */
  }
}

/** Close now, synchronously, never throwing (LocalConnection.closeNow). */
export function closeNow(c: Conn, checkpoint: 'PASSIVE' | 'TRUNCATE' | 'free' | null): void {
  if (checkpoint === 'free') checkpointFreeAndClose(c);
  else {
    try {
      c.close(checkpoint);
    } catch {
      /* SQLite recovers from an unclosed connection */
    }
  }
}

/** Change this connection's busy timeout (e.g. to keep a shutdown's last writes inside its grace). */
export function setBusyTimeout(c: Conn, ms: number): void {
  if (c.db.open) c.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
}

/** SQLite's `data_version`: changes when another connection committed (cheap: no I/O when nothing changed). */
export function dataVersion(c: Conn): number {
  return Number(c.db.pragma('data_version', { simple: true }));
}

/** One WAL checkpoint in `mode`: whether it was blocked, the WAL's frames, how many were checkpointed. */
export function walCheckpoint(c: Conn, mode: 'PASSIVE' | 'TRUNCATE'): { busy: boolean; logFrames: number; checkpointed: number } {
  const r = c.db.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number; log: number; checkpointed: number }>;
  const row = r[0] ?? { busy: 0, log: 0, checkpointed: 0 };
  return { busy: row.busy !== 0, logFrames: row.log, checkpointed: row.checkpointed };
}
