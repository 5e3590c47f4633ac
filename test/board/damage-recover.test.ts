import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BoardError,
  MIGRATIONS,
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
const TABLES = ['skills', 'tasks', 'links', 'runs', 'events', 'owner'] as const;
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
  if (table === 'links') return `${String(r.child)} after ${String(r.parent)}`;
  return table === 'skills' ? String(r.name) : String(r.id);
}

/** What a recovery fix-up changes in a task row it blocks (running task whose run was lost, a child of a lost parent). */
const FIXED = ['status', 'last_error', 'updated_at', 'current_run_id'];
const omit = (r: Row, keys: string[]) => Object.fromEntries(Object.entries(r).filter(([k]) => !keys.includes(k)));

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
      if (t === 'tasks' && String(r.last_error ?? '').includes('lost in board recovery') && byKey.has(keyOf(t, r))) {
        // blocked by a fix-up: every other column is the original's
        expect(omit(r, FIXED)).toEqual(omit(byKey.get(keyOf(t, r))!, FIXED));
        matched[t]++;
        continue;
      }
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
      expect(table(r, 'links').fromPageScan).toBe(made.links);
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
      expect(r.salvagedRows).toBeLessThan(made.tasks + made.links + made.runs + made.events + made.skills + 1);
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
      expect(r.salvagedRows).toBe(made.tasks + made.links + made.runs + made.events + made.skills + 1);
    },
  },
];

describe('damaged fixtures: check, recover, source untouched', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = tmp();
      const path = join(dir, 'kanban.db');
      const made = await makeBoard(path, { tasks: 300, children: 60 });
      expect(made.links).toBe(120);
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
      expect(r.tables.map((t) => t.table)).toEqual(['skills', 'tasks', 'links', 'runs', 'events', 'owner']);
      expect(text).not.toContain('not carried over');
      if (r.complete) expect(table(r, 'links').salvaged).toBe(made.links);

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
    await makeBoard(base, { tasks: 400, liveRuns: 20, children: 100 });
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

/** Every table of a CLOSED board's schema (SQLite's own excluded) with all its rows, read from a private copy. */
function everyTable(path: string, dir: string): Record<string, Row[]> {
  const copy = join(dir, `all-${Math.random().toString(36).slice(2)}.db`);
  copyFileSync(path, copy);
  if (existsSync(path + '-wal')) copyFileSync(path + '-wal', copy + '-wal');
  const db = new Database(copy, { readonly: true });
  try {
    const tables = db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name`).pluck().all() as string[];
    return Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT rowid AS __rowid, * FROM "${t}" ORDER BY rowid`).all() as Row[]]));
  } finally {
    db.close();
  }
}

