/**
 * Header repair. When the snapshot's 100-byte header is not a usable SQLite header (garbage over
 * the magic, invalid page size, ...), a plausible header is written over the SNAPSHOT's first 100
 * bytes (page size taken from the -wal header, the old header, or the page layout) and SQLite is
 * tried again. Page 1's b-tree starts at byte 100, so the schema usually survives. The source's
 * own header is never written.
 */
import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { SQLITE_MAGIC } from '../open.js';
import { readAll } from './io.js';
import type { RecoverReport } from './report.js';
import { trySchema, type OpenedSchema, type Snapshot } from './snapshot.js';
import type { WalParse } from './wal.js';

function headerUsable(h: Buffer): boolean {
  if (h.length < 100 || h.subarray(0, 16).toString('latin1') !== SQLITE_MAGIC) return false;
  const ps = h.readUInt16BE(16) === 1 ? 65536 : h.readUInt16BE(16);
  if (ps < 512 || (ps & (ps - 1)) !== 0) return false;
  if (![1, 2].includes(h[18]!) || ![1, 2].includes(h[19]!)) return false;
  if (h[21] !== 64 || h[22] !== 32 || h[23] !== 32) return false;
  if (h.readUInt32BE(44) < 1 || h.readUInt32BE(44) > 4) return false;
  return [0, 1, 2, 3].includes(h.readUInt32BE(56));
}

/** How many pages of the file look like b-tree pages at this page size (page 1 excluded). */
function layoutScore(fd: number, fileSize: number, pageSize: number): number {
  const pages = Math.min(Math.floor(fileSize / pageSize), 256);
  let score = 0;
  for (let n = 2; n <= pages; n++) {
    const h = readAll(fd, (n - 1) * pageSize, 12);
    const type = h[0]!;
    if (type !== 2 && type !== 5 && type !== 10 && type !== 13) continue;
    const ncell = h.readUInt16BE(3);
    const content = h.readUInt16BE(5) || 65536;
    const hdrLen = type === 2 || type === 5 ? 12 : 8;
    if (content <= pageSize && hdrLen + 2 * ncell <= content) score++;
  }
  return score;
}

/** Page sizes ranked by how many pages of the file look like b-tree pages at that size. */
function layoutRanking(db: string): Array<{ ps: number; score: number }> {
  const size = statSync(db).size;
  const fd = openSync(db, 'r');
  try {
    return [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
      .filter((ps) => ps <= size)
      .map((ps) => ({ ps, score: layoutScore(fd, size, ps) }))
      .sort((a, b) => b.score - a.score || (a.ps === 4096 ? -1 : b.ps === 4096 ? 1 : a.ps - b.ps));
  } finally {
    closeSync(fd);
  }
}

function headerPageSize(h: Buffer): number {
  const ps = h.length >= 18 ? (h.readUInt16BE(16) === 1 ? 65536 : h.readUInt16BE(16)) : 0;
  return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) === 0 ? ps : 0;
}

/** Page sizes to try: the -wal's, the old header's (unless the layout contradicts it), then by layout. */
function candidatePageSizes(db: string, wal: WalParse | null, old: Buffer, trustOld = true): number[] {
  const out: number[] = [];
  if (wal) out.push(wal.pageSize);
  const oldPs = headerPageSize(old);
  if (oldPs && trustOld) out.push(oldPs);
  for (const s of layoutRanking(db)) out.push(s.ps);
  if (!out.includes(4096)) out.push(4096);
  return [...new Set(out)];
}

/** Whether the page layout clearly says the header's page size is wrong. */
function layoutContradicts(db: string, ps: number): number | null {
  const ranking = layoutRanking(db);
  const best = ranking[0];
  const mine = ranking.find((r) => r.ps === ps)?.score ?? 0;
  return best && best.ps !== ps && best.score > 2 * mine + 2 ? best.ps : null;
}

