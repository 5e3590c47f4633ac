/**
 * The tree walk. Each table of the snapshot is walked through SQLite by rowid ranges
 * (`WHERE rowid BETWEEN ? AND ?`), in chunks; a chunk that fails with a damage error is bisected
 * down to single rowids, and the rowids that cannot be read are recorded as unreadable ranges.
 *
 * Rows are inserted with their rowids into the new board (the inserter). A row violating the
 * current schema (CHECK such as invalid JSON, NOT NULL, STRICT types) is skipped and counted as
 * invalid; a second row with the same primary key is counted as a duplicate.
 */
import type Database from 'better-sqlite3';
import { classifyError } from '../errors.js';
import type { Db } from '../open.js';
import type { ScanHit } from './pages.js';
import { addRange, type Unreadable } from './ranges.js';
import type { RecoverReport, RowidRange, TableRecovery } from './report.js';
import { tableSince, type SourceShapes, type TableShape, type Value } from './shape.js';
import { openSnapshot } from './snapshot.js';

export function isDamage(e: unknown): boolean {
  const cls = classifyError(e);
  if (cls === 'damaged' || cls === 'io') return true;
  const code = (e as { code?: unknown } | null)?.code;
  // Any other SQLite error while reading a damaged file (SQLITE_ERROR "malformed", SQLITE_NOMEM
  // from a garbage length, SQLITE_RANGE ...) also means "this range cannot be read".
  return typeof code === 'string' && code.startsWith('SQLITE_');
}

// ------------------------------------------------------------------ inserting and counting

export interface Inserter {
  insert(rowid: number | bigint, row: Record<string, Value>): 'ok' | 'invalid' | 'duplicate';
}

