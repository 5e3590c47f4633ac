/**
 * Where the local files of a board live: its run logs, its spool, the supervisor's status file and
 * (SQLite) the owner lock. One place answers it for every consumer (the supervisor, `status`,
 * `logs`, the worker runtime):
 *
 * - A SQLite board keeps them next to the board file, exactly as always: `<dir>/logs/`,
 *   `<dir>/spool/`, `<board>.supervisor.json`, `<board>.owner-lock`, and the report channel's
 *   socket `<dir>/sockets/<board name>.sock`.
 * - A PostgreSQL board is not a file: they live in a local state folder of this host,
 *   `KANBAN_STATE_DIR` (or `run --state-dir`) or `$XDG_STATE_HOME/kanban-supervisor/<id>` (default `~/.local/state/…`),
 *   where `<id>` is a hash of the masked URL and the schema: the same on every host, and never
 *   derived from the password. There is no owner lock file: ownership is held on the server (one
 *   supervisor per board and host, see pg/host-lock.ts). The report channel's socket is
 *   `sockets/report.sock` there.
 *
 * The state folder is created 0700 and checked as the board folder is: a real directory (a symlink
 * is never followed) owned by this user; anything else is refused (BoardPathError, exit 2).
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { isOwnDirectory } from '@kanban-supervisor/reaper/safe-fs';
import { BoardPathError } from './errors.js';
import { isPgLocation, pgTarget } from './pg/location.js';

export interface BoardFiles {
  kind: 'sqlite' | 'postgres';
  /** The folder that holds the files below (the board's folder, or the PostgreSQL state folder). */
  dir: string;
  logDir: string;
  spoolDir: string;
  statusFile: string;
  /** The SQLite owner lock file; null on PostgreSQL (ownership is held on the server). */
  ownerLock: string | null;
  /** The supervisor's report channel (a Unix socket, 0600) and its folder (`sockets/`, 0700). */
  socketDir: string;
  socketPath: string;
  /** The workers' heartbeat slots (one 16-byte file per run, policies beat-slot.ts), in the socket's folder. */
  beatDir: string;
}

/** The state folder's name for a PostgreSQL board: a hash of its masked URL and schema (host-independent). */
export function pgStateId(url: string, schema?: string): string {
  const t = pgTarget(url, schema);
  const u = new URL(t.location);
  u.searchParams.delete('schema');
  return createHash('sha256').update(`${u.href}\n${t.schema}`).digest('hex').slice(0, 24);
}

/** The root under which PostgreSQL boards' state folders are made (without the board's id). */
export function pgStateRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'state');
  return join(base, 'kanban-supervisor');
}

/**
 * The files of the board at `location` (a resolved SQLite path, or a PostgreSQL URL). Pure: nothing
 * is created or checked (see ensureStateDir). A PostgreSQL board's state folder is `stateDir` when
 * given (the supervisor's validated config: KANBAN_STATE_DIR or `run --state-dir`; null: none set),
 * else KANBAN_STATE_DIR of `env`, else under pgStateRoot.
 */
export function boardFiles(location: string, env: NodeJS.ProcessEnv = process.env, stateDir?: string | null): BoardFiles {
  if (!isPgLocation(location)) {
    const dir = dirname(location);
    const socketDir = join(dir, 'sockets');
    return {
      kind: 'sqlite',
      dir,
      logDir: join(dir, 'logs'),
      spoolDir: join(dir, 'spool'),
      statusFile: `${location}.supervisor.json`,
      ownerLock: `${location}.owner-lock`,
      socketDir,
      socketPath: join(socketDir, `${basename(location)}.sock`),
      beatDir: join(socketDir, `${basename(location)}.beats`),
    };
  }
  const explicit = stateDir === undefined ? env.KANBAN_STATE_DIR : stateDir;
  const dir = explicit && explicit.trim() !== '' ? resolve(explicit) : join(pgStateRoot(env), pgStateId(location));
  const socketDir = join(dir, 'sockets');
  return {
    kind: 'postgres',
    dir,
    logDir: join(dir, 'logs'),
    spoolDir: join(dir, 'spool'),
    statusFile: join(dir, 'supervisor.json'),
    ownerLock: null,
    socketDir,
    socketPath: join(socketDir, 'report.sock'),
    beatDir: join(socketDir, 'beats'),
  };
}

/**
 * Create the PostgreSQL state folder (0700, its parents as needed) and check it: a real directory
 * owned by this user, never a symlink. Throws BoardPathError naming the folder. A SQLite board's
 * folder is checked where it always was (resolveBoardPath and the board-access probe).
 */
export function ensureStateDir(files: BoardFiles, label: string): void {
  if (files.kind !== 'postgres') return;
  try {
    mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new BoardPathError(label, `cannot create its local state folder ${files.dir}: ${(e as Error).message}`, { cause: e });
  }
  if (!isOwnDirectory(files.dir)) {
    let what = 'is not a folder of this user';
    try {
      if (lstatSync(files.dir).isSymbolicLink()) what = 'is a symbolic link (not followed)';
    } catch {
      /* as said */
    }
    throw new BoardPathError(label, `has a local state folder ${files.dir} that ${what}; set KANBAN_STATE_DIR (or run --state-dir) to a folder of this user`);
  }
}
