/**
 * The board conformance suite (conformance/index.ts) run against the PostgreSQL board: one database
 * for this file on the test server (pg/global-setup.ts), a new PostgreSQL schema for every test.
 * Plus what only a PostgreSQL board can be made to do: a transaction whose connection dies
 * (WriteGroupLostError), its password kept out of every message, its change feed.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { PgBoard } from '@kanban-supervisor/board/pg';
import pg from 'pg';
import { PG_SCHEMA_VERSION, WriteGroupLostError, changeFeedOf, checkpointingOf, classifyError, localConnectionOf, openBoard, readOwner, type Board } from '@kanban-supervisor/board';
import { boardConformance, type BoardFactory, type BoardUnderTest } from './conformance/index.js';
import { LOG, rejection, sleep } from './conformance/helpers.js';
import { admin, freshDatabase } from './pg/server.js';

let database: Promise<string> | null = null;
/** This file's database (created at first use). */
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_conf'));

const schemaUrl = (url: string, schema: string): string => {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.href;
};

/** A board in a new schema of this file's database; `empty`: the schema exists, holding nothing. */
async function pgBoardIn(empty: boolean): Promise<BoardUnderTest> {
  const db = await dbUrl();
  const schema = `kt_${randomBytes(5).toString('hex')}`;
  if (empty) await admin(db, (c) => c.query(`CREATE SCHEMA ${schema}`));
  const url = schemaUrl(db, schema);
  const opened: Board[] = [];
  const open = async (): Promise<Board> => {
    const b = await openBoard(url);
    opened.push(b);
    return b;
  };
  const board = await open();
  return {
    board,
    openAnother: open,
    schemaVersion: () => admin(db, async (c) => Number((await c.query(`SELECT version FROM ${schema}.schema_version`)).rows[0]!.version)),
    setSchemaVersion: async (n) => void (await admin(db, (c) => c.query(`UPDATE ${schema}.schema_version SET version = $1`, [Math.floor(n)]))),
    cleanup: async () => {
      for (const b of opened) await b.close().catch(() => undefined);
      await admin(db, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
    },
  };
}

const postgres: BoardFactory = {
  open: () => pgBoardIn(false),
  openEmpty: () => pgBoardIn(true),
  schemaVersion: PG_SCHEMA_VERSION,
  differences: {
    // The board object reads through its pool; its open transaction holds a connection of its own.
    boardReadsSeeOpenTransaction: false,
  },
};

boardConformance('postgres', postgres);

afterAll(async () => {
  if (!database) return;
  const db = await database;
  const name = new URL(db).pathname.slice(1);
  const server = new URL(db);
  server.pathname = '/postgres';
  await admin(server.href, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
});

describe('PostgreSQL board: what only it can be made to do', () => {
  const handles: BoardUnderTest[] = [];
  afterEach(async () => {
    while (handles.length) await handles.pop()!.cleanup();
  });
  const fresh = async () => {
    const h = await postgres.open();
    handles.push(h);
    return h;
  };

  it('is selected by a postgres:// URL, has a change feed but no SQLite abilities, and readOwner reads it', async () => {
    const h = await fresh();
    const b = h.board;
    expect(b.kind).toBe('postgres');
    expect(b).toBeInstanceOf(PgBoard);
    expect(checkpointingOf(b)).toBeNull();
    expect(localConnectionOf(b)).toBeNull();
    expect(changeFeedOf(b)).not.toBeNull();
    await b.setOwner({ pid: 42, host: 'host-x', startedAt: 1 });
    const raw = b.location.replace('***', new URL(await dbUrl()).password);
    expect(await readOwner(raw)).toMatchObject({ pid: 42, host: 'host-x' });
  });

  it('the password never shows: not in location, not in an error naming the board, not in a connection error', async () => {
    const h = await fresh();
    const password = new URL(await dbUrl()).password;
    expect(password.length).toBeGreaterThan(0);
    expect(h.board.location).not.toContain(password);
    expect(h.board.location).toContain(':***@');
    const err = await rejection(h.board.createTask({ skill: 'nope' }));
    expect(err.message).toContain(h.board.location);
    expect(err.message).not.toContain(password);
    // Nothing listens on port 1: the connection is refused, a transient error, password-free.
    const down = await rejection(openBoard(`postgres://kanban:${password}@127.0.0.1:1/x?schema=k`));
    expect(classifyError(down)).toBe('io');
    expect(`${down.message} ${down.stack ?? ''}`).not.toContain(password);
  });

  it('a transaction whose connection dies is lost loudly (WriteGroupLostError, transient), never half; the next commit lands', async () => {
    const h = await fresh();
    const b = h.board;
    await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
    const t = await b.createTask({ skill: 'echo' });
    const other = await h.openAnother();
    const kinds = async () => (await other.showTask(t.id))!.events.map((e) => e.kind);
    const tx = b.begin();
    try {
      await tx.appendEvent(t.id, null, 'first', null, 1);
      expect((await tx.claimBatch(1, Date.now(), LOG)).length).toBe(1);
      // The server ends the transaction's backend (as a restart or a network cut would).
      const killed = await admin(await dbUrl(), async (c) =>
        (await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`)).rowCount,
      );
      expect(killed).toBe(1);
      await sleep(50);
      const lost = await rejection(tx.appendEvent(t.id, null, 'second', null, 2));
      expect(lost).toBeInstanceOf(WriteGroupLostError);
      expect(lost.message).toContain(b.location);
      expect(classifyError(lost)).toBe('io');
      await expect(tx.commit()).rejects.toBeInstanceOf(WriteGroupLostError);
      expect(await kinds()).toEqual(['created']);
      expect((await other.getTask(t.id))!.status).toBe('ready');
      await tx.appendEvent(t.id, null, 'again', null, 3);
      await tx.commit();
      expect(await kinds()).toEqual(['created', 'again']);
    } finally {
      tx.close();
    }
  });

  it('the change feed moves when another board object adds a task (LISTEN/NOTIFY), and not for a mere event', async () => {
    const h = await fresh();
    const feed = changeFeedOf(h.board)!;
    await h.board.putSkill({ name: 'echo', argv: ['/bin/true'] });
    const other = await h.openAnother();
    const waitMove = async (from: number) => {
      for (let i = 0; i < 200; i++) {
        if (feed.changeVersion() !== from) return true;
        await sleep(10);
      }
      return false;
    };
    expect(await waitMove(feed.changeVersion())).toBe(true); // the listener is up (bumped once)
    const v0 = feed.changeVersion();
    const t = await other.createTask({ skill: 'echo' });
    expect(await waitMove(v0)).toBe(true);
    const v1 = feed.changeVersion();
    await other.appendEvent(t.id, null, 'note', null, 1);
    await sleep(200);
    expect(feed.changeVersion()).toBe(v1);
  });

  it('the event feed never skips an event whose transaction took a smaller id but committed later (cursor = transaction id, event id)', async () => {
    const h = await fresh();
    await h.board.putSkill({ name: 'echo', argv: ['/bin/true'] });
    const t = await h.board.createTask({ skill: 'echo' });
    const other = await h.openAnother();
    const reader = await h.openAnother();
    const start = await reader.eventsAfter(null, 100);
    const tx = h.board.begin();
    try {
      // The open transaction takes the smaller event id; another connection commits a larger one first.
      await tx.appendEvent(t.id, null, 'early-id', null, 1);
      await other.appendEvent(t.id, null, 'late-id', null, 2);
      const meanwhile = await reader.eventsAfter(start.cursor, 100);
      // An id cursor would hand out 'late-id' now and skip 'early-id' for good: the feed holds it back.
      expect(meanwhile.events).toEqual([]);
      await tx.commit();
    } finally {
      tx.close();
    }
    const got = await reader.eventsAfter(start.cursor, 100);
    expect(got.events.map((e) => e.kind)).toEqual(['early-id', 'late-id']);
    expect(got.events[0]!.id).toBeLessThan(got.events[1]!.id);
    expect(got.events.every((e) => /^\d+\.\d+$/.test(e.cursor))).toBe(true);
    expect((await reader.eventsAfter(got.cursor, 100)).events).toEqual([]);
  });

  it('the event feed is not held back by a transaction open in another database of the server (nor by one that wrote nothing)', async () => {
    const h = await fresh();
    await h.board.putSkill({ name: 'echo', argv: ['/bin/true'] });
    const reader = await h.openAnother();
    const start = await reader.eventsAfter(null, 100);
    // Another database of the same server (transaction ids are server-wide): a transaction with an id, left open.
    const elsewhere = new pg.Client({ connectionString: await freshDatabase('ks_other') });
    await elsewhere.connect();
    // One in this database that took no transaction id (a read) does not hold the feed either.
    const reading = new pg.Client({ connectionString: await dbUrl() });
    await reading.connect();
    try {
      await elsewhere.query('BEGIN');
      await elsewhere.query('SELECT pg_current_xact_id()');
      await reading.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await reading.query('SELECT 1');
      const t = await h.board.createTask({ skill: 'echo', title: 'while another database has a transaction open' });
      const got = await reader.eventsAfter(start.cursor, 100);
      expect(got.events.map((e) => e.taskId)).toEqual([t.id]);
    } finally {
      await elsewhere.query('ROLLBACK').catch(() => undefined);
      await elsewhere.end();
      await reading.end();
    }
  });

  it('five board objects claiming at once never claim one task twice and drain the queue', async () => {
    const h = await fresh();
    await h.board.putSkill({ name: 'echo', argv: ['/bin/true'] });
    for (let i = 0; i < 150; i++) await h.board.createTask({ skill: 'echo', title: `t${i}`, priority: i % 3 });
    const boards = [h.board, ...(await Promise.all([1, 2, 3, 4].map(() => h.openAnother())))];
    const now = Date.now();
    const claimed = await Promise.all(
      boards.map(async (b) => {
        const ids: string[] = [];
        for (;;) {
          const got = await b.claimBatch(7, now, LOG);
          if (got.length === 0) return ids;
          ids.push(...got.map((c) => c.task.id));
        }
      }),
    );
    const all = claimed.flat();
    expect(all.length).toBe(150);
    expect(new Set(all).size).toBe(150);
    expect((await h.board.counts()).tasks).toMatchObject({ ready: 0, running: 150 });
  });
});
