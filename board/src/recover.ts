/**
 * Salvage a damaged board into a fresh one with the current schema.
 *
 * How the source is read, and why:
 * - The source is never opened by SQLite. Its database file and non-empty -wal are copied
 *   (through `fs`, by this process, which must hold no connection to it) into a private snapshot
 *   folder, and everything below reads the snapshot. So the source's bytes, its -wal and -shm are
 *   never modified, a read-only SQLite open never creates a -wal/-shm next to it, and the -shm
 *   question does not arise (SQLite rebuilds the snapshot's wal-index from its -wal). The copy is
 *   repeated when the source changed while it was being copied (up to 3 times).
 * - When the snapshot's 100-byte header is not a usable SQLite header (garbage over the magic,
 *   invalid page size, ...), a plausible header is written over the SNAPSHOT's first 100 bytes
 *   (page size taken from the -wal header, the old header, or the page layout) and SQLite is
 *   tried again. Page 1's b-tree starts at byte 100, so the schema usually survives.
 * - Each table is then walked by rowid ranges through SQLite (`WHERE rowid BETWEEN ? AND ?`), in
 *   chunks; a chunk that fails with a damage error is bisected down to single rowids, and the
 *   rowids that cannot be read are reported as lost ranges.
 * - Then a page scan (this module's own b-tree leaf parser, with the -wal's committed frames laid
 *   over the file) finds table rows inside those unreadable ranges, for instance below a zeroed
 *   interior page or when the schema page itself is gone. Rows are attributed to a table by their
 *   number of columns and column types. Only rowids the tree walk could not read are taken from
 *   the page scan, so a page scan never overrides what SQLite read.
 * - Rows are inserted with their rowids into a board created by `openDatabase` (same hardened
 *   settings, WAL, current schema). A row violating the current schema (CHECK such as invalid
 *   JSON, NOT NULL, STRICT types) is skipped and counted as invalid; a second row with the same
 *   primary key is counted as a duplicate.
 * - Fix-ups keep the result consistent and visible: a task referenced by salvaged runs or events
 *   but itself lost gets a `blocked` placeholder task (so foreign keys hold and the loss shows up
 *   in `list`); a `running` task whose run was lost is blocked (its worker may still be alive, so
 *   it is not re-queued); each fix-up adds a `recovery` event to the task.
 */
import { fsyncDir } from './fsutil.js';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { backupDamaged, type BackupOptions, type BackupResult } from './backup.js';
import { BoardError, SchemaTooNewError, classifyError } from './errors.js';
import { holdsConnection, initLockPath, openDatabase, SQLITE_MAGIC, type Db } from './open.js';
import { OwnerLock, ownerLockPath } from './lock.js';
import { SCHEMA_VERSION } from './schema.js';

// ------------------------------------------------------------------ public types

/** An inclusive range of rowids. */
export type RowidRange = [from: number, to: number];

