/**
 * What recovery reports: the public types (options, the report and its parts), the report's
 * starting state and totals, and the report a human can act on (`formatRecoverReport`).
 */
import type { BackupOptions, BackupResult } from '../backup.js';
import type { OwnerLock } from '../lock.js';
import { SCHEMA_VERSION } from '../schema.js';

/** An inclusive range of rowids. */
export type RowidRange = [from: number, to: number];

export interface TableRecovery {
  table: string;
  /** complete: every row read; partial: some rowids unreadable or rows invalid; unreadable: nothing could be read. */
  status: 'complete' | 'partial' | 'unreadable';
  /** Rows on the new board: written (fromTree + fromPageScan) and not dropped by a fix-up. */
  salvaged: number;
  /** Rows read through SQLite's b-tree walk. */
  fromTree: number;
  /** Rows found by the page scan inside rowid ranges the walk could not read. */
  fromPageScan: number;
  /** Rows read but violating the current schema (CHECK, NOT NULL, STRICT type): not written, lost. */
  invalid: number;
  /** Rowids of the first 100 invalid rows. */
  invalidRowids: number[];
  /** Rows read twice with the same primary key: the later copy was dropped. */
  duplicates: number;
  /**
   * Rows read, then dropped by a fix-up (not in `salvaged`): a link naming a task that was lost and
   * not rebuilt as a placeholder (each one is in `RecoverReport.fixups` as `dropped_link`).
   */
  dropped: number;
  /** Cells SQLite returned outside the asked rowid range or out of order (garbage from a damaged page): ignored. */
  phantoms: number;
  /** Rowid ranges that could not be read by either method (may include rowids that never held a row). */
  lostRanges: RowidRange[];
  /** Largest rowid known to exist (from the tree or the page scan), or null. */
  maxRowid: number | null;
  /**
   * Set when the right edge of the table's b-tree (or all of it) could not be read: rowids above
   * this value may have held rows, how many is unknown. Null when the walk knew the largest rowid.
   */
  lostAbove: number | null;
  notes: string[];
}

export interface RecoverFixup {
  /** The task fixed; for `dropped_link` the link's child (which may itself be the lost task). */
  taskId: string;
  /**
   * placeholder: a lost task rebuilt as a blocked placeholder from its runs and events;
   * blocked: a running task whose run was lost, blocked;
   * cleared_run: a reference to a lost run cleared;
   * dropped_link: a link (taskId waits for `parent`) naming a task that was lost, dropped;
   * blocked_child: a task not yet started (waiting or ready) blocked because a parent of it was
   * lost, or because it was waiting with no parent left that is not done (its links were lost).
   */
  action: 'placeholder' | 'blocked' | 'cleared_run' | 'dropped_link' | 'blocked_child';
  /** dropped_link: the link's parent. */
  parent?: string;
  reason: string;
}

export interface WalInfo {
  bytes: number;
  /** Frames with valid salts and checksums. */
  validFrames: number;
  /** Valid frames up to and including the last commit frame: what SQLite applies. */
  committedFrames: number;
  /** Bytes after the last committed frame (a torn or uncommitted tail SQLite ignores). */
  tailBytes: number;
}

export interface RecoverReport {
  source: string;
  out: string;
  /** ok: the header was usable; reconstructed: a plausible header was written over the snapshot's; unusable: no header worked. */
  header: 'ok' | 'reconstructed' | 'unusable';
  /** Whether SQLite could read the schema (sqlite_schema) of the snapshot. */
  schema: 'readable' | 'unreadable';
  sourceSchemaVersion: number | null;
  targetSchemaVersion: number;
  pageSize: number | null;
  pageCount: number;
  wal: WalInfo | null;
  tables: TableRecovery[];
  fixups: RecoverFixup[];
  notes: string[];
  salvagedRows: number;
  invalidRows: number;
  /** True when every table was read completely and no row was invalid. */
  complete: boolean;
  durationMs: number;
}

