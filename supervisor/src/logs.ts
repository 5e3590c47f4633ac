/**
 * `kanban-supervisor logs ID [--run RUN_ID | --attempt N] [--tail N] [-f]`: a run's output file.
 *
 * ID is a task id or a run id; without --run/--attempt the task's latest run is shown. `-f` follows
 * the file as it grows and then every later run of the task (a one-line header per attempt), and
 * ends by itself, exit 0, once the task is done, blocked or cancelled and its last run's processes
 * are gone. It reads the board through a read-only connection, with or without a supervisor.
 *
 * The logs folder is writable by workers: a log is opened without following a symlink and without
 * blocking (a FIFO planted at its name is refused, never read), and must be a regular file with a
 * single link. A log bounded by LOG_MAX_BYTES holds its head, one marker line and its newest tail:
 * the marker line is printed where the output was dropped (also with --tail, before the tail, and
 * while following, when the bound cuts the file under the reader).
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { BoardInputError, openBoard, type Board, type Run, type RunListing, type Task } from '@kanban-supervisor/board';
import { EXIT } from '@kanban-supervisor/policies';
import { LOG_MARKER_PREFIX, LOG_MARKER_RE, UnsafeFileError, alive, openSafe, readAt } from '@kanban-supervisor/reaper';
import { UsageError } from './args.js';
import { printable } from './text.js';

export interface LogsOptions {
  run?: string;
  attempt?: number;
  tail?: number;
  follow: boolean;
  /** Poll period of the file while following (ms). */
  pollMs?: number;
  /** Poll period of the board while following (ms). */
  boardPollMs?: number;
}

export interface LogsIo {
  out(chunk: Buffer | string): void;
  err(text: string): void;
}

const TERMINAL = new Set(['done', 'blocked', 'cancelled']);
/** How far into a log its marker line can be: the head kept is at most 1 MiB (see boundLogFd). */
const MARKER_SEARCH_BYTES = 1024 * 1024 + 64 * 1024;
const CHUNK = 256 * 1024;

interface Marker {
  /** Offset of the marker line's first byte. */
  at: number;
  /** Offset just after the marker line (its newline included). */
  end: number;
  /** Bytes of output dropped at the marker, in total. */
  dropped: number;
}

/** The marker line a bounded log holds at the end of its head, if any. */
function findMarker(fd: number, size: number): Marker | null {
  const len = Math.min(size, MARKER_SEARCH_BYTES);
  const buf = readAt(fd, 0, len);
  for (let at = buf.indexOf(LOG_MARKER_PREFIX); at !== -1; at = buf.indexOf(LOG_MARKER_PREFIX, at + 1)) {
    if (at !== 0 && buf[at - 1] !== 0x0a) continue;
    const nl = buf.indexOf(0x0a, at);
    const m = LOG_MARKER_RE.exec(buf.subarray(at, nl === -1 ? buf.length : nl + 1).toString('latin1'));
    if (!m) continue;
    return { at, end: at + m[0].length, dropped: Number(m[1]) };
  }
  return null;
}

/** Where the last `lines` lines of the file start. */
function tailStart(fd: number, size: number, lines: number): number {
  if (lines <= 0) return size;
  let pos = size;
  let seen = 0;
  // A final newline ends the last line; it does not start another.
  let skipLast = size > 0 && readAt(fd, size - 1, 1)[0] === 0x0a;
  while (pos > 0) {
    const from = Math.max(0, pos - 64 * 1024);
    const buf = readAt(fd, from, pos - from);
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) continue;
      if (skipLast) {
        skipLast = false;
        continue;
      }
      if (++seen === lines) return from + i + 1;
    }
    pos = from;
  }
  return 0;
}

/**
 * Open a run's log for reading, safely: the logs folder must be a real directory (not a symlink),
 * the file is opened with O_NOFOLLOW | O_NONBLOCK and must be a regular file with one link.
 * Returns null when it does not exist (yet, or any more).
 */
