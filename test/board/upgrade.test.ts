/**
 * Upgrading a populated SQLite board from schema 4 (before issue 16) to the current one: the task graph's
 * migration (5: waiting status, links; on SQLite a rebuild of the tasks table) and the caps, keys
 * and retention migration (6), the exit-code skills migration (7) and the report sequence (8). A v4 board is made as the v4 code made it: migrations 1..4 only,
 * then rows put in with plain SQL (copied, column by column of the v4 tables, from a board the
 * current code populated with what v4 could do: done with a result, failed and retried later,
 * blocked, cancelled, scheduled, running with a live run, events of every kind). Opened by the
 * current code it becomes the current version with every row intact (each v4 column of each table,
 * and the same `show --json` of every task), and the new features work on its old tasks.
 * The PostgreSQL twin: upgrade-pg.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { MIGRATIONS, SCHEMA_VERSION, SqliteBoard } from '@kanban-supervisor/board';
import { Cleanups } from '../src/common.js';
import { V4, details, populate, sorted, worksAfterUpgrade } from './upgrade-fixture.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('upgrade from schema 4 (SQLite)', () => {
  it(`SQLite: a populated v4 board opened by this code becomes v${SCHEMA_VERSION}, every task, run and event intact`, async () => {
    expect(SCHEMA_VERSION).toBe(8);
    const dir = cleanups.tempDir();
    const srcPath = join(dir, 'src.db');
    const src = SqliteBoard.open(srcPath);
    const ids = await populate(src);
    const before = await details(src, ids);
    await src.close();

    // The v4 board: migrations 1..4 (as the v4 code ran them, each with its user_version), then
    // the rows of every v4 table, column by column, with plain SQL.
    const path = join(dir, 'v4.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.filter((m) => m.version <= V4)) {
      expect(m.rebuildsTables).toBeFalsy();
      db.exec('BEGIN');
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
      db.exec('COMMIT');
    }
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).pluck().all() as string[];
    expect(tables).not.toContain('links');
    const columns = new Map(tables.map((t) => [t, (db.pragma(`table_info(${t})`) as Array<{ name: string }>).map((c) => c.name)]));
    expect(columns.get('tasks')).not.toContain('key');
    db.pragma('foreign_keys = OFF');
    db.exec(`ATTACH DATABASE '${srcPath.replace(/'/g, "''")}' AS src`);
    const rowsOf = (schema: string): Map<string, string[]> =>
      new Map(tables.map((t) => [t, sorted(db.prepare(`SELECT ${columns.get(t)!.join(', ')} FROM ${schema}.${t}`).all())]));
    db.exec('BEGIN');
    for (const t of tables) db.exec(`INSERT INTO main.${t} (${columns.get(t)!.join(', ')}) SELECT ${columns.get(t)!.join(', ')} FROM src.${t}`);
    db.exec('COMMIT');
    const v4Rows = rowsOf('main');
    expect(v4Rows).toEqual(rowsOf('src'));
    expect(v4Rows.get('tasks')!.length).toBe(7);
    expect(v4Rows.get('runs')!.length).toBe(3);
    expect(v4Rows.get('events')!.length).toBeGreaterThan(15);
    db.exec('DETACH DATABASE src');
    expect(db.pragma('foreign_key_check')).toEqual([]);
    db.close();

    const up = SqliteBoard.open(path);
    expect(up.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(up.db.pragma('foreign_key_check')).toEqual([]);
    expect(up.db.pragma('integrity_check', { simple: true })).toBe('ok');
    for (const t of tables) {
      expect(sorted(up.db.prepare(`SELECT ${columns.get(t)!.join(', ')} FROM ${t}`).all()), `table ${t}`).toEqual(v4Rows.get(t));
    }
    expect(await details(up, ids)).toEqual(before);
    await worksAfterUpgrade(up, ids);
    await up.close();
  });

});