export interface TableRecovery {
  table: string;
  /** complete: every row read; partial: some rowids unreadable or rows invalid; unreadable: nothing could be read. */
  status: 'complete' | 'partial' | 'unreadable';
  /** Rows written to the new board (fromTree + fromPageScan). */
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
  taskId: string;
  action: 'placeholder' | 'blocked' | 'cleared_run';
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

/** `recover --in-place` refused: a supervisor owns the board. */
export class RecoverRefusedError extends BoardError {
  override name = 'RecoverRefusedError';
  constructor(readonly path: string, detail: string) {
    super(`refusing to recover ${path} in place: ${detail}`);
  }
}

// ------------------------------------------------------------------ target schema

const TABLE_ORDER = ['skills', 'tasks', 'runs', 'events', 'owner'] as const;

interface ColumnInfo {
  name: string;
  type: string;
  pk: boolean;
}

interface TableShape {
  name: string;
  columns: ColumnInfo[];
  /** Index of the INTEGER PRIMARY KEY column (the rowid alias), or -1. */
  aliasIndex: number;
}

function tableShape(db: Db, table: string): TableShape | null {
  const rows = db.prepare(`SELECT name, type, pk FROM pragma_table_info(?)`).all(table) as Array<{ name: string; type: string; pk: number }>;
  if (rows.length === 0) return null;
  const columns = rows.map((r) => ({ name: r.name, type: String(r.type).toUpperCase(), pk: r.pk > 0 }));
  const pks = columns.filter((c) => c.pk);
  const aliasIndex = pks.length === 1 && pks[0]!.type === 'INTEGER' ? columns.indexOf(pks[0]!) : -1;
  return { name: table, columns, aliasIndex };
}

// ------------------------------------------------------------------ small helpers

type Value = null | bigint | number | string | Buffer;

function isDamage(e: unknown): boolean {
  const cls = classifyError(e);
  if (cls === 'damaged' || cls === 'io') return true;
  const code = (e as { code?: unknown } | null)?.code;
  // Any other SQLite error while reading a damaged file (SQLITE_ERROR "malformed", SQLITE_NOMEM
  // from a garbage length, SQLITE_RANGE ...) also means "this range cannot be read".
  return typeof code === 'string' && code.startsWith('SQLITE_');
}

function readAll(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return buf; // zero-filled past EOF, as SQLite reads a short page
}

function sameStat(a: { size: number; mtimeMs: number; ino: number } | null, b: { size: number; mtimeMs: number; ino: number } | null): boolean {
  if (a === null || b === null) return a === b;
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

function statOrNull(p: string): { size: number; mtimeMs: number; ino: number } | null {
  try {
    const s = statSync(p);
    return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
  } catch {
    return null;
  }
}


function removeQuiet(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    /* absent */
  }
}

// ------------------------------------------------------------------ snapshot

interface Snapshot {
  dir: string;
  db: string;
  wal: string | null;
}

function takeSnapshot(src: string, workDir: string, notes: string[]): Snapshot {
  mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const dir = mkdtempSync(join(workDir, `.${basename(src)}.recover-snapshot-`));
  const db = join(dir, 'snapshot.db');
  for (let attempt = 1; ; attempt++) {
    const before = [statOrNull(src), statOrNull(src + '-wal')];
    rmSync(db, { force: true });
    rmSync(db + '-wal', { force: true });
    copyFileSync(src, db);
    const walSize = before[1]?.size ?? 0;
    if (walSize > 0) copyFileSync(src + '-wal', db + '-wal');
    const after = [statOrNull(src), statOrNull(src + '-wal')];
    if (sameStat(before[0]!, after[0]!) && sameStat(before[1]!, after[1]!)) break;
    if (attempt >= 3) {
      notes.push('the source kept changing while it was copied; the snapshot may mix two states (is a process still writing to it?)');
      break;
    }
  }
  return { dir, db, wal: existsSync(db + '-wal') ? db + '-wal' : null };
}

// ------------------------------------------------------------------ WAL parsing

interface WalParse {
  info: WalInfo;
  pageSize: number;
  /** Page number -> file offset of its newest committed frame's data. */
  frames: Map<number, number>;
  /** Database size in pages after the last commit, or 0. */
  dbPages: number;
}

function walChecksum(big: boolean, buf: Buffer, start: number, end: number, s: [number, number]): [number, number] {
  let s0 = s[0];
  let s1 = s[1];
  for (let i = start; i < end; i += 8) {
    const x0 = big ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const x1 = big ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  return [s0, s1];
}

/** Parse a -wal the way SQLite's recovery does: valid frames up to the last commit frame count. */
function parseWal(path: string): WalParse | null {
  const bytes = statSync(path).size;
  if (bytes < 32) return null;
  const fd = openSync(path, 'r');
  try {
    const hdr = readAll(fd, 0, 32);
    const magic = hdr.readUInt32BE(0);
    if (magic !== 0x377f0682 && magic !== 0x377f0683) return null;
    const big = (magic & 1) === 1;
    const pageSize = hdr.readUInt32BE(8);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
    const [h0, h1] = walChecksum(big, hdr, 0, 24, [0, 0]);
    if (h0 !== hdr.readUInt32BE(24) || h1 !== hdr.readUInt32BE(28)) return null;
    const salt1 = hdr.readUInt32BE(16);
    const salt2 = hdr.readUInt32BE(20);
    const frameSize = 24 + pageSize;
    let sum: [number, number] = [h0, h1];
    const pending = new Map<number, number>();
    const frames = new Map<number, number>();
    let valid = 0;
    let committed = 0;
    let dbPages = 0;
    for (let off = 32; off + frameSize <= bytes; off += frameSize) {
      const frame = readAll(fd, off, frameSize);
      const pgno = frame.readUInt32BE(0);
      const commit = frame.readUInt32BE(4);
      if (pgno === 0 || frame.readUInt32BE(8) !== salt1 || frame.readUInt32BE(12) !== salt2) break;
      let s = walChecksum(big, frame, 0, 8, sum);
      s = walChecksum(big, frame, 24, frameSize, s);
      if (s[0] !== frame.readUInt32BE(16) || s[1] !== frame.readUInt32BE(20)) break;
      sum = s;
      valid++;
      pending.set(pgno, off + 24);
      if (commit !== 0) {
        for (const [p, o] of pending) frames.set(p, o);
        pending.clear();
        committed = valid;
        dbPages = commit;
      }
    }
    const end = 32 + committed * frameSize;
    return { info: { bytes, validFrames: valid, committedFrames: committed, tailBytes: bytes - end }, pageSize, frames, dbPages };
  } finally {
    closeSync(fd);
  }
}

// ------------------------------------------------------------------ header reconstruction

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

// ------------------------------------------------------------------ page source and b-tree leaf parsing

class Pages {
  readonly pageCount: number;
  readonly usable: number;
  private fd: number;
  private walFd: number | null;

  constructor(
    db: string,
    wal: string | null,
    private readonly walParse: WalParse | null,
    readonly pageSize: number,
    reserved: number,
  ) {
    this.fd = openSync(db, 'r');
    this.walFd = wal && walParse && walParse.frames.size > 0 ? openSync(wal, 'r') : null;
    const filePages = Math.ceil(statSync(db).size / pageSize);
    this.pageCount = Math.max(filePages, walParse?.dbPages ?? 0);
    this.usable = pageSize - reserved;
  }

  page(n: number): Buffer {
    const off = this.walFd !== null ? this.walParse!.frames.get(n) : undefined;
    if (off !== undefined) return readAll(this.walFd!, off, this.pageSize);
    return readAll(this.fd, (n - 1) * this.pageSize, this.pageSize);
  }

  close(): void {
    closeSync(this.fd);
    if (this.walFd !== null) closeSync(this.walFd);
  }
}

function varint(buf: Buffer, pos: number, end: number): { v: bigint; n: number } | null {
  let v = 0n;
  for (let i = 0; i < 9; i++) {
    if (pos + i >= end) return null;
    const b = buf[pos + i]!;
    if (i === 8) return { v: BigInt.asIntN(64, (v << 8n) | BigInt(b)), n: 9 };
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) return { v: BigInt.asIntN(64, v), n: i + 1 };
  }
  return null;
}

interface RawCell {
  rowid: bigint;
  values: Value[];
}

/** Decode every well-formed cell of a table leaf page; malformed cells are skipped. */
function leafCells(pages: Pages, pgno: number, page: Buffer): RawCell[] | null {
  const hdr = pgno === 1 ? 100 : 0;
  if (page[hdr] !== 0x0d) return null;
  const U = pages.usable;
  const ncell = page.readUInt16BE(hdr + 3);
  const ptrEnd = hdr + 8 + 2 * ncell;
  if (ptrEnd > U) return null;
  const out: RawCell[] = [];
  const X = U - 35;
  const M = Math.floor(((U - 12) * 32) / 255) - 23;
  for (let i = 0; i < ncell; i++) {
    const p = page.readUInt16BE(hdr + 8 + 2 * i);
    if (p < ptrEnd || p >= U) continue;
    const size = varint(page, p, U);
    if (!size || size.v < 0n || size.v > 1_000_000_000n) continue;
    const rowid = varint(page, p + size.n, U);
    if (!rowid) continue;
    const P = Number(size.v);
    let local = P;
    if (P > X) {
      const K = M + ((P - M) % (U - 4));
      local = K <= X ? K : M;
    }
    const start = p + size.n + rowid.n;
    if (start + local + (local < P ? 4 : 0) > U) continue;
    let payload: Buffer;
    if (local === P) {
      payload = page.subarray(start, start + P);
    } else {
      payload = Buffer.alloc(P);
      page.copy(payload, 0, start, start + local);
      let got = local;
      let next = page.readUInt32BE(start + local);
      let hops = 0;
      const maxHops = Math.ceil((P - local) / (U - 4)) + 1;
      while (got < P && next >= 1 && next <= pages.pageCount && hops++ < maxHops) {
        const ov = pages.page(next);
        const take = Math.min(U - 4, P - got);
        ov.copy(payload, got, 4, 4 + take);
        got += take;
        next = ov.readUInt32BE(0);
      }
      if (got < P) continue;
    }
    const values = decodeRecord(payload);
    if (values) out.push({ rowid: rowid.v, values });
  }
  return out;
}

function decodeRecord(rec: Buffer): Value[] | null {
  const h = varint(rec, 0, rec.length);
  if (!h) return null;
  const hlen = Number(h.v);
  if (hlen < 1 || hlen > rec.length) return null;
  const types: number[] = [];
  let pos = h.n;
  while (pos < hlen) {
    const t = varint(rec, pos, hlen);
    if (!t || t.v < 0n || t.v > 2_000_000_000n) return null;
    types.push(Number(t.v));
    pos += t.n;
  }
  if (pos !== hlen) return null;
  const values: Value[] = [];
  let off = hlen;
  for (const t of types) {
    let len: number;
    if (t === 0 || t === 8 || t === 9) len = 0;
    else if (t >= 1 && t <= 4) len = t;
    else if (t === 5) len = 6;
    else if (t === 6 || t === 7) len = 8;
    else if (t === 10 || t === 11) return null;
    else len = Math.floor((t - 12) / 2);
    if (off + len > rec.length) return null;
    const b = rec.subarray(off, off + len);
    if (t === 0) values.push(null);
    else if (t === 8) values.push(0n);
    else if (t === 9) values.push(1n);
    else if (t <= 6) {
      let v = 0n;
      for (const byte of b) v = (v << 8n) | BigInt(byte);
      values.push(BigInt.asIntN(len * 8, v));
    } else if (t === 7) values.push(b.readDoubleBE(0));
    else if (t % 2 === 0) values.push(Buffer.from(b));
    else {
      const s = b.toString('utf8');
      if (s.includes('\uFFFD')) return null; // not valid UTF-8: garbage, not a row
      values.push(s);
    }
    off += len;
  }
  if (off !== rec.length) return null;
  return values;
}

function fitsColumns(values: Value[], shape: TableShape): boolean {
  if (values.length !== shape.columns.length) return false;
  return values.every((v, i) => {
    if (i === shape.aliasIndex) return v === null;
    if (v === null) return true;
    const t = shape.columns[i]!.type;
    if (t === 'INTEGER' || t === 'INT') return typeof v === 'bigint';
    if (t === 'REAL') return typeof v === 'number' || typeof v === 'bigint';
    if (t === 'TEXT') return typeof v === 'string';
    if (t === 'BLOB') return Buffer.isBuffer(v);
    return true;
  });
}

interface ScanHit {
  pgno: number;
  rowid: number;
}

/** Scan every page for table leaf cells and attribute them to tables by shape. */
function scanPages(pages: Pages, shapes: TableShape[], log: (s: string) => void): Map<string, ScanHit[]> {
  const hits = new Map<string, ScanHit[]>(shapes.map((s) => [s.name, []]));
  let leaves = 0;
  for (let n = 1; n <= pages.pageCount; n++) {
    const cells = leafCells(pages, n, pages.page(n));
    if (!cells) continue;
    leaves++;
    for (const c of cells) {
      const matches = shapes.filter((s) => fitsColumns(c.values, s));
      if (matches.length === 1) hits.get(matches[0]!.name)!.push({ pgno: n, rowid: Number(c.rowid) });
    }
  }
  log(`page scan: ${pages.pageCount} pages, ${leaves} table leaves, ${[...hits].map(([t, h]) => `${t} ${h.length}`).join(', ')}`);
  return hits;
}

// ------------------------------------------------------------------ range bookkeeping

function addRange(ranges: RowidRange[], from: number, to: number): void {
  const last = ranges[ranges.length - 1];
  if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to);
  else ranges.push([from, to]);
}