describe('recover carries every table and column of the current schema', () => {
  it('a healthy board with a value in every column of every table: recover --out and --in-place keep every row, column for column', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const b = SqliteBoard.open(path);
    try {
      const now = Date.now();
      await b.putSkill({ name: 's', argv: ['/bin/true'], cwd: '/tmp', env: { A: '1' }, passEnv: ['K'], maxRuntimeSeconds: 60, heartbeatTimeoutSeconds: 30, reclaimGraceSeconds: 5, maxRssMb: 100, maxConcurrent: 2 });
      await b.putSkill({ name: 'x', argv: ['/bin/true'], report: 'exit', resultFrom: 'stdout-json' });
      const p = await b.createTask({ skill: 's', title: 'p', payload: { a: 1 }, priority: 3, maxRuntimeSeconds: 10, maxRetries: 2, key: 'k-1' });
      const c = await b.createTask({ skill: 's', title: 'c', after: [p.id] });
      const [cl] = await b.claimBatch(1, now, (r) => `/tmp/${r}.log`);
      const cred = { taskId: cl!.task.id, runId: cl!.run.id, token: cl!.token };
      await b.recordSpawns([{ runId: cl!.run.id, info: { pid: 1234, pgid: 1234, procStartTime: 5, bootId: 'boot' } }], now);
      await b.heartbeat(cred, { step: 1 }, now);
      await b.workerEvent(cred, 'note', { n: 1 }, now, '1');
      await b.report(cred, { outcome: 'completed', result: { ok: 1 } }, now, '2');
      await b.recordExits([{ runId: cl!.run.id, exitCode: 0, at: now, gone: true }]);
      await b.setOwner({ pid: 1, host: 'h', startedAt: now, state: 'stopped' });
      // What the API did not fill above, by hand (values the schema accepts).
      b.db.prepare(`UPDATE runs SET signal = 'SIGTERM', error = 'e', stop_reason = 'timeout', sigterm_at = 1, sigkill_at = 2, accounted_at = 3, defer_until = 4 WHERE id = ?`).run(cl!.run.id);
      b.db.prepare(`UPDATE owner SET detail = 'd'`).run();
      b.db.prepare(`UPDATE tasks SET last_error = 'le' WHERE id = ?`).run(c.id);
    } finally {
      b.closeNow('TRUNCATE');
    }
    const ref = everyTable(path, dir);
    // The fixture exercises every column of every table (a column added later must be added here).
    const db = new Database(path, { readonly: true });
    try {
      for (const t of Object.keys(ref)) {
        for (const col of db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(t) as string[]) {
          expect(ref[t]!.some((r) => r[col] !== null), `${t}.${col} holds a value in some row`).toBe(true);
        }
      }
    } finally {
      db.close();
    }
    expect(Object.keys(ref)).toContain('links');

    const out = join(dir, 'out.db');
    const r = recoverBoard(path, out);
    expect(r.tables.map((t) => t.table).sort()).toEqual(Object.keys(ref).sort());
    expect(r.complete).toBe(true);
    expect(r.fixups).toEqual([]);
    expect(r.salvagedRows).toBe(Object.values(ref).reduce((n, rows) => n + rows.length, 0));
    expect(everyTable(out, dir)).toEqual(ref);

    const r2 = recoverInPlace(path);
    expect(r2.complete).toBe(true);
    expect(everyTable(path, dir)).toEqual(ref);
  });
});

