import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BoardError,
  OwnerLock,
  SCHEMA_VERSION,
  SchemaTooNewError,
  classifyError,
  SqliteBoard,
  checkBoard,
  formatRecoverReport,
  garbageHeader,
  indexOutOfOrder,
  makeBoard,
  recoverBoard,
  recoverInPlace,
  RecoverRefusedError,
  tornWalTail,
  truncateFile,
  zeroInteriorPage,
  type MadeBoard,
  type RecoverReport,
} from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, exited, startProcess, waitFor } from '../src/common.js';
import { spawnSync } from 'node:child_process';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const tmp = () => cleanups.tempDir('ks-damage-');

const OWNER_LOCK = join(FIXTURES, 'damage', 'owner-lock.mjs');
const TABLES = ['skills', 'tasks', 'runs', 'events', 'owner'] as const;
type Row = Record<string, unknown>;

/** sha256 of the board's db, -wal and -shm (absent files as '-'), and the list of files in its folder. */
function fileState(path: string): string {
  return ['', '-wal', '-shm']
    .map((s) => (existsSync(path + s) ? createHash('sha256').update(readFileSync(path + s)).digest('hex') : '-'))
    .join(' ');
}

/** Every row of every table of a CLOSED board, read from a private copy (the board itself is never opened). */
function rowsOf(path: string, dir: string): Record<string, Row[]> {
  const copy = join(dir, `ref-${Math.random().toString(36).slice(2)}.db`);
  copyFileSync(path, copy);
  if (existsSync(path + '-wal')) copyFileSync(path + '-wal', copy + '-wal');
  const db = new Database(copy, { readonly: true });
  try {
    return Object.fromEntries(TABLES.map((t) => [t, db.prepare(`SELECT rowid AS __rowid, * FROM ${t} ORDER BY rowid`).all() as Row[]]));
  } finally {
    db.close();
  }
}

function keyOf(table: string, r: Row): string {
  return table === 'skills' ? String(r.name) : String(r.id);
}

/**
 * Compare the recovered board with the reference taken before the damage: every recovered row
 * (except the fix-ups recovery adds) must equal the reference row with the same key, rowid included.
 */
function compareWithReference(out: string, dir: string, ref: Record<string, Row[]>, extra: (t: string, r: Row) => boolean = () => false): Record<string, number> {
  const got = rowsOf(out, dir);
  const matched: Record<string, number> = {};
  const extraTasks = new Set<string>();
  for (const t of TABLES) {
    const byKey = new Map(ref[t]!.map((r) => [keyOf(t, r), r]));
    matched[t] = 0;
    for (const r of got[t]!) {
      if (t === 'tasks' && String(r.title).startsWith('(lost in recovery)')) continue;
      if (t === 'events' && r.kind === 'recovery') continue;
      if (t === 'tasks' && extra(t, r)) {
        extraTasks.add(String(r.id));
        continue;
      }
      if (t === 'events' && extraTasks.has(String(r.task_id))) continue;
      const want = byKey.get(keyOf(t, r));
      expect(want, `${t} row ${keyOf(t, r)} is in the reference`).toBeDefined();
      expect(r).toEqual(want);
      matched[t]++;
    }
  }
  return matched;
}

function table(r: RecoverReport, name: string) {
  return r.tables.find((t) => t.table === name)!;
}

interface Case {
  name: string;
  damage: (path: string) => unknown;
  /** What checkBoard (quick) and checkBoard --full say. */
  healthy: { quick: boolean; full: boolean };
  expect: (r: RecoverReport, made: MadeBoard, info: any) => void;
  /** Rows legitimately added after the reference was taken. */
  extra?: (table: string, r: Row) => boolean;
}

/** The torn-WAL writer commits tasks titled `wal-tail N` (and their events) after the reference. */
const walTail = (t: string, r: Row) => t === 'tasks' && String(r.title).startsWith('wal-tail');