/** Whether `r` is in one of `ranges` (ascending, disjoint). */
function inRanges(ranges: RowidRange[], r: number): boolean {
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
function subtract(ranges: RowidRange[], taken: number[]): RowidRange[] {
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

// ------------------------------------------------------------------ the recovery itself

interface Inserter {
  insert(rowid: number | bigint, row: Record<string, Value>): 'ok' | 'invalid' | 'duplicate';
}

function makeInserter(dst: Db, target: TableShape, sourceColumns: string[]): Inserter {
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

function newTableReport(table: string): TableRecovery {
  return { table, status: 'complete', salvaged: 0, fromTree: 0, fromPageScan: 0, invalid: 0, invalidRowids: [], duplicates: 0, phantoms: 0, lostRanges: [], maxRowid: null, lostAbove: null, notes: [] };
}

/** Rowids the tree walk read but could not insert (invalid, duplicate): the page scan does not retry them. */
const rejected = new WeakMap<TableRecovery, Map<number, 'invalid' | 'duplicate'>>();

function count(t: TableRecovery, res: 'ok' | 'invalid' | 'duplicate', rowid: number, via: 'tree' | 'scan'): void {
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
      return { unreadable: [], whole: true, rightEdgeOk: false };
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

function createTaskPlaceholders(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const missing = dst
    .prepare(
      `SELECT task_id AS id, min(at) AS first FROM (
         SELECT task_id, started_at AS at FROM runs UNION ALL SELECT task_id, at FROM events
       ) WHERE task_id NOT IN (SELECT id FROM tasks) GROUP BY task_id`,
    )
    .all() as Array<{ id: string; first: number | null }>;
  const created = dst.prepare(`SELECT data FROM events WHERE task_id = ? AND kind = 'created' ORDER BY id LIMIT 1`);
  const insert = dst.prepare(
    `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, last_error)
     VALUES (?, ?, ?, 'null', 'blocked', ?, ?, ?, ?)`,
  );
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, NULL, 'recovery', ?, ?)`);
  for (const m of missing) {
    let skill = '(unknown)';
    let priority = 0;
    try {
      const d = created.get(m.id) as { data: string | null } | undefined;
      const j = d?.data ? (JSON.parse(d.data) as { skill?: unknown; priority?: unknown }) : null;
      if (j && typeof j.skill === 'string') skill = j.skill;
      if (j && typeof j.priority === 'number' && Number.isSafeInteger(j.priority)) priority = j.priority;
    } catch {
      /* keep the defaults */
    }
    const reason = `task row lost in board recovery; rebuilt as a placeholder from its runs/events (payload and title lost). Recreate the task if it is still wanted`;
    insert.run(m.id, `(lost in recovery) ${m.id}`, skill, priority, m.first ?? now, now, reason);
    event.run(m.id, JSON.stringify({ action: 'placeholder', reason }), now);
    fixups.push({ taskId: m.id, action: 'placeholder', reason });
  }
}

function fixRunningTasks(dst: Db, now: number, fixups: RecoverFixup[]): void {
  const event = dst.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, ?, 'recovery', ?, ?)`);
  const orphanRunning = dst
    .prepare(`SELECT id, current_run_id AS run FROM tasks WHERE status = 'running' AND (current_run_id IS NULL OR current_run_id NOT IN (SELECT id FROM runs))`)
    .all() as Array<{ id: string; run: string | null }>;
  const block = dst.prepare(`UPDATE tasks SET status = 'blocked', current_run_id = NULL, last_error = ?, updated_at = ? WHERE id = ?`);
  for (const t of orphanRunning) {
    const reason = `its run ${t.run ?? '(none)'} was lost in board recovery; its worker may still be running. Check, then unblock to run it again`;
    block.run(reason, now, t.id);
    event.run(t.id, t.run, JSON.stringify({ action: 'blocked', reason }), now);
    fixups.push({ taskId: t.id, action: 'blocked', reason });
  }
  const dangling = dst
    .prepare(`SELECT id, current_run_id AS run FROM tasks WHERE status != 'running' AND current_run_id IS NOT NULL AND current_run_id NOT IN (SELECT id FROM runs)`)
    .all() as Array<{ id: string; run: string }>;
  const clear = dst.prepare(`UPDATE tasks SET current_run_id = NULL, updated_at = ? WHERE id = ?`);
  for (const t of dangling) {
    const reason = `its current run ${t.run} was lost in board recovery; the reference was cleared`;
    clear.run(now, t.id);
    event.run(t.id, t.run, JSON.stringify({ action: 'cleared_run', reason }), now);
    fixups.push({ taskId: t.id, action: 'cleared_run', reason });
  }
}

function openSnapshot(path: string): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 1000 });
  try {
    db.pragma('cell_size_check = ON');
    db.pragma('trusted_schema = OFF');
    db.pragma('query_only = ON');
    // Trust the file over the header's page count (a truncated file is otherwise refused whole)
    // and tolerate a partly malformed schema. writable_schema only has that effect outside
    // SQLite's defensive mode, which better-sqlite3 turns on: unsafeMode turns it off. This
    // connection is read-only and query_only on a private snapshot; nothing is written through it.
    db.unsafeMode(true);
    db.pragma('writable_schema = ON');
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

/** Try to read the snapshot's schema; returns the open connection, or null. */
function trySchema(path: string): { db: Database.Database; tables: string[] } | null {
  let db: Database.Database | null = null;
  try {
    db = openSnapshot(path);
    const tables = (db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table'`).all() as Array<{ name: string }>).map((r) => r.name);
    for (const t of tables) db.prepare(`SELECT name FROM pragma_table_info(?)`).all(t);
    return { db, tables };
  } catch {
    db?.close();
    return null;
  }
}

/**
 * Build the recovered board at exactly `outAbs` (which must not exist). Leaves no -wal, -shm or
 * init-lock next to it. Returns the report.
 */
function buildRecovered(srcAbs: string, outAbs: string, opts: RecoverOptions): RecoverReport {
  const started = Date.now();
  const log = opts.log ?? (() => {});
  const chunk = Math.max(1, opts.chunkRows ?? 256);
  const notes: string[] = [];
  const report: RecoverReport = {
    source: srcAbs,
    out: outAbs,
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
  const snap = takeSnapshot(srcAbs, opts.workDir ?? dirname(outAbs), notes);
  let dst: Db | null = null;
  try {
    // --- the -wal, the header
    const wal = snap.wal ? parseWal(snap.wal) : null;
    if (snap.wal) {
      if (wal) {
        report.wal = wal.info;
        if (wal.info.tailBytes > 0) {
          notes.push(`the -wal has ${wal.info.tailBytes} bytes after its last committed frame (a torn or uncommitted tail, or frames left from an earlier WAL cycle); SQLite ignores them, and so does recovery`);
        }
      } else notes.push('the -wal has no valid header; SQLite ignores it, and so does recovery');
    }
    const fd = openSync(snap.db, 'r');
    const head = readAll(fd, 0, 100);
    closeSync(fd);
    let opened: { db: Database.Database; tables: string[] } | null = null;
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
        // Write a plausible header over the snapshot's and let SQLite try again, per candidate page size.
        for (const ps of candidatePageSizes(snap.db, wal, head, trustOld)) {
          writeHeader(snap.db, ps, walMode || head[18] === 2);
          rmSync(snap.db + '-shm', { force: true });
          opened = trySchema(snap.db);
          if (opened && opened.tables.length > 0) {
            report.header = 'reconstructed';
            pageSize = ps;
            notes.push(
              `the header was not usable (${usable ? 'SQLite could not read the schema with it' : `it starts with ${JSON.stringify(head.subarray(0, 16).toString('latin1'))}`}); a header with page size ${ps} was written over the snapshot's, and SQLite could read the schema`,
            );
            break;
          }
          opened?.db.close();
          opened = null;
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
    if (opened) {
      try {
        report.sourceSchemaVersion = Number(opened.db.pragma('user_version', { simple: true }));
        if (report.header === 'reconstructed') report.sourceSchemaVersion = null; // the header held it, and it was lost
      } catch {
        /* unknown */
      }
      if (report.sourceSchemaVersion !== null && report.sourceSchemaVersion > SCHEMA_VERSION) {
        opened.db.close();
        // Recovering into an older schema would drop what this build does not know.
        throw new SchemaTooNewError(srcAbs, report.sourceSchemaVersion, SCHEMA_VERSION);
      }
      const extra = opened.tables.filter((t) => !(TABLE_ORDER as readonly string[]).includes(t) && !t.startsWith('sqlite_'));
      if (extra.length) notes.push(`tables not in the current schema were not carried over: ${extra.join(', ')}`);
    }

    // --- the destination board, through the hardened open
    dst = openDatabase(outAbs, { create: true });
    const targets = TABLE_ORDER.map((t) => tableShape(dst!, t)!);
    dst.pragma('foreign_keys = OFF'); // parents may be lost: placeholders are made below, then checked

    // --- source shapes: the snapshot's schema where readable, else the current schema
    const srcShapes = new Map<string, TableShape>();
    const inSourceSchema = new Set<string>();
    if (opened) {
      for (const t of TABLE_ORDER) {
        if (!opened.tables.includes(t)) continue;
        try {
          const s = tableShape(opened.db, t);
          if (s) {
            srcShapes.set(t, s);
            inSourceSchema.add(t);
          }
        } catch {
          /* unreadable */
        }
      }
    }
    for (const s of targets) if (!srcShapes.has(s.name)) srcShapes.set(s.name, s);

    // --- page scan, pass 1 (snapshot closed for SQLite meanwhile: no fs use under a connection)
    opened?.db.close();
    let pages: Pages | null = null;
    let hits = new Map<string, ScanHit[]>();
    const reserved = usable && report.header === 'ok' ? head[20]! : 0;
    if (pageSize !== null && (opts.pageScan ?? true)) {
      pages = new Pages(snap.db, snap.wal, wal, pageSize, reserved);
      report.pageCount = pages.pageCount;
      hits = scanPages(pages, [...srcShapes.values()], log);
      pages.close();
      pages = null;
    } else if (pageSize !== null) report.pageCount = Math.ceil(statSync(snap.db).size / pageSize);

    // --- tree walk
    const src = report.schema === 'readable' ? openSnapshot(snap.db) : null;
    const unreadable = new Map<string, { ranges: RowidRange[]; whole: boolean; rightEdgeOk: boolean }>();
    try {
      for (const target of targets) {
        const rep = newTableReport(target.name);
        report.tables.push(rep);
        const shape = srcShapes.get(target.name)!;
        let scanMax: number | null = null;
        for (const h of hits.get(target.name) ?? []) scanMax = Math.max(scanMax ?? h.rowid, h.rowid);
        if (!src || !inSourceSchema.has(target.name)) {
          if (src) rep.notes.push("not in the readable part of the source's schema (a damaged schema entry, or a board older than this table)");
          unreadable.set(target.name, { ranges: [], whole: true, rightEdgeOk: false });
          continue;
        }
        const ins = makeInserter(dst, target, shape.columns.map((c) => c.name));
        // No table can hold more rows than the file has room for cells (4 bytes at least each), plus the page scan's largest rowid.
        const rowidBound = (scanMax ?? 0) + report.pageCount * Math.ceil((pageSize ?? 65536) / 4) + 1_000_000;
        const w = walkTable(src, target.name, rep, ins, dst, chunk, scanMax, rowidBound, log);
        unreadable.set(target.name, { ranges: w.unreadable, whole: w.whole, rightEdgeOk: w.rightEdgeOk });
      }
    } finally {
      src?.close();
    }

    // --- page scan, pass 2: rows on leaf pages whose rowid the walk did not deliver
    if (pageSize !== null && (opts.pageScan ?? true)) {
      pages = new Pages(snap.db, snap.wal, wal, pageSize, reserved);
      try {
        dst.exec('BEGIN IMMEDIATE');
        for (const target of targets) {
          const rep = report.tables.find((t) => t.table === target.name)!;
          const shape = srcShapes.get(target.name)!;
          const u = unreadable.get(target.name)!;
          const tableHits = hits.get(target.name) ?? [];
          if (tableHits.length === 0) continue;
          const has = dst.prepare(`SELECT 1 FROM "${target.name}" WHERE rowid = ?`);
          const byPage = new Map<number, Set<number>>();
          const tried = rejected.get(rep) ?? new Map<number, 'invalid' | 'duplicate'>();
          for (const h of tableHits) {
            if (has.get(BigInt(h.rowid))) continue; // the tree walk read it: SQLite's reading wins
            if (!byPage.has(h.pgno)) byPage.set(h.pgno, new Set());
            byPage.get(h.pgno)!.add(h.rowid);
          }
          if (byPage.size === 0) continue;
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
        dst.exec('COMMIT');
      } catch (e) {
        if (dst.inTransaction) dst.exec('ROLLBACK');
        throw e;
      } finally {
        pages.close();
      }
    }

    // --- what is lost: unreadable ranges minus what the page scan found, bounded by the largest known rowid
    for (const rep of report.tables) {
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

    // --- fix-ups, then the foreign keys must hold
    const now = Date.now();
    dst.exec('BEGIN IMMEDIATE');
    try {
      createTaskPlaceholders(dst, now, report.fixups);
      fixRunningTasks(dst, now, report.fixups);
      dst.exec('COMMIT');
    } catch (e) {
      if (dst.inTransaction) dst.exec('ROLLBACK');
      throw e;
    }
    dst.pragma('foreign_keys = ON');
    const fk = dst.pragma('foreign_key_check') as unknown[];
    if (fk.length > 0) throw new BoardError(`recovery of ${srcAbs}: ${fk.length} foreign key violation(s) remain in the new board: ${JSON.stringify(fk.slice(0, 3))}`);
    const ic = (dst.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check);
    if (!(ic.length === 1 && ic[0] === 'ok')) throw new BoardError(`recovery of ${srcAbs}: the new board fails integrity_check: ${ic.slice(0, 3).join('; ')}`);
    dst.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    dst?.close();
    rmSync(snap.dir, { recursive: true, force: true });
  }
  // The new board's connection is closed: now its leftovers may be removed.
  const walLeft = statOrNull(outAbs + '-wal');
  if (walLeft && walLeft.size > 0) throw new BoardError(`recovery of ${srcAbs}: ${outAbs}-wal was not checkpointed (${walLeft.size} bytes); the new board is left at ${outAbs}`);
  removeQuiet(outAbs + '-wal');
  removeQuiet(outAbs + '-shm');
  removeQuiet(initLockPath(outAbs));

  report.salvagedRows = report.tables.reduce((s, t) => s + t.salvaged, 0);
  report.invalidRows = report.tables.reduce((s, t) => s + t.invalid, 0);
  report.complete = report.header !== 'unusable' && report.schema === 'readable' && report.tables.every((t) => t.status === 'complete');
  report.durationMs = Date.now() - started;
  return report;
}

function assertSource(srcPath: string): string {
  const abs = resolve(srcPath);
  if (!existsSync(abs)) throw new BoardError(`board ${abs} does not exist`);
  if (holdsConnection(abs)) {
    throw new BoardError(`recover: this process holds a SQLite connection to ${abs}; close it first (recovery reads the file through fs)`);
  }
  return abs;
}

function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/**
 * Salvage every readable row of `srcPath` into a new board at `outPath` (which must not exist).
 * The source is only read (through a private snapshot copy), never modified. Synchronous.
 * Throws BoardError when the source is missing, the output exists, or this process holds a
 * connection to the source.
 */
export function recoverBoard(srcPath: string, outPath: string, opts: RecoverOptions = {}): RecoverReport {
  const src = assertSource(srcPath);
  const out = resolve(outPath);
  if (sameFile(src, out)) throw new BoardError(`recover: the output ${out} is the source; use --in-place to replace it`);
  if (existsSync(out) || existsSync(out + '-wal')) throw new BoardError(`recover: ${out} already exists; choose a new path`);
  mkdirSync(dirname(out), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(out), `.${basename(out)}.recovering-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const report = buildRecovered(src, tmp, opts);
    try {
      linkSync(tmp, out); // fails with EEXIST instead of replacing a file created meanwhile
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new BoardError(`recover: ${out} appeared while recovering; the recovered board was discarded`);
      renameSync(tmp, out); // no hard links on this filesystem
    }
    removeQuiet(tmp);
    fsyncDir(dirname(out));
    report.out = out;
    return report;
  } finally {
    removeQuiet(tmp);
    removeQuiet(tmp + '-wal');
    removeQuiet(tmp + '-shm');
    removeQuiet(initLockPath(tmp));
  }
}

/**
 * Recover `boardPath` and put the result in its place. Refused (RecoverRefusedError) while a
 * supervisor holds the board's owner lock; the lock is held for the whole operation, so no
 * supervisor starts meanwhile (or pass `ownerLock` when the caller is that owner). The damaged original (db, -wal, -shm) is kept by backupDamaged
 * (one backup per fingerprint, under `backups/`), then the original's -wal and -shm are moved
 * aside and the new board is renamed over the database file.
 *
 * Other processes must not use the board meanwhile (workers, CLI commands): the owner lock only
 * proves that no supervisor does. A process that opens the board in the instant between moving
 * the -wal aside and the rename would pair the new board with a fresh -wal of the old one.
 */
export function recoverInPlace(boardPath: string, opts: RecoverInPlaceOptions = {}): RecoverInPlaceReport {
  const abs = assertSource(boardPath);
  let lock: OwnerLock;
  let release = true;
  if (opts.ownerLock) {
    if (!opts.ownerLock.held || opts.ownerLock.path !== ownerLockPath(abs)) {
      throw new RecoverRefusedError(abs, `the owner lock passed in is not held, or is not this board's (${opts.ownerLock.path})`);
    }
    lock = opts.ownerLock;
    release = false;
  } else {
    const attempt = OwnerLock.tryAcquire(abs);
    if (!attempt.ok) throw new RecoverRefusedError(abs, 'a supervisor owns it (its owner lock is held); stop the supervisor first');
    lock = attempt.lock;
  }
  const dir = dirname(abs);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(dir, `.${basename(abs)}.recovering-${tag}`);
  try {
    const report = buildRecovered(abs, tmp, { ...opts, workDir: opts.workDir ?? dir });
    const backup = backupDamaged(abs, { backupsDir: opts.backupsDir, keep: opts.keep, maxBytes: opts.maxBytes });
    // Swap: the old -wal/-shm out of the way first (never pair the new file with the old -wal), then the file.
    const aside: string[] = [];
    for (const suffix of ['-wal', '-shm']) {
      const p = abs + suffix;
      if (!existsSync(p)) continue;
      const to = join(dir, `.${basename(abs)}.replaced-${tag}${suffix}`);
      renameSync(p, to);
      aside.push(to);
    }
    renameSync(tmp, abs);
    fsyncDir(dir);
    for (const p of aside) removeQuiet(p);
    const stray = statOrNull(abs + '-wal');
    if (stray && stray.size > 0) {
      report.notes.push(`a -wal of ${stray.size} bytes appeared next to the board during the swap: another process opened it meanwhile; run check`);
    }
    report.out = abs;
    return { ...report, backup };
  } finally {
    removeQuiet(tmp);
    removeQuiet(tmp + '-wal');
    removeQuiet(tmp + '-shm');
    removeQuiet(initLockPath(tmp));
    if (release) lock.release();
  }
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
    if (t.phantoms > 0) lines.push(`${' '.repeat(w)}  ${t.phantoms} garbage cell(s) outside the asked rowid ranges ignored`);
  }
  if (r.fixups.length) {
    lines.push('');
    const by = (a: RecoverFixup['action']) => r.fixups.filter((f) => f.action === a);
    const ph = by('placeholder');
    const bl = by('blocked');
    const cl = by('cleared_run');
    if (ph.length) lines.push(`${ph.length} lost task(s) rebuilt as blocked placeholders (payload lost): ${ph.slice(0, 10).map((f) => f.taskId).join(', ')}${ph.length > 10 ? ', …' : ''}`);
    if (bl.length) lines.push(`${bl.length} running task(s) blocked because their run was lost (check their workers): ${bl.slice(0, 10).map((f) => f.taskId).join(', ')}${bl.length > 10 ? ', …' : ''}`);
    if (cl.length) lines.push(`${cl.length} task(s) had a reference to a lost run cleared`);
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
