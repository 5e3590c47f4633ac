/**
 * Retention (issue 16): pruneBatch removes finished tasks (done, cancelled) last changed before a
 * time, with their runs, events and links, in bounded batches, and hands back their log files;
 * never a waiting, ready, running or blocked task, nor a task whose run has not ended and been
 * accounted, nor a parent of a task that is not finished.
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
      expect((await b.counts()).tasks).toEqual({ waiting: 0, ready: 1, running: 1, done: 0, blocked: 1, cancelled: 0 });
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

    it('task graph: never a parent of a task not finished (waiting, ready, running, blocked); once its children are finished it goes with its links', async () => {
      await skill();
      const old = Date.now() - 10 * 86_400_000;
      const future = Date.now() + 60_000;
      // Four done parents, each with a child that is not finished: waiting (on a blocked second
      // parent too), ready, running and blocked.
      const pW = await done('pW', old);
      const pR = await done('pR', old + 1);
      const pRun = await done('pRun', old + 2);
      const pB = await done('pB', old + 3);
      const held = await b.createTask({ skill: 'echo', title: 'held' });
      await b.blockTask(held.id, 'needs a key');
      const waiting = await b.createTask({ skill: 'echo', title: 'waiting', after: [pW.id, held.id] });
      expect(waiting.status).toBe('waiting');
      const running = await b.createTask({ skill: 'echo', title: 'running', after: [pRun.id], priority: 50 });
      const [c] = await b.claimBatch(1, Date.now(), LOG);
      expect(c!.task.id).toBe(running.id);
      const blocked = await b.createTask({ skill: 'echo', title: 'blocked', after: [pB.id] });
      await b.blockTask(blocked.id, 'why');
      const ready = await b.createTask({ skill: 'echo', title: 'ready', after: [pR.id] });
      expect(ready.status).toBe('ready');
      const r = await b.pruneBatch({ before: future, limit: 100 });
      expect(r).toMatchObject({ tasks: 0, links: 0, more: false });
      for (const p of [pW, pR, pRun, pB]) expect(await b.getTask(p.id), 'a parent of an unfinished task is kept').not.toBeNull();
      // The waiting child still says what holds it (its blocked parent) and still lists its done one.
      expect((await b.waitingFor([waiting.id])).map((w) => [w.parent.id, w.parent.status])).toEqual([[held.id, 'blocked']]);
      expect((await b.showTask(waiting.id))!.parents.map((x) => x.id).sort()).toEqual([pW.id, held.id].sort());

      // Cancel the waiting, ready and blocked children: their parents go with the links, the
      // parent of the running child stays; a cancelled child is itself pruned, its links too.
      for (const t of [waiting, ready, blocked]) await b.cancelTask(t.id);
      const r2 = await b.pruneBatch({ before: future, limit: 100 });
      expect(r2.tasks).toBe(6); // pW, pR, pB and the three cancelled children
      expect(r2.links).toBe(4); // waiting→pW, waiting→held, ready→pR, blocked→pB
      for (const gone of [pW.id, pR.id, pB.id, waiting.id, ready.id, blocked.id]) expect(await b.getTask(gone)).toBeNull();
      expect(await b.getTask(pRun.id)).not.toBeNull();
      // The blocked parent is never pruned; it has no children left.
      expect((await b.showTask(held.id))!.children).toEqual([]);
      expect((await b.showTask(running.id))!.parents.map((x) => x.id)).toEqual([pRun.id]);
    });

    it("task graph: a finished child keeps none of a pruned parent's links; the child itself may stay", async () => {
      await skill();
      const old = Date.now() - 10 * 86_400_000;
      const p = await done('p', old);
      const child = await b.createTask({ skill: 'echo', title: 'child', after: [p.id] });
      await b.cancelTask(child.id); // finished now: younger than the cut below
      const r = await b.pruneBatch({ before: Date.now() - 86_400_000, limit: 100 });
      expect(r).toMatchObject({ tasks: 1, links: 1 });
      expect(await b.getTask(p.id)).toBeNull();
      const d = (await b.showTask(child.id))!;
      expect(d.parents).toEqual([]);
      // A retry of the child has nothing left to wait for: it is ready.
      expect((await b.retryTask(child.id)).status).toBe('ready');
    });
  });
}