describe('recover and the task graph (links)', () => {
  const lostCount = (ranges: Array<[number, number]>) => ranges.reduce((s, [a, b]) => s + b - a + 1, 0);

  it('a zeroed leaf page of links: those links are reported lost; a waiting task left with no parent that is not done is blocked, saying so', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 300, children: 300 });
    expect(made.links).toBe(600);
    const ref = rowsOf(path, dir);
    const info = zeroInteriorPage(path, { table: 'links' });
    const out = join(dir, 'out.db');
    const r = recoverBoard(path, out);
    const l = table(r, 'links');
    expect(l.status).toBe('partial');
    expect(l.salvaged).toBe(made.links - info.cells);
    expect(lostCount(l.lostRanges)).toBe(info.cells);
    expect(l.notes.join(' ')).toMatch(/links were lost: a waiting task may show fewer parents/);
    expect(r.complete).toBe(false);
    expect(table(r, 'tasks').status).toBe('complete');
    expect(r.fixups.filter((f) => f.action === 'dropped_link')).toHaveLength(0);

    // Exactly the links on the zeroed page are missing, each inside a reported lost range.
    const got = rowsOf(out, dir);
    const kept = new Set(got.links!.map((x) => keyOf('links', x)));
    const lost = ref.links!.filter((x) => !kept.has(keyOf('links', x)));
    expect(lost).toHaveLength(info.cells);
    for (const x of lost) expect(l.lostRanges.some(([a, b]) => Number(x.__rowid) >= a && Number(x.__rowid) <= b)).toBe(true);

    // The waiting tasks with no parent left that is not done are blocked (they would wait forever), no other.
    const statusOf = new Map(ref.tasks!.map((t) => [String(t.id), String(t.status)]));
    const stuck = ref
      .tasks!.filter((t) => t.status === 'waiting' && !got.links!.some((x) => x.child === t.id && statusOf.get(String(x.parent)) !== 'done'))
      .map((t) => String(t.id))
      .sort();
    expect(stuck.length).toBeGreaterThan(0);
    const blocked = r.fixups.filter((f) => f.action === 'blocked_child');
    expect(blocked.map((f) => f.taskId).sort()).toEqual(stuck);
    const text = formatRecoverReport(r);
    expect(text).toMatch(new RegExp(`^links\\s+partial\\s+${made.links - info.cells}\\s+0\\s+\\d+`, 'm'));
    expect(text).toContain(`${stuck.length} task(s) not yet started blocked because a parent or their links were lost`);
    expect(checkBoard(out, { full: true }).healthy).toBe(true);
    compareWithReference(out, dir, ref);
    const b = SqliteBoard.open(out);
    try {
      const d = (await b.showTask(stuck[0]!))!;
      expect(d.task.status).toBe('blocked');
      expect(d.task.lastError).toMatch(/it was waiting, but (none of its links survived|every parent of it on the recovered board is done): a link it waited on \(or its release\) was lost in board recovery/);
      expect(d.events.at(-1)!.kind).toBe('recovery');
      expect((await b.counts()).tasks.waiting).toBe(ref.tasks!.filter((t) => t.status === 'waiting').length - stuck.length);
    } finally {
      b.closeNow();
    }
  });

  it('a lost task none of whose runs or events survived: each link naming it is dropped and reported, its children not yet started are blocked', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 40, children: 20 });
    // A parent with no run and the most children, and a child of other parents: their rows and
    // events are gone, as when the pages holding them were lost without a trace.
    const db = new Database(path);
    const parent = db
      .prepare(`SELECT l.parent FROM links l WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = l.parent) GROUP BY l.parent ORDER BY count(*) DESC, l.parent LIMIT 1`)
      .pluck()
      .get() as string;
    const children = db.prepare(`SELECT child FROM links WHERE parent = ? ORDER BY child`).pluck().all(parent) as string[];
    const lostChild = db
      .prepare(`SELECT child FROM links WHERE child NOT IN (SELECT child FROM links WHERE parent = ?) ORDER BY child LIMIT 1`)
      .pluck()
      .get(parent) as string;
    const lostChildParents = db.prepare(`SELECT parent FROM links WHERE child = ? ORDER BY parent`).pluck().all(lostChild) as string[];
    const otherParents = new Map(
      children.map((c) => [c, db.prepare(`SELECT p.status FROM links l JOIN tasks p ON p.id = l.parent WHERE l.child = ? AND l.parent <> ?`).pluck().all(c, parent) as string[]]),
    );
    db.pragma('foreign_keys = OFF');
    for (const id of [parent, lostChild]) {
      db.prepare(`DELETE FROM events WHERE task_id = ?`).run(id);
      db.prepare(`DELETE FROM tasks WHERE id = ?`).run(id);
    }
    db.close();
    expect(children.length).toBeGreaterThan(0);
    expect(lostChildParents.length).toBeGreaterThan(0);

    const out = join(dir, 'out.db');
    const r = recoverBoard(path, out);
    const dropped = r.fixups.filter((f) => f.action === 'dropped_link');
    expect(dropped.map((f) => `${f.taskId} after ${f.parent}`).sort()).toEqual(
      [...children.map((c) => `${c} after ${parent}`), ...lostChildParents.map((p) => `${lostChild} after ${p}`)].sort(),
    );
    const l = table(r, 'links');
    expect(l.dropped).toBe(dropped.length);
    expect(l.salvaged).toBe(made.links - dropped.length);
    expect(l.status).toBe('partial');
    expect(r.complete).toBe(false); // never "every row was salvaged" with links dropped
    expect(r.fixups.filter((f) => f.action === 'placeholder')).toHaveLength(0);
    // Every child of the lost parent was not yet started (waiting or ready): blocked.
    expect(r.fixups.filter((f) => f.action === 'blocked_child').map((f) => f.taskId).sort()).toEqual([...children].sort());
    const text = formatRecoverReport(r);
    expect(text).toContain(`${dropped.length} link(s) naming a lost task dropped (child after parent)`);
    expect(text).toContain(`${dropped.length} row(s) read but dropped: they name a task that was lost`);
    expect(text).toMatch(/^partial: /m);
    expect(checkBoard(out, { full: true }).healthy).toBe(true);

    const b = SqliteBoard.open(out);
    try {
      for (const c of children) {
        const d = (await b.showTask(c))!;
        expect(d.task.status).toBe('blocked');
        expect(d.task.lastError).toContain(`its parent(s) ${parent} (link dropped) were lost in board recovery with their results`);
        expect(d.parents.map((p) => p.id)).not.toContain(parent);
        expect(d.events.filter((e) => e.kind === 'recovery').map((e) => (e.data as { action: string }).action)).toEqual(['dropped_link', 'blocked']);
        // Unblocked, it waits for its other parents, or is ready when they are done.
        const pending = otherParents.get(c)!.some((s) => s !== 'done');
        expect((await b.unblockTask(c)).status).toBe(pending ? 'waiting' : 'ready');
      }
      for (const p of lostChildParents) {
        const d = (await b.showTask(p))!;
        const ev = d.events.find((e) => e.kind === 'recovery')!;
        expect(ev.data).toMatchObject({ action: 'dropped_link', child: lostChild });
        expect(d.children.map((x) => x.id)).not.toContain(lostChild);
      }
    } finally {
      b.closeNow();
    }
  });

  it('a lost parent rebuilt as a placeholder from its events keeps its links; its children not yet started are blocked', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const made = await makeBoard(path, { tasks: 300, children: 300 });
    const ref = rowsOf(path, dir);
    const info = zeroInteriorPage(path); // a leaf of tasks: those tasks become placeholders
    const out = join(dir, 'out.db');
    const r = recoverBoard(path, out);
    const placeholders = new Set(r.fixups.filter((f) => f.action === 'placeholder').map((f) => f.taskId));
    expect(placeholders.size).toBe(info.cells);
    const l = table(r, 'links');
    expect(l).toMatchObject({ status: 'complete', salvaged: made.links, dropped: 0 });
    expect(rowsOf(out, dir).links).toEqual(ref.links);
    const statusOf = new Map(ref.tasks!.map((t) => [String(t.id), String(t.status)]));
    const expected = [
      ...new Set(
        ref.links!.filter((x) => placeholders.has(String(x.parent)) && ['waiting', 'ready'].includes(statusOf.get(String(x.child))!)).map((x) => String(x.child)),
      ),
    ].sort();
    expect(expected.length).toBeGreaterThan(0);
    expect(r.fixups.filter((f) => f.action === 'blocked_child').map((f) => f.taskId).sort()).toEqual(expected);
    compareWithReference(out, dir, ref);
    const b = SqliteBoard.open(out);
    try {
      const d = (await b.showTask(expected[0]!))!;
      expect(d.task.lastError).toMatch(/\(rebuilt as a blocked placeholder\) were lost in board recovery/);
      expect(d.parents.some((p) => placeholders.has(p.id) && p.status === 'blocked')).toBe(true);
    } finally {
      b.closeNow();
    }
  });

  it('a board older than the task graph (schema 4, no links table): nothing is missing, the report is complete', () => {
    const dir = tmp();
    const path = join(dir, 'v4.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.filter((m) => m.version <= 4)) {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }
    db.prepare(`INSERT INTO skills (name, argv, created_at, updated_at) VALUES ('s', '["/bin/true"]', 1, 1)`).run();
    db.prepare(`INSERT INTO tasks (id, title, skill, status, created_at, updated_at) VALUES ('t1', 'old', 's', 'ready', 1, 1)`).run();
    db.close();
    const out = join(dir, 'out.db');
    const r = recoverBoard(path, out);
    expect(r.sourceSchemaVersion).toBe(4);
    expect(table(r, 'links')).toMatchObject({ status: 'complete', salvaged: 0 });
    expect(table(r, 'links').notes.join(' ')).toContain('schema version 4) is older than this table (version 5)');
    expect(table(r, 'tasks').salvaged).toBe(1);
    expect(r.complete).toBe(true);
    expect(checkBoard(out, { full: true }).healthy).toBe(true);
  });
});
