/**
 * The transactions contract (BoardTx): writes invisible to other connections until commit, a
 * commit that leaves the transaction usable, close that rolls back, a failed write that undoes only
 * itself, board-object writes refused while a transaction is open, longestHoldMs.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { LOG, spawnInfo, sleep, nextMs, rejection, accountAll, useBoard } from './helpers.js';

/** Registers the `transactions (BoardTx)` block. */
export function transactionsConformance(factory: BoardFactory): void {
  describe('transactions (BoardTx)', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, claimOne, running, snapshot, task, kinds } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('every supervisor write of a transaction is invisible to another connection until commit, then all of it is there', async () => {
      await skill('echo');
      await skill('gone');
      const now = Date.now();
      const lost = await b.createTask({ skill: 'gone', title: 'lost' });
      await b.removeSkill('gone');
      const run = await running(now, 'to-reclaim');
      const end = await running(now, 'to-account');
      await b.report(end.cred, { outcome: 'failed', error: 'boom' }, now);
      await b.recordExits([{ runId: end.claim.run.id, at: now, gone: true }]);
      const fresh = await b.createTask({ skill: 'echo', title: 'fresh' });
      const other = await h.openAnother();
      const ids = [lost.id, run.task.id, end.task.id, fresh.id];
      const before = await snapshot(other, ...ids);

      const tx = b.begin();
      try {
        expect((await tx.blockUnknownSkillTasks(now + 1)).map((x) => x.taskId)).toEqual([lost.id]);
        const claims = await tx.claimBatch(5, now + 1, LOG);
        expect(claims.map((c) => c.task.id)).toEqual([fresh.id]);
        const c = claims[0]!;
        await tx.recordSpawns([{ runId: c.run.id, info: spawnInfo(6000) }], now + 2);
        expect(await tx.beginReclaim(run.claim.run.id, 'timed_out', now + 2)).toBe(true);
        await tx.recordSigkill(run.claim.run.id, now + 3);
        await tx.recordExits([{ runId: run.claim.run.id, at: now + 4, signal: 'SIGKILL', gone: true, outcomeIfUnreported: 'timed_out', errorIfUnreported: 'max runtime exceeded' }]);
        await tx.applyAccountingBatch([{ runId: end.claim.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: now + 1000, counted: true } }], now + 5);
        await tx.appendEvent(fresh.id, c.run.id, 'note', { x: 1 }, now + 6);
        await tx.setOwner({ pid: 77, host: 'host-a', startedAt: now });
        // The transaction's own reads see its writes.
        expect((await tx.liveRuns()).map((r) => [r.id, r.status, r.pid])).toEqual([[c.run.id, 'running', 6000]]);
        expect((await tx.unaccountedRuns()).map((u) => [u.run.id, u.run.outcome])).toEqual([[run.claim.run.id, 'timed_out']]);
        // Another connection sees none of them.
        expect(await snapshot(other, ...ids)).toBe(before);
        await tx.commit();
        expect(await task(lost.id, other)).toMatchObject({ status: 'blocked' });
        expect(await task(fresh.id, other)).toMatchObject({ status: 'running', currentRunId: c.run.id });
        expect(await other.getRun(c.run.id)).toMatchObject({ status: 'running', pid: 6000 });
        expect(await other.getRun(run.claim.run.id)).toMatchObject({ status: 'ended', outcome: 'timed_out', stopReason: 'timed_out', sigtermAt: now + 2, sigkillAt: now + 3, exitedAt: now + 4 });
        expect(await task(end.task.id, other)).toMatchObject({ status: 'ready', consecutiveFailures: 1, notBefore: now + 1000, lastError: 'boom' });
        expect((await other.showTask(fresh.id))!.events.at(-1)).toMatchObject({ kind: 'note', data: { x: 1 } });
        expect(await other.getOwner()).toMatchObject({ pid: 77, host: 'host-a', startedAt: now });
        expect(await snapshot(b, ...ids)).toBe(await snapshot(other, ...ids));
      } finally {
        tx.close();
      }
    });

    it(`the board object's own reads ${factory.differences.boardReadsSeeOpenTransaction ? 'see' : 'do not see'} its open transaction's writes (differences.boardReadsSeeOpenTransaction)`, async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const tx = b.begin();
      try {
        await tx.claimBatch(1, Date.now(), LOG);
        const seen = (await task(t.id)).status;
        expect(seen).toBe(factory.differences.boardReadsSeeOpenTransaction ? 'running' : 'ready');
        await tx.commit();
        expect((await task(t.id)).status).toBe('running');
      } finally {
        tx.close();
      }
    });

    it('a commit leaves the transaction usable: later writes commit on their own; an empty commit is a no-op', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const other = await h.openAnother();
      const tx = b.begin();
      try {
        await tx.commit();
        await tx.appendEvent(t.id, null, 'first', null, 1);
        await tx.commit();
        expect(await kinds(t.id, other)).toEqual(['created', 'first']);
        await tx.appendEvent(t.id, null, 'second', null, 2);
        expect(await kinds(t.id, other)).toEqual(['created', 'first']);
        await tx.commit();
        expect(await kinds(t.id, other)).toEqual(['created', 'first', 'second']);
        await tx.commit();
      } finally {
        tx.close();
      }
    });

    it('a relaxed transaction (TxOptions.relaxed: bare heartbeats) commits like any other; the ones after it, and the board\'s own writes, as before', async () => {
      await skill();
      const now = Date.now();
      const a = await running(now, 'a');
      const other = await h.openAnother();
      const tx = b.begin({ relaxed: true });
      try {
        await tx.heartbeat(a.cred, undefined, now + 10);
        expect((await other.getRun(a.claim.run.id))!.heartbeatAt).not.toBe(now + 10);
        await tx.commit();
        expect((await other.getRun(a.claim.run.id))!.heartbeatAt).toBe(now + 10);
        // The same object commits again (a new relaxed transaction).
        await tx.heartbeat(a.cred, undefined, now + 20);
        await tx.commit();
        expect((await other.getRun(a.claim.run.id))!.heartbeatAt).toBe(now + 20);
      } finally {
        tx.close();
      }
      const durable = b.begin();
      try {
        await durable.heartbeat(a.cred, { step: 1 }, now + 30);
        await durable.commit();
      } finally {
        durable.close();
      }
      await b.report(a.cred, { outcome: 'completed', result: 1 }, now + 40);
      expect(await other.getRun(a.claim.run.id)).toMatchObject({ heartbeatAt: now + 30, progress: { step: 1 } });
      expect(await task(a.task.id, other)).toMatchObject({ status: 'done' });
    });

    it('close rolls back what was not committed and ends the transaction; the board writes again', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const other = await h.openAnother();
      const tx = b.begin();
      await tx.appendEvent(t.id, null, 'kept', null, 1);
      await tx.commit();
      expect((await tx.claimBatch(1, Date.now(), LOG)).length).toBe(1);
      await tx.appendEvent(t.id, null, 'dropped', null, 2);
      tx.close();
      for (const board of [b, other]) {
        expect(await task(t.id, board)).toMatchObject({ status: 'ready', currentRunId: null });
        expect(await kinds(t.id, board)).toEqual(['created', 'kept']);
        expect(await board.listRuns()).toEqual([]);
      }
      expect(() => tx.close()).not.toThrow();
      expect(await rejection(tx.commit())).toBeInstanceOf(Error);
      expect(await rejection(tx.appendEvent(t.id, null, 'late', null, 3))).toBeInstanceOf(Error);
      expect(await rejection(tx.claimBatch(1, Date.now(), LOG))).toBeInstanceOf(Error);
      expect(await rejection(tx.liveRuns())).toBeInstanceOf(Error);
      expect(await kinds(t.id, other)).toEqual(['created', 'kept']);
      // The board object writes on its own again, and can open a new transaction.
      await b.appendEvent(t.id, null, 'after', null, 4);
      expect(await kinds(t.id, other)).toEqual(['created', 'kept', 'after']);
      const tx2 = b.begin();
      expect((await tx2.claimBatch(1, Date.now(), LOG)).length).toBe(1);
      await tx2.commit();
      tx2.close();
      expect((await task(t.id, other)).status).toBe('running');
    });

    it('a failed write inside a transaction undoes only itself', async () => {
      await skill();
      const t1 = await b.createTask({ skill: 'echo', title: 'one' });
      await nextMs();
      const t2 = await b.createTask({ skill: 'echo', title: 'two' });
      const other = await h.openAnother();
      const now = Date.now();
      const tx = b.begin();
      try {
        await tx.appendEvent(t1.id, null, 'before', null, now);
        let calls = 0;
        const failing = (runId: string) => {
          if (++calls === 2) throw new Error('no log folder');
          return LOG(runId);
        };
        // The first claim of this call was written when the second failed: both go.
        expect((await rejection(tx.claimBatch(2, now, failing))).message).toContain('no log folder');
        const refused = await rejection(tx.endUnspawned('r-none', 'spawn_failed', 'x', now));
        expect(refused).toBeInstanceOf(BoardInputError);
        expect(await tx.liveRuns()).toEqual([]);
        await tx.appendEvent(t1.id, null, 'after', null, now);
        await tx.commit();
      } finally {
        tx.close();
      }
      for (const id of [t1.id, t2.id]) expect(await task(id, other)).toMatchObject({ status: 'ready', currentRunId: null });
      expect(await other.listRuns()).toEqual([]);
      expect(await kinds(t1.id, other)).toEqual(['created', 'before', 'after']);
      expect(await kinds(t2.id, other)).toEqual(['created']);
      // And the board is still sound for the next claim.
      expect((await b.claimBatch(2, now, LOG)).map((c) => c.task.id)).toEqual([t1.id, t2.id]);
    });

    it('while a transaction is open, writes on the board object itself are refused and land nowhere; one transaction at a time', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const other = await h.openAnother();
      const now = Date.now();
      const tx = b.begin();
      const refusedWrites = () => [
        b.createTask({ skill: 'echo', title: 'refused' }),
        b.cancelTask(t.id),
        b.putSkill({ name: 'refused', argv: ['x'] }),
        b.appendEvent(t.id, null, 'refused', null, now),
        b.claimBatch(1, now, LOG),
        b.setOwner({ pid: 1, host: 'refused', startedAt: now }),
      ].map(rejection); // each awaited at once: a backend may refuse them in any order
      try {
        expect(() => b.begin()).toThrow(/transaction/);
        for (const w of refusedWrites()) expect((await w).message).toMatch(/transaction/);
        await tx.appendEvent(t.id, null, 'through-tx', null, now);
        for (const w of refusedWrites()) expect((await w).message).toMatch(/transaction/);
        await tx.commit();
        for (const w of refusedWrites()) expect((await w).message).toMatch(/transaction/); // still open after a commit
        expect((await b.getTask(t.id))!.id).toBe(t.id); // reads are not refused
      } finally {
        tx.close();
      }
      expect((await other.listTasks()).map((x) => [x.id, x.status])).toEqual([[t.id, 'ready']]);
      expect(await other.getSkill('refused')).toBeNull();
      expect(await other.getOwner()).toBeNull();
      expect(await kinds(t.id, other)).toEqual(['created', 'through-tx']);
      expect((await b.createTask({ skill: 'echo', title: 'after' })).title).toBe('after');
    });

    it('longestHoldMs is the longest a commit of this transaction held its writes open', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const tx = b.begin();
      try {
        expect(tx.longestHoldMs).toBe(0);
        await tx.appendEvent(t.id, null, 'slow', null, 1);
        await sleep(40);
        await tx.commit();
        const slow = tx.longestHoldMs;
        expect(slow).toBeGreaterThanOrEqual(35);
        await tx.appendEvent(t.id, null, 'quick', null, 2);
        await tx.commit();
        expect(tx.longestHoldMs).toBe(slow);
      } finally {
        tx.close();
      }
    });

    it('the counter and the requeue of a transaction land together at commit', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 1' }]);
      const other = await h.openAnother();
      const tx = b.begin();
      try {
        const [d] = await accountAll(tx, now + 1);
        expect(d!.action).toEqual({ action: 'requeue', consecutiveFailures: 1, notBefore: now + 1001, counted: true });
        expect(await tx.unaccountedRuns()).toEqual([]);
        expect(await task(t.id, other)).toMatchObject({ status: 'running', consecutiveFailures: 0, notBefore: 0 });
        await tx.commit();
      } finally {
        tx.close();
      }
      expect(await task(t.id, other)).toMatchObject({ status: 'ready', consecutiveFailures: 1, notBefore: now + 1001, lastError: 'exit 1' });
      expect(await other.claimBatch(1, now + 1000, LOG)).toEqual([]);
      expect((await claimOne(now + 1001, other)).task.consecutiveFailures).toBe(1);
    });
  });
}