const CASES: Case[] = [
  {
    name: 'garbage header (the 100 header bytes)',
    damage: (p) => garbageHeader(p),
    healthy: { quick: false, full: false },
    expect: (r, made) => {
      expect(r.header).toBe('reconstructed');
      expect(r.schema).toBe('readable');
      expect(r.complete).toBe(true);
      expect(table(r, 'tasks').salvaged).toBe(made.tasks);
      expect(table(r, 'tasks').fromTree).toBe(made.tasks);
    },
  },
  {
    name: 'garbage over the header and the schema page (600 bytes)',
    damage: (p) => garbageHeader(p, { bytes: 600 }),
    healthy: { quick: false, full: false },
    expect: (r, made) => {
      expect(r.schema).toBe('unreadable');
      expect(table(r, 'tasks').fromPageScan).toBe(made.tasks);
      expect(table(r, 'runs').salvaged).toBe(made.runs);
      expect(table(r, 'events').salvaged).toBe(made.events);
      expect(r.complete).toBe(false); // rows on lost pages could not be counted: partial by construction
    },
  },
  {
    name: 'zeroed leaf page of tasks',
    damage: (p) => zeroInteriorPage(p),
    healthy: { quick: false, full: false },
    expect: (r, made, info: { cells: number }) => {
      const t = table(r, 'tasks');
      expect(t.salvaged).toBe(made.tasks - info.cells);
      expect(t.salvaged).toBeGreaterThan(0);
      expect(t.salvaged).toBeLessThan(made.tasks);
      expect(t.lostRanges.reduce((s, [a, b]) => s + b - a + 1, 0)).toBe(info.cells);
      expect(t.status).toBe('partial');
      expect(table(r, 'runs').salvaged).toBe(made.runs);
      expect(table(r, 'events').salvaged).toBe(made.events);
      // every lost task left events behind: each becomes a blocked placeholder
      expect(r.fixups.filter((f) => f.action === 'placeholder')).toHaveLength(info.cells);
    },
  },
  {
    name: 'zeroed interior (root) page of tasks',
    damage: (p) => zeroInteriorPage(p, { kind: 'interior' }),
    healthy: { quick: false, full: false },
    expect: (r, made) => {
      const t = table(r, 'tasks');
      expect(t.fromTree).toBe(0);
      expect(t.fromPageScan).toBe(made.tasks);
      expect(r.fixups).toHaveLength(0);
    },
  },
  {
    name: 'truncated file',
    damage: (p) => truncateFile(p),
    healthy: { quick: false, full: false },
    expect: (r, made) => {
      const t = table(r, 'tasks');
      expect(t.salvaged).toBeGreaterThan(0);
      expect(t.salvaged).toBeLessThan(made.tasks);
      expect(t.lostAbove).not.toBeNull();
      expect(r.salvagedRows).toBeLessThan(made.tasks + made.runs + made.events + made.skills + 1);
    },
  },
  {
    name: 'torn -wal tail (last frame cut)',
    extra: walTail,
    damage: (p) => tornWalTail(p, { mode: 'cut' }),
    healthy: { quick: true, full: true },
    expect: (r, made, info: { committedTitles: string[] }) => {
      expect(r.complete).toBe(true);
      expect(r.wal?.tailBytes).toBeGreaterThan(0);
      expect(table(r, 'tasks').salvaged).toBe(made.tasks + info.committedTitles.length - 1);
    },
  },
  {
    name: 'torn -wal tail (last frame scrambled)',
    extra: walTail,
    damage: (p) => tornWalTail(p, { mode: 'scramble' }),
    healthy: { quick: true, full: true },
    expect: (r, made, info: { committedTitles: string[] }) => {
      expect(r.complete).toBe(true);
      expect(table(r, 'tasks').salvaged).toBe(made.tasks + info.committedTitles.length - 1);
    },
  },
  {
    name: 'index out of order',
    damage: (p) => indexOutOfOrder(p),
    healthy: { quick: true, full: false },
    expect: (r, made) => {
      expect(r.complete).toBe(true);
      expect(table(r, 'tasks').salvaged).toBe(made.tasks);
      expect(r.salvagedRows).toBe(made.tasks + made.runs + made.events + made.skills + 1);
    },
  },
];

