/**
 * Safe file primitives for directories that workers can write (the board folder, spool/, logs/,
 * backups/): nothing here follows a symbolic link in the last path component, blocks on a FIFO or
 * a device, or writes through a file that is not a regular file owned by this process's user.
 *
 * - `openSafe`: open with O_NOFOLLOW | O_NONBLOCK, then fstat: a regular file, owned by our
 *   effective uid, and (when asked) with a single hard link. Anything else is an `UnsafeFileError`.
 *   O_NONBLOCK makes opening a FIFO return at once (read: no writer needed; write: ENXIO), and the
 *   fstat then refuses it; on a regular file O_NONBLOCK has no effect.
 * - `readFileBounded`: read a whole file through `openSafe`, refusing one larger than a bound.
 * - `writeFileAtomic`: a temp file created exclusively (O_CREAT | O_EXCL | O_NOFOLLOW, random
 *   name), written, optionally fsynced, renamed over the target (which replaces a planted symlink
 *   instead of writing through it); the temp file is removed when anything fails.
 * - `boundLogFd` / `boundLogFile`: keep an append-only log under a byte bound, keeping its head
 *   and its newest tail with exactly one marker line between them. The marker line also tells
 *   readers (`parseLogMarker`) when a cut is under way, so that they never take its halfway state
 *   for output.
 *
 * This module imports nothing but Node: the board and the worker runtime use it too (through the
 * `@kanban-supervisor/reaper/safe-fs` subpath, which does not load the process machinery).
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

const C = fs.constants;
const NOFOLLOW = C.O_NOFOLLOW ?? 0;
const NONBLOCK = C.O_NONBLOCK ?? 0;

export type UnsafeReason = 'symlink' | 'not_regular' | 'foreign_owner' | 'hard_linked' | 'too_large';

/** A file refused by the safe primitives; `message` names the path and why. */
export class UnsafeFileError extends Error {
  readonly code = 'EUNSAFE';
  constructor(
    readonly path: string,
    readonly reason: UnsafeReason,
    detail: string,
  ) {
    super(`${path} ${detail}`);
    this.name = 'UnsafeFileError';
  }
}

