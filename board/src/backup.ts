/**
 * Backups of a damaged board: exactly one per damage fingerprint, made only by a process that
 * holds no SQLite connection to the board (reading the file through `fs` in a process that holds
 * one would drop that connection's POSIX locks when the descriptor is closed). The supervisor
 * runs `backup-main.js` in a short-lived helper process for that reason.
 *
 * The fingerprint is a SHA-256 over the database file and its -wal (each with its length; an
 * empty or missing -wal counts as absent). The -shm is copied into the backup when it exists,
 * but it is NOT part of the fingerprint: it is a derived index that SQLite deletes when the last
 * read-write connection closes and recreates on the next open (a read-only `check` recreates an
 * empty -wal and a -shm next to a board that had neither), so hashing it would turn one damage
 * into several backups.
 *
 * A backup is made in a temporary folder and renamed to its final name `<base>.<16 hex>`; when two
 * processes race, the rename of the second fails with EEXIST/ENOTEMPTY and it keeps the winner's.
 *
 * The board's folder is one that workers can write: every file is opened without following a
 * symlink and without blocking (a FIFO planted as `<board>-wal` cannot hang the helper), and must
 * be a regular file owned by this process's user. An unsafe -wal or -shm is left out of the backup
 * and the fingerprint (and named in `skipped`); an unsafe database file refuses the backup. A board
 * path that is itself a symlink is read through its target (the path the supervisor resolved).
 */
import { fsyncDir } from './fsutil.js';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as FS,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { UnsafeFileError, isOwnDirectory, openSafe } from '@kanban-supervisor/reaper/safe-fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BoardError } from './errors.js';
import { holdsConnection } from './open.js';

export interface BackupOptions {
  /** Where backups go (default `<board dir>/backups`). */
  backupsDir?: string;
  /** How many backups of this board to keep, newest first (default 5). */
  keep?: number;
  /** Total size cap of this board's backups (default 1 GiB). The newest backup is kept even when it alone is larger. */
  maxBytes?: number;
}

export interface BackupResult {
  /** True when this call made the backup; false when one with this fingerprint already existed. */
  created: boolean;
  /** The backup folder (`<backupsDir>/<base>.<first 16 hex of the fingerprint>`). */
  dir: string;
  /** SHA-256 (hex) of the database file and its -wal. */
  fingerprint: string;
  /** Bytes copied (0 when not created). */
  bytes: number;
  /** Backups of this board removed by the keep/size limits during this call. */
  pruned: string[];
  /** True when this call copied the board but another process renamed its copy into place first. */
  raced: boolean;
  /** Side files (-wal, -shm) left out because they were not safe to read (why, naming the file). */
  skipped?: string[];
}

/** Absolute path of the compiled helper script: `node BACKUP_MAIN BOARD_PATH` prints a BackupResult as JSON. */
export const BACKUP_MAIN = fileURLToPath(new URL('./backup-main.js', import.meta.url));

export const DEFAULT_BACKUP_KEEP = 5;
export const DEFAULT_BACKUP_MAX_BYTES = 1024 * 1024 * 1024;
const CHUNK = 1024 * 1024;
const STALE_TMP_MS = 60 * 60 * 1000;

/** The path the board's files are read through: the target when the board path is a symlink. */
function sourceOf(abs: string): string {
  try {
    return lstatSync(abs).isSymbolicLink() ? realpathSync(abs) : abs;
  } catch {
    return abs;
  }
}

/**
 * The board's files that take part in a backup: [suffix, absolute path, size] (by lstat: nothing
 * is followed or opened; size 0 for what is not a regular file, which hashFile then refuses);
 * missing ones are left out.
 */
