/**
 * The tables recovery carries over, and their shapes (columns, types, rowid alias). A row found by
 * the page scan is attributed to a table by these shapes; the walk inserts by column name.
 */
import type { Db } from '../open.js';
import { MIGRATIONS } from '../schema.js';

/** A SQLite value as read from the snapshot (integers as bigint). */
export type Value = null | bigint | number | string | Buffer;

/**
 * Every table of the current schema, each carried over (a parent before the tables naming it).
 * `buildRecovered` refuses to run when the new board has a table missing here, so a table added by
 * a later migration cannot be dropped silently (as `links` once was).
 */
export const TABLE_ORDER = ['skills', 'tasks', 'links', 'runs', 'events', 'owner'] as const;

/**
 * The schema version that created a table (its first `CREATE TABLE name (` in MIGRATIONS): a
 * source board older than that never had it, so its absence from the source's schema loses nothing.
 */
export function tableSince(table: string): number {
  const re = new RegExp(`CREATE TABLE ${table}\\s*\\(`);
  return MIGRATIONS.find((m) => re.test(m.sql))?.version ?? 1;
}

/** The tables of a board's schema (SQLite's own excluded). */
export function schemaTables(db: Db): string[] {
  return db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`).pluck().all() as string[];
}

/**
 * Columns added by ALTER TABLE … ADD COLUMN to tables whose old rows were not rewritten (too many):
 * how many of a table's last columns a record written before the migration lacks (SQLite reads
 * them as NULL). The page scan accepts such a shorter record (pages.ts: fitsColumns).
 */
export const ADDED_COLUMNS: Readonly<Record<string, number>> = { runs: 1, events: 1 };

export interface ColumnInfo {
  name: string;
  type: string;
  pk: boolean;
}

export interface TableShape {
  name: string;
  columns: ColumnInfo[];
  /** Index of the INTEGER PRIMARY KEY column (the rowid alias), or -1. */
  aliasIndex: number;
}

export function tableShape(db: Db, table: string): TableShape | null {
  const rows = db.prepare(`SELECT name, type, pk FROM pragma_table_info(?)`).all(table) as Array<{ name: string; type: string; pk: number }>;
  if (rows.length === 0) return null;
  const columns = rows.map((r) => ({ name: r.name, type: String(r.type).toUpperCase(), pk: r.pk > 0 }));
  const pks = columns.filter((c) => c.pk);
  const aliasIndex = pks.length === 1 && pks[0]!.type === 'INTEGER' ? columns.indexOf(pks[0]!) : -1;
  return { name: table, columns, aliasIndex };
}

export interface SourceShapes {
  /** Per table: the snapshot's shape where its schema was readable, else the current (target) one. */
  shapes: Map<string, TableShape>;
  /** Tables found in the readable part of the snapshot's schema. */
  inSourceSchema: Set<string>;
}

/** Source shapes: the snapshot's schema where readable, else the current schema. */
export function sourceShapes(source: Db | null, sourceTables: string[], targets: TableShape[]): SourceShapes {
  const shapes = new Map<string, TableShape>();
  const inSourceSchema = new Set<string>();
  if (source) {
    for (const t of TABLE_ORDER) {
      if (!sourceTables.includes(t)) continue;
      try {
        const s = tableShape(source, t);
        if (s) {
          shapes.set(t, s);
          inSourceSchema.add(t);
        }
      } catch {
        /* unreadable */
      }
    }
  }
  for (const s of targets) if (!shapes.has(s.name)) shapes.set(s.name, s);
  return { shapes, inSourceSchema };
}
