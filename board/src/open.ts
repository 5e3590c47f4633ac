/**
 * Opening a board: the one place that creates files, checks headers, sets WAL and migrates.
 *
 * Rules this module keeps (each one answers a corruption seen in the field):
 * - The DB file is never opened/read/closed through `fs` by a process that holds a SQLite
 *   connection to it: closing any fd of a file drops all of the process's POSIX locks on it.
 *   Header checks therefore happen only before this process's first connection to the file.
 * - `PRAGMA journal_mode=WAL` is issued at most once per board, under a cross-process init
 *   lock, and only when the file is not WAL yet. If WAL cannot be had, the open fails; there
 *   is no silent fallback to another journal mode.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readlinkSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { BoardDamagedError, BoardError, BoardPathError, NotABoardError, SchemaTooNewError, WalUnavailableError, classifyError } from './errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

export type Db = Database.Database;

export interface OpenOptions {
  /** Busy timeout per statement. Keep it small in the supervisor (its event loop blocks meanwhile). */
  busyTimeoutMs?: number;
  /**
   * Create the board when it does not exist, or make one of an empty file (default true). Without
   * it (and read-only), a file that holds no board (empty, or schema version 0) is refused.
   */
  create?: boolean;
  /** Open read-only (no WAL change, no migration): for `check`, `status` of a board one does not own. */
  readonly?: boolean;
}

export const SQLITE_MAGIC = 'SQLite format 3\u0000';
export const JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024;
export const WAL_AUTOCHECKPOINT_PAGES = 1000;

export interface BoardPathOptions {
  /** Refuse a missing board file (every CLI command but `init`, `skill add` and `run`). */
  mustExist?: boolean;
  /** Refuse a missing board file whose folder does not exist either (`run`, outside the default location). */
  folderMustExist?: boolean;
  /**
   * Accept a board file with more than one hard link. Only for a process given its path by the
   * board's owner (a worker), which checked it: a link made later must not fail runs.
   */
  allowHardLinks?: boolean;
}

