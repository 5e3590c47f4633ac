/**
 * The private snapshot: the source is never opened by SQLite. Its database file and non-empty
 * -wal are copied (through `fs`, by this process, which must hold no connection to it) into a
 * private snapshot folder, and every later phase reads the snapshot. So the source's bytes, its
 * -wal and -shm are never modified, a read-only SQLite open never creates a -wal/-shm next to it,
 * and the -shm question does not arise (SQLite rebuilds the snapshot's wal-index from its -wal).
 * The copy is repeated when the source changed while it was being copied (up to 3 times).
 */
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { statOrNull, type FileStat } from './io.js';

export interface Snapshot {
  dir: string;
  db: string;
  wal: string | null;
}

function sameStat(a: FileStat | null, b: FileStat | null): boolean {
  if (a === null || b === null) return a === b;
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

export function takeSnapshot(src: string, workDir: string, notes: string[]): Snapshot {
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

/** A read-only connection to the snapshot, set up to read as much of a damaged file as it can. */
export function openSnapshot(path: string): Database.Database {
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

/** An open snapshot whose schema SQLite could read, with the names of its tables. */
export interface OpenedSchema {
  db: Database.Database;
  tables: string[];
}

/** Try to read the snapshot's schema; returns the open connection, or null. */
export function trySchema(path: string): OpenedSchema | null {
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