export interface SafeOpenOptions {
  /** Refuse a file not owned by this process's effective uid (default true). */
  owner?: boolean;
  /** Refuse a file with more than one hard link: for files we write or truncate (default false). */
  singleLink?: boolean;
  /** Mode when O_CREAT is among the flags (default 0600). */
  mode?: number;
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** Check an fstat result against the options; throws UnsafeFileError. */
export function assertSafeStat(path: string, st: fs.Stats, opts: SafeOpenOptions = {}): void {
  if (!st.isFile()) throw new UnsafeFileError(path, 'not_regular', `is not a regular file (${kindOf(st)})`);
  const euid = process.geteuid?.();
  if ((opts.owner ?? true) && euid !== undefined && st.uid !== euid) {
    throw new UnsafeFileError(path, 'foreign_owner', `is owned by uid ${st.uid}, not by this process's user (uid ${euid})`);
  }
  if (opts.singleLink && st.nlink > 1) {
    throw new UnsafeFileError(path, 'hard_linked', `has ${st.nlink} hard links (it may be another file's name)`);
  }
}

/** Linux O_PATH: a descriptor that names the file without opening it (its close drops no POSIX lock). */
const O_PATH = process.platform === 'linux' ? 0o10000000 : 0;

/**
 * Before a real open, look at the file through an O_PATH descriptor (Linux): a symlink, a non-regular
 * file or one with several hard links is refused without ever being opened. Why: a worker can plant a
 * hard link to the board itself (`ln $KANBAN_DB spool/x.json`); opening and closing the board's inode
 * through fs in the supervisor would drop the supervisor's SQLite POSIX locks. Closing an O_PATH
 * descriptor does not touch locks. A file that does not exist yet is left to the open (O_CREAT).
 */
function precheck(path: string, opts: SafeOpenOptions): number | null {
  if (!O_PATH) return null;
  let pfd: number;
  try {
    pfd = fs.openSync(path, O_PATH | NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const st = fs.fstatSync(pfd);
    if (st.isSymbolicLink()) throw new UnsafeFileError(path, 'symlink', 'is a symbolic link (not followed)');
    assertSafeStat(path, st, { ...opts, singleLink: true });
    return pfd;
  } catch (e) {
    fs.closeSync(pfd);
    throw e;
  }
}

/**
 * Open the very inode the O_PATH descriptor `pfd` holds (through /proc/self/fd), so that nothing a
 * worker does to the path between the check and the open (a swap for a hard link to the board, a
 * FIFO) is what gets opened. null: /proc is not there (the caller opens by path).
 */
function reopen(pfd: number, flags: number): number | null {
  try {
    return fs.openSync(`/proc/self/fd/${pfd}`, (flags & ~(C.O_CREAT ?? 0) & ~NOFOLLOW) | NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * Open `path` without following a symlink and without blocking, and check what was opened.
 * `flags` are numeric open flags (fs.constants); O_NOFOLLOW and O_NONBLOCK are added.
 * Returns the fd (the caller closes it) and its fstat. Throws UnsafeFileError for a refused file,
 * the errno error otherwise (ENOENT, EACCES, ...).
 */
export function openSafe(path: string, flags: number, opts: SafeOpenOptions = {}): { fd: number; stat: fs.Stats } {
  const pfd = precheck(path, opts);
  let fd: number;
  try {
    // The file checked is the file opened (an exclusive create opens by path: it must fail, EEXIST).
    const held = pfd !== null && !(flags & (C.O_EXCL ?? 0)) ? reopen(pfd, flags) : null;
    fd = held ?? fs.openSync(path, flags | NOFOLLOW | NONBLOCK, opts.mode ?? 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'EMLINK') {
      let link = false;
      try {
        link = fs.lstatSync(path).isSymbolicLink();
      } catch {
        /* gone meanwhile */
      }
      if (link) throw new UnsafeFileError(path, 'symlink', 'is a symbolic link (not followed)');
    }
    if (code === 'ENXIO') throw new UnsafeFileError(path, 'not_regular', 'is not a regular file (a FIFO or socket)');
    if (code === 'EISDIR') throw new UnsafeFileError(path, 'not_regular', 'is not a regular file (a directory)');
    throw e;
  } finally {
    if (pfd !== null) fs.closeSync(pfd);
  }
  try {
    const stat = fs.fstatSync(fd);
    assertSafeStat(path, stat, opts);
    return { fd, stat };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/**
 * Read a whole file safely (no symlink, no FIFO, regular, ours), refusing one larger than
 * `maxBytes` (checked by fstat before reading and again while reading, in case it grows).
 */
export function readFileBounded(path: string, maxBytes: number, opts: SafeOpenOptions = {}): Buffer {
  const { fd, stat } = openSafe(path, C.O_RDONLY, opts);
  try {
    const tooLarge = () => new UnsafeFileError(path, 'too_large', `is larger than ${maxBytes} bytes`);
    if (stat.size > maxBytes) throw tooLarge();
    const buf = Buffer.allocUnsafe(Math.min(maxBytes, Math.max(stat.size, 4096)) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) throw tooLarge();
      const r = fs.readSync(fd, buf, n, buf.length - n, n);
      if (r === 0) break;
      n += r;
      if (n > maxBytes) throw tooLarge();
    }
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Read at most the last `maxBytes` bytes of a file safely (no symlink, no FIFO or device, regular,
 * ours, and with `singleLink` not a hard link): one bounded read from the end of what fstat saw.
 * `whole`: the bytes read start at the file's first byte.
 */
export function readTailSafe(path: string, maxBytes: number, opts: SafeOpenOptions = {}): { data: Buffer; whole: boolean } {
  const { fd, stat } = openSafe(path, C.O_RDONLY, opts);
  try {
    const start = Math.max(0, stat.size - maxBytes);
    return { data: readAt(fd, start, stat.size - start), whole: start === 0 };
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether `dir` is a real directory (not a symlink to one) owned by this process's user. */
export function isOwnDirectory(dir: string): boolean {
  try {
    const st = fs.lstatSync(dir);
    const euid = process.geteuid?.();
    return st.isDirectory() && (euid === undefined || st.uid === euid);
  } catch {
    return false;
  }
}

/**
 * A private folder of this user at `dir` (the supervisor's sockets/, heartbeat slots): made (0700)
 * when missing, its mode tightened to 0700 when it is ours; throws an Error naming `dir` when it is
 * not a folder (a symlink there is never followed) or belongs to another uid. Its parent must exist.
 */
export function ensurePrivateDir(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (m) {
      if ((m as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the folder ${dir}: ${(m as Error).message}`);
    }
    st = fs.lstatSync(dir);
  }
  if (!st.isDirectory()) throw new Error(`${dir} is not a folder (a symbolic link is not followed)`);
  const euid = process.geteuid?.();
  if (euid !== undefined && st.uid !== euid) throw new Error(`${dir} belongs to uid ${st.uid}, not to this user`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

/** fsync a directory so that a rename inside it is durable; best effort. */
export function fsyncDirectory(dir: string): void {
  try {
    const fd = fs.openSync(dir, C.O_RDONLY | (C.O_DIRECTORY ?? 0) | NOFOLLOW);
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* not every platform lets a directory be fsynced */
  }
}

function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}

function writeAllAt(fd: number, buf: Uint8Array, pos: number): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off, pos + off);
}

export interface AtomicWriteOptions {
  /** Mode of the new file (default 0600). */
  mode?: number;
  /** fsync the file before the rename and the folder after it (default true). */
  fsync?: boolean;
}

/**
 * Replace `path` atomically: a temp file `.<name>.<pid>.<random>.tmp` in the same folder, created
 * exclusively without following a symlink, written, fsynced, renamed over `path` (a symlink or
 * other entry planted at `path` is replaced, never written through). The temp file is removed when
 * anything fails (a full disk leaves nothing behind). Throws the failure.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | NOFOLLOW | NONBLOCK, opts.mode ?? 0o600);
  let closed = false;
  let done = false;
  try {
    writeAll(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    if (opts.fsync ?? true) fs.fsyncSync(fd);
    closed = true;
    fs.closeSync(fd);
    fs.renameSync(tmp, path);
    done = true;
  } finally {
    if (!closed) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failed */
      }
    }
    if (!done) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        /* never created or already gone */
      }
    }
  }
  if (opts.fsync ?? true) fsyncDirectory(dir);
}

// ------------------------------------------------------------------ bounded logs

/** Start of the one marker line that `boundLogFd` leaves where it dropped the middle of a log. */
export const LOG_MARKER_PREFIX = '[kanban-supervisor: log truncated: ';
/** The marker line (group 1: bytes dropped in total); shared with the `logs` reader. */
export const LOG_MARKER_RE = /^\[kanban-supervisor: log truncated: (\d+) bytes dropped here[^\n]*\n?/;
/** Last byte of a finished marker line (before its newline). */
const MARKER_DONE = 0x5d; // ']'
/**
 * Last byte of the marker line (before its newline) while a cut is under way: from before the
 * first byte of the file is overwritten until after the truncation (see `boundLogFd`).
 */
export const LOG_MARKER_CUTTING = '~';
const MARKER_CUTTING = LOG_MARKER_CUTTING.charCodeAt(0);

export interface LogMarkerLine {
  /** Bytes of the line, its newline included when it has one. */
  length: number;
  /** Bytes of output dropped at the marker, in total. */
  dropped: number;
  /**
   * A cut of the log is under way (or was left halfway by a supervisor that died): the bytes after
   * the marker may be half moved. Also true for a line without its newline (one being written).
   */
  cutting: boolean;
}

/** The marker line at the start of `buf`, if there is one there. */
export function parseLogMarker(buf: Buffer): LogMarkerLine | null {
  const nl = buf.indexOf(0x0a);
  const m = LOG_MARKER_RE.exec(buf.subarray(0, nl === -1 ? buf.length : nl + 1).toString('latin1'));
  if (!m) return null;
  const length = m[0].length;
  const complete = nl !== -1 && length === nl + 1;
  return { length, dropped: Number(m[1]), cutting: !complete || buf[length - 2] === MARKER_CUTTING };
}
/** Most of the head kept (the rest of the bound goes to the tail). */
const HEAD_CAP = 1024 * 1024;
/** Most of the tail kept: it is read into memory and written back, on the caller's thread. */
const TAIL_CAP = 4 * 1024 * 1024;

export interface LogBoundOptions {
  /** Text in the marker naming the bound (default `bound <maxBytes> bytes`). */
  boundName?: string;
  /** Bytes of the head kept (default min(maxBytes/4, 1 MiB)). */
  headBytes?: number;
  /** Bytes of the newest tail kept (default min(maxBytes/4, 4 MiB)). */
  tailBytes?: number;
}

export type LogBoundResult =
  | { truncated: false; size: number }
  | {
      truncated: true;
      /** Size when the bound was applied. */
      size: number;
      /** Size right after (head + marker + tail; writers may have appended since). */
      kept: number;
      /** Bytes of output dropped in the middle, in total (including earlier truncations). */
      dropped: number;
    };

/** Read up to `len` bytes at `pos` (fewer at the end of the file). */
export function readAt(fd: number, pos: number, len: number): Buffer {
  const buf = Buffer.allocUnsafe(Math.max(0, len));
  let n = 0;
  while (n < len) {
    const r = fs.readSync(fd, buf, n, len - n, pos + n);
    if (r === 0) break;
    n += r;
  }
  return buf.subarray(0, n);
}

/**
 * Keep the log open on `fd` under `maxBytes`: when it is larger, keep its first ~maxBytes/4
 * (cut at a line end), one marker line saying how much was dropped, and its newest ~maxBytes/4
 * (cut at a line start). `fd` must be opened O_RDWR without O_APPEND (see `openLogForBounding`).
 * The worker writes through its own O_APPEND descriptor, so after the truncation its writes
 * continue at the new end. A marker left by an earlier truncation is found in the head and
 * replaced, so the log holds exactly one. Output appended while the tail is moved is moved too;
 * only a write landing between the last size check and the truncation (a few microseconds, unless
 * the process is descheduled right there) is lost, and not counted in the marker: a file cannot be
 * shortened atomically with respect to another process's appends. A writer that outruns the move
 * three times keeps no tail (its output up to the truncation is counted as dropped).
 * A writer that cleared O_APPEND on its descriptor keeps writing at its own offset: its log then
 * becomes sparse and its size grows back at once (disk use stays bounded; the size does not).
 *
 * Readers (`logs -f`) read the file while it is cut, from another process. The cut is not one step
 * (the tail is written over the old middle, then the file is truncated), so it says when it is
 * under way: the marker line ends in LOG_MARKER_CUTTING instead of `]` from before anything else
 * is written (the earlier marker's last byte is flipped first, one byte; a log cut for the first
 * time gets its marker line, so marked, before its tail is moved) until after the truncation, when
 * that one byte is set back. A reader that reads the marker line before and after reading the file
 * and sees it finished and unchanged both times read a state no cut touched (see supervisor
 * src/logs.ts). A supervisor that dies in the middle leaves it marked; the next cut finishes it.
 */
export function boundLogFd(fd: number, maxBytes: number, opts: LogBoundOptions = {}): LogBoundResult {
  const size = fs.fstatSync(fd).size;
  if (size <= maxBytes) return { truncated: false, size };
  const quarter = Math.max(1, Math.floor(maxBytes / 4));
  const headBytes = Math.min(opts.headBytes ?? Math.min(quarter, HEAD_CAP), quarter);
  const tailBytes = Math.min(opts.tailBytes ?? Math.min(quarter, TAIL_CAP), quarter);

  // The head, and where it ends: at an earlier marker if there is one, else after its last newline.
  const window = readAt(fd, 0, headBytes + 512);
  let cut = -1;
  let earlierDropped = 0;
  let earlierMarkerLen = 0;
  /** Where the earlier marker line's last byte before its newline is (-1: none). */
  let earlierFlag = -1;
  for (let at = window.indexOf(LOG_MARKER_PREFIX); at !== -1 && at <= headBytes + 1; at = window.indexOf(LOG_MARKER_PREFIX, at + 1)) {
    if (at !== 0 && window[at - 1] !== 0x0a) continue;
    const end = window.indexOf(0x0a, at);
    const m = LOG_MARKER_RE.exec(window.subarray(at, end === -1 ? window.length : end).toString('latin1'));
    if (!m) continue;
    cut = at; // a newline before it (ours when the head had none) stays with the head
    earlierDropped = Number(m[1]);
    earlierMarkerLen = (end === -1 ? window.length : end + 1) - at;
    if (end !== -1 && end > at) earlierFlag = end - 1;
    break;
  }
  if (cut === -1) {
    const nl = window.subarray(0, Math.min(headBytes, window.length)).lastIndexOf(0x0a);
    cut = nl === -1 ? Math.min(headBytes, window.length) : nl + 1;
  }

  const needNewline = cut > 0 && window[cut - 1] !== 0x0a;
  const markerFor = (dropped: number) =>
    Buffer.from(
      `${needNewline ? '\n' : ''}${LOG_MARKER_PREFIX}${dropped} bytes dropped here to stay under ${opts.boundName ?? `the bound of ${maxBytes} bytes`}${LOG_MARKER_CUTTING}\n`,
      'utf8',
    );
  // Marker and tail go in place right after the head (positioned writes: the region they cover is
  // being dropped), what the writers appended meanwhile is moved after them (a little at a time,
  // never more than the tail's size), and the file is cut there: the writers' O_APPEND writes then
  // continue at the new end, never in between. A writer that appends faster than that outruns the
  // move: the tail is then taken again from the new end (at most 3 times; after that no tail is
  // kept: the marker counts everything up to the newest end as dropped, and the file ends with it).
  // The work per call is bounded by a few tails.
  const buf = Buffer.allocUnsafe(Math.min(tailBytes + 1, 64 * 1024));
  // Readers see the cut begin before any byte they could read as output changes.
  if (earlierFlag !== -1) writeAllAt(fd, Buffer.of(MARKER_CUTTING), earlierFlag);
  for (let attempt = 1; ; attempt++) {
    let size = fs.fstatSync(fd).size;
    let start = Math.max(cut, size - tailBytes);
    let tail = readAt(fd, start, size - start);
    size = start + tail.length;
    if (start > cut) {
      // Begin the tail at a line start when one is near.
      const nl = tail.indexOf(0x0a);
      if (nl !== -1 && nl < tail.length / 2) {
        tail = tail.subarray(nl + 1);
        start += nl + 1;
      }
    }
    let dropped = earlierDropped + Math.max(0, start - cut - earlierMarkerLen);
    let marker = markerFor(dropped);
    if (cut + marker.length > start) {
      // Only with a tiny bound: never write over what has not been read yet.
      const skip = Math.min(cut + marker.length - start, tail.length);
      tail = tail.subarray(skip);
      start += skip;
    }
    // The marker (saying a cut is under way) first, on its own, then the tail after it.
    let pos = cut;
    writeAllAt(fd, marker, pos);
    writeAllAt(fd, tail, pos + marker.length);
    pos += marker.length + tail.length;
    let covered = size;
    let outrun = false;
    // What was appended since is read straight from where it lands (no fstat): the read that finds
    // nothing is followed by the truncation with nothing allocated in between (no garbage
    // collection there), which keeps the window in which an append is lost as short as it can be.
    for (let moved = 0; ; ) {
      const n = fs.readSync(fd, buf, 0, buf.length, covered);
      if (n === 0) break;
      if (moved + n > tailBytes) {
        outrun = true;
        break;
      }
      writeAllAt(fd, buf.subarray(0, n), pos);
      pos += n;
      covered += n;
      moved += n;
    }
    if (outrun) {
      if (attempt < 3) continue;
      // Outrun a third time: no tail. What it did not move (the writer's newest output) is counted
      // as dropped, with the rest, instead of vanishing after the tail without a word.
      for (let i = 0; ; i++) {
        covered = fs.fstatSync(fd).size;
        dropped = earlierDropped + Math.max(0, covered - cut - earlierMarkerLen);
        marker = markerFor(dropped);
        writeAllAt(fd, marker, cut);
        pos = cut + marker.length;
        if (fs.readSync(fd, buf, 0, 1, covered) === 0 || i === 3) break;
      }
    }
    fs.ftruncateSync(fd, pos);
    // Done: the marker line's last byte says so (one byte, inside what was just kept).
    writeAllAt(fd, Buffer.of(MARKER_DONE), cut + marker.length - 2);
    return { truncated: true, size: covered, kept: pos, dropped };
  }
}

/**
 * Open a log for `boundLogFd`: no symlink, no FIFO, regular, ours, a single hard link. Read-write
 * without O_APPEND (boundLogFd writes at explicit positions; on Linux a positioned write through an
 * O_APPEND descriptor would append).
 */
export function openLogForBounding(path: string): number {
  return openSafe(path, C.O_RDWR, { owner: true, singleLink: true }).fd;
}

/** `boundLogFd` on a path (opened safely, closed after). */
export function boundLogFile(path: string, maxBytes: number, opts: LogBoundOptions = {}): LogBoundResult {
  const fd = openLogForBounding(path);
  try {
    return boundLogFd(fd, maxBytes, opts);
  } finally {
    fs.closeSync(fd);
  }
}
