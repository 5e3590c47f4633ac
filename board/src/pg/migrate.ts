/**
 * Opening a PostgreSQL board: create its schema or bring it up to date (read-write), or only check
 * it (read-only). Migrations run in one transaction under a transaction-scoped advisory lock, so
 * concurrent openers (several hosts' supervisors, a CLI) migrate exactly once; a board whose
 * schema is newer than this build is refused (SchemaTooNewError, naming both versions).
 */
import { BoardPathError, SchemaTooNewError } from '../errors.js';
import type { PgConn } from './connection.js';
import { PG_MIGRATIONS, PG_SCHEMA_VERSION } from './schema.js';

/** The version stored in the board's schema; null when the schema or its version table is missing. */
export async function storedVersion(c: PgConn): Promise<number | null> {
  try {
    const r = await c.pool.query<{ has: boolean }>('SELECT to_regclass($1) IS NOT NULL AS has', [`${c.schema}.schema_version`]);
    if (!r.rows[0]?.has) return null;
    const v = await c.pool.query<{ version: number }>('SELECT version FROM schema_version');
    return v.rows[0]?.version ?? 0;
  } catch (e) {
    throw c.wrap(e);
  }
}

/** Refuse a board written by a newer build. */
function refuseNewer(c: PgConn, found: number): void {
  if (found > PG_SCHEMA_VERSION) throw new SchemaTooNewError(c.location, found, PG_SCHEMA_VERSION);
}

/** Read-only open: the board must exist and must not be newer than this build. */
export async function checkSchema(c: PgConn): Promise<void> {
  const found = await storedVersion(c);
  if (found === null) throw new BoardPathError(c.location, `has no kanban board in schema ${c.schema} (run init)`);
  refuseNewer(c, found);
}

/** Read-write open: create the schema if needed and apply the migrations it lacks, once. */
export async function migrate(c: PgConn): Promise<void> {
  const found = await storedVersion(c);
  if (found !== null) refuseNewer(c, found);
  if (found === PG_SCHEMA_VERSION) return; // the common case: one cheap read, no lock
  const client = await c.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`kanban-supervisor migrate ${c.schema}`]);
    // Create the schema only when missing: CREATE SCHEMA checks the CREATE privilege first even
    // with IF NOT EXISTS, and a board user may own its schema without that privilege.
    const has = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [c.schema]);
    if (has.rowCount === 0) await client.query(`CREATE SCHEMA ${c.schema}`);
    await client.query(`SET LOCAL search_path = ${c.schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_version (
      one boolean PRIMARY KEY DEFAULT true CHECK (one),
      version integer NOT NULL)`);
    const v = await client.query<{ version: number }>('SELECT version FROM schema_version FOR UPDATE');
    const current = v.rows[0]?.version ?? 0;
    if (current > PG_SCHEMA_VERSION) {
      await client.query('ROLLBACK');
      refuseNewer(c, current);
    }
    for (const m of PG_MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
    }
    await client.query(
      `INSERT INTO schema_version (one, version) VALUES (true, $1) ON CONFLICT (one) DO UPDATE SET version = excluded.version`,
      [PG_SCHEMA_VERSION],
    );
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw c.wrap(e);
  } finally {
    client.release(broken);
  }
}