export interface RecoverOptions {
  /** Folder for the private snapshot of the source (default: the folder of the output). Removed afterwards. */
  workDir?: string;
  /** Rowids per walk chunk (default 256). */
  chunkRows?: number;
  /** Scan pages for rows the tree walk could not read (default true). */
  pageScan?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface RecoverInPlaceOptions extends RecoverOptions, BackupOptions {
  /**
   * The board's owner lock, already held by the caller (a quarantined supervisor recovering its
   * own board, after closing its connections to it). It is checked, used, and not released. Without
   * it the lock is taken here, and the recovery is refused when someone else holds it.
   */
  ownerLock?: OwnerLock;
}

export interface RecoverInPlaceReport extends RecoverReport {
  /** The backup holding the damaged original (db, -wal, -shm), made or found by backupDamaged. */
  backup: BackupResult;
}

/** The report before any phase ran: nothing read yet. */
export function emptyReport(source: string, out: string, notes: string[]): RecoverReport {
  return {
    source,
    out,
    header: 'ok',
    schema: 'unreadable',
    sourceSchemaVersion: null,
    targetSchemaVersion: SCHEMA_VERSION,
    pageSize: null,
    pageCount: 0,
    wal: null,
    tables: [],
    fixups: [],
    notes,
    salvagedRows: 0,
    invalidRows: 0,
    complete: false,
    durationMs: 0,
  };
}

/** The totals, once every table report is final. */
export function summarize(report: RecoverReport, started: number): void {
  report.salvagedRows = report.tables.reduce((s, t) => s + t.salvaged, 0);
  report.invalidRows = report.tables.reduce((s, t) => s + t.invalid, 0);
  report.complete = report.header !== 'unusable' && report.schema === 'readable' && report.tables.every((t) => t.status === 'complete');
  report.durationMs = Date.now() - started;
}

// ------------------------------------------------------------------ human report

function fmtRanges(r: RowidRange[], max = 8): string {
  const parts = r.slice(0, max).map(([a, b]) => (a === b ? String(a) : `${a}-${b}`));
  if (r.length > max) parts.push(`… ${r.length - max} more`);
  return parts.join(', ');
}

/** A report a human can act on: per table rows salvaged and rowid ranges lost, then fix-ups and notes. */
export function formatRecoverReport(r: RecoverReport | RecoverInPlaceReport): string {
  const lines: string[] = [];
  lines.push(`recovered ${r.source}`);
  lines.push(`     into ${r.out}${'backup' in r ? ` (damaged original kept in ${r.backup.dir})` : ''}`);
  lines.push(
    `header: ${r.header}; schema: ${r.schema}; page size ${r.pageSize ?? '?'}, ${r.pageCount} pages` +
      (r.wal ? `; -wal: ${r.wal.committedFrames} committed frame(s)${r.wal.tailBytes ? `, ${r.wal.tailBytes} byte(s) of torn tail ignored` : ''}` : ''),
  );
  lines.push('');
  const w = Math.max(...r.tables.map((t) => t.table.length), 5);
  lines.push(`${'table'.padEnd(w)}  ${'status'.padEnd(10)}  ${'salvaged'.padStart(8)}  ${'invalid'.padStart(7)}  lost rowid ranges`);
  for (const t of r.tables) {
    const via = t.fromPageScan > 0 ? ` (${t.fromPageScan} by page scan)` : '';
    const lost =
      t.status === 'unreadable'
        ? 'all'
        : [...(t.lostRanges.length ? [fmtRanges(t.lostRanges)] : []), ...(t.lostAbove !== null ? [`above ${t.lostAbove} (unknown)`] : [])].join(', ') || '-';
    lines.push(`${t.table.padEnd(w)}  ${t.status.padEnd(10)}  ${String(t.salvaged).padStart(8)}  ${String(t.invalid).padStart(7)}  ${lost}${via}`);
    for (const n of t.notes) lines.push(`${' '.repeat(w)}  note: ${n}`);
    if (t.invalid > 0) lines.push(`${' '.repeat(w)}  invalid rowids: ${t.invalidRowids.slice(0, 20).join(', ')}${t.invalid > 20 ? ', …' : ''}`);
    if (t.duplicates > 0) lines.push(`${' '.repeat(w)}  ${t.duplicates} duplicate row(s) dropped`);
    if (t.dropped > 0) lines.push(`${' '.repeat(w)}  ${t.dropped} row(s) read but dropped: they name a task that was lost (see below)`);
    if (t.phantoms > 0) lines.push(`${' '.repeat(w)}  ${t.phantoms} garbage cell(s) outside the asked rowid ranges ignored`);
  }
  if (r.fixups.length) {
    lines.push('');
    const by = (a: RecoverFixup['action']) => r.fixups.filter((f) => f.action === a);
    const ph = by('placeholder');
    const bl = by('blocked');
    const cl = by('cleared_run');
    const dl = by('dropped_link');
    const bc = by('blocked_child');
    if (ph.length) lines.push(`${ph.length} lost task(s) rebuilt as blocked placeholders (payload lost): ${ph.slice(0, 10).map((f) => f.taskId).join(', ')}${ph.length > 10 ? ', …' : ''}`);
    if (bl.length) lines.push(`${bl.length} running task(s) blocked because their run was lost (check their workers): ${bl.slice(0, 10).map((f) => f.taskId).join(', ')}${bl.length > 10 ? ', …' : ''}`);
    if (cl.length) lines.push(`${cl.length} task(s) had a reference to a lost run cleared`);
    if (dl.length) {
      const shown = dl.slice(0, 10).map((f) => `${f.taskId} after ${f.parent ?? '?'}`);
      lines.push(`${dl.length} link(s) naming a lost task dropped (child after parent): ${shown.join(', ')}${dl.length > 10 ? ', …' : ''}`);
    }
    if (bc.length) {
      lines.push(
        `${bc.length} task(s) not yet started blocked because a parent or their links were lost (check what they wait for, then unblock): ` +
          `${bc.slice(0, 10).map((f) => f.taskId).join(', ')}${bc.length > 10 ? ', …' : ''}`,
      );
    }
  }
  if (r.notes.length) {
    lines.push('');
    for (const n of r.notes) lines.push(`note: ${n}`);
  }
  lines.push('');
  lines.push(
    r.complete
      ? `complete: every row was salvaged (${r.salvagedRows} rows) in ${r.durationMs} ms`
      : `partial: ${r.salvagedRows} rows salvaged, ${r.invalidRows} invalid row(s) dropped, see the lost ranges above (${r.durationMs} ms)`,
  );
  return lines.join('\n');
}