describe('damaged fixtures: check, recover, source untouched', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = tmp();
      const path = join(dir, 'kanban.db');
      const made = await makeBoard(path, { tasks: 300 });
      const ref = rowsOf(path, dir);
      const info = c.damage(path) as any;

      // Recovery never opens the source: same bytes, and no -wal/-shm appears next to it.
      const before = fileState(path);
      const filesBefore = readdirSync(dir).sort();
      const out = join(dir, 'recovered', 'kanban.db');
      const r = recoverBoard(path, out);
      expect(fileState(path)).toBe(before);
      expect(readdirSync(dir).filter((f) => f !== 'recovered').sort()).toEqual(filesBefore);
      expect(readdirSync(join(dir, 'recovered'))).toEqual(['kanban.db']);

      // What check says about the damaged board.
      expect(checkBoard(path).healthy).toBe(c.healthy.quick);
      expect(checkBoard(path, { full: true }).healthy).toBe(c.healthy.full);

      c.expect(r, made, info);
      const text = formatRecoverReport(r);
      for (const t of TABLES) expect(text).toContain(t);

      // The recovered board is healthy, opens through SqliteBoard, and holds exactly the reference's rows.
      const chk = checkBoard(out, { full: true });
      expect(chk.problems).toEqual([]);
      expect(chk.healthy).toBe(true);
      const matched = compareWithReference(out, dir, ref, c.extra);
      expect(matched.tasks).toBe(Math.min(table(r, 'tasks').salvaged, ref.tasks!.length));
      const b = SqliteBoard.open(out);
      try {
        const counts = await b.counts();
        const total = Object.values(counts.tasks).reduce((s, n) => s + n, 0);
        expect(total).toBe(table(r, 'tasks').salvaged + r.fixups.filter((f) => f.action === 'placeholder').length);
        // dispatch can resume on the recovered board
        if (counts.tasks.ready > 0) expect((await b.claimBatch(1, Date.now() + 3_600_000, (id) => `/tmp/${id}.log`))[0]).not.toBeNull();
      } finally {
        b.closeNow();
      }
    });
  }

  it('a torn -wal tail: SQLite drops only the torn transaction, every committed row is there', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 50 });
    const info = tornWalTail(path, { transactions: 6 });
    expect(checkBoard(path, { full: true }).healthy).toBe(true);
    const b = SqliteBoard.openReadonly(path);
    try {
      const titles = (await b.listTasks({ limit: 10_000 })).map((t) => t.title);
      expect(titles).toHaveLength(made.tasks + 5);
      for (const t of info.committedTitles.slice(0, -1)) expect(titles).toContain(t);
      expect(titles).not.toContain(info.tornTitle);
    } finally {
      b.closeNow();
    }
  });

  it('the index fixture: quick_check passes, integrity_check and writes through the bad entries see damage', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 300 });
    indexOutOfOrder(path);
    expect(checkBoard(path).healthy).toBe(true);
    const full = checkBoard(path, { full: true });
    expect(full.healthy).toBe(false);
    expect(full.problems.join(' ')).toMatch(/missing from index tasks_status/);
    // A write that must move one of those index entries fails with SQLITE_CORRUPT_INDEX: damage.
    const rowids = [...full.checkResult.join('\n').matchAll(/row (\d+) missing from index tasks_status/g)].map((m) => Number(m[1]));
    expect(rowids.length).toBeGreaterThan(0);
    const b = SqliteBoard.open(path);
    try {
      for (const rowid of rowids) {
        let err: unknown;
        try {
          b.db.prepare('UPDATE tasks SET created_at = created_at + 1 WHERE rowid = ?').run(rowid);
        } catch (e) {
          err = e;
        }
        expect((err as { code?: string }).code).toBe('SQLITE_CORRUPT_INDEX');
        expect(classifyError(err)).toBe('damaged');
      }
    } finally {
      b.closeNow();
    }
  });

  it('running tasks whose run was lost are blocked (their worker may live on), with a recovery event', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 300, runEvery: 300, liveRuns: 200 });
    expect(made.runs).toBe(201);
    const info = zeroInteriorPage(path, { table: 'runs' });
    const r = recoverBoard(path, join(dir, 'out.db'));
    expect(table(r, 'runs').salvaged).toBe(made.runs - info.cells);
    const blocked = r.fixups.filter((f) => f.action === 'blocked');
    expect(blocked).toHaveLength(info.cells);
    expect(r.fixups.filter((f) => f.action === 'placeholder')).toHaveLength(0);
    expect(formatRecoverReport(r)).toMatch(new RegExp(`${info.cells} running task\\(s\\) blocked because their run was lost`));
    const b = SqliteBoard.open(join(dir, 'out.db'));
    try {
      const counts = await b.counts();
      expect(counts.tasks.running).toBe(200 - info.cells);
      expect(counts.liveRuns).toBe(200 - info.cells);
      const d = await b.showTask(blocked[0]!.taskId);
      expect(d!.task.status).toBe('blocked');
      expect(d!.task.currentRunId).toBeNull();
      expect(d!.task.lastError).toMatch(/lost in board recovery; its worker may still be running/);
      expect(d!.events.at(-1)!.kind).toBe('recovery');
    } finally {
      b.closeNow();
    }
  });

  it('refuses a source written by a newer schema (recovering into this one would drop what it does not know)', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 100 });
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    zeroInteriorPage(path);
    expect(() => recoverBoard(path, join(dir, 'out.db'))).toThrow(SchemaTooNewError);
    expect(existsSync(join(dir, 'out.db'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('refuses an existing output, the source as output, and a source this process holds open', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 20 });
    const out = join(dir, 'out.db');
    recoverBoard(path, out);
    expect(() => recoverBoard(path, out)).toThrow(/already exists/);
    expect(() => recoverBoard(path, path)).toThrow(/is the source/);
    const b = SqliteBoard.open(path);
    try {
      expect(() => recoverBoard(path, join(dir, 'out2.db'))).toThrow(BoardError);
      expect(() => recoverBoard(path, join(dir, 'out2.db'))).toThrow(/holds a SQLite connection/);
    } finally {
      b.closeNow();
    }
    expect(existsSync(join(dir, 'out2.db'))).toBe(false);
  });

  it('a board whose every byte is garbage: an empty valid board and a report saying so', () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const junk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) % 251;
    writeFileSync(path, junk);
    const r = recoverBoard(path, join(dir, 'out.db'));
    expect(r.salvagedRows).toBe(0);
    expect(r.tables.every((t) => t.status === 'unreadable')).toBe(true);
    expect(formatRecoverReport(r)).toMatch(/unreadable\s+0\s+0\s+all/);
    expect(checkBoard(join(dir, 'out.db'), { full: true }).healthy).toBe(true);
  });
});

