/**
 * How every consumer gets a board: `openBoard(location)` picks the backend from the location and
 * returns the `Board` interface: a `postgres://` or `postgresql://` URL opens a PostgreSQL board,
 * anything else is a SQLite file path. Only this module (and the SQLite store's own tests and
 * fixture makers, damage.ts) construct a SqliteBoard or a PgBoard.
 */
import { resolveBoardPath } from './open.js';
import { isPgLocation } from './pg/location.js';
import { SqliteBoard } from './sqlite/board.js';
import type { Board, OwnerInfo } from './types.js';

export interface OpenBoardOptions {
  /**
   * Create the board when it does not exist yet, or make one of an empty file (default true;
   * migrations run either way). Without it, a file that holds no board is refused (BoardPathError).
   */
  create?: boolean;
  /** Read only: no schema change, no writes (inspecting a board one does not own). */
  readonly?: boolean;
  /** How long one attempt waits for the board's write lock, ms (SQLite's busy timeout). */
  busyTimeoutMs?: number;
  /** How many times a write is retried, with backoff, after that wait ran out. */
  busyRetries?: number;
  /** PostgreSQL: the schema of the board (default: the URL's `schema` parameter, else `kanban`). */
  pgSchema?: string;
  /** PostgreSQL: most connections this board object opens (default 4; a worker needs 1). */
  pgPoolMax?: number;
}

/** Open the board at `location`: a PostgreSQL URL, or a SQLite file path. */
export async function openBoard(location: string, opts: OpenBoardOptions = {}): Promise<Board> {
  if (isPgLocation(location)) {
    // Loaded only for a PostgreSQL URL: a SQLite worker (every `kanban-supervisor worker …` call of
    // a shell skill) does not pay for loading the driver (~55 ms of CPU per process).
    const { PgBoard } = await import('./pg/board.js');
    return PgBoard.open(location, {
      readonly: opts.readonly,
      create: opts.create,
      schema: opts.pgSchema,
      poolMax: opts.pgPoolMax,
      busyRetries: opts.busyRetries,
      lockTimeoutMs: opts.busyTimeoutMs,
    });
  }
  if (opts.readonly) return SqliteBoard.openReadonly(location, opts.busyTimeoutMs);
  return SqliteBoard.open(location, { create: opts.create ?? true, busyTimeoutMs: opts.busyTimeoutMs, busyRetries: opts.busyRetries });
}

/** The owner row of the board at `location`, read through a short read-only connection (null if unreadable). */
export async function readOwner(location: string): Promise<OwnerInfo | null> {
  try {
    const b = await openBoard(location, { readonly: true, busyTimeoutMs: 1000, pgPoolMax: 1 });
    try {
      return await b.getOwner();
    } finally {
      await b.close();
    }
  } catch {
    return null;
  }
}

/**
 * The board's one location, checked, for a SQLite file: the symlink-resolved path; throws
 * BoardPathError for a directory, a non-regular file, a file with several hard links, and as `opts`
 * asks for a missing board. Every entry point (CLI, supervisor) starts with it.
 */
export { resolveBoardPath };
