import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BoardDamagedError, NotCurrentError, BoardInputError, type Board, type WorkerReport } from '@kanban-supervisor/board';
import { deliverReport, readSpool, removeSpoolEntry, spoolDir, writeSpool } from '@kanban-supervisor/worker-runtime';
import { Cleanups } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const tmp = () => cleanups.tempDir('ks-worker-spool-');

/** A board whose `report` fails with the given errors in turn, then succeeds. */
function flakyBoard(errors: unknown[]): Board & { calls: number } {
  const b = {
    calls: 0,
    async report() {
      const e = errors[b.calls++];
      if (e) throw e;
    },
  };
  return b as unknown as Board & { calls: number };
}
const ioError = () => Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' });
const busyError = () => Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
const cred = { taskId: 'tq', runId: 'rq', token: 'tok' };
const report: WorkerReport = { outcome: 'completed', result: { a: 1 } };

describe('final report delivery and the spool', () => {
  it('goes to the board when it can', async () => {
    const dir = tmp();
    const b = flakyBoard([]);
    expect(await deliverReport(b, join(dir, 'k.db'), cred, report)).toEqual({ via: 'board' });
    expect(existsSync(spoolDir(join(dir, 'k.db')))).toBe(false);
  });

  it('retries transient I/O errors before giving up on the board', async () => {
    const dir = tmp();
    const b = flakyBoard([ioError(), busyError()]);
    expect(await deliverReport(b, join(dir, 'k.db'), cred, report, { delayMs: 1 })).toEqual({ via: 'board' });
    expect(b.calls).toBe(3);
  });

  it('spools after repeated I/O errors, atomically, with the token and the cause', async () => {
    const dir = tmp();
    const db = join(dir, 'k.db');
    const b = flakyBoard([ioError(), ioError(), ioError(), ioError()]);
    const d = await deliverReport(b, db, cred, { outcome: 'failed', error: 'x' }, { delayMs: 1, attempts: 3 });
    expect(d.via).toBe('spool');
    expect(b.calls).toBe(3);
    const [s] = readSpool(db);
    expect(s && 'entry' in s && s.entry).toMatchObject({ ...cred, version: 1, report: { outcome: 'failed', error: 'x' }, cause: 'disk I/O error', board: db });
    expect(s!.path).toBe(join(dir, 'spool', 'rq.json'));
    expect(statSync(s!.path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 'spool'))).toEqual(['rq.json']); // no temp file left
    removeSpoolEntry(s!.path);
    expect(readSpool(db)).toEqual([]);
  });

  it('spools at once when the board is damaged', async () => {
    const dir = tmp();
    const db = join(dir, 'k.db');
    const b = flakyBoard([new BoardDamagedError(db, 'database disk image is malformed')]);
    const d = await deliverReport(b, db, cred, report, { delayMs: 1 });
    expect(d).toMatchObject({ via: 'spool', path: join(dir, 'spool', 'rq.json') });
    expect(b.calls).toBe(1);
  });

  it('never spools a fenced-out or invalid report', async () => {
    const dir = tmp();
    const db = join(dir, 'k.db');
    await expect(deliverReport(flakyBoard([new NotCurrentError('rq', 'tq')]), db, cred, report)).rejects.toBeInstanceOf(NotCurrentError);
    await expect(deliverReport(flakyBoard([new BoardInputError('bad')]), db, cred, report)).rejects.toBeInstanceOf(BoardInputError);
    expect(readSpool(db)).toEqual([]);
  });

  it('keeps run ids from escaping the spool folder', () => {
    const dir = tmp();
    const db = join(dir, 'k.db');
    const p = writeSpool(db, { ...cred, runId: '../../etc/passwd' }, report, 1, 'test');
    expect(p.startsWith(join(dir, 'spool') + '/')).toBe(true);
  });
});
