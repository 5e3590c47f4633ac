/**
 * Moving a board (issue 14): `migrateBoard` copies the skills, tasks, runs and events of a SQLite
 * board into an empty PostgreSQL board, as they are (ids, tokens, timestamps, statuses, current
 * runs, the order of runs and events).
 *
 * - The SQLite board is only read: a read-only connection, one snapshot (sqlite/export.ts).
 *   Keeping supervisors off it (its owner lock, taken in `beforeSnapshot`) and refusing live
 *   workers is the caller's (`checkSource` sees the runs whose processes were never confirmed gone
 *   before anything is written).
 * - The PostgreSQL board is checked before anything is written (no supervisor with a live lease or
 *   a held host lock, no rows: BoardOwnedError, BoardPathError), created or brought up to date as
 *   `init` does, then filled in ONE transaction that re-checks it (pg/import.ts): a failure leaves
 *   it empty. A dry run checks both sides and writes nothing, not even the schema.
 * - Every message names the PostgreSQL board with its password masked.
 *
 * The PostgreSQL modules are loaded only when called (the driver costs every CLI process ~55 ms).
 */
import { BoardError, BoardPathError, SchemaTooNewError } from './errors.js';
import { isPgLocation, pgLocationLabel, pgTarget } from './pg/location.js';
import { SqliteSource, type CopyCounts, type CopyTable, type UnexitedRun } from './sqlite/export.js';

export { COPY_TABLES, type CopyCounts, type CopyTable, type UnexitedRun } from './sqlite/export.js';

export interface MigrateSourceInfo {
  path: string;
  counts: CopyCounts;
  /** Runs whose processes were never confirmed gone (their workers may be alive). */
  unexitedRuns: UnexitedRun[];
}

export interface MigrateOptions {
  /** Check both sides and report what would be copied; write nothing. */
  dryRun?: boolean;
  /** Rows per INSERT statement (default 1,000). */
  batchRows?: number;
  /**
   * Called once the SQLite board was checked, before its snapshot begins (the caller takes its
   * owner lock here, so no supervisor writes between the snapshot and the end of the copy): throw to refuse.
   */
  beforeSnapshot?: () => void | Promise<void>;
  /** Called with the source's snapshot before anything is read from the target or written: throw to refuse. */
  checkSource?: (src: MigrateSourceInfo) => void | Promise<void>;
  /** After each batch landed (inside the transaction: nothing is committed until the end). */
  progress?: (table: CopyTable, done: number, total: number) => void;
}

export interface MigrateReport {
  /** The SQLite board's path. */
  from: string;
  /** The PostgreSQL board's URL, password masked. */
  to: string;
  schema: string;
  dryRun: boolean;
  /** Whether the target had a board (schema) before; false: created (or, dry run, would be). */
  targetExisted: boolean;
  counts: CopyCounts;
}

/**
 * Copy the SQLite board at `fromAbs` (a path resolved by resolveBoardPath) into the PostgreSQL
 * board at `toUrl` (its `?schema=`, else `kanban`). See the module comment for the rules.
 */
export async function migrateBoard(fromAbs: string, toUrl: string, opts: MigrateOptions = {}): Promise<MigrateReport> {
  if (isPgLocation(fromAbs)) throw new BoardPathError(pgLocationLabel(fromAbs), 'is a PostgreSQL URL: the board to copy from must be a SQLite board file');
  if (!isPgLocation(toUrl)) throw new BoardPathError(toUrl, 'is not a PostgreSQL URL: the board to copy to must be a postgres:// or postgresql:// URL');
  const target = pgTarget(toUrl);
  const src = SqliteSource.open(fromAbs);
  try {
    await opts.beforeSnapshot?.();
    src.begin();
    const counts = src.counts();
    await opts.checkSource?.({ path: fromAbs, counts, unexitedRuns: src.unexitedRuns() });
    const [{ PgConn }, { storedVersion, migrate }, { PG_SCHEMA_VERSION }, imp] = await Promise.all([
      import('./pg/connection.js'),
      import('./pg/migrate.js'),
      import('./pg/schema.js'),
      import('./pg/import.js'),
    ]);
    const c = new PgConn(target, { poolMax: 2 });
    const report = (targetExisted: boolean): MigrateReport => ({ from: fromAbs, to: c.location, schema: c.schema, dryRun: opts.dryRun === true, targetExisted, counts });
    try {
      const found = await storedVersion(c);
      if (found !== null && found > PG_SCHEMA_VERSION) throw new SchemaTooNewError(c.location, found, PG_SCHEMA_VERSION);
      // Refused before anything is written (init included); re-checked inside the copy's transaction.
      if (found !== null) await imp.checkTargetReadonly(c, Date.now());
      if (opts.dryRun) return report(found !== null);
      await migrate(c);
      try {
        await imp.importRows(c, (t) => src.batches(t, opts.batchRows ?? imp.IMPORT_BATCH_ROWS), counts, Date.now(), opts.progress);
      } catch (e) {
        if (e instanceof BoardError) throw e;
        const msg = (c.wrap(e) as Error)?.message ?? String(e);
        throw new BoardError(`board ${c.location}: the copy was rolled back, nothing of it is on the board: ${msg}`, { cause: e });
      }
      return report(found !== null);
    } catch (e) {
      if (e instanceof BoardError) throw e;
      // A driver error (no connection, authentication, …): named by the board, password scrubbed.
      const msg = (c.wrap(e) as Error)?.message ?? String(e);
      throw new BoardError(`board ${c.location}: ${msg}`, { cause: e });
    } finally {
      await c.end();
    }
  } finally {
    src.close();
  }
}
