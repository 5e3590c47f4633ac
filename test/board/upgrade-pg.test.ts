/**
 * Upgrading a populated PostgreSQL board from schema 4 (before issue 16) to the current one: the task graph's
 * migration (5: waiting status, links; on SQLite a rebuild of the tasks table) and the caps, keys
 * and retention migration (6), the exit-code skills migration (7) and the report sequence (8). A v4 board is made as the v4 code made it: migrations 1..4 only,
 * then rows put in with plain SQL (copied, column by column of the v4 tables, from a board the
 * current code populated with what v4 could do: done with a result, failed and retried later,
 * blocked, cancelled, scheduled, running with a live run, events of every kind). Opened by the
 * current code it becomes the current version with every row intact (each v4 column of each table,
 * and the same `show --json` of every task), and the new features work on its old tasks.
 * The SQLite twin: upgrade.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { PG_MIGRATIONS, PG_SCHEMA_VERSION, openBoard } from '@kanban-supervisor/board';
import { V4, details, populate, sorted, worksAfterUpgrade } from './upgrade-fixture.js';
import { admin, freshDatabase } from './pg/server.js';

describe('upgrade from schema 4 (PostgreSQL)', () => {
  it(`PostgreSQL: a populated v4 board opened by this code becomes v${PG_SCHEMA_VERSION}, every task, run and event intact`, async () => {
    const dbUrl = await freshDatabase('ks_upgrade');
    const schemaUrl = (schema: string): string => {
      const u = new URL(dbUrl);
      u.searchParams.set('schema', schema);
      return u.href;
    };
    const srcSchema = `ku_${randomBytes(4).toString('hex')}`;
    const v4Schema = `ku_${randomBytes(4).toString('hex')}`;
    const src = await openBoard(schemaUrl(srcSchema));
    const ids = await populate(src);
    const before = await details(src, ids);
    await src.close();

    const { tables, columns, v4Rows } = await admin(dbUrl, async (c) => {
      await c.query('BEGIN');
      await c.query(`CREATE SCHEMA ${v4Schema}`);
      await c.query(`SET LOCAL search_path = ${v4Schema}`);
      // As the v4 code's migrate(): the version table, migrations 1..4, version 4.
      await c.query(`CREATE TABLE schema_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)`);
      for (const m of PG_MIGRATIONS.filter((m) => m.version <= V4)) await c.query(m.sql);
      await c.query(`INSERT INTO schema_version (one, version) VALUES (true, $1)`, [V4]);
      const tables = (
        await c.query<{ t: string }>(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 AND table_name <> 'schema_version' ORDER BY 1`, [v4Schema])
      ).rows.map((r) => r.t);
      expect(tables).not.toContain('links');
      const columns = new Map<string, string[]>();
      for (const t of tables) {
        const cols = await c.query<{ c: string }>(`SELECT column_name AS c FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, [v4Schema, t]);
        columns.set(t, cols.rows.map((r) => r.c));
      }
      expect(columns.get('tasks')).not.toContain('key');
      // Plain SQL copies, foreign keys checked at the end (every row references one copied too).
      await c.query(`SET LOCAL session_replication_role = replica`);
      for (const t of tables) {
        const cols = columns.get(t)!.join(', ');
        await c.query(`INSERT INTO ${v4Schema}.${t} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM ${srcSchema}.${t}`);
        for (const col of columns.get(t)!) {
          const seq = (await c.query<{ s: string | null }>(`SELECT pg_get_serial_sequence($1, $2) AS s`, [`${v4Schema}.${t}`, col])).rows[0]!.s;
          if (seq) await c.query(`SELECT setval($1, COALESCE((SELECT max(${col}) FROM ${v4Schema}.${t}), 0) + 1, false)`, [seq]);
        }
      }
      await c.query('COMMIT');
      const rowsOf = async (schema: string) => {
        const m = new Map<string, string[]>();
        for (const t of tables) m.set(t, sorted((await c.query(`SELECT ${columns.get(t)!.join(', ')} FROM ${schema}.${t}`)).rows));
        return m;
      };
      const v4Rows = await rowsOf(v4Schema);
      expect(v4Rows).toEqual(await rowsOf(srcSchema));
      return { tables, columns, v4Rows };
    });
    expect(v4Rows.get('tasks')!.length).toBe(7);
    expect(v4Rows.get('events')!.length).toBeGreaterThan(15);

    const up = await openBoard(schemaUrl(v4Schema));
    try {
      await admin(dbUrl, async (c) => {
        expect(Number((await c.query(`SELECT version FROM ${v4Schema}.schema_version`)).rows[0]!.version)).toBe(PG_SCHEMA_VERSION);
        for (const t of tables) {
          expect(sorted((await c.query(`SELECT ${columns.get(t)!.join(', ')} FROM ${v4Schema}.${t}`)).rows), `table ${t}`).toEqual(v4Rows.get(t));
        }
      });
      expect(await details(up, ids)).toEqual(before);
      await worksAfterUpgrade(up, ids);
    } finally {
      await up.close();
      await admin(dbUrl, (c) => c.query(`DROP SCHEMA IF EXISTS ${srcSchema} CASCADE; DROP SCHEMA IF EXISTS ${v4Schema} CASCADE`));
    }
  });
});
