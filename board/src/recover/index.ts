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
 *   it is not re-queued); a link naming a task that was lost (and not rebuilt) is dropped, and a
 *   task not yet started whose parent was lost, or left waiting on nothing, is blocked; each fix-up
 *   adds a `recovery` event to the task and an entry to the report.
 *
 * This module holds the entry points and runs the phases in order (`buildRecovered`); each phase
 * lives in its own module, with its reasoning next to its code:
 * - snapshot.ts: the private copy of the file and -wal, and the read-only SQLite open of it;
 * - wal.ts: the -wal's frames and checksums, what SQLite applies of it;
 * - header.ts: header repair and candidate page sizes;
 * - pages.ts: the b-tree leaf parser and record decoding, the page scan;
 * - page-scan.ts: the page scan's two passes around the walk;
 * - walk.ts: the tree walk by rowid ranges and the inserter;
 * - ranges.ts: rowid range arithmetic, what is reported lost;
 * - fixups.ts: placeholders and running tasks;
 * - shape.ts: the tables carried over and their shapes; io.ts: small file helpers;
 * - report.ts: the public types and the human report.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { backupDamaged } from '../backup.js';
import { BoardError, SchemaTooNewError } from '../errors.js';
import { fsyncDir } from '../fsutil.js';
import { OwnerLock, ownerLockPath } from '../lock.js';
import { holdsConnection, initLockPath, openDatabase, type Db } from '../open.js';
import { SCHEMA_VERSION } from '../schema.js';
import { applyFixups } from './fixups.js';
import { readSchemaRepairingHeader } from './header.js';
import { removeQuiet, statOrNull } from './io.js';
import { fillFromPageScan, scanSnapshotPages, type ScanSource } from './page-scan.js';
import { settleLostRanges } from './ranges.js';
import { emptyReport, summarize, type RecoverInPlaceOptions, type RecoverInPlaceReport, type RecoverOptions, type RecoverReport } from './report.js';
import { schemaTables, sourceShapes, TABLE_ORDER, tableShape } from './shape.js';
import { takeSnapshot, type OpenedSchema } from './snapshot.js';
import { readSnapshotWal } from './wal.js';
import { walkTables } from './walk.js';

export {
  formatRecoverReport,
  type RecoverFixup,
  type RecoverInPlaceOptions,
  type RecoverInPlaceReport,
  type RecoverOptions,
  type RecoverReport,
  type RowidRange,
  type TableRecovery,
  type WalInfo,
} from './report.js';

/** `recover --in-place` refused: a supervisor owns the board. */
export class RecoverRefusedError extends BoardError {
  override name = 'RecoverRefusedError';
  constructor(readonly path: string, detail: string) {
    super(`refusing to recover ${path} in place: ${detail}`);
  }
}

// ------------------------------------------------------------------ the phases, in order

/**
 * The source's schema version, once SQLite could read its schema: a newer one is refused
 * (recovering into an older schema would drop what this build does not know), and tables the
 * current schema lacks are noted, not carried over.
 */
function checkSourceSchema(opened: OpenedSchema | null, report: RecoverReport, srcAbs: string): void {
  if (!opened) return;
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
  if (extra.length) report.notes.push(`tables not in the current schema were not carried over: ${extra.join(', ')}`);
}

/** After the fix-ups the foreign keys must hold and the new board must pass integrity_check; then its -wal is checkpointed. */
function verifyNewBoard(dst: Db, srcAbs: string): void {
  dst.pragma('foreign_keys = ON');
  const fk = dst.pragma('foreign_key_check') as unknown[];
  if (fk.length > 0) throw new BoardError(`recovery of ${srcAbs}: ${fk.length} foreign key violation(s) remain in the new board: ${JSON.stringify(fk.slice(0, 3))}`);
  const ic = (dst.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check);
  if (!(ic.length === 1 && ic[0] === 'ok')) throw new BoardError(`recovery of ${srcAbs}: the new board fails integrity_check: ${ic.slice(0, 3).join('; ')}`);
  dst.pragma('wal_checkpoint(TRUNCATE)');
}

/** Once the new board's connection is closed, its leftovers (-wal, -shm, init-lock) may be removed. */
function removeLeftovers(srcAbs: string, outAbs: string): void {
  const walLeft = statOrNull(outAbs + '-wal');
  if (walLeft && walLeft.size > 0) throw new BoardError(`recovery of ${srcAbs}: ${outAbs}-wal was not checkpointed (${walLeft.size} bytes); the new board is left at ${outAbs}`);
  removeQuiet(outAbs + '-wal');
  removeQuiet(outAbs + '-shm');
  removeQuiet(initLockPath(outAbs));
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
  const report = emptyReport(srcAbs, outAbs, notes);
  const snap = takeSnapshot(srcAbs, opts.workDir ?? dirname(outAbs), notes);
  let dst: Db | null = null;
  try {
    // --- the -wal, the header, the source's schema
    const wal = readSnapshotWal(snap.wal, report);
    const { opened, pageSize, reserved } = readSchemaRepairingHeader(snap, wal, report);
    checkSourceSchema(opened, report, srcAbs);

    // --- the destination board, through the hardened open
    dst = openDatabase(outAbs, { create: true });
    // Every table of the current schema is carried over: one this module does not know would be
    // left empty while the report said every row was salvaged.
    const unknown = schemaTables(dst).filter((t) => !(TABLE_ORDER as readonly string[]).includes(t));
    if (unknown.length) throw new BoardError(`recovery of ${srcAbs}: table(s) ${unknown.join(', ')} of the current schema are not carried over by recover (recover/shape.ts: TABLE_ORDER)`);
    const targets = TABLE_ORDER.map((t) => tableShape(dst!, t)!);
    dst.pragma('foreign_keys = OFF'); // parents may be lost: placeholders are made below, then checked
    const source = sourceShapes(opened?.db ?? null, opened?.tables ?? [], targets);
    opened?.db.close();

    // --- page scan pass 1, tree walk, page scan pass 2, what is lost
    const at: ScanSource = { snap, wal, pageSize, reserved, enabled: opts.pageScan ?? true };
    const hits = scanSnapshotPages(at, [...source.shapes.values()], report, log);
    const unreadable = walkTables(snap.db, dst, targets, source, hits, report, chunk, log);
    fillFromPageScan(at, dst, targets, source, hits, unreadable, report);
    settleLostRanges(dst, report.tables, unreadable);

    // --- fix-ups, then the foreign keys must hold
    applyFixups(dst, report.fixups, report.tables);
    verifyNewBoard(dst, srcAbs);
  } finally {
    dst?.close();
    rmSync(snap.dir, { recursive: true, force: true });
  }
  removeLeftovers(srcAbs, outAbs);
  summarize(report, started);
  return report;
}

// ------------------------------------------------------------------ entry points

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
