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
import { LOG_MARKER_PREFIX, UnsafeFileError, alive, openSafe, parseLogMarker, readAt } from '@kanban-supervisor/reaper';
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
/** Most bytes read (and held) in one checked read. */
const STEP_BYTES = 4 * 1024 * 1024;
/** Most checked reads in one poll. */
const POLL_STEPS = 16;
/** Most polls in one drain (a log still written at full speed is left there). */
const DRAIN_POLLS = 1000;
/** How long a reader waits for a cut marked as under way before reading the log as it is (the supervisor cutting it may have died). */
const CUT_WAIT_MS = 2000;

interface Marker {
  /** Offset of the marker line's first byte. */
  at: number;
  /** Offset just after the marker line (its newline included). */
  end: number;
  /** Bytes of output dropped at the marker, in total. */
  dropped: number;
  /** A cut is under way (see boundLogFd): the bytes after the marker may be half moved. */
  cutting: boolean;
  /** The line's bytes: a cut that began or ended changes them. */
  line: Buffer;
}

/** The marker line at `at`, if one is there. */
function markerAt(fd: number, at: number): Marker | null {
  const buf = readAt(fd, at, 256);
  const m = parseLogMarker(buf);
  return m && { at, end: at + m.length, dropped: m.dropped, cutting: m.cutting, line: Buffer.from(buf.subarray(0, m.length)) };
}

/** The marker line a bounded log holds at the end of its head, if any. */
function findMarker(fd: number, size: number): Marker | null {
  const len = Math.min(size, MARKER_SEARCH_BYTES);
  const buf = readAt(fd, 0, len);
  for (let at = buf.indexOf(LOG_MARKER_PREFIX); at !== -1; at = buf.indexOf(LOG_MARKER_PREFIX, at + 1)) {
    if (at !== 0 && buf[at - 1] !== 0x0a) continue;
    const m = parseLogMarker(buf.subarray(at, at + 256));
    if (m) return { at, end: at + m.length, dropped: m.dropped, cutting: m.cutting, line: Buffer.from(buf.subarray(at, at + m.length)) };
  }
  return null;
}

const sameMarker = (a: Marker | null, b: Marker | null) => (a === null ? b === null : b !== null && a.at === b.at && a.line.equals(b.line));

