/**
 * The spool: where a worker leaves its final report when the board cannot take it
 * (damaged, or failing with I/O errors). One small JSON file per run, next to the board:
 * `<board dir>/spool/<run id>.json`, written atomically (temp file, fsync, rename, fsync dir).
 *
 * Only the writer lives here in full; replaying the spool into the board is the supervisor's
 * business (see `readSpool`). A spool file holds the run token: the folder is 0700, files 0600.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fsyncDir, type RunCredentials, type WorkerReport } from '@kanban-supervisor/board';

export const SPOOL_VERSION = 1;

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
}

/** The spool folder of a board. */
export function spoolDir(dbPath: string): string {
  return join(dirname(dbPath), 'spool');
}

function safeName(runId: string): string {
  return runId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 128) || 'run';
}

export function spoolPath(dbPath: string, runId: string): string {
  return join(spoolDir(dbPath), `${safeName(runId)}.json`);
}

/**
 * Write a final report to the spool, durably: temp file, fsync, rename, fsync of the folder.
 * Returns the path written. Throws if the spool itself cannot be written.
 */
export function writeSpool(
  dbPath: string,
  cred: RunCredentials,
  report: WorkerReport,
  at: number,
  cause: string,
): string {
  const dir = spoolDir(dbPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const entry: SpoolEntry = {
    version: SPOOL_VERSION,
    taskId: cred.taskId,
    runId: cred.runId,
    token: cred.token,
    report,
    at,
    board: dbPath,
    pid: process.pid,
    cause,
  };
  const final = spoolPath(dbPath, cred.runId);
  const tmp = join(dir, `.${safeName(cred.runId)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    const buf = Buffer.from(JSON.stringify(entry) + '\n', 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, final);
  fsyncDir(dir);
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

/** Read every finished spool file of a board (temp files are skipped). Unreadable files are reported, not thrown. */
export function readSpool(dbPath: string): SpoolRead[] {
  const dir = spoolDir(dbPath);
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
    try {
      const e = JSON.parse(readFileSync(path, 'utf8')) as SpoolEntry;
      if (
        typeof e !== 'object' || e === null || e.version !== SPOOL_VERSION ||
        typeof e.taskId !== 'string' || typeof e.runId !== 'string' || typeof e.token !== 'string' ||
        typeof e.at !== 'number' || !isReport(e.report)
      ) {
        out.push({ path, error: `${path} is not a version ${SPOOL_VERSION} spool entry` });
      } else {
        out.push({ path, entry: e });
      }
    } catch (err) {
      out.push({ path, error: `${path}: ${(err as Error).message}` });
    }
  }
  return out;
}

/** Remove a spool file once its report is on the board (or was refused for good). */
export function removeSpoolEntry(path: string): void {
  rmSync(path, { force: true });
}