describe('recover under random page damage', () => {
  it('40 boards with 1-3 pages zeroed or filled with noise: never throws, the result is healthy, and every row it kept is the original row', async () => {
    const dir = tmp();
    const base = join(dir, 'base.db');
    await makeBoard(base, { tasks: 400, liveRuns: 20 });
    const ref = rowsOf(base, dir);
    const pristine = readFileSync(base);
    const pageSize = 4096;
    const pages = pristine.length / pageSize;
    let seed = 20240501;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    let salvaged = 0;
    for (let i = 0; i < 40; i++) {
      const path = join(dir, `k${i}.db`);
      const buf = Buffer.from(pristine);
      for (let k = 1 + Math.floor(rnd() * 3); k > 0; k--) {
        const pg = 1 + Math.floor(rnd() * pages);
        if (rnd() < 0.5) buf.fill(0, (pg - 1) * pageSize, pg * pageSize);
        else for (let o = (pg - 1) * pageSize; o < pg * pageSize; o++) buf[o] = Math.floor(rnd() * 256);
      }
      writeFileSync(path, buf);
      const out = join(dir, `out${i}.db`);
      const r = recoverBoard(path, out);
      expect(checkBoard(out, { full: true }).healthy).toBe(true);
      // rows changed by recovery's own fix-ups are not originals; every other row must be
      const lostRun = (t: string, row: Row) => t === 'tasks' && String(row.last_error ?? '').includes('lost in board recovery');
      compareWithReference(out, dir, ref, lostRun);
      salvaged += r.salvagedRows;
    }
    const total = Object.values(ref).reduce((n, rows) => n + rows.length, 0);
    expect(salvaged / (40 * total)).toBeGreaterThan(0.9);
  });
});

