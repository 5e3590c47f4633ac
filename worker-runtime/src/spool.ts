/**
 * The spool: where a worker leaves its final report when the board cannot take it
 * (damaged, or failing with I/O errors). One small JSON file per run, next to a SQLite board:
 * `<board dir>/spool/<run id>.json` (a PostgreSQL board's: `<state folder>/spool/`, the folder the
 * supervisor names in KANBAN_SPOOL_DIR), written atomically (temp file, fsync, rename, fsync dir).
 *
 * Only the writer lives here in full; replaying the spool into the board is the supervisor's
 * business (see `readSpool`). A spool file holds the run token: the folder is 0700, files 0600.
 *
 * The spool is in a folder that workers can write, and the supervisor reads it in its tick: the
 * reader never follows a symlink, never blocks on a FIFO, and reads only regular files owned by
 * its own user, up to MAX_SPOOL_ENTRY_BYTES; anything else comes back as an error for that entry.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { boardFiles, isPgLocation, pgLocationLabel, type RunCredentials, type WorkerReport } from '@kanban-supervisor/board/light';
import { isOwnDirectory, readFileBounded, writeFileAtomic } from '@kanban-supervisor/reaper/safe-fs';

export const SPOOL_VERSION = 1;

/** Largest spool file read (a report's result is at most 4 MiB of JSON; the rest is small). */
export const MAX_SPOOL_ENTRY_BYTES = 16 * 1024 * 1024;

export interface SpoolEntry extends RunCredentials {
  version: number;
  report: WorkerReport;
  /** When the worker decided its outcome (ms since epoch): use it as the report time. */
  at: number;
  /** The board the report was meant for. */
  board: string;
  pid: number;
  /** Why the board refused it (for the operator). */
  cause: string;
  /** The report's sequence number (applied at most once: a report already on the board is a duplicate); absent in older entries. */
  seq?: string;
}

/** The spool folder of a board: next to a SQLite board, in a PostgreSQL board's local state folder (boardFiles). */
export function spoolDir(dbPath: string): string {
  return boardFiles(dbPath).spoolDir;
}

function safeName(runId: string): string {
  return runId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 128) || 'run';
}

export function spoolPath(dbPath: string, runId: string, dir = spoolDir(dbPath)): string {
  return join(dir, `${safeName(runId)}.json`);
}

/**
 * Write a final report to the spool, durably: a temp file created exclusively (O_EXCL, no symlink
 * followed), fsync, rename, fsync of the folder. The temp file is removed when the write fails
 * (a full disk leaves nothing behind). Returns the path written. Throws if the spool itself cannot
 * be written. `dir`: the spool folder (default: the SQLite board's, next to it).
 */
export function writeSpool(
  dbPath: string,
  cred: RunCredentials,
  report: WorkerReport,
  at: number,
  cause: string,
  dir = spoolDir(dbPath),
  seq?: string,
): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const entry: SpoolEntry = {
    version: SPOOL_VERSION,
    taskId: cred.taskId,
    runId: cred.runId,
    token: cred.token,
    report,
    at,
    board: isPgLocation(dbPath) ? pgLocationLabel(dbPath) : dbPath,
    pid: process.pid,
    cause,
    ...(seq !== undefined ? { seq } : {}),
  };
  const final = spoolPath(dbPath, cred.runId, dir);
  writeFileAtomic(final, JSON.stringify(entry) + '\n', { mode: 0o600, fsync: true });
  return final;
}

export type SpoolRead = { path: string; entry: SpoolEntry } | { path: string; error: string };

function isReport(v: unknown): v is WorkerReport {
  const r = v as Record<string, unknown> | null;
  if (!r || typeof r !== 'object') return false;
  if (r.outcome === 'completed') return true;
  if (r.outcome === 'failed') return typeof r.error === 'string';
  if (r.outcome === 'deferred') return typeof r.seconds === 'number';
  return false;
}

/**
 * Read every finished spool file of a board (names starting with a dot, temp files, are skipped).
 * Unreadable files are reported, not thrown: a symlink (not followed), a FIFO or anything else that
 * is not a regular file, a file owned by another user, one larger than MAX_SPOOL_ENTRY_BYTES, or
 * one that is not a spool entry each come back as `{ path, error }` (renaming such an entry moves
 * the entry itself, never a symlink's target). Nothing here blocks. A spool folder that is itself
 * a symlink, or not ours, is not read at all. `dir`: the spool folder (default: the SQLite board's).
 */
export function readSpool(dbPath: string, dir = spoolDir(dbPath)): SpoolRead[] {
  if (!isOwnDirectory(dir)) return [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: SpoolRead[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const path = join(dir, name);
    let text: string;
    try {
      text = readFileBounded(path, MAX_SPOOL_ENTRY_BYTES).toString('utf8');
    } catch (err) {
      out.push({ path, error: (err as Error).message.startsWith(path) ? (err as Error).message : `${path}: ${(err as Error).message}` });
      continue;
    }
    let e: SpoolEntry;
    try {
      e = JSON.parse(text) as SpoolEntry;
    } catch {
      // Not the parser's message: it quotes the file's bytes, and they do not belong in the log.
      out.push({ path, error: `${path} is not valid JSON (${Buffer.byteLength(text)} bytes); not a spool entry` });
      continue;
    }
    if (
      typeof e !== 'object' || e === null || e.version !== SPOOL_VERSION ||
      typeof e.taskId !== 'string' || typeof e.runId !== 'string' || typeof e.token !== 'string' ||
      typeof e.at !== 'number' || !isReport(e.report) || (e.seq !== undefined && (typeof e.seq !== 'string' || !/^[0-9]{1,20}$/.test(e.seq)))
    ) {
      out.push({ path, error: `${path} is not a version ${SPOOL_VERSION} spool entry` });
    } else {
      out.push({ path, entry: e });
    }
  }
  return out;
}

/** Remove a spool file once its report is on the board (or was refused for good). */
export function removeSpoolEntry(path: string): void {
  rmSync(path, { force: true });
}