/** Offset in the output the worker wrote of the file offset `pos` (offsets past a marker count what it dropped). */
function outputOffset(pos: number, m: Marker | null): number {
  return !m || pos <= m.at ? pos : pos >= m.end ? m.at + m.dropped + (pos - m.end) : m.at;
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

/** Print a whole log (as far as it went when this began), or its last `tail` lines (preceded by its marker line when the tail starts after it). */
async function printLog(r: Run, tail: number | undefined, io: LogsIo): Promise<void> {
  if (!r.logPath) throw new BoardInputError(`run ${r.id} has no log file recorded`);
  const reader = new LogFollower(r.logPath, io, { tail, once: true });
  try {
    if (!(await reader.drain())) {
      throw new BoardInputError(
        r.status === 'starting'
          ? `run ${r.id} has no log file yet (${r.logPath}); use -f to wait for it`
          : `the log of run ${r.id} (${r.logPath}) does not exist (the supervisor keeps the newest 1000 logs)`,
      );
    }
  } finally {
    reader.close();
  }
}

/** What `LogFollower.poll` did: read all there was, found no file, or left some for later (a cut under way, or more than a poll reads). */
export type PollResult = 'read' | 'missing' | 'busy' | 'more';

/**
 * Reads one log file as it grows, while the supervisor's bound may cut it (from another process,
 * at any moment): it notices a cut (the marker line changed, the size fell below the read position,
 * or the bytes before it changed) and goes on from the same place in the output, printing the
 * marker line when output was dropped unseen.
 *
 * A cut is several writes and a truncation, so a read can land in its middle and see the tail
 * copied over the old middle, or stale bytes past it. The bound marks its marker line for as long
 * as a cut is under way (see boundLogFd), and every read here is checked against it: the marker
 * line (or that there is none) is read before and after; what was read is printed only if it was
 * unmarked and the same both times, otherwise it is read again. A cut still marked after
 * CUT_WAIT_MS (its supervisor died halfway) is read as it is.
 */
export class LogFollower {
  private fd: number | null = null;
  private started = false;
  private pos = 0;
  private marker: Marker | null = null;
  /** The bytes just before `pos`, to notice a cut that the file regrew past. */
  private last: Buffer = Buffer.alloc(0);
  /** With `once`: where in the output to stop (its end when reading began). */
  private limit: number | null = null;
  /** A marker line saying a cut is under way, and since when it has said so. */
  private cutting: { line: Buffer; since: number } | null = null;
  /** A cut marked for longer than CUT_WAIT_MS: read past it. */
  private staleCut: Buffer | null = null;

  constructor(
    readonly path: string,
    private readonly io: LogsIo,
    private readonly opts: {
      /** Begin with the last `tail` lines (and the marker line, when it lies before them). */
      tail?: number;
      /** Read only as far as the log went when reading began (`logs` without -f). */
      once?: boolean;
    } = {},
  ) {}

  /** Read what is new (at most POLL_STEPS steps of STEP_BYTES). */
  poll(): PollResult {
    if (this.fd === null) {
      this.fd = openLog(this.path);
      if (this.fd === null) return 'missing';
    }
    let cap = STEP_BYTES;
    let steps = 0;
    for (let tries = 0; tries < 32; ) {
      const r = this.step(this.fd, cap);
      if (r === 'changed') {
        // A cut began or ended while reading: read again, a smaller step if it keeps happening.
        tries++;
        cap = Math.max(64 * 1024, cap >> 1);
        continue;
      }
      if (r === 'more' && ++steps < POLL_STEPS) continue;
      return r;
    }
    return 'busy';
  }

  /** Poll until everything there is was read, waiting out a cut under way; false when the file does not exist. */
  async drain(): Promise<boolean> {
    for (let i = 0; ; i++) {
      const r = this.poll();
      if (r === 'missing') return false;
      if (r === 'read' || i >= DRAIN_POLLS) return true;
      await sleep(r === 'busy' ? 5 : 0);
    }
  }

  /**
   * One checked read: the marker line before, the size and the reads, the marker line after; what
   * was read is printed (and the position moved) only when both times it was there unmarked and
   * unchanged, or absent both times: then no cut began or ended in between, and the size and every
   * byte read belong to one state of the file.
   */
  private step(fd: number, cap: number): PollResult | 'changed' {
    // The marker line first, then the size: a size taken before a cut that ended before the marker
    // line was read would belong to the file before the cut.
    const before = this.markerNow(fd);
    if (before?.cutting && !this.waitedOut(before)) return 'busy';
    this.cutting = null;
    const size = fs.fstatSync(fd).size;
    let pos = this.pos;
    let last = this.last;
    let lead: Buffer | null = null;
    let note: string | null = null;
    if (!this.started) {
      if (this.opts.tail !== undefined) {
        pos = tailStart(fd, size, this.opts.tail);
        if (before && before.end <= pos) lead = before.line;
      }
      if (this.opts.once) this.limit = outputOffset(size, before);
      last = readAt(fd, pos - Math.min(64, pos), Math.min(64, pos));
    } else if (!sameMarker(before, this.marker) || size < pos || !readAt(fd, pos - last.length, last.length).equals(last)) {
      ({ pos, note } = this.resync(before, size));
      last = readAt(fd, pos - Math.min(64, pos), Math.min(64, pos));
    }
    let end = size;
    if (this.limit !== null) end = Math.max(pos, Math.min(end, fileOffset(this.limit, before)));
    const data = readAt(fd, pos, Math.min(end - pos, cap));
    if (!sameMarker(before, this.markerNow(fd))) return 'changed';
    this.started = true;
    this.marker = before;
    this.pos = pos + data.length;
    this.last = lastBytes(last, data);
    if (note) this.io.err(note);
    if (lead) this.io.out(lead);
    if (data.length > 0) this.io.out(data);
    return this.pos < end ? 'more' : 'read';
  }

  /** The marker line now: where it was, or searched for (it appears with the first cut, and goes if the file is truncated by another hand). */
  private markerNow(fd: number): Marker | null {
    return (this.marker && markerAt(fd, this.marker.at)) || findMarker(fd, fs.fstatSync(fd).size);
  }

  /** Whether to read past a cut marked as under way: once it has been so for CUT_WAIT_MS. */
  private waitedOut(m: Marker): boolean {
    if (this.staleCut?.equals(m.line)) return true;
    const now = Date.now();
    if (!this.cutting || !this.cutting.line.equals(m.line)) {
      this.cutting = { line: m.line, since: now };
      return false;
    }
    if (now - this.cutting.since < CUT_WAIT_MS) return false;
    this.staleCut = m.line;
    this.io.err(`kanban-supervisor logs: ${printable(this.path)}: a cut of this log by the supervisor has been under way for ${CUT_WAIT_MS / 1000} s; reading it as it is\n`);
    return true;
  }

  /** Where to go on from in the file as it is now (`m`: its marker line), the same place in the output as before. */
  private resync(m: Marker | null, size: number): { pos: number; note: string | null } {
    const logical = outputOffset(this.pos, this.marker);
    let next: number;
    let note: string | null = null;
    if (!m) {
      // Cut by something else (the worker truncated its own output): go on from its start.
      note = `kanban-supervisor logs: ${printable(this.path)} was truncated; following it from its start\n`;
      next = 0;
    } else if (logical <= m.at) next = logical;
    else if (logical >= m.at + m.dropped) next = m.end + (logical - (m.at + m.dropped));
    else next = m.at; // part of what we had not shown yet was dropped: show the marker line, then the tail
    return { pos: Math.min(next, size), note };
  }

  close(): void {
    closeQuiet(this.fd);
    this.fd = null;
  }
}

/** The file offset of output offset `out` (the end of the marker line when `out` was dropped). */
function fileOffset(out: number, m: Marker | null): number {
  return !m || out <= m.at ? out : out >= m.at + m.dropped ? m.end + (out - (m.at + m.dropped)) : m.end;
}

/** The last 64 bytes of `a` followed by `b`. */
function lastBytes(a: Buffer, b: Buffer): Buffer {
  if (b.length >= 64) return Buffer.from(b.subarray(b.length - 64));
  return Buffer.concat([a, b]).subarray(-64);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function logsCommand(db: string, id: string, opts: LogsOptions, io: LogsIo): Promise<number> {
  const board = await openBoard(db, { readonly: true });
  try {
    const target = await resolveTarget(board, id, opts);
    if (!opts.follow) {
      if (target.index === -1) throw new BoardInputError(`task ${target.task.id} has no runs yet (use -f to wait for its first run)`);
      await printLog(target.runs[target.index]!, opts.tail, io);
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
        if (r.logPath) follower = new LogFollower(r.logPath, io, { tail: first ? opts.tail : undefined });
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
          await follower?.drain();
          follower?.close();
          follower = null;
          index++;
          continue;
        }
        if (TERMINAL.has(task.status) && finished && index >= runs.length - 1) {
          await follower?.drain();
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