function openLog(path: string): number | null {
  try {
    const dir = fs.lstatSync(dirname(path));
    if (!dir.isDirectory()) throw new UnsafeFileError(dirname(path), 'not_regular', 'is not a directory (a symbolic link?): not followed');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return openSafe(path, fs.constants.O_RDONLY, { owner: false, singleLink: true }).fd;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function closeQuiet(fd: number | null): void {
  if (fd === null) return;
  try {
    fs.closeSync(fd);
  } catch {
    /* already closed */
  }
}

/** The task's runs, oldest first (attempt 1 first). */
async function runsOf(board: Board, taskId: string): Promise<RunListing[]> {
  return (await board.listRuns({ taskId, limit: 1_000_000 })).reverse();
}

interface Target {
  task: Task;
  runs: RunListing[];
  /** Index in `runs` of the run to show first (-1: the task has no run yet). */
  index: number;
}

async function resolveTarget(board: Board, id: string, opts: LogsOptions): Promise<Target> {
  let task = await board.getTask(id);
  let byRun: Run | null = null;
  if (!task) {
    byRun = await board.getRun(id);
    if (!byRun) throw new BoardInputError(`no task ${JSON.stringify(id)} (nor a run of that id) on board ${board.location}`);
    if (opts.run !== undefined || opts.attempt !== undefined) throw new UsageError(`logs: ${id} is a run id: --run and --attempt choose a run of a task id`);
    task = (await board.getTask(byRun.taskId))!;
  }
  const runs = await runsOf(board, task.id);
  let index = runs.length - 1;
  if (byRun) index = runs.findIndex((r) => r.id === byRun.id);
  else if (opts.run !== undefined) {
    index = runs.findIndex((r) => r.id === opts.run);
    if (index === -1) throw new BoardInputError(`task ${task.id} has no run ${JSON.stringify(opts.run)} (its runs: ${runs.map((r) => r.id).join(', ') || 'none'})`);
  } else if (opts.attempt !== undefined) {
    if (opts.attempt > runs.length) throw new BoardInputError(`task ${task.id} has ${runs.length} run(s); there is no attempt ${opts.attempt}`);
    index = opts.attempt - 1;
  }
  return { task, runs, index };
}

function header(task: Task, r: RunListing): string {
  return `==> task ${task.id} attempt ${r.attempt}: run ${r.id}, started ${new Date(r.startedAt).toISOString()} <==\n`;
}

/** Whether a run's processes are gone (or it never had any): nothing more will be written to its log. */
function runFinished(r: Run): boolean {
  if (r.exitedAt !== null) return true;
  if (r.pid !== null && r.procStartTime !== null && r.bootId !== null) {
    return !alive({ pid: r.pid, pgid: r.pgid ?? r.pid, startTime: r.procStartTime, bootId: r.bootId });
  }
  // No process recorded: ended without one (spawn failed), or still starting.
  return r.status === 'ended';
}

/** Print a whole log, or its last `tail` lines (preceded by its marker line when the tail starts after it). */
function printLog(r: Run, tail: number | undefined, io: LogsIo): void {
  if (!r.logPath) throw new BoardInputError(`run ${r.id} has no log file recorded`);
  const fd = openLog(r.logPath);
  if (fd === null) {
    throw new BoardInputError(
      r.status === 'starting'
        ? `run ${r.id} has no log file yet (${r.logPath}); use -f to wait for it`
        : `the log of run ${r.id} (${r.logPath}) does not exist (the supervisor keeps the newest 1000 logs)`,
    );
  }
  try {
    const size = fs.fstatSync(fd).size;
    let pos = 0;
    if (tail !== undefined) {
      pos = tailStart(fd, size, tail);
      const m = pos > 0 ? findMarker(fd, size) : null;
      if (m && m.end <= pos) io.out(readAt(fd, m.at, m.end - m.at));
    }
    copy(fd, pos, size, io);
  } finally {
    closeQuiet(fd);
  }
}

/** Write the file's bytes [from, to) to stdout, a chunk at a time; returns where it stopped. */
function copy(fd: number, from: number, to: number, io: LogsIo): number {
  let pos = from;
  while (pos < to) {
    const buf = readAt(fd, pos, Math.min(CHUNK, to - pos));
    if (buf.length === 0) break;
    io.out(buf);
    pos += buf.length;
  }
  return pos;
}

/**
 * Follows one log file as it grows; notices when the supervisor's bound cut it (size below the
 * read position, the bytes before it changed, or the marker's dropped count changed) and goes on
 * from the same place in the output, printing the marker line when output was dropped unseen.
 */
class LogFollower {
  private fd: number | null = null;
  private pos = 0;
  private marker: Marker | null = null;
  /** The bytes just before `pos`, to notice a cut that the file regrew past. */
  private last: Buffer = Buffer.alloc(0);

  constructor(
    readonly path: string,
    private readonly io: LogsIo,
    private readonly tail: number | undefined,
  ) {}

  /** Read what is new; returns false while the file does not exist. */
  poll(): boolean {
    if (this.fd === null) {
      this.fd = openLog(this.path);
      if (this.fd === null) return false;
      const size = fs.fstatSync(this.fd).size;
      this.marker = findMarker(this.fd, size);
      if (this.tail !== undefined) {
        this.pos = tailStart(this.fd, size, this.tail);
        const m = this.marker;
        if (m && m.end <= this.pos) this.io.out(readAt(this.fd, m.at, m.end - m.at));
      }
    }
    const fd = this.fd;
    let size = fs.fstatSync(fd).size;
    if (this.wasCut(fd, size)) {
      this.resync(fd, size);
      size = fs.fstatSync(fd).size;
    }
    if (size > this.pos) {
      this.pos = copy(fd, this.pos, size, this.io);
      const k = Math.min(64, this.pos);
      this.last = readAt(fd, this.pos - k, k);
    }
    return true;
  }

  private wasCut(fd: number, size: number): boolean {
    if (size < this.pos) return true;
    if (this.last.length > 0 && !readAt(fd, this.pos - this.last.length, this.last.length).equals(this.last)) return true;
    if (this.marker) {
      const now = findMarkerAt(fd, this.marker.at);
      if (!now || now.dropped !== this.marker.dropped) return true;
    }
    return false;
  }

  private resync(fd: number, size: number): void {
    const old = this.marker;
    // Where we were in the output the worker wrote (offsets past a marker count what it dropped).
    const logical = !old || this.pos <= old.at ? this.pos : this.pos >= old.end ? old.at + old.dropped + (this.pos - old.end) : old.at;
    const m = findMarker(fd, size);
    this.marker = m;
    let next: number;
    if (!m) {
      // Cut by something else (the worker truncated its own output): go on from its start.
      this.io.err(`kanban-supervisor logs: ${printable(this.path)} was truncated; following it from its start\n`);
      next = 0;
    } else if (logical <= m.at) next = logical;
    else if (logical >= m.at + m.dropped) next = m.end + (logical - (m.at + m.dropped));
    else next = m.at; // part of what we had not shown yet was dropped: show the marker line, then the tail
    this.pos = Math.min(next, size);
    const k = Math.min(64, this.pos);
    this.last = readAt(fd, this.pos - k, k);
  }

  close(): void {
    closeQuiet(this.fd);
    this.fd = null;
  }
}

/** The marker line at `at`, if one is still there. */
function findMarkerAt(fd: number, at: number): Marker | null {
  const buf = readAt(fd, at, 256);
  const m = LOG_MARKER_RE.exec(buf.toString('latin1'));
  return m && buf.subarray(0, LOG_MARKER_PREFIX.length).toString('latin1') === LOG_MARKER_PREFIX ? { at, end: at + m[0].length, dropped: Number(m[1]) } : null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function logsCommand(db: string, id: string, opts: LogsOptions, io: LogsIo): Promise<number> {
  const board = await openBoard(db, { readonly: true });
  try {
    const target = await resolveTarget(board, id, opts);
    if (!opts.follow) {
      if (target.index === -1) throw new BoardInputError(`task ${target.task.id} has no runs yet (use -f to wait for its first run)`);
      printLog(target.runs[target.index]!, opts.tail, io);
      return EXIT.ok;
    }
    return await follow(board, target, opts, io);
  } finally {
    await board.close();
  }
}

async function follow(board: Board, target: Target, opts: LogsOptions, io: LogsIo): Promise<number> {
  const pollMs = opts.pollMs ?? 200;
  const boardPollMs = opts.boardPollMs ?? 500;
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const taskId = target.task.id;
  let index = target.index;
  let runs = target.runs;
  let task = target.task;
  let follower: LogFollower | null = null;
  let first = true;
  let lastBoardPoll = 0;
  try {
    for (;;) {
      // Open the current run's log (headed by its attempt line) once there is a run.
      if (follower === null && index >= 0 && index < runs.length) {
        const r = runs[index]!;
        io.out(header(task, r));
        if (r.logPath) follower = new LogFollower(r.logPath, io, first ? opts.tail : undefined);
        first = false;
      }
      follower?.poll();
      if (stopped) return EXIT.ok;
      const now = Date.now();
      if (now - lastBoardPoll >= boardPollMs) {
        lastBoardPoll = now;
        const t = await board.getTask(taskId);
        if (!t) throw new BoardInputError(`task ${taskId} is no longer on board ${board.location}`);
        task = t;
        runs = await runsOf(board, taskId);
        const cur = index >= 0 ? runs[index] : undefined;
        const finished = cur === undefined || runFinished(cur);
        if (index < runs.length - 1 && finished) {
          // A later attempt: the current log is complete (its processes are gone); read its last
          // bytes, then move on.
          follower?.poll();
          follower?.close();
          follower = null;
          index++;
          continue;
        }
        if (TERMINAL.has(task.status) && finished && index >= runs.length - 1) {
          follower?.poll();
          io.err(`kanban-supervisor logs: task ${taskId} is ${task.status}${cur ? ` (run ${cur.id}: ${cur.outcome ?? 'ended'})` : ' (it never ran)'}\n`);
          return EXIT.ok;
        }
        if (index === -1 && runs.length > 0) {
          index = 0;
          continue;
        }
      }
      await sleep(pollMs);
      if (stopped) return EXIT.ok;
    }
  } finally {
    follower?.close();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
