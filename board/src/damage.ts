/**
 * Makers of damaged boards, for tests and the chaos suite. Each one starts from a healthy board
 * made by `makeBoard` and damages the closed files the way real deployments damaged them.
 *
 * Every function here works on a CLOSED board: it refuses when this process holds a SQLite
 * connection to the file (reading or writing the file through `fs` while a connection is held
 * would drop that connection's POSIX locks). The brief inspection connections used to find
 * pages are opened and closed before any byte is touched through `fs`.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync, truncateSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BoardError } from './errors.js';
import { holdsConnection } from './open.js';
import { SqliteBoard } from './sqlite/board.js';

export interface MadeBoard {
  path: string;
  skills: number;
  tasks: number;
  runs: number;
  events: number;
  /** Task graph links (see MakeBoardOptions.children). */
  links: number;
  pageSize: number;
  pageCount: number;
}

export interface MakeBoardOptions {
  /** Number of tasks (default 300). Each has a payload of about `payloadBytes`, so tasks span many pages. */
  tasks?: number;
  /** Approximate size of each task's payload (default 200 bytes). */
  payloadBytes?: number;
  /** Claim and end a run for every `runEvery`-th task (default 2: half the tasks have a run). */
  runEvery?: number;
  /**
   * Then claim this many more tasks and leave their runs live (spawned with made-up pids that no
   * process has, heartbeat sent, no report): a board a supervisor was running when it was damaged.
   */
  liveRuns?: number;
  /**
   * Then add this many child tasks (title `child K`), each after two of the first tasks (the task
   * graph: two links each): `waiting` while a parent is not done, else `ready`. Default 0.
   */
  children?: number;
}

function assertClosed(path: string, what: string): string {
  const abs = resolve(path);
  if (holdsConnection(abs)) {
    throw new BoardError(`${what}: this process holds a SQLite connection to ${abs}; close it before touching the file`);
  }
  return abs;
}

/**
 * Create a real board at `path` through SqliteBoard: one skill `s`, N tasks, a run for every
 * `runEvery`-th task (completed or failed, alternately, then accounted), optionally `liveRuns`
 * running tasks and `children` tasks waiting for two others (links), their events, and an owner row. The
 * board is closed with a TRUNCATE checkpoint, so everything is in the main file and no -wal remains.
 */
