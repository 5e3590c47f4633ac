/**
 * Whether the board is still reachable by path for this user: workers (and the worker CLI) open it
 * by path, while the supervisor's own connection, opened earlier, keeps working whatever the
 * permissions become. Checked with access(2), which opens nothing: a process holding a SQLite
 * connection must never open the board (or its -wal/-shm) through `fs` (closing that descriptor
 * would drop the connection's POSIX locks).
 */
import { accessSync, constants } from 'node:fs';
import { dirname } from 'node:path';

export interface BoardAccessProblem {
  /** The path at fault: the board's folder, the board, its -wal or its -shm. */
  path: string;
  /** The errno code (EACCES, EPERM, EROFS, ENOENT, …). */
  code: string;
  /** One line for the operator, naming the path and the code. */
  error: string;
}

/** The first thing that keeps this user from using the board by path, or null when nothing does. */
export function boardAccessProblem(boardPath: string): BoardAccessProblem | null {
  const { R_OK, W_OK, X_OK } = constants;
  const checks = [
    // SQLite creates -wal and -shm there, and workers write the spool there.
    { path: dirname(boardPath), mode: W_OK | X_OK, what: 'create files in the board folder', optional: false },
    { path: boardPath, mode: R_OK | W_OK, what: 'read and write the board', optional: false },
    { path: `${boardPath}-wal`, mode: R_OK | W_OK, what: 'read and write the board WAL', optional: true },
    { path: `${boardPath}-shm`, mode: R_OK | W_OK, what: 'read and write the board shared memory', optional: true },
  ];
  for (const c of checks) {
    try {
      accessSync(c.path, c.mode);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      if (c.optional && code === 'ENOENT') continue;
      return { path: c.path, code, error: `cannot ${c.what} ${c.path}: ${code}` };
    }
  }
  return null;
}