function boardFiles(abs: string): Array<{ suffix: '' | '-wal' | '-shm'; path: string; size: number }> {
  const out: Array<{ suffix: '' | '-wal' | '-shm'; path: string; size: number }> = [];
  const src = sourceOf(abs);
  for (const suffix of ['', '-wal', '-shm'] as const) {
    const p = src + suffix;
    try {
      const st = lstatSync(p);
      out.push({ suffix, path: p, size: st.isFile() ? st.size : 0 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return out;
}

function assertNoConnection(abs: string, what: string): void {
  if (holdsConnection(abs)) {
    throw new BoardError(
      `${what}: this process holds a SQLite connection to ${abs}; reading the file through fs here would drop that connection's locks. Close it first or run ${BACKUP_MAIN} in a helper process`,
    );
  }
}

/**
 * Read a file in chunks (opened without following a symlink or blocking, checked to be a regular
 * file of ours: UnsafeFileError otherwise), optionally copying it to `copyTo` (created 0600,
 * exclusively, fsynced) meanwhile. Returns the bytes read and the SHA-256 (hex) of what was read.
 */
function hashFile(path: string, copyTo: string | null): { total: number; digest: string } {
  const { fd } = openSafe(path, FS.O_RDONLY);
  let out: number | null = null;
  try {
    out = copyTo === null ? null : openSync(copyTo, 'wx', 0o600);
    const content = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      total += n;
      content.update(buf.subarray(0, n));
      if (out !== null) {
        let off = 0;
        while (off < n) off += writeSync(out, buf, off, n - off);
      }
    }
    if (out !== null) fsyncSync(out);
    return { total, digest: content.digest('hex') };
  } finally {
    if (out !== null) closeSync(out);
    closeSync(fd);
  }
}

/**
 * The damage fingerprint of a board: SHA-256 over the database file and its non-empty -wal.
 * Only in a process that holds no connection to the board.
 */
export function damageFingerprint(boardPath: string): string {
  const abs = resolve(boardPath);
  assertNoConnection(abs, 'damageFingerprint');
  return fingerprintOf(abs, null).fingerprint;
}

function fingerprintOf(abs: string, copyDir: string | null): { fingerprint: string; bytes: number; skipped: string[] } {
  const files = boardFiles(abs);
  if (!files.some((f) => f.suffix === '')) throw new BoardError(`board ${abs} does not exist`);
  const hash = createHash('sha256');
  let bytes = 0;
  const skipped: string[] = [];
  for (const f of files) {
    if (f.suffix === '-shm' && copyDir === null) continue; // not part of the fingerprint
    const dest = copyDir === null ? null : join(copyDir, basename(abs) + f.suffix);
    let r: { total: number; digest: string };
    try {
      r = hashFile(f.path, dest);
    } catch (e) {
      if (!(e instanceof UnsafeFileError)) throw e;
      if (f.suffix === '') throw new BoardError(`board ${e.message}; it was not backed up`);
      skipped.push(e.message);
      if (dest !== null) rmSync(dest, { force: true });
      continue;
    }
    const { total, digest } = r;
    bytes += total;
    // The database always counts; the -wal only when it holds something; the -shm never.
    if (f.suffix === '' || (f.suffix === '-wal' && total > 0)) hash.update(`${f.suffix === '' ? 'db' : 'wal'}\0${total}\0${digest}\n`);
  }
  return { fingerprint: hash.digest('hex'), bytes, skipped };
}


function dirBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    try {
      total += lstatSync(join(dir, name)).size;
    } catch {
      /* removed meanwhile */
    }
  }
  return total;
}

function backupNamePattern(base: string): RegExp {
  return new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.[0-9a-f]{16}$`);
}

/** The backups of one board in `backupsDir`, newest first. */
export function listBackups(boardPath: string, opts: { backupsDir?: string } = {}): Array<{ dir: string; mtimeMs: number; bytes: number }> {
  const abs = resolve(boardPath);
  const backupsDir = resolve(opts.backupsDir ?? join(dirname(abs), 'backups'));
  if (!existsSync(backupsDir)) return [];
  const re = backupNamePattern(basename(abs));
  const out: Array<{ dir: string; mtimeMs: number; bytes: number }> = [];
  for (const name of readdirSync(backupsDir)) {
    if (!re.test(name)) continue;
    const dir = join(backupsDir, name);
    try {
      const st = lstatSync(dir);
      if (st.isDirectory()) out.push({ dir, mtimeMs: st.mtimeMs, bytes: dirBytes(dir) });
    } catch {
      /* pruned by another process meanwhile */
    }
  }
  return out.sort((a, b) => b.mtimeMs - a.mtimeMs || (a.dir < b.dir ? 1 : -1));
}

/** Remove this board's backups beyond `keep` and beyond `maxBytes` (the newest always stays), and stale temp folders. */
function prune(abs: string, backupsDir: string, keep: number, maxBytes: number, newest: string | null): string[] {
  const removed: string[] = [];
  const list = listBackups(abs, { backupsDir });
  // The one just made counts as the newest even when a clock step made another look newer.
  if (newest) {
    const i = list.findIndex((b) => b.dir === newest);
    if (i > 0) list.unshift(...list.splice(i, 1));
  }
  let total = 0;
  list.forEach((b, i) => {
    total += b.bytes;
    if (i === 0) return;
    if (i >= keep || total > maxBytes) {
      rmSync(b.dir, { recursive: true, force: true });
      removed.push(b.dir);
      total -= b.bytes;
    }
  });
  const tmpPrefix = `.tmp-${basename(abs)}.`;
  for (const name of readdirSync(backupsDir)) {
    if (!name.startsWith(tmpPrefix)) continue;
    const p = join(backupsDir, name);
    try {
      if (Date.now() - lstatSync(p).mtimeMs > STALE_TMP_MS) rmSync(p, { recursive: true, force: true });
    } catch {
      /* gone */
    }
  }
  return removed;
}

/**
 * Back up a damaged board once per damage fingerprint: the database with its -wal and -shm,
 * copied into `<backupsDir>/<base>.<first 16 hex of the fingerprint>/`. When that folder exists,
 * nothing is copied and `created` is false. Keeps the newest `keep` backups of this board within
 * `maxBytes`. Throws when this process holds a SQLite connection to the board, when the board
 * does not exist, or when the filesystem lacks the space for the copy.
 */
export function backupDamaged(boardPath: string, opts: BackupOptions = {}): BackupResult {
  const abs = resolve(boardPath);
  assertNoConnection(abs, 'backupDamaged');
  const keep = Math.max(1, opts.keep ?? DEFAULT_BACKUP_KEEP);
  const maxBytes = opts.maxBytes ?? DEFAULT_BACKUP_MAX_BYTES;
  const backupsDir = resolve(opts.backupsDir ?? join(dirname(abs), 'backups'));
  const base = basename(abs);
  const first = fingerprintOf(abs, null).fingerprint;
  const dirFor = (fp: string) => join(backupsDir, `${base}.${fp.slice(0, 16)}`);
  if (existsSync(dirFor(first))) return { created: false, dir: dirFor(first), fingerprint: first, bytes: 0, pruned: [], raced: false };

  mkdirSync(backupsDir, { recursive: true, mode: 0o700 });
  if (!isOwnDirectory(backupsDir)) {
    throw new BoardError(`backups folder ${backupsDir} is not a folder of this process's user (a symlink, or another owner's); the damaged board ${abs} was not backed up`);
  }
  const need = boardFiles(abs).reduce((s, f) => s + f.size, 0);
  try {
    const fs = statfsSync(backupsDir);
    const free = Number(fs.bavail) * Number(fs.bsize);
    if (free < need + 64 * 1024 * 1024) {
      throw new BoardError(
        `backup of ${abs} needs ${need} bytes in ${backupsDir} plus a 64 MiB margin, but only ${free} bytes are free; the damaged board was not backed up`,
      );
    }
  } catch (e) {
    if (e instanceof BoardError) throw e;
    /* statfs unavailable: go ahead */
  }

  const tmp = join(backupsDir, `.tmp-${base}.${process.pid}.${randomBytes(6).toString('hex')}`);
  mkdirSync(tmp, { mode: 0o700 });
  try {
    // Copy and hash in one pass: the folder is named after what it actually holds.
    const { fingerprint, bytes, skipped } = fingerprintOf(abs, tmp);
    fsyncDir(tmp);
    const final = dirFor(fingerprint);
    try {
      renameSync(tmp, final);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTEMPTY') {
        rmSync(tmp, { recursive: true, force: true });
        return { created: false, dir: final, fingerprint, bytes: 0, pruned: [], raced: true, ...(skipped.length ? { skipped } : {}) };
      }
      throw e;
    }
    fsyncDir(backupsDir);
    const pruned = prune(abs, backupsDir, keep, maxBytes, final);
    return { created: true, dir: final, fingerprint, bytes, pruned, raced: false, ...(skipped.length ? { skipped } : {}) };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