function errnoOf(e: unknown): string {
  return String((e as NodeJS.ErrnoException)?.code ?? '');
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/**
 * The path of the board at `path`, checked before anything opens it, and the one path every file
 * of the board is derived from (owner lock, -wal, -shm, logs/, spool/, status file):
 * - a board file that is a symbolic link is replaced by the real path of its target, so every path
 *   to one board reaches the same owner lock (a symlinked folder needs nothing: the side files
 *   live in the same folder);
 * - a board file with more than one hard link is refused (BoardPathError): two names of one file
 *   would get two owner locks and two -wal files, i.e. two owners and a split journal;
 * - a directory, FIFO, socket or device is refused; so is a path through a non-folder;
 * - a missing board file is refused with `mustExist`, or with `folderMustExist` when its folder is missing too.
 * Never opens the file (no POSIX lock of this process can be dropped by it).
 */
export function resolveBoardPath(path: string, opts: BoardPathOptions = {}): string {
  if (path.trim() === '') throw new BoardPathError('""', 'is not a path: the board path is empty');
  const given = resolve(path);
  let abs = given;
  let st: Stats | null;
  try {
    st = lstatSync(abs);
  } catch (e) {
    const code = errnoOf(e);
    if (code === 'ENOENT') st = null;
    else if (code === 'ENOTDIR') throw new BoardPathError(abs, 'cannot exist: a component of its folder path is not a folder', { cause: e });
    else throw new BoardPathError(abs, `cannot be looked up: ${(e as Error).message}`, { cause: e });
  }
  if (st?.isSymbolicLink()) {
    let target = '?';
    try {
      target = readlinkSync(abs);
    } catch {
      /* named as '?' */
    }
    try {
      abs = realpathSync(abs);
      st = statSync(abs);
    } catch (e) {
      throw new BoardPathError(given, `is a symbolic link to ${JSON.stringify(target)}, which cannot be resolved (${errnoOf(e) || (e as Error).message}); give the path of the board file itself`, { cause: e });
    }
  }
  const via = abs === given ? '' : ` (reached through the symbolic link ${given})`;
  if (st) {
    if (st.isDirectory()) {
      throw new BoardPathError(abs, `${via} is a directory; --db (KANBAN_DB) must name the board file, e.g. ${join(abs, 'kanban.db')}`.trimStart());
    }
    if (!st.isFile()) throw new BoardPathError(abs, `${via} is ${kindOf(st)}, not a board file`.trimStart());
    if (st.nlink > 1 && !opts.allowHardLinks) {
      throw new BoardPathError(
        abs,
        (
          `${via} has ${st.nlink} hard links: another name reaches the same file, and each name would get its own owner lock and its own -wal (two owners, a split journal). ` +
          `Keep one name (find the others with \`find / -xdev -samefile ${abs}\`) and remove the other links`
        ).trimStart(),
      );
    }
    return abs;
  }
  if (opts.mustExist) throw new BoardPathError(abs, `does not exist; create it with \`kanban-supervisor --db ${abs} init\``);
  const dir = dirname(abs);
  let dst: Stats | null = null;
  try {
    dst = statSync(dir);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') throw new BoardPathError(abs, `cannot be created: its folder ${dir} cannot be looked up (${(e as Error).message})`, { cause: e });
  }
  if (dst && !dst.isDirectory()) throw new BoardPathError(abs, `cannot be created: ${dir} is not a folder`);
  if (!dst && opts.folderMustExist) {
    throw new BoardPathError(
      abs,
      `does not exist, nor does its folder ${dir} (a mistyped path?); it is not created here: create the board with \`kanban-supervisor --db ${abs} init\``,
    );
  }
  return abs;
}

/** Connections this process holds, by real path of the DB file. */
const held = new Map<string, number>();

function keyFor(abs: string): string {
  try {
    return resolve(realpathSync(dirname(abs)), basename(abs));
  } catch {
    return abs;
  }
}

/** Whether this process currently holds a SQLite connection to `path`. */
export function holdsConnection(path: string): boolean {
  return (held.get(keyFor(resolve(path))) ?? 0) > 0;
}

const NETWORK_FS = new Set(['nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'fuse.sshfs', 'sshfs', '9p', 'afs', 'ncpfs', 'fuse.gcsfuse', 'fuse.s3fs', 'glusterfs', 'fuse.glusterfs', 'lustre', 'ceph', 'fuse.ceph']);

/** The filesystem type of the mount that holds `dir` (Linux; null elsewhere). */
export function filesystemType(dir: string): { type: string; mount: string } | null {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return null;
  }
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    real = dir;
  }
  let best: { type: string; mount: string } | null = null;
  for (const line of mounts.split('\n')) {
    const parts = line.split(' ');
    if (parts.length < 3) continue;
    const mount = parts[1]!.replace(/\\040/g, ' ');
    if (real === mount || real.startsWith(mount.endsWith('/') ? mount : mount + '/')) {
      if (!best || mount.length >= best.mount.length) best = { type: parts[2]!, mount };
    }
  }
  return best;
}

/** Read and check the 100-byte header. Only call before this process holds a connection. */
export function checkHeaderByFs(abs: string): { size: number; empty: boolean } {
  const size = statSync(abs).size;
  if (size === 0) return { size, empty: true };
  const fd = openSync(abs, 'r');
  try {
    const buf = Buffer.alloc(100);
    const n = readSync(fd, buf, 0, 100, 0);
    const magic = buf.subarray(0, 16).toString('latin1');
    if (n < 16 || magic !== SQLITE_MAGIC) {
      throw new BoardDamagedError(
        abs,
        `not a SQLite database: its header is ${JSON.stringify(buf.subarray(0, Math.min(n, 16)).toString('latin1'))}, expected "SQLite format 3\\0"`,
      );
    }
    if (n < 100) throw new BoardDamagedError(abs, `truncated header (${size} bytes)`);
    const pageSizeRaw = buf.readUInt16BE(16);
    const pageSize = pageSizeRaw === 1 ? 65536 : pageSizeRaw;
    if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) {
      throw new BoardDamagedError(abs, `invalid page size ${pageSizeRaw} in the header`);
    }
    return { size, empty: false };
  } finally {
    closeSync(fd);
  }
}

