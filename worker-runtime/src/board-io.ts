/**
 * Worker-side board access: a short busy timeout, fenced writes, the final report with its
 * spool fallback, and the close that checkpoints what is free to checkpoint.
 * On a SQLite board every operation is synchronous inside (one BEGIN IMMEDIATE … COMMIT, no await in it).
 */
import { BoardInputError, NotCurrentError, classifyError, localConnectionOf, type Board, type RunCredentials, type WorkerReport } from '@kanban-supervisor/board/light';
import { writeSpool } from './spool.js';

/** The worker's busy timeout: long enough to ride out a supervisor transaction, short enough to stay responsive. */
export const WORKER_BUSY_TIMEOUT_MS = 2000;
/** Retries (with backoff, asynchronous) after the busy timeout ran out. */
export const WORKER_BUSY_RETRIES = 10;

/**
 * Open an existing board the way workers do (same hardened open; never creates a board). On
 * PostgreSQL a worker holds at most one connection (a pool of one; no change feed is ever opened).
 */
export async function openWorkerBoard(dbPath: string): Promise<Board> {
  // Loaded here, at the first direct write: a worker whose reports all go through the channel never
  // loads the board's backends (better-sqlite3, pg), a third of a Node worker's start-up.
  const { openBoard } = await import('@kanban-supervisor/board');
  return openBoard(dbPath, { busyTimeoutMs: WORKER_BUSY_TIMEOUT_MS, busyRetries: WORKER_BUSY_RETRIES, create: false, pgPoolMax: 1 });
}

/**
 * Close a board whose connection is not in this process's hands synchronously (PostgreSQL: end the
 * connection, so the server sees a clean goodbye rather than a dropped socket), waiting at most
 * `ms`. Nothing for a board with a local connection (checkpointAndClose closes it). Never throws.
 */
export async function closeRemote(board: Board | null, ms: number): Promise<void> {
  if (!board || localConnectionOf(board)) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    board.close().catch(() => undefined),
    new Promise<void>((r) => {
      timer = setTimeout(r, Math.max(0, ms));
    }),
  ]);
  clearTimeout(timer);
}

/**
 * Whether an error opening or reading the board is the board's fault, not the worker's: the board
 * is damaged, failing with I/O errors, busy for too long, or not readable or writable by this user.
 */
export function isBoardFault(e: unknown): boolean {
  return classifyError(e) !== 'other';
}

/**
 * Set the connection's busy timeout (used to keep the last writes of a shutdown inside the grace);
 * nothing for a board without a connection in this process.
 */
export function setBusyTimeout(board: Board, ms: number): void {
  try {
    localConnectionOf(board)?.setBusyTimeout(ms);
  } catch {
    /* best effort */
  }
}

/**
 * Checkpoint the WAL without waiting and close the connection, synchronously (it runs right before
 * process.exit, also in the signal path). Never throws. A board without a connection in this
 * process has nothing to close here: its connection ends with the process.
 */
export function checkpointAndClose(board: Board | null): void {
  if (board) localConnectionOf(board)?.closeNow('free');
}

export type Delivery = { via: 'channel' } | { via: 'board' } | { via: 'spool'; path: string; cause: string };

export interface DeliverOptions {
  /** Attempts on the board before spooling (default 3; a damaged board is spooled at once). */
  attempts?: number;
  /** Delay between attempts, ms (default 250, doubled each time). */
  delayMs?: number;
  now?: () => number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Deliver the final report. On the board when possible; when the board cannot take it for any
 * reason but the two below (damaged, I/O errors, busy for too long, not readable or writable by
 * this user, read-only, missing, or it could not be opened at all: `board === null`) the report
 * goes to the spool next to the board and `{ via: 'spool' }` is returned. A damaged board is
 * spooled at once; anything else after `attempts` tries.
 * `seq`: the report's sequence number, on the board and in the spool entry (applied at most once).
 * Throws NotCurrentError when the run is fenced out (nothing is written anywhere),
 * BoardInputError for an invalid report, and any error the spool itself hits.
 */
export async function deliverReport(
  board: Board | null,
  dbPath: string,
  cred: RunCredentials,
  report: WorkerReport,
  opts: DeliverOptions & { openError?: unknown; spoolDir?: string; seq?: string } = {},
): Promise<Delivery> {
  const now = opts.now ?? Date.now;
  const at = now();
  const attempts = Math.max(1, opts.attempts ?? 3);
  let delay = opts.delayMs ?? 250;
  let cause: unknown = opts.openError ?? new Error('the board could not be opened');
  if (board) {
    for (let i = 1; ; i++) {
      try {
        await board.report(cred, report, at, opts.seq);
        return { via: 'board' };
      } catch (e) {
        if (e instanceof NotCurrentError || e instanceof BoardInputError) throw e;
        cause = e;
        if (classifyError(e) === 'damaged' || i >= attempts) break;
        await sleep(delay);
        delay *= 2;
      }
    }
  }
  const why = cause instanceof Error ? cause.message : String(cause);
  return { via: 'spool', path: writeSpool(dbPath, cred, report, at, why, opts.spoolDir, opts.seq), cause: why };
}
