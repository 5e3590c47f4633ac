/**
 * The board conformance suite (conformance/index.ts) run against the SQLite board, each test on a new
 * board file in its own temporary folder; plus what only a SQLite board can be made to do through
 * the interfaces: a transaction that SQLite rolled back as a whole (a full disk).
 */
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCHEMA_VERSION, SqliteBoard, WriteGroupLostError, classifyError, openBoard, type Board } from '@kanban-supervisor/board';
import { tempDir } from '../src/common.js';
import { boardConformance, type BoardFactory, type BoardUnderTest } from './conformance/index.js';

/** A board file in a new temporary folder; `prepare` may put something at its path first. */
async function sqliteBoardAt(prepare?: (path: string) => void): Promise<BoardUnderTest> {
  const t = tempDir('ks-conformance-');
  const path = join(t.dir, 'kanban.db');
  prepare?.(path);
  const opened: Board[] = [];
  const open = async (): Promise<Board> => {
    const b = await openBoard(path);
    opened.push(b);
    return b;
  };
  const board = await open();
  const raw = <T>(readonly: boolean, fn: (db: Database.Database) => T): T => {
    const db = new Database(path, { readonly, fileMustExist: true });
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  return {
    board,
    openAnother: open,
    schemaVersion: async () => raw(true, (db) => Number(db.pragma('user_version', { simple: true }))),
    setSchemaVersion: async (n) => raw(false, (db) => void db.pragma(`user_version = ${Math.floor(n)}`)),
    cleanup: async () => {
      for (const b of opened) await b.close().catch(() => undefined);
      t.cleanup();
    },
  };
}

const sqlite: BoardFactory = {
  open: () => sqliteBoardAt(),
  openEmpty: () => sqliteBoardAt((path) => writeFileSync(path, '', { mode: 0o600 })),
  schemaVersion: SCHEMA_VERSION,
  differences: {
    // One connection carries the board object and its transaction.
    boardReadsSeeOpenTransaction: true,
  },
};

boardConformance('sqlite', sqlite);

describe('SQLite board: a transaction SQLite rolled back as a whole', () => {
  const handles: BoardUnderTest[] = [];
  afterEach(async () => {
    while (handles.length) await handles.pop()!.cleanup();
  });

  it('a full disk loses the transaction loudly (WriteGroupLostError on the write, later writes and the commit), never half; the next commit lands', async () => {
    const h = await sqlite.open();
    handles.push(h);
    const b = h.board;
    // A full disk, as SQLite sees it: this connection may not grow the file beyond two more pages.
    const db = (b as SqliteBoard).db;
    await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
    const t = await b.createTask({ skill: 'echo' });
    const other = await h.openAnother();
    const kinds = async () => (await other.showTask(t.id))!.events.map((e) => e.kind);
    db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true })) + 2}`);
    const tx = b.begin();
    try {
      await tx.appendEvent(t.id, null, 'small', null, 1);
      const big = tx.appendEvent(t.id, null, 'big', { x: 'y'.repeat(200_000) }, 2);
      const lost = await big.then(
        () => null,
        (e: unknown) => e,
      );
      expect(lost).toBeInstanceOf(WriteGroupLostError);
      expect((lost as Error).message).toContain(b.location);
      expect((lost as Error).message).toContain('rolled back');
      expect(classifyError(lost)).toBe('io');
      await expect(tx.appendEvent(t.id, null, 'after', null, 3)).rejects.toBeInstanceOf(WriteGroupLostError);
      await expect(tx.commit()).rejects.toBeInstanceOf(WriteGroupLostError);
      expect(await kinds()).toEqual(['created']); // nothing of it landed, not even the small write
      expect(db.inTransaction).toBe(false);
      // The caller writes again what it carried: the transaction goes on once the disk has room.
      db.pragma(`max_page_count = ${2 ** 30}`);
      await tx.appendEvent(t.id, null, 'small', null, 1);
      await tx.commit();
      expect(await kinds()).toEqual(['created', 'small']);
    } finally {
      tx.close();
    }
  });
});
