/**
 * Rowid range bookkeeping. The walk records the rowids it could not read as ascending, disjoint
 * inclusive ranges; what is reported lost is those ranges minus the rowids the page scan found,
 * bounded by the largest rowid known to exist when the right edge of the b-tree was unreadable
 * (rowids above it may or may not have held rows: that is reported as `lostAbove`, not as a range).
 */
import type { Db } from '../open.js';
import type { RowidRange, TableRecovery } from './report.js';

/** What the walk of one table could not read. */
export interface Unreadable {
  /** Rowid ranges the walk could not read (ascending, disjoint). */
  ranges: RowidRange[];
  /** Nothing could be walked: the table is missing from the readable schema, or its root is unreadable. */
  whole: boolean;
  /** Whether the walk knew the table's largest rowid (max(rowid) answered, and sensibly). */
  rightEdgeOk: boolean;
}

/** Append [from, to] to `ranges` (ascending), merging it into the last range when they touch. */
export function addRange(ranges: RowidRange[], from: number, to: number): void {
  const last = ranges[ranges.length - 1];
  if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to);
  else ranges.push([from, to]);
}

/** Whether `r` is in one of `ranges` (ascending, disjoint). */
export function inRanges(ranges: RowidRange[], r: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = ranges[mid]!;
    if (r < a) hi = mid - 1;
    else if (r > b) lo = mid + 1;
    else return true;
  }
  return false;
}

/** `ranges` (ascending, disjoint) minus the rowids in `taken` (ascending, unique). */
export function subtract(ranges: RowidRange[], taken: number[]): RowidRange[] {
  const out: RowidRange[] = [];
  let j = 0;
  for (const [a, b] of ranges) {
    let cur = a;
    while (j < taken.length && taken[j]! < a) j++;
    while (j < taken.length && taken[j]! <= b) {
      const r = taken[j++]!;
      if (r > cur) out.push([cur, r - 1]);
      cur = r + 1;
    }
    if (cur <= b) out.push([cur, b]);
  }
  return out;
}

/**
 * Phase: what is lost, per table: the unreadable ranges minus the rows now in the new board,
 * bounded by the largest known rowid. Sets each table's `lostRanges`, `lostAbove` and `status`.
 */
export function settleLostRanges(dst: Db, tables: TableRecovery[], unreadable: Map<string, Unreadable>): void {
  for (const rep of tables) {
    const u = unreadable.get(rep.table)!;
    const rowids = dst.prepare(`SELECT rowid AS r FROM "${rep.table}" ORDER BY rowid`).pluck().all() as number[];
    if (u.whole) {
      const hi = rep.maxRowid ?? 0;
      u.ranges = hi >= 1 ? [[Math.min(1, rowids[0] ?? 1), hi]] : [];
      rep.status = rep.salvaged > 0 ? 'partial' : 'unreadable';
      rep.notes.push(
        rep.salvaged > 0
          ? 'read only by the page scan: rows on pages that are gone are lost without a trace'
          : 'nothing of it could be read; how many rows it held is unknown',
      );
    }
    const known = rep.maxRowid ?? 0;
    let ranges = subtract(u.ranges, rowids);
    if (!u.rightEdgeOk) {
      ranges = ranges.filter(([a]) => a <= known).map(([a, b]): RowidRange => [a, Math.min(b, known)]);
      rep.lostAbove = known;
    }
    rep.lostRanges = ranges;
    if (rep.status === 'complete' && (ranges.length > 0 || rep.invalid > 0 || rep.lostAbove !== null)) rep.status = 'partial';
  }
}
