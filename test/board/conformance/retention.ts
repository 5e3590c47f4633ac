/**
 * Retention (issue 16): pruneBatch removes finished tasks (done, cancelled) last changed before a
 * time, with their runs and events, in bounded batches, and hands back their log files; never a
 * ready, running or blocked task, nor a task whose run has not ended and been accounted.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory } from './index.js';
import { LOG, accountAll, credOf, rejection, spawnInfo, useBoard } from './helpers.js';

export function retentionConformance(factory: BoardFactory): void {
  describe('retention (pruneBatch)', () => {
    let b: Board;
    const { skill, task } = useBoard(factory, (opened) => (b = opened.board));

    /** A task taken to `done` through a claim, a report and the accounting (its updated_at = at). */
    async function done(title: string, at: number): Promise<{ id: string; runId: string }> {
      const t = await b.createTask({ skill: 'echo', title, key: `key-${title}`, priority: 1000 });
      const [c] = await b.claimBatch(1, at, LOG);
      expect(c!.task.id).toBe(t.id);
      await b.recordSpawns([{ runId: c!.run.id, info: spawnInfo(6000) }], at);
      await b.workerEvent(credOf(c!), 'note', { n: 1 }, at);
      await b.report(credOf(c!), { outcome: 'completed', result: { ok: true } }, at);
      await b.recordExits([{ runId: c!.run.id, at, gone: true }]);
      await accountAll(b, at);
      expect((await task(t.id)).status).toBe('done');
      return { id: t.id, runId: c!.run.id };
    }

    it('removes finished tasks older than the cut with their runs and events, never the others; returns counts and log files', async () => {
      await skill();
      const old = Date.now() - 10 * 86_400_000;
      const d1 = await done('d1', old);
      const d2 = await done('d2', old + 1);
      const cancelled = await b.createTask({ skill: 'echo', title: 'c' });
      await b.cancelTask(cancelled.id);
      const ready = await b.createTask({ skill: 'echo', title: 'r' });
      const blocked = await b.createTask({ skill: 'echo', title: 'b' });
      await b.blockTask(blocked.id, 'held');
      const run = await b.createTask({ skill: 'echo', title: 'run', priority: 99 });
      await b.claimBatch(1, Date.now(), LOG);
      const young = await done('young', Date.now());
      const cut = Date.now() - 86_400_000;
      const r = await b.pruneBatch({ before: cut, limit: 100 });
      expect(r).toMatchObject({ tasks: 2, runs: 2, more: false });
      expect(r.events).toBeGreaterThanOrEqual(2 * 5);
      expect(r.logPaths.sort()).toEqual([LOG(d1.runId), LOG(d2.runId)].sort());
      expect(r.holdMs).toBeGreaterThanOrEqual(0);
      for (const gone of [d1, d2]) {
        expect(await b.getTask(gone.id)).toBeNull();
        expect(await b.getRun(gone.runId)).toBeNull();
        expect(await b.listRuns({ taskId: gone.id })).toEqual([]);
      }
      // The cancelled task changed just now: younger than the cut, kept; so is everything unfinished.
      for (const kept of [cancelled.id, ready.id, blocked.id, run.id, young.id]) expect(await b.getTask(kept)).not.toBeNull();
      // With a cut in the future: the finished ones go, never ready, running or blocked.
      const all = await b.pruneBatch({ before: Date.now() + 60_000, limit: 100 });
      expect(all.tasks).toBe(2);
      expect(await b.getTask(cancelled.id)).toBeNull();
      expect(await b.getTask(young.id)).toBeNull();
      expect((await b.counts()).tasks).toEqual({ ready: 1, running: 1, done: 0, blocked: 1, cancelled: 0 });
      // A pruned task's key is free again.
      expect((await b.createTasks([{ skill: 'echo', key: 'key-d1' }]))[0]!.created).toBe(true);
    });

    it('--status: only the statuses given; batches are bounded and say when more may remain', async () => {
      await skill();
      const old = Date.now() - 86_400_000;
      for (let i = 0; i < 5; i++) await done(`d${i}`, old + i);
      for (let i = 0; i < 3; i++) await b.cancelTask((await b.createTask({ skill: 'echo' })).id);
      const future = Date.now() + 60_000;
      const c = await b.pruneBatch({ before: future, statuses: ['cancelled'], limit: 100 });
      expect(c.tasks).toBe(3);
      expect((await b.counts()).tasks.done).toBe(5);
      const sizes: number[] = [];
      for (;;) {
        const r = await b.pruneBatch({ before: future, statuses: ['done'], limit: 2 });
        sizes.push(r.tasks);
        if (!r.more) break;
      }
      expect(sizes).toEqual([2, 2, 1]);
      expect((await b.counts()).tasks.done).toBe(0);
      for (const bad of [{ statuses: ['ready'] }, { statuses: [] }, { limit: 0 }, { limit: 10_001 }]) {
        const e = await rejection(b.pruneBatch({ before: future, limit: 10, ...bad } as Parameters<Board['pruneBatch']>[0]));
        expect(e).toBeInstanceOf(BoardInputError);
        expect(e.message).toMatch(/^prune: /);
      }
    });

    it('never a cancelled task whose worker is still stopping (its run not ended and accounted)', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const [c] = await b.claimBatch(1, Date.now(), LOG);
      await b.recordSpawns([{ runId: c!.run.id, info: spawnInfo(7000) }], Date.now());
      await b.cancelTask(t.id);
      const future = Date.now() + 60_000;
      expect((await b.pruneBatch({ before: future, limit: 10 })).tasks).toBe(0);
      await b.beginReclaim(c!.run.id, 'cancelled', Date.now());
      await b.recordExits([{ runId: c!.run.id, at: Date.now(), gone: true, outcomeIfUnreported: 'cancelled' }]);
      expect((await b.pruneBatch({ before: future, limit: 10 })).tasks, 'ended but not accounted yet').toBe(0);
      await accountAll(b, Date.now());
      expect((await b.pruneBatch({ before: future, limit: 10 })).tasks).toBe(1);
    });
  });
}