export function makeInserter(dst: Db, target: TableShape, sourceColumns: string[]): Inserter {
  const cols = target.columns.map((c) => c.name).filter((c) => sourceColumns.includes(c));
  const withRowid = target.aliasIndex < 0;
  const names = [...(withRowid ? ['rowid'] : []), ...cols].map((c) => `"${c}"`).join(', ');
  const stmt = dst.prepare(`INSERT INTO "${target.name}" (${names}) VALUES (${[...(withRowid ? ['?'] : []), ...cols.map(() => '?')].join(', ')})`);
  return {
    insert(rowid, row) {
      const args: Value[] = [...(withRowid ? [typeof rowid === 'bigint' ? rowid : BigInt(rowid)] : []), ...cols.map((c) => row[c] ?? null)];
      if (!withRowid) {
        const alias = target.columns[target.aliasIndex]!.name;
        if (cols.includes(alias) && args[cols.indexOf(alias)] === null) args[cols.indexOf(alias)] = BigInt(rowid);
      }
      try {
        stmt.run(...args);
        return 'ok';
      } catch (e) {
        const code = String((e as { code?: unknown }).code ?? '');
        if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_ROWID') return 'duplicate';
        if (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG') return 'invalid';
        throw e;
      }
    },
  };
}

export function newTableReport(table: string): TableRecovery {
  return { table, status: 'complete', salvaged: 0, fromTree: 0, fromPageScan: 0, invalid: 0, invalidRowids: [], duplicates: 0, dropped: 0, phantoms: 0, lostRanges: [], maxRowid: null, lostAbove: null, notes: [] };
}

/** Rowids the tree walk read but could not insert (invalid, duplicate): the page scan does not retry them. */
export const rejected = new WeakMap<TableRecovery, Map<number, 'invalid' | 'duplicate'>>();

export function count(t: TableRecovery, res: 'ok' | 'invalid' | 'duplicate', rowid: number, via: 'tree' | 'scan'): void {
  if (res !== 'ok' && via === 'tree') {
    if (!rejected.has(t)) rejected.set(t, new Map());
    rejected.get(t)!.set(rowid, res);
  }
  if (res === 'ok') {
    t.salvaged++;
    if (via === 'tree') t.fromTree++;
    else t.fromPageScan++;
  } else if (res === 'invalid') {
    t.invalid++;
    if (t.invalidRowids.length < 100) t.invalidRowids.push(rowid);
  } else t.duplicates++;
}

// ------------------------------------------------------------------ walking one table

interface Bounds {
  min: number | null;
  max: number | null;
  /** min(rowid) could be read, and sensibly. */
  minOk: boolean;
  /** max(rowid) could be read, and sensibly. */
  maxOk: boolean;
}

/** min(rowid) and max(rowid) of a table, or null (noted) when its b-tree cannot be entered at all. */
function readBounds(q: (sql: string) => Database.Statement, table: string, rep: TableRecovery, rowidBound: number): Bounds | null {
  let min: number | null = null;
  let max: number | null = null;
  let minOk = true;
  let maxOk = true;
  try {
    const v = q(`SELECT min(rowid) AS v FROM "${table}" NOT INDEXED`).get() as { v: bigint | null };
    min = v.v === null ? null : Number(v.v);
  } catch (e) {
    if (!isDamage(e)) throw e;
    minOk = false;
  }
  try {
    const v = q(`SELECT max(rowid) AS v FROM "${table}" NOT INDEXED`).get() as { v: bigint | null };
    max = v.v === null ? null : Number(v.v);
  } catch (e) {
    if (!isDamage(e)) throw e;
    maxOk = false;
  }
  if (!minOk && !maxOk) {
    let rootOk = true;
    try {
      q(`SELECT rowid FROM "${table}" NOT INDEXED LIMIT 1`).all();
    } catch {
      rootOk = false;
    }
    if (!rootOk) {
      rep.notes.push('its b-tree could not be entered at all (root page unreadable)');
      return null;
    }
  }
  // A damaged edge page can make min()/max() answer garbage: a walk to 2^63 would never end.
  if (min !== null && min < -rowidBound) {
    rep.notes.push(`min(rowid) answered ${min}, which cannot be right; walked from 1`);
    min = null;
    minOk = false;
  }
  if (max !== null && max > rowidBound) {
    rep.notes.push(`max(rowid) answered ${max}, more than this file could hold; treated as unreadable`);
    max = null;
    maxOk = false;
  }
  return { min, max, minOk, maxOk };
}

/** Walk one table of the snapshot through SQLite by rowid ranges; returns the unreadable ranges. */
function walkTable(
  src: Database.Database,
  table: string,
  rep: TableRecovery,
  ins: Inserter,
  dst: Db,
  chunk: number,
  scanMax: number | null,
  rowidBound: number,
  log: (s: string) => void,
): { unreadable: RowidRange[]; whole: boolean; rightEdgeOk: boolean } {
  const q = (sql: string) => src.prepare(sql).safeIntegers(true);
  const unreadable: RowidRange[] = [];
  const bounds = readBounds(q, table, rep, rowidBound);
  if (!bounds) return { unreadable: [], whole: true, rightEdgeOk: false };
  const { min, max, minOk, maxOk } = bounds;
  if (minOk && maxOk && min === null && max === null) return { unreadable: [], whole: false, rightEdgeOk: true };
  const lo = Math.min(1, min ?? 1);
  const hi = max ?? Math.max(scanMax ?? 0, lo);
  if (!maxOk) rep.notes.push(`the right edge of its b-tree was unreadable; walked past rowid ${hi} until 16 chunks in a row held nothing`);
  if (!minOk) rep.notes.push('the left edge of its b-tree was unreadable');

  const read = q(`SELECT rowid AS __rowid, * FROM "${table}" NOT INDEXED WHERE rowid BETWEEN ? AND ? ORDER BY rowid`);
  let failures = 0;
  // Rows SQLite returned before a step failed were read in full and are kept; the rest of the
  // range is retried after the last good rowid, or bisected when nothing came back.
  const visit = (a: number, b: number): void => {
    const rows: Array<Record<string, Value>> = [];
    let failed = false;
    try {
      for (const r of read.iterate(BigInt(a), BigInt(b))) rows.push(r as Record<string, Value>);
    } catch (e) {
      if (!isDamage(e)) throw e;
      failed = true;
    }
    let last = a - 1;
    for (const r of rows) {
      const rowid = Number(r.__rowid as bigint);
      // A damaged page can yield phantom cells (rowid 0 from a zero-filled tail, keys out of
      // order): keep only rows inside the asked range and in ascending order.
      if (rowid < a || rowid > b || rowid <= last) {
        rep.phantoms++;
        continue;
      }
      count(rep, ins.insert(rowid, r), rowid, 'tree');
      rep.maxRowid = Math.max(rep.maxRowid ?? rowid, rowid);
      last = rowid;
    }
    if (!failed) return;
    if (last >= a) {
      if (last < b) visit(last + 1, b);
      return;
    }
    if (a === b) {
      failures++;
      addRange(unreadable, a, b);
      return;
    }
    const m = a + Math.floor((b - a) / 2);
    visit(a, m);
    visit(m + 1, b);
  };
  const seen = () => rep.fromTree + rep.invalid + rep.duplicates;
  dst.exec('BEGIN IMMEDIATE');
  try {
    let done = 0;
    let emptyRun = 0;
    for (let a = lo; a <= hi || (!maxOk && emptyRun < 16); ) {
      const before = seen();
      const b = a <= hi ? Math.min(hi, a + chunk - 1) : a + chunk - 1;
      visit(a, b);
      if (a > hi) emptyRun = seen() > before ? 0 : emptyRun + 1;
      a = b + 1;
      if (++done % 200 === 0) {
        dst.exec('COMMIT');
        dst.exec('BEGIN IMMEDIATE');
      }
    }
    dst.exec('COMMIT');
  } catch (e) {
    if (dst.inTransaction) dst.exec('ROLLBACK');
    throw e;
  }
  if (failures > 0) log(`${table}: ${failures} rowid(s) unreadable through the tree`);
  return { unreadable, whole: false, rightEdgeOk: maxOk };
}

// ------------------------------------------------------------------ the phase

/**
 * Phase: walk every target table of the snapshot into `dst`, adding one table report per target
 * to `report.tables`. The snapshot is opened by SQLite only when the header phase found its schema
 * readable. A table missing from the readable schema is not walked: it is marked wholly
 * unreadable, for the page scan to fill. Returns what each table's walk could not read.
 */
export function walkTables(
  snapshotDb: string,
  dst: Db,
  targets: TableShape[],
  source: SourceShapes,
  hits: Map<string, ScanHit[]>,
  report: RecoverReport,
  chunk: number,
  log: (s: string) => void,
): Map<string, Unreadable> {
  const src = report.schema === 'readable' ? openSnapshot(snapshotDb) : null;
  const unreadable = new Map<string, Unreadable>();
  try {
    for (const target of targets) {
      const rep = newTableReport(target.name);
      report.tables.push(rep);
      const shape = source.shapes.get(target.name)!;
      let scanMax: number | null = null;
      for (const h of hits.get(target.name) ?? []) scanMax = Math.max(scanMax ?? h.rowid, h.rowid);
      const since = tableSince(target.name);
      if (src && !source.inSourceSchema.has(target.name) && report.sourceSchemaVersion !== null && report.sourceSchemaVersion < since) {
        // The source's schema is readable and its version predates the table: it never had one.
        rep.notes.push(`the source board (schema version ${report.sourceSchemaVersion}) is older than this table (version ${since}): none to carry over`);
        unreadable.set(target.name, { ranges: [], whole: false, rightEdgeOk: true });
        continue;
      }
      if (!src || !source.inSourceSchema.has(target.name)) {
        if (src) rep.notes.push("not in the readable part of the source's schema (a damaged schema entry, or a board older than this table)");
        unreadable.set(target.name, { ranges: [], whole: true, rightEdgeOk: false });
        continue;
      }
      const ins = makeInserter(dst, target, shape.columns.map((c) => c.name));
      // No table can hold more rows than the file has room for cells (4 bytes at least each), plus the page scan's largest rowid.
      const rowidBound = (scanMax ?? 0) + report.pageCount * Math.ceil((report.pageSize ?? 65536) / 4) + 1_000_000;
      const w = walkTable(src, target.name, rep, ins, dst, chunk, scanMax, rowidBound, log);
      unreadable.set(target.name, { ranges: w.unreadable, whole: w.whole, rightEdgeOk: w.rightEdgeOk });
    }
  } finally {
    src?.close();
  }
  return unreadable;
}