describe('recover --in-place', () => {
  it('is refused while another process holds the owner lock, and works once it is released', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 300 });
    const info = zeroInteriorPage(path);
    const damaged = fileState(path);

    const holder = startProcess(process.execPath, [OWNER_LOCK, 'hold', path]);
    await waitFor(() => holder.output().includes('held'));
    expect(() => recoverInPlace(path)).toThrow(RecoverRefusedError);
    expect(() => recoverInPlace(path)).toThrow(/supervisor owns it/);
    expect(fileState(path)).toBe(damaged);
    expect(existsSync(join(dir, 'backups'))).toBe(false);
    holder.kill('SIGTERM');
    await exited(holder);

    // During the operation the owner lock is held: no supervisor can start meanwhile.
    const probes: string[] = [];
    const r = recoverInPlace(path, {
      log: () => {
        if (probes.length === 0) probes.push(spawnSync(process.execPath, [OWNER_LOCK, 'try', path], { encoding: 'utf8' }).stdout.trim());
      },
    });
    expect(probes).toEqual(['busy']);
    expect(spawnSync(process.execPath, [OWNER_LOCK, 'try', path], { encoding: 'utf8' }).stdout.trim()).toBe('acquired');

    expect(table(r, 'tasks').salvaged).toBe(made.tasks - info.cells);
    expect(r.out).toBe(path);
    expect(checkBoard(path, { full: true }).healthy).toBe(true);
    // The damaged original is kept, byte for byte, as the backup of its fingerprint.
    expect(r.backup.created).toBe(true);
    const kept = join(r.backup.dir, 'kanban.db');
    expect(createHash('sha256').update(readFileSync(kept)).digest('hex')).toBe(damaged.split(' ')[0]);
    // No leftovers next to the board.
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
    const b = SqliteBoard.open(path);
    try {
      expect((await b.counts()).tasks.blocked).toBeGreaterThanOrEqual(info.cells); // placeholders
      expect((await b.claimBatch(1, Date.now() + 3_600_000, (id) => `/tmp/${id}.log`))[0]).not.toBeNull();
    } finally {
      b.closeNow();
    }
    expect(formatRecoverReport(r)).toContain(r.backup.dir);
  });

  it('the owner itself (a quarantined supervisor) can recover in place with the lock it holds, and keeps it', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 100 });
    garbageHeader(path);
    const attempt = OwnerLock.tryAcquire(path);
    expect(attempt.ok).toBe(true);
    const lock = (attempt as { ok: true; lock: OwnerLock }).lock;
    try {
      expect(() => recoverInPlace(path)).toThrow(RecoverRefusedError); // without it: refused, even in-process
      const r = recoverInPlace(path, { ownerLock: lock });
      expect(r.complete).toBe(true);
      expect(lock.held).toBe(true);
      expect(spawnSync(process.execPath, [OWNER_LOCK, 'try', path], { encoding: 'utf8' }).stdout.trim()).toBe('busy');
      expect(checkBoard(path, { full: true }).healthy).toBe(true);
    } finally {
      lock.release();
    }
    const other = OwnerLock.tryAcquire(join(dir, 'other.db'));
    expect(other.ok).toBe(true);
    if (other.ok) {
      expect(() => recoverInPlace(path, { ownerLock: other.lock })).toThrow(/not this board's/);
      other.lock.release();
    }
  });

  it('a board with a -wal: the old -wal and -shm go with the original, the new board stands alone', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 50 });
    const info = tornWalTail(path);
    const r = recoverInPlace(path);
    expect(readdirSync(r.backup.dir).sort()).toEqual(['kanban.db', 'kanban.db-shm', 'kanban.db-wal']);
    expect(existsSync(path + '-wal')).toBe(false);
    expect(existsSync(path + '-shm')).toBe(false);
    expect(readdirSync(dir).sort()).toEqual(['backups', 'kanban.db', 'kanban.db.init-lock', 'kanban.db.owner-lock']);
    const b = SqliteBoard.openReadonly(path);
    try {
      const titles = (await b.listTasks({ limit: 10_000 })).map((t) => t.title);
      expect(titles).toHaveLength(made.tasks + info.committedTitles.length - 1);
      expect(titles).not.toContain(info.tornTitle);
    } finally {
      b.closeNow();
    }
  });
});
