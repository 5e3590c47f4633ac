/**
 * The report channel's group commit (supervisor/src/channel/batch.ts) on a real SQLite board:
 * heartbeats alone wait the heartbeat window and share one commit, which does not wait for the
 * disk (a relaxed transaction: synchronous = NORMAL for it, FULL again after); any other report
 * cuts the wait short and its commit is durable; a heartbeat with progress is durable.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import pino from 'pino';
import { SqliteBoard, type Board, type RunCredentials, type TxOptions } from '@kanban-supervisor/board';
import { ReportBatch, type AnswerBody } from '../../supervisor/dist/channel/batch.js';
import { Cleanups } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function setup(runs: number) {
  const dir = cleanups.tempDir('ks-batch-');
  const b = SqliteBoard.open(join(dir, 'kanban.db'));
  cleanups.push(() => b.close());
  await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
  for (let i = 0; i < runs; i++) await b.createTask({ skill: 'echo', title: `t${i}` });
  const creds: RunCredentials[] = (await b.claimBatch(runs, Date.now(), () => join(dir, 'x.log'))).map((c) => ({ taskId: c.task.id, runId: c.run.id, token: c.token }));
  // Every transaction the batch begins: relaxed or not, and the connection's synchronous inside it.
  const begun: Array<{ relaxed: boolean; sync: () => number }> = [];
  const board = new Proxy(b, {
    get(t, p) {
      if (p === 'begin') return (o?: TxOptions) => {
        const tx = t.begin(o);
        const rec = { relaxed: o?.relaxed === true, inside: -1, sync: () => rec.inside };
        begun.push(rec);
        const heartbeat = tx.heartbeat.bind(tx);
        tx.heartbeat = async (...a: Parameters<typeof tx.heartbeat>) => {
          await heartbeat(...a);
          rec.inside = Number(t.db.pragma('synchronous', { simple: true }));
        };
        // Bare heartbeats are written all at once (BoardTx.beats).
        const beats = tx.beats.bind(tx);
        tx.beats = async (...a: Parameters<typeof tx.beats>) => {
          const refused = await beats(...a);
          rec.inside = Number(t.db.pragma('synchronous', { simple: true }));
          return refused;
        };
        return tx;
      };
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  }) as unknown as Board;
  return { b, creds, board, begun };
}

function answered(batch: ReportBatch, report: Parameters<ReportBatch['push']>[0]): Promise<{ a: AnswerBody; at: number }> {
  return new Promise((resolve) => batch.push(report, (a) => resolve({ a, at: performance.now() })));
}

describe('report channel group commit: the heartbeat window', () => {
  it('heartbeats alone wait the window and share one relaxed commit; the connection is durable again after it', async () => {
    const { b, creds, board, begun } = await setup(3);
    const batch = new ReportBatch({ board: () => board, log: pino({ level: 'silent' }), windowMs: 2, heartbeatWindowMs: 1500 });
    const t0 = performance.now();
    const p = creds.map((cred) => answered(batch, { op: 'heartbeat', cred, progress: undefined }));
    const got = await Promise.all(p);
    for (const g of got) {
      expect(g.a).toEqual({ ok: true });
      expect(g.at - t0, 'answered only after the heartbeat window').toBeGreaterThanOrEqual(1400);
    }
    expect(batch.stats.commits).toBe(1);
    expect(begun.map((x) => x.relaxed)).toEqual([true]);
    expect(begun[0]!.sync(), 'synchronous inside the relaxed transaction').toBe(1); // NORMAL
    expect(b.db.pragma('synchronous', { simple: true }), 'synchronous after it').toBe(2); // FULL
    for (const cred of creds) expect((await b.getRun(cred.runId))!.heartbeatAt).not.toBeNull();
  });

  it('a report that is not a heartbeat cuts the wait short; its commit, with the waiting beats, is durable', async () => {
    const { b, creds, board, begun } = await setup(2);
    const batch = new ReportBatch({ board: () => board, log: pino({ level: 'silent' }), windowMs: 2, heartbeatWindowMs: 5000 });
    const t0 = performance.now();
    const beat = answered(batch, { op: 'heartbeat', cred: creds[0]!, progress: undefined });
    await new Promise((r) => setTimeout(r, 20));
    const end = answered(batch, { op: 'end', cred: creds[1]!, seq: null, report: { outcome: 'completed', result: { ok: 1 } } });
    const [gb, ge] = await Promise.all([beat, end]);
    expect(ge.a).toEqual({ ok: true });
    expect(gb.a).toEqual({ ok: true });
    expect(ge.at - t0, 'the completion did not wait for the heartbeat window').toBeLessThan(2500);
    expect(gb.at - t0).toBeLessThan(2500);
    expect(batch.stats.commits).toBe(1);
    expect(begun.map((x) => x.relaxed)).toEqual([false]);
    expect(begun[0]!.sync()).toBe(2);
    expect((await b.getTask(creds[1]!.taskId))!.status).toBe('done');
  });

  it('in one batch: a bare heartbeat queued after its run\'s end is refused (the queue\'s order holds); a forged token beside the right one is refused alone', async () => {
    const { b, creds, board } = await setup(2);
    const batch = new ReportBatch({ board: () => board, log: pino({ level: 'silent' }), windowMs: 2, heartbeatWindowMs: 1 });
    // Pushed in one go: one commit carries them all.
    const end = answered(batch, { op: 'end', cred: creds[0]!, seq: null, report: { outcome: 'completed', result: null } });
    const late = answered(batch, { op: 'heartbeat', cred: creds[0]!, progress: undefined });
    const right = answered(batch, { op: 'heartbeat', cred: creds[1]!, progress: undefined });
    const forged = answered(batch, { op: 'heartbeat', cred: { ...creds[1]!, token: '0'.repeat(32) }, progress: undefined });
    const [ge, gl, gr, gf] = await Promise.all([end, late, right, forged]);
    expect(batch.stats.commits).toBe(1);
    expect(ge.a).toEqual({ ok: true });
    expect(gl.a).toMatchObject({ ok: false, code: 'fenced' });
    expect(gr.a).toEqual({ ok: true });
    expect(gf.a).toMatchObject({ ok: false, code: 'fenced' });
    expect((await b.getTask(creds[0]!.taskId))!.status).toBe('done');
    expect((await b.getRun(creds[1]!.runId))!.heartbeatAt).not.toBeNull();
  });

  it('a heartbeat with progress (data of the worker) commits durably', async () => {
    const { b, creds, board, begun } = await setup(1);
    const batch = new ReportBatch({ board: () => board, log: pino({ level: 'silent' }), windowMs: 2, heartbeatWindowMs: 1 });
    const g = await answered(batch, { op: 'heartbeat', cred: creds[0]!, progress: { step: 3 } });
    expect(g.a).toEqual({ ok: true });
    expect(begun.map((x) => [x.relaxed, x.sync()])).toEqual([[false, 2]]);
    expect((await b.getRun(creds[0]!.runId))!.progress).toEqual({ step: 3 });
    expect(b.db.pragma('synchronous', { simple: true })).toBe(2);
  });

  it('a relaxed transaction that is rolled back, or whose BEGIN finds the board busy, leaves the connection durable', async () => {
    const { b, creds } = await setup(1);
    const tx = b.begin({ relaxed: true });
    await tx.heartbeat(creds[0]!, undefined, Date.now());
    expect(b.db.pragma('synchronous', { simple: true })).toBe(1);
    tx.close();
    expect(b.db.pragma('synchronous', { simple: true })).toBe(2);
    // Another connection holds the write lock: the relaxed BEGIN fails busy (after its retries).
    const other = SqliteBoard.open(b.location, { busyTimeoutMs: 1, busyRetries: 0 });
    cleanups.push(() => other.close());
    other.db.exec('BEGIN IMMEDIATE');
    const busy = SqliteBoard.open(b.location, { busyTimeoutMs: 1, busyRetries: 0 });
    cleanups.push(() => busy.close());
    const tx2 = busy.begin({ relaxed: true });
    await expect(tx2.heartbeat(creds[0]!, undefined, Date.now())).rejects.toThrow();
    expect(busy.db.pragma('synchronous', { simple: true })).toBe(2);
    tx2.close();
    other.db.exec('ROLLBACK');
  });
});