/** Create `abs` with mode 0600 if missing, and its missing parent folders with mode 0700. */
function ensureFile(abs: string): void {
  mkdirSync(dirname(abs), { recursive: true, mode: 0o700 });
  if (existsSync(abs)) return;
  if (existsSync(abs + '-wal')) {
    throw new BoardDamagedError(
      abs,
      `${abs}-wal exists without its database file; the WAL was separated from its board. Restore the database file next to it, or move the -wal away deliberately`,
    );
  }
  try {
    closeSync(openSync(abs, 'wx', 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

/** Run `fn` with a umask that makes SQLite's own files (lock DBs, -wal, -shm) private. */
function withPrivateUmask<T>(fn: () => T): T {
  const old = process.umask(0o077);
  try {
    return fn();
  } finally {
    process.umask(old);
  }
}

function track(db: Db, key: string): Db {
  held.set(key, (held.get(key) ?? 0) + 1);
  const close = db.close.bind(db);
  let closed = false;
  db.close = () => {
    if (!closed) {
      closed = true;
      const n = (held.get(key) ?? 1) - 1;
      if (n <= 0) held.delete(key);
      else held.set(key, n);
    }
    return close();
  };
  return db;
}

/** Open a raw SQLite connection with the board's per-connection settings (no WAL change, no migration). */
function connect(abs: string, opts: OpenOptions): Db {
  const key = keyFor(abs);
  const db = withPrivateUmask(
    () => new Database(abs, { timeout: opts.busyTimeoutMs ?? 5000, readonly: opts.readonly ?? false, fileMustExist: true }),
  );
  track(db, key);
  try {
    db.pragma('cell_size_check = ON');
    db.pragma('trusted_schema = OFF');
    db.pragma('foreign_keys = ON');
    if (!opts.readonly) {
      db.pragma('synchronous = FULL');
      // Freed pages hold zeros, so a torn write cannot resurrect stale rows (cost measured: within noise,
      // see `npm run bench:secure-delete` and the README).
      db.pragma('secure_delete = ON');
      db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    }
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

/** Path of the small SQLite database used as the cross-process init lock. */
export function initLockPath(abs: string): string {
  return abs + '.init-lock';
}

/** Set WAL once, under the init lock; verify; never fall back. */
function enableWalOnce(db: Db, abs: string): void {
  const lock = withPrivateUmask(() => new Database(initLockPath(abs), { timeout: 15_000 }));
  try {
    lock.exec('BEGIN IMMEDIATE');
    try {
      const mode = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
      if (mode === 'wal') return;
      let got: string;
      try {
        got = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
      } catch (e) {
        if (classifyError(e) === 'busy') throw e;
        throw new WalUnavailableError(abs, (e as Error).message, { cause: e });
      }
      if (got !== 'wal') {
        const fs = filesystemType(dirname(abs));
        throw new WalUnavailableError(
          abs,
          `SQLite answered journal_mode=${got}${fs ? ` on a ${fs.type} filesystem mounted at ${fs.mount}` : ''}; shared-memory locking is not supported there`,
        );
      }
    } finally {
      if (lock.inTransaction) lock.exec('COMMIT');
    }
  } finally {
    lock.close();
  }
}

function migrate(db: Db, abs: string): void {
  const current = Number(db.pragma('user_version', { simple: true }));
  if (current > SCHEMA_VERSION) throw new SchemaTooNewError(abs, current, SCHEMA_VERSION);
  if (current === SCHEMA_VERSION) return;
  for (const m of MIGRATIONS) {
    // Switched off outside the transaction (SQLite ignores the pragma inside one), checked inside it.
    if (m.rebuildsTables) db.pragma('foreign_keys = OFF');
    db.exec('BEGIN IMMEDIATE');
    try {
      const v = Number(db.pragma('user_version', { simple: true }));
      if (v > SCHEMA_VERSION) throw new SchemaTooNewError(abs, v, SCHEMA_VERSION);
      if (v < m.version) {
        db.exec(m.sql);
        if (m.rebuildsTables) {
          const bad = db.pragma('foreign_key_check') as Array<{ table: string; parent: string }>;
          if (bad.length > 0) {
            throw new BoardError(`migration to schema version ${m.version} of ${abs} would break ${bad.length} reference(s) (first: ${bad[0]!.table} → ${bad[0]!.parent}); nothing was changed`);
          }
        }
        db.pragma(`user_version = ${m.version}`);
      }
      db.exec('COMMIT');
      if (m.rebuildsTables) db.pragma('foreign_keys = ON');
    } catch (e) {
      if (m.rebuildsTables) {
        try {
          if (db.inTransaction) db.exec('ROLLBACK');
          db.pragma('foreign_keys = ON');
        } catch {
          /* the original error is the one that matters */
        }
      }
      if (db.inTransaction) {
        try {
          db.exec('ROLLBACK');
        } catch {
          /* the original error is the one that matters */
        }
      }
      throw e;
    }
  }
}

/**
 * Open (and create, by default) the board at `path` with the hardened settings.
 * Throws BoardDamagedError, SchemaTooNewError, WalUnavailableError or BoardError naming the path.
 */
export function openDatabase(path: string, opts: OpenOptions = {}): Db {
  // Symlink resolved, type checked (a directory or FIFO is refused, never opened); hard links are
  // the callers' business (resolveBoardPath without allowHardLinks at every entry point).
  const abs = resolveBoardPath(path, { allowHardLinks: true });
  const create = opts.create ?? true;
  if (opts.readonly && !existsSync(abs)) throw new BoardPathError(abs, 'does not exist');
  if (!opts.readonly) {
    const fs = filesystemType(dirname(abs)) ?? (existsSync(dirname(abs)) ? null : filesystemType(dirname(dirname(abs))));
    if (fs && NETWORK_FS.has(fs.type)) {
      throw new WalUnavailableError(abs, `it is on a network filesystem (${fs.type} at ${fs.mount}); SQLite WAL needs local shared memory`);
    }
    if (create) ensureFile(abs);
    else if (!existsSync(abs)) throw new BoardPathError(abs, 'does not exist (run `kanban-supervisor init`)');
  }
  // Only `create` makes a board of a file: an open that may not create one (every command but
  // `init`, `skill add` and `run`, workers, readers) refuses an empty file or a database without
  // the board's schema, naming it, and writes nothing to it (no WAL, no tables, no init lock).
  const mayInit = create && !opts.readonly;
  if (!holdsConnection(abs) && checkHeaderByFs(abs).empty && !mayInit) throw notABoard(abs, 'is an empty file');
  let db: Db;
  try {
    db = connect(abs, opts);
  } catch (e) {
    if (classifyError(e) === 'damaged') throw new BoardDamagedError(abs, (e as Error).message, { cause: e });
    throw e;
  }
  try {
    const version = Number(db.pragma('user_version', { simple: true }));
    if (!mayInit && version === 0) {
      throw notABoard(abs, 'is a SQLite database without the board\'s schema (user_version 0)');
    }
    // Another application's database (a schema version of its own, no board tables): refused by
    // every open, before anything is written to it (no WAL switch, no init lock, no migration).
    if (version > 0 && db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'`).get() === undefined) {
      throw notABoard(abs, `is a SQLite database without the board's tables (user_version ${version}, no tasks table)`);
    }
    if (!opts.readonly) {
      const mode = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
      if (mode !== 'wal') enableWalOnce(db, abs);
      migrate(db, abs);
    } else {
      const v = Number(db.pragma('user_version', { simple: true }));
      if (v > SCHEMA_VERSION) throw new SchemaTooNewError(abs, v, SCHEMA_VERSION);
    }
  } catch (e) {
    db.close();
    if (classifyError(e) === 'damaged' && !(e instanceof NotABoardError)) throw new BoardDamagedError(abs, (e as Error).message, { cause: e });
    throw e;
  }
  return db;
}

/** The refusal of a file that holds no board, saying how to make one (BoardPathError: exit 2 in the CLI). */
function notABoard(abs: string, what: string): NotABoardError {
  return new NotABoardError(abs, `${what}, not a board: give the path of a board, or create one with \`kanban-supervisor --db ${abs} init\``);
}

/** Open a raw connection to a small lock database with a private umask (used by the owner lock). */
export function openLockDatabase(path: string, busyTimeoutMs = 0): Db {
  mkdirSync(dirname(resolve(path)), { recursive: true, mode: 0o700 });
  return withPrivateUmask(() => new Database(resolve(path), { timeout: busyTimeoutMs }));
}
