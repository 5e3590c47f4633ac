/**
 * Health check of a board file, through SQLite. A header check by `fs` is done only when this
 * process holds no connection to the file.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import { BoardDamagedError, classifyError } from './errors.js';
import { checkHeaderByFs, holdsConnection } from './open.js';
import { SCHEMA_VERSION } from './schema.js';

export interface CheckReport {
  path: string;
  healthy: boolean;
  exists: boolean;
  fileSize: number | null;
  walSize: number | null;
  pageSize: number | null;
  pageCount: number | null;
  journalMode: string | null;
  schemaVersion: number | null;
  supportedSchemaVersion: number;
  check: 'quick_check' | 'integrity_check';
  checkResult: string[];
  problems: string[];
  /** Not damage, but worth knowing (e.g. a board not yet converted to WAL). */
  warnings: string[];
}

/** Check header, quick_check (integrity_check with full), page count against file size, schema version. */
export function checkBoard(path: string, opts: { full?: boolean } = {}): CheckReport {
  const abs = resolve(path);
  const report: CheckReport = {
    path: abs,
    healthy: false,
    exists: existsSync(abs),
    fileSize: null,
    walSize: null,
    pageSize: null,
    pageCount: null,
    journalMode: null,
    schemaVersion: null,
    supportedSchemaVersion: SCHEMA_VERSION,
    check: opts.full ? 'integrity_check' : 'quick_check',
    checkResult: [],
    problems: [],
    warnings: [],
  };
  if (!report.exists) {
    report.problems.push(`board ${abs} does not exist`);
    return report;
  }
  report.fileSize = statSync(abs).size;
  report.walSize = existsSync(abs + '-wal') ? statSync(abs + '-wal').size : null;
  if (report.fileSize === 0) {
    report.warnings.push('the file is empty: a new board, not initialised yet');
    report.healthy = true;
    return report;
  }
  if (!holdsConnection(abs)) {
    try {
      checkHeaderByFs(abs);
    } catch (e) {
      report.problems.push(e instanceof BoardDamagedError ? e.detail : (e as Error).message);
      return report;
    }
  }
  let db: Database.Database | null = null;
  try {
    db = new Database(abs, { readonly: true, fileMustExist: true, timeout: 2000 });
    db.pragma('cell_size_check = ON');
    report.journalMode = String(db.pragma('journal_mode', { simple: true }));
    report.pageSize = Number(db.pragma('page_size', { simple: true }));
    report.pageCount = Number(db.pragma('page_count', { simple: true }));
    report.schemaVersion = Number(db.pragma('user_version', { simple: true }));
    const rows = db.pragma(opts.full ? 'integrity_check(100)' : 'quick_check(100)') as Array<Record<string, string>>;
    report.checkResult = rows.map((r) => String(Object.values(r)[0]));
    if (!(report.checkResult.length === 1 && report.checkResult[0] === 'ok')) {
      report.problems.push(`${report.check} found ${report.checkResult.length} problem(s): ${report.checkResult.slice(0, 5).join('; ')}`);
    }
    if (report.journalMode !== 'wal') report.warnings.push(`journal mode is ${report.journalMode}; the next read-write open converts it to wal`);
    if (report.schemaVersion > SCHEMA_VERSION) {
      report.problems.push(`schema version ${report.schemaVersion} is newer than supported (${SCHEMA_VERSION})`);
    }
    // Without a WAL, the file must hold exactly page_count pages.
    if (report.walSize === null && report.pageSize && report.pageCount !== null && report.fileSize !== report.pageSize * report.pageCount) {
      report.problems.push(`file size ${report.fileSize} does not match ${report.pageCount} pages of ${report.pageSize} bytes`);
    }
  } catch (e) {
    const cls = classifyError(e);
    report.problems.push(`${cls === 'damaged' ? 'SQLite reports damage' : 'SQLite error'}: ${(e as Error).message}`);
  } finally {
    db?.close();
  }
  report.healthy = report.problems.length === 0;
  return report;
}
