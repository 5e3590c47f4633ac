/**
 * Reports applied at most once, and worker writes in a BoardTx (issue 17: the supervisor applies
 * the reports of its report channel in its own transactions):
 * - a write with a `seq` lands once; the same (run, seq) again is `duplicate` and writes nothing,
 *   also after the run ended (a final report retried directly after its channel answer was lost);
 * - the same seq with a wrong token is not a duplicate: it is refused as not current;
 * - in a BoardTx, a refused report undoes only itself: the others commit;
 * - a malformed seq is a BoardInputError.
 * Part of the board conformance suite (index.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, NotCurrentError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory } from './index.js';
import { rejection, useBoard } from './helpers.js';

export function reportSeqConformance(factory: BoardFactory): void {
  describe('reports applied at most once (seq) and in a transaction', () => {
    let b: Board;
    const { skill, running, snapshot, task } = useBoard(factory, (opened) => (b = opened.board));
    const events = async (taskId: string, kind: string) => (await b.showTask(taskId))!.events.filter((e) => e.kind === kind);

    it('an event with a seq lands once; the same seq again is a duplicate that writes nothing', async () => {
      await skill();
      const now = Date.now();
      const { task: t, cred } = await running(now);
      expect(await b.workerEvent(cred, 'step', { i: 1 }, now, '1000')).toBe('applied');
      const before = await snapshot(b, t.id);
      expect(await b.workerEvent(cred, 'step', { i: 1 }, now + 1, '1000')).toBe('duplicate');
      expect(await snapshot(b, t.id)).toBe(before);
      expect(await b.workerEvent(cred, 'step', { i: 2 }, now + 2, '1001')).toBe('applied');
      expect(await b.workerEvent(cred, 'step', { i: 3 }, now + 3)).toBe('applied'); // no seq: as before
      expect((await events(t.id, 'step')).map((e) => e.data)).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    });

    it('a final report retried with its seq after the run ended is a duplicate; another seq is refused as not current', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      expect(await b.report(cred, { outcome: 'completed', result: { n: 1 } }, now, '77')).toBe('applied');
      const done = await snapshot(b, t.id);
      expect(await b.report(cred, { outcome: 'completed', result: { n: 1 } }, now + 5, '77')).toBe('duplicate');
      expect(await snapshot(b, t.id)).toBe(done);
      expect(await rejection(b.report(cred, { outcome: 'completed', result: { n: 2 } }, now + 6, '78'))).toBeInstanceOf(NotCurrentError);
      expect(await rejection(b.report({ ...cred, token: 'f'.repeat(32) }, { outcome: 'completed' }, now + 7, '77'))).toBeInstanceOf(NotCurrentError);
      expect(await snapshot(b, t.id)).toBe(done);
      expect((await task(t.id)).status).toBe('done');
      expect((await b.getRun(claim.run.id))!.outcome).toBe('completed');
    });

    it('recordStop with a seq lands once; a wrong token with a used seq is refused', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      expect(await b.beginReclaim(claim.run.id, 'timed_out', now)).toBe(true);
      expect(await b.recordStop(cred, 'SIGTERM', now + 1, '5')).toBe('applied');
      expect(await b.recordStop(cred, 'SIGTERM', now + 2, '5')).toBe('duplicate');
      expect(await rejection(b.workerEvent({ ...cred, token: '0'.repeat(32) }, 'x', null, now, '5'))).toBeInstanceOf(NotCurrentError);
      expect(await events(t.id, 'stopped_on_request')).toHaveLength(1);
    });

    it('a seq that is not 1-20 decimal digits is refused as invalid input', async () => {
      await skill();
      const { cred } = await running(Date.now());
      for (const bad of ['', 'x1', '-1', '1'.repeat(21), '1.5']) {
        expect(await rejection(b.workerEvent(cred, 'step', null, Date.now(), bad))).toBeInstanceOf(BoardInputError);
      }
    });

    it('worker writes in a BoardTx: one refused report undoes only itself, the others commit together', async () => {
      await skill();
      const now = Date.now();
      const { task: t1, cred: c1 } = await running(now, 'one');
      const { task: t2, cred: c2 } = await running(now, 'two');
      const tx = b.begin();
      try {
        await tx.heartbeat(c1, { step: 9 }, now + 1);
        expect(await tx.workerEvent(c1, 'step', { i: 1 }, now + 1, '10')).toBe('applied');
        expect(await rejection(tx.workerEvent({ ...c2, token: 'e'.repeat(32) }, 'step', null, now + 1, '11'))).toBeInstanceOf(NotCurrentError);
        expect(await rejection(tx.workerEvent(c2, 'bad kind!', null, now + 1, '12'))).toBeInstanceOf(BoardInputError);
        expect(await tx.report(c2, { outcome: 'completed', result: 2 }, now + 2, '13')).toBe('applied');
        expect((await tx.loadRun(c1)).task.id).toBe(t1.id);
        expect(await tx.workerEvent(c1, 'step', { i: 1 }, now + 3, '10')).toBe('duplicate');
        await tx.commit();
      } finally {
        tx.close();
      }
      expect((await events(t1.id, 'step')).map((e) => e.data)).toEqual([{ i: 1 }]);
      expect((await b.getRun(c1.runId))!).toMatchObject({ heartbeatAt: now + 1, progress: { step: 9 } });
      expect((await task(t2.id)).status).toBe('done');
      // Retried directly (its channel answer lost): a duplicate, nothing written.
      expect(await b.report(c2, { outcome: 'completed', result: 2 }, now + 9, '13')).toBe('duplicate');
    });

    it('worker writes in a BoardTx closed without its commit are rolled back', async () => {
      await skill();
      const now = Date.now();
      const { task: t, cred } = await running(now);
      const tx = b.begin();
      try {
        await tx.workerEvent(cred, 'step', null, now, '20');
        await tx.report(cred, { outcome: 'failed', error: 'x' }, now, '21');
      } finally {
        tx.close();
      }
      expect(await events(t.id, 'step')).toHaveLength(0);
      expect((await task(t.id)).status).toBe('running');
      expect(await b.workerEvent(cred, 'step', null, now + 1, '20')).toBe('applied');
    });
  });
}
