/**
 * What every board command shares: the global flags a command gets (`Globals`), the board's path
 * (`boardPath`: where a board may be created), opening it for one command (`withBoard`), and the
 * access errors that name the board (exit 2).
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { BoardPathError, isPgLocation, openBoard, pgLocationLabel, resolveBoardPath, type Board } from '@kanban-supervisor/board';
import { DEFAULT_DB } from '@kanban-supervisor/policies';

/** The global flags, as a command sees them: the board path (--db, KANBAN_DB or the default), --json, and the command's own arguments. */
export interface Globals {
  db: string;
  json: boolean;
  rest: string[];
}

/**
 * The board path of a command, checked before anything is opened or created (BoardPathError, exit 2).
 * Where a board is created:
 * - `init` and `skill add` (the commands that build a board) create a missing board, and its
 *   missing folders;
 * - `run` creates a missing board only where its folder exists, or at the default location
 *   ./.kanban/kanban.db (creating ./.kanban): a mistyped --db must not start a supervisor on a new
 *   empty board;
 * - every other command needs an existing board (and openBoard without `create` refuses a file
 *   that holds none: an empty file, a SQLite database without the board's schema).
 * Whatever the command: a directory, a non-regular file and a board file with several hard links
 * are refused, and a symlinked board file is followed to its target (one board, one owner lock).
 */
export function boardPath(db: string, use: 'build' | 'run' | 'existing'): string {
  // A PostgreSQL URL names nothing on this filesystem: the server decides (openBoard's `create`).
  if (isPgLocation(db)) return db;
  if (use === 'existing') return resolveBoardPath(db, { mustExist: true });
  if (use === 'build') return resolveBoardPath(db);
  return resolveBoardPath(db, { folderMustExist: resolve(db) !== resolve(DEFAULT_DB) });
}

/** The board as messages name it: a SQLite file's resolved path, a PostgreSQL URL with its password masked. */
export function boardLabel(db: string): string {
  return isPgLocation(db) ? pgLocationLabel(db) : resolveBoardPath(db);
}

/** What a command does with the board: `build` may create it; `build` and `write` need it writable by this user. */
export type BoardUse = 'build' | 'write' | 'read';

/**
 * Refuse, naming the board, what would fail later with SQLite's "attempt to write a readonly
 * database" (no path in it). Checked with access(2), which opens nothing.
 */
export function assertWritable(abs: string): void {
  if (!existsSync(abs)) return;
  try {
    accessSync(abs, constants.R_OK | constants.W_OK);
  } catch (e) {
    throw new BoardPathError(abs, `is not writable by this user (uid ${process.getuid?.() ?? '?'}): ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Open the board for one command (`use`: whether it may be created, whether it must be writable),
 * run `fn` on it and close it; access errors name the board (exit 2).
 */
export async function withBoard<T>(g: Globals, fn: (b: Board) => Promise<T>, use: BoardUse = 'read'): Promise<T> {
  const abs = boardPath(g.db, use === 'build' ? 'build' : 'existing');
  if (use !== 'read' && !isPgLocation(abs)) assertWritable(abs);
  let b: Board;
  try {
    b = await openBoard(abs, { create: use === 'build', busyTimeoutMs: 2000, pgPoolMax: 2 });
  } catch (e) {
    throw namingBoard(abs, e);
  }
  try {
    return await fn(b);
  } catch (e) {
    throw namingBoard(abs, e);
  } finally {
    await b.close();
  }
}

/** SQLite and `fs` errors that mean "this user may not use the board here" (permissions, read-only file or filesystem). */
export function isAccessError(e: unknown): boolean {
  const code = String((e as { code?: unknown })?.code ?? '');
  return code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH' || code === 'SQLITE_CANTOPEN' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
}

/** An access error from SQLite or `fs` does not name the board: wrap it in one that does (exit 2). */
export function namingBoard(abs: string, e: unknown): unknown {
  if (!isAccessError(e)) return e;
  const msg = (e as Error).message ?? String(e);
  if (msg.includes(abs)) return new BoardPathError(abs, `cannot be used by this user (uid ${process.getuid?.() ?? '?'}): ${msg}`, { cause: e });
  return new BoardPathError(
    abs,
    `cannot be used by this user (uid ${process.getuid?.() ?? '?'}): ${msg}; the board file and its folder must be writable (SQLite creates ${abs}-wal and -shm next to it)`,
    { cause: e },
  );
}