function writeHeader(db: string, pageSize: number, walMode: boolean): void {
  const size = statSync(db).size;
  const h = Buffer.alloc(100);
  h.write(SQLITE_MAGIC, 0, 'latin1');
  h.writeUInt16BE(pageSize === 65536 ? 1 : pageSize, 16);
  h[18] = walMode ? 2 : 1;
  h[19] = walMode ? 2 : 1;
  h[20] = 0; // reserved bytes per page
  h[21] = 64;
  h[22] = 32;
  h[23] = 32;
  h.writeUInt32BE(1, 24); // change counter
  h.writeUInt32BE(Math.ceil(size / pageSize), 28); // pages (valid: offset 92 matches the change counter)
  h.writeUInt32BE(0, 32); // freelist trunk: lost, not needed to read
  h.writeUInt32BE(0, 36);
  h.writeUInt32BE(1, 40); // schema cookie
  h.writeUInt32BE(4, 44); // schema format
  h.writeUInt32BE(1, 56); // UTF-8
  h.writeUInt32BE(1, 92);
  h.writeUInt32BE(3053002, 96);
  const fd = openSync(db, 'r+');
  try {
    writeSync(fd, h, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
}

/** The snapshot as SQLite can read it after the header phase. */
export interface SnapshotSchema {
  /** The snapshot open with its schema readable, or null when SQLite could not read the schema. */
  opened: OpenedSchema | null;
  /** The page size the page scan reads with, or null when the file is empty. */
  pageSize: number | null;
  /** Reserved bytes per page: the header's when it was usable and kept, else 0. */
  reserved: number;
}

/**
 * Write a plausible header over the snapshot's and let SQLite try again, per candidate page size.
 * Returns the first that lets SQLite read a schema with at least one table.
 */
function tryReconstructedHeaders(
  snap: Snapshot,
  wal: WalParse | null,
  head: Buffer,
  usable: boolean,
  trustOld: boolean,
  walMode: boolean,
  report: RecoverReport,
): { opened: OpenedSchema; pageSize: number } | null {
  for (const ps of candidatePageSizes(snap.db, wal, head, trustOld)) {
    writeHeader(snap.db, ps, walMode || head[18] === 2);
    rmSync(snap.db + '-shm', { force: true });
    const opened = trySchema(snap.db);
    if (opened && opened.tables.length > 0) {
      report.header = 'reconstructed';
      report.notes.push(
        `the header was not usable (${usable ? 'SQLite could not read the schema with it' : `it starts with ${JSON.stringify(head.subarray(0, 16).toString('latin1'))}`}); a header with page size ${ps} was written over the snapshot's, and SQLite could read the schema`,
      );
      return { opened, pageSize: ps };
    }
    opened?.db.close();
  }
  return null;
}

/**
 * Phase: open the snapshot's schema through SQLite, with its own header when it is usable (and
 * the page layout does not contradict its page size), else with reconstructed ones. Sets
 * `report.header`, `report.pageSize` and `report.schema`. When no header lets SQLite read the
 * schema, one is still written so that the page scan can read pages at a plausible size.
 */
export function readSchemaRepairingHeader(snap: Snapshot, wal: WalParse | null, report: RecoverReport): SnapshotSchema {
  const notes = report.notes;
  const fd = openSync(snap.db, 'r');
  const head = readAll(fd, 0, 100);
  closeSync(fd);
  let opened: OpenedSchema | null = null;
  let pageSize: number | null = null;
  const walMode = wal !== null && wal.frames.size > 0;
  let usable = headerUsable(head);
  let trustOld = true;
  if (usable && statSync(snap.db).size > 0 && !walMode) {
    const other = layoutContradicts(snap.db, headerPageSize(head));
    if (other !== null) {
      notes.push(`the header says page size ${headerPageSize(head)}, but the pages are laid out for ${other}`);
      usable = false;
      trustOld = false;
    }
  }
  if (statSync(snap.db).size === 0) {
    notes.push('the database file is empty');
  } else {
    if (usable) {
      pageSize = head.readUInt16BE(16) === 1 ? 65536 : head.readUInt16BE(16);
      opened = trySchema(snap.db);
    }
    if (!opened) {
      const rebuilt = tryReconstructedHeaders(snap, wal, head, usable, trustOld, walMode, report);
      if (rebuilt) {
        opened = rebuilt.opened;
        pageSize = rebuilt.pageSize;
      }
    }
    if (!opened) {
      if (!usable) {
        report.header = 'unusable';
        pageSize = candidatePageSizes(snap.db, wal, head, trustOld)[0] ?? 4096;
      }
      writeHeader(snap.db, pageSize!, walMode);
      notes.push(`SQLite could not read the schema${usable ? '' : ', with the header or any reconstructed one'}; only the page scan (page size ${pageSize}) can find rows`);
    }
  }
  report.pageSize = pageSize;
  report.schema = opened ? 'readable' : 'unreadable';
  const reserved = usable && report.header === 'ok' ? head[20]! : 0;
  return { opened, pageSize, reserved };
}
