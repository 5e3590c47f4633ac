/**
 * The page scan's two passes around the tree walk.
 *
 * Pass 1, before the walk, reads every page and notes which table rows sit on which leaf page
 * (the snapshot is closed for SQLite meanwhile: no `fs` use under a connection). Pass 2, after
 * the walk, inserts the rows found on leaf pages whose rowid the walk did not deliver: inside
 * ranges it could not read, or skipped by SQLite without an error. Only rowids missing from the
 * new board are taken from the page scan, so a page scan never overrides what SQLite read.
 */
import { statSync } from 'node:fs';
import type { Db } from '../open.js';
import { fitsColumns, leafCells, Pages, scanPages, type ScanHit } from './pages.js';
import { inRanges, type Unreadable } from './ranges.js';
import type { RecoverReport, TableRecovery } from './report.js';
import type { SourceShapes, TableShape, Value } from './shape.js';
import type { Snapshot } from './snapshot.js';
import type { WalParse } from './wal.js';
import { count, makeInserter, rejected } from './walk.js';

/** Where the page scan reads: the snapshot, its committed -wal frames, at the header phase's page size. */
export interface ScanSource {
  snap: Snapshot;
  wal: WalParse | null;
  pageSize: number | null;
  reserved: number;
  /** Whether the page scan runs at all (RecoverOptions.pageScan). */
  enabled: boolean;
}

/** Phase: page scan, pass 1. Sets `report.pageCount`; returns the leaf cells found, per table. */
export function scanSnapshotPages(at: ScanSource, shapes: TableShape[], report: RecoverReport, log: (s: string) => void): Map<string, ScanHit[]> {
  let hits = new Map<string, ScanHit[]>();
  if (at.pageSize !== null && at.enabled) {
    const pages = new Pages(at.snap.db, at.snap.wal, at.wal, at.pageSize, at.reserved);
    report.pageCount = pages.pageCount;
    hits = scanPages(pages, shapes, log);
    pages.close();
  } else if (at.pageSize !== null) report.pageCount = Math.ceil(statSync(at.snap.db).size / at.pageSize);
  return hits;
}

/** Pass 2 for one table: insert the rows of `tableHits` that are not in the new board. */
function fillTable(pages: Pages, dst: Db, target: TableShape, shape: TableShape, rep: TableRecovery, u: Unreadable, tableHits: ScanHit[]): void {
  const has = dst.prepare(`SELECT 1 FROM "${target.name}" WHERE rowid = ?`);
  const byPage = new Map<number, Set<number>>();
  const tried = rejected.get(rep) ?? new Map<number, 'invalid' | 'duplicate'>();
  for (const h of tableHits) {
    if (has.get(BigInt(h.rowid))) continue; // the tree walk read it: SQLite's reading wins
    if (!byPage.has(h.pgno)) byPage.set(h.pgno, new Set());
    byPage.get(h.pgno)!.add(h.rowid);
  }
  if (byPage.size === 0) return;
  const ins = makeInserter(dst, target, shape.columns.map((c) => c.name));
  const names = shape.columns.map((c) => c.name);
  const treeMax = rep.maxRowid;
  let silent = 0;
  for (const [pgno, rowids] of byPage) {
    for (const c of leafCells(pages, pgno, pages.page(pgno)) ?? []) {
      const rowid = Number(c.rowid);
      if (!rowids.has(rowid) || !fitsColumns(c.values, shape)) continue;
      rowids.delete(rowid);
      const row: Record<string, Value> = {};
      names.forEach((n, i) => (row[n] = c.values[i] ?? null));
      const res = ins.insert(c.rowid, row);
      // A row the walk read and rejected is retried (the walk may have read a wrong page through a
      // damaged pointer); when it is rejected again, it was counted once already.
      if (res !== 'ok' && tried.has(rowid)) continue;
      const before = tried.get(rowid);
      if (res === 'ok' && before === 'invalid') {
        rep.invalid--;
        const k = rep.invalidRowids.indexOf(rowid);
        if (k >= 0) rep.invalidRowids.splice(k, 1);
      } else if (res === 'ok' && before === 'duplicate') rep.duplicates--;
      count(rep, res, rowid, 'scan');
      rep.maxRowid = Math.max(rep.maxRowid ?? rowid, rowid);
      if (!u.whole && !inRanges(u.ranges, rowid) && (u.rightEdgeOk || (treeMax !== null && rowid <= treeMax))) silent++;
    }
  }
  if (silent > 0) rep.notes.push(`${silent} row(s) that SQLite's walk skipped without an error were found on leaf pages`);
}

/** Phase: page scan, pass 2: rows on leaf pages whose rowid the walk did not deliver, in one transaction. */
export function fillFromPageScan(
  at: ScanSource,
  dst: Db,
  targets: TableShape[],
  source: SourceShapes,
  hits: Map<string, ScanHit[]>,
  unreadable: Map<string, Unreadable>,
  report: RecoverReport,
): void {
  if (at.pageSize === null || !at.enabled) return;
  const pages = new Pages(at.snap.db, at.snap.wal, at.wal, at.pageSize, at.reserved);
  try {
    dst.exec('BEGIN IMMEDIATE');
    for (const target of targets) {
      const rep = report.tables.find((t) => t.table === target.name)!;
      const tableHits = hits.get(target.name) ?? [];
      if (tableHits.length === 0) continue;
      fillTable(pages, dst, target, source.shapes.get(target.name)!, rep, unreadable.get(target.name)!, tableHits);
    }
    dst.exec('COMMIT');
  } catch (e) {
    if (dst.inTransaction) dst.exec('ROLLBACK');
    throw e;
  } finally {
    pages.close();
  }
}