export async function makeBoard(path: string, opts: MakeBoardOptions = {}): Promise<MadeBoard> {
  const abs = assertClosed(path, 'makeBoard');
  const n = opts.tasks ?? 300;
  const pad = 'x'.repeat(opts.payloadBytes ?? 200);
  const runEvery = Math.max(1, opts.runEvery ?? 2);
  const b = SqliteBoard.open(abs);
  try {
    b.db.pragma('synchronous = OFF'); // a fixture: speed over durability
    await b.putSkill({ name: 's', argv: ['/bin/true'], env: { FIXTURE: '1' } });
    for (let i = 0; i < n; i++) {
      await b.createTask({ skill: 's', title: `task ${i}`, payload: { i, pad }, priority: i % 3 });
    }
    // Claim in dispatch order; the first ceil(n / runEvery) claimed tasks get runs.
    const runs = Math.ceil(n / runEvery);
    for (let i = 0; i < runs; i++) {
      const now = Date.now();
      const [c] = await b.claimBatch(1, now, (r) => `/tmp/logs/${r}.log`);
      if (!c) break;
      const cred = { taskId: c.task.id, runId: c.run.id, token: c.token };
      await b.recordSpawns([{ runId: c.run.id, info: { pid: 100000 + i, pgid: 100000 + i, procStartTime: 1000 + i, bootId: 'fixture-boot' } }], now);
      await b.heartbeat(cred, { step: i }, now);
      if (i % 2 === 0) await b.report(cred, { outcome: 'completed', result: { ok: i } }, now);
      else await b.report(cred, { outcome: 'failed', error: `fixture failure ${i}` }, now);
      await b.recordExits([{ runId: c.run.id, exitCode: i % 2, at: now, gone: true }]);
      await b.applyAccountingBatch([{ runId: c.run.id, action: i % 2 === 0 ? { action: 'done', consecutiveFailures: 0 } : { action: 'block', reason: 'fixture', consecutiveFailures: 1 } }], now);
    }
    for (let i = 0; i < (opts.liveRuns ?? 0); i++) {
      const now = Date.now();
      const [c] = await b.claimBatch(1, now, (r) => `/tmp/logs/${r}.log`);
      if (!c) break;
      await b.recordSpawns([{ runId: c.run.id, info: { pid: 3_000_000 + i, pgid: 3_000_000 + i, procStartTime: 1, bootId: 'fixture-boot' } }], now);
      await b.heartbeat({ taskId: c.task.id, runId: c.run.id, token: c.token }, { live: i }, now);
    }
    const ids = (b.db.prepare(`SELECT id FROM tasks ORDER BY created_at, id`).pluck().all() as string[]).slice(0, n);
    for (let k = 0; k < (opts.children ?? 0) && ids.length >= 2; k++) {
      const p1 = ids[(k * 7) % ids.length]!;
      const p2 = ids[(k * 13 + 1) % ids.length]!;
      await b.createTask({ skill: 's', title: `child ${k}`, payload: { k, pad }, after: p1 === p2 ? [p1] : [p1, p2] });
    }
    await b.setOwner({ pid: 4242, host: 'fixture-host', startedAt: Date.now(), state: 'stopped' });
    const count = (t: string) => Number((b.db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n);
    const made = {
      path: abs,
      skills: count('skills'),
      tasks: count('tasks'),
      runs: count('runs'),
      events: count('events'),
      links: count('links'),
      pageSize: Number(b.db.pragma('page_size', { simple: true })),
      pageCount: 0,
    };
    b.closeNow('TRUNCATE');
    made.pageCount = statSync(abs).size / made.pageSize;
    return made;
  } finally {
    b.closeNow();
  }
}

// ------------------------------------------------------------------ low-level file editing

function readAt(abs: string, offset: number, length: number): Buffer {
  const fd = openSync(abs, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function writeAt(abs: string, offset: number, data: Buffer): void {
  const fd = openSync(abs, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

interface PageInfo {
  pageno: number;
  ncell: number;
  pagetype: string;
  path: string;
}

/** Pages of one b-tree, through the dbstat virtual table, on a short read-only connection. */
export function btreePages(path: string, name: string): { pageSize: number; pages: PageInfo[] } {
  const abs = assertClosed(path, 'btreePages');
  if (existsSync(abs + '-wal') && statSync(abs + '-wal').size > 0) {
    throw new BoardError(`btreePages: ${abs} has a non-empty -wal; checkpoint it first so pages in the file are current`);
  }
  const db = new Database(abs, { readonly: true, fileMustExist: true });
  try {
    const pageSize = Number(db.pragma('page_size', { simple: true }));
    const pages = db
      .prepare('SELECT pageno, ncell, pagetype, path FROM dbstat WHERE name = ? ORDER BY path')
      .all(name) as PageInfo[];
    if (pages.length === 0) throw new BoardError(`btreePages: no b-tree named ${name} in ${abs}`);
    return { pageSize, pages };
  } finally {
    db.close();
  }
}

// ------------------------------------------------------------------ damage kinds

export interface GarbageHeaderOptions {
  /** How many bytes from the start of the file to overwrite (default 100: exactly the database header). */
  bytes?: number;
}

/**
 * Overwrite the start of the file with text, as when a process writes a log line through a file
 * descriptor number that used to be the database. With the default 100 bytes only the header is
 * lost (page 1's b-tree, the schema, survives); with more, the schema page is damaged too.
 */
export function garbageHeader(path: string, opts: GarbageHeaderOptions = {}): { bytes: number } {
  const abs = assertClosed(path, 'garbageHeader');
  const bytes = opts.bytes ?? 100;
  let text = '';
  for (let i = 0; text.length < bytes; i++) text += `2024-05-01T12:00:${String(i % 60).padStart(2, '0')}Z worker log line ${i}\n`;
  writeAt(abs, 0, Buffer.from(text.slice(0, bytes), 'latin1'));
  return { bytes };
}

export interface ZeroPageOptions {
  /** B-tree to damage (default `tasks`). */
  table?: string;
  /** `leaf` (default): a non-root leaf in the middle of the tree; `interior`: an interior page (the root if it is the only one). */
  kind?: 'leaf' | 'interior';
}

/**
 * Zero one whole page inside the file (not page 1) that belongs to a table's b-tree. With the
 * default, the rows on that leaf are lost and every other row stays readable through the tree.
 */
export function zeroInteriorPage(path: string, opts: ZeroPageOptions = {}): { pageno: number; cells: number; pageSize: number; pagetype: string } {
  const abs = assertClosed(path, 'zeroInteriorPage');
  const table = opts.table ?? 'tasks';
  const kind = opts.kind ?? 'leaf';
  const { pageSize, pages } = btreePages(abs, table);
  let pick: PageInfo | undefined;
  if (kind === 'leaf') {
    const leaves = pages.filter((p) => p.pagetype === 'leaf' && p.path !== '/');
    if (leaves.length < 3) throw new BoardError(`zeroInteriorPage: ${table} has ${leaves.length} non-root leaves; make a bigger board`);
    pick = leaves[Math.floor(leaves.length / 2)];
  } else {
    const interior = pages.filter((p) => p.pagetype === 'internal');
    if (interior.length === 0) throw new BoardError(`zeroInteriorPage: ${table} has no interior page; make a bigger board`);
    pick = interior[interior.length > 1 ? 1 : 0];
  }
  if (!pick || pick.pageno === 1) throw new BoardError('zeroInteriorPage: no page to zero');
  writeAt(abs, (pick.pageno - 1) * pageSize, Buffer.alloc(pageSize));
  return { pageno: pick.pageno, cells: pick.ncell, pageSize, pagetype: pick.pagetype };
}

/**
 * Truncate the file, as a copy cut short or a full disk would. Default: keep 60% of the file,
 * cut in the middle of a page.
 */
export function truncateFile(path: string, opts: { keepFraction?: number } = {}): { from: number; to: number } {
  const abs = assertClosed(path, 'truncateFile');
  const from = statSync(abs).size;
  const to = Math.max(1, Math.floor(from * (opts.keepFraction ?? 0.6)) + 123);
  if (to >= from) throw new BoardError('truncateFile: nothing to cut');
  truncateSync(abs, to);
  return { from, to };
}

export interface TornWalResult {
  /** Frames in the -wal before the damage. */
  framesBefore: number;
  walBytesBefore: number;
  walBytesAfter: number;
  /** Titles of the tasks committed (each in its own transaction) by the crashed writer, last one torn. */
  committedTitles: string[];
  /** Title of the task whose commit frame was torn (SQLite drops that transaction). */
  tornTitle: string;
  pageSize: number;
}

/**
 * A writer crashes (SIGKILL) with transactions in the -wal that were never checkpointed, and the
 * last frame of the -wal is torn: cut in the middle (`cut`, default) or scrambled (`scramble`).
 * The writer is a separate process, so this process never holds the board open.
 */
export function tornWalTail(path: string, opts: { mode?: 'cut' | 'scramble'; transactions?: number } = {}): TornWalResult {
  const abs = assertClosed(path, 'tornWalTail');
  const mode = opts.mode ?? 'cut';
  const k = opts.transactions ?? 5;
  const indexJs = fileURLToPath(new URL('./index.js', import.meta.url));
  const script = `
    const { SqliteBoard } = await import(${JSON.stringify(pathToFileURL(indexJs).href)});
    const b = SqliteBoard.open(${JSON.stringify(abs)});
    b.db.pragma('wal_autocheckpoint = 0');
    for (let i = 0; i < ${k}; i++) await b.createTask({ skill: 's', title: 'wal-tail ' + i, payload: { wal: i } });
    process.kill(process.pid, 'SIGKILL');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.signal !== 'SIGKILL') throw new BoardError(`tornWalTail: the writer did not crash as planned: ${r.status} ${r.signal} ${r.stderr}`);
  const wal = abs + '-wal';
  const walBytesBefore = statSync(wal).size;
  const header = readAt(wal, 0, 32);
  const pageSize = header.readUInt32BE(8);
  const frameSize = 24 + pageSize;
  const framesBefore = Math.floor((walBytesBefore - 32) / frameSize);
  if (framesBefore < 2) throw new BoardError(`tornWalTail: the -wal holds ${framesBefore} frames`);
  const lastFrame = 32 + (framesBefore - 1) * frameSize;
  if (mode === 'cut') {
    truncateSync(wal, lastFrame + 24 + Math.floor(pageSize / 2));
  } else {
    const fd = openSync(wal, 'r+');
    try {
      const buf = Buffer.alloc(64);
      readSync(fd, buf, 0, 64, lastFrame + 24 + 100);
      for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0x5a;
      writeSync(fd, buf, 0, 64, lastFrame + 24 + 100);
      if (fstatSync(fd).size !== walBytesBefore) throw new BoardError('tornWalTail: the -wal changed size');
    } finally {
      closeSync(fd);
    }
  }
  const committedTitles = Array.from({ length: k }, (_, i) => `wal-tail ${i}`);
  return {
    framesBefore,
    walBytesBefore,
    walBytesAfter: statSync(wal).size,
    committedTitles,
    tornTitle: committedTitles[k - 1]!,
    pageSize,
  };
}

/**
 * Swap two cells' positions in a leaf page of an index b-tree (default `tasks_status`), so its
 * keys are out of order. Table rows are untouched; only lookups through the index go wrong.
 */
export function indexOutOfOrder(path: string, opts: { index?: string } = {}): { pageno: number; swapped: [number, number]; cells: number } {
  const abs = assertClosed(path, 'indexOutOfOrder');
  const index = opts.index ?? 'tasks_status';
  const { pageSize, pages } = btreePages(abs, index);
  const leaf = pages.filter((p) => p.pagetype === 'leaf' && p.ncell >= 4).sort((a, b) => b.ncell - a.ncell)[0];
  if (!leaf) throw new BoardError(`indexOutOfOrder: ${index} has no leaf with 4 or more cells`);
  const base = (leaf.pageno - 1) * pageSize;
  const hdr = leaf.pageno === 1 ? 100 : 0;
  const page = readAt(abs, base, pageSize);
  if (page[hdr] !== 0x0a) throw new BoardError(`indexOutOfOrder: page ${leaf.pageno} is not an index leaf (type ${page[hdr]})`);
  const ncell = page.readUInt16BE(hdr + 3);
  const ptrs = hdr + 8;
  const i = 1;
  const j = ncell - 2;
  const a = page.readUInt16BE(ptrs + 2 * i);
  const b = page.readUInt16BE(ptrs + 2 * j);
  const out = Buffer.alloc(4);
  out.writeUInt16BE(b, 0);
  writeAt(abs, base + ptrs + 2 * i, out.subarray(0, 2));
  out.writeUInt16BE(a, 2);
  writeAt(abs, base + ptrs + 2 * j, out.subarray(2, 4));
  return { pageno: leaf.pageno, swapped: [i, j], cells: ncell };
}
