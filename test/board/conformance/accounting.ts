/**
 * The accounting contract: a run is accounted once, after its processes are gone; applyAccountingBatch
 * commits the counter, backoff and error with the requeue (or the block at the limit, or done);
 * with the policies, N crashes requeue with growing backoff and block at the limit.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { type AccountAction, type Board } from '@kanban-supervisor/board';
import { retryDelayMs } from '@kanban-supervisor/policies';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { LOG, POLICY, spawnInfo, accountAll, useBoard } from './helpers.js';

/** Registers the `accounting` block. */
export function accountingConformance(factory: BoardFactory): void {
  describe('accounting', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, claimOne, running, snapshot, task, kinds } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('a failed run is accounted only once its processes are gone; requeue commits counter, backoff and error with it', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      await b.report(cred, { outcome: 'failed', error: 'boom' }, now + 1);
      expect(await b.unaccountedRuns()).toEqual([]);
      expect(await b.claimBatch(1, now + 1_000_000, LOG)).toEqual([]);
      await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: 1, signal: null, gone: true }]);
      const [u] = await b.unaccountedRuns();
      expect(u!.run).toMatchObject({ id: claim.run.id, outcome: 'failed', error: 'boom' });
      expect(u!.task).toMatchObject({ id: t.id, status: 'running', consecutiveFailures: 0, currentRunId: claim.run.id });
      const nb = now + 60_000;
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: nb, counted: true } }], now + 3);
      const want = { status: 'ready', consecutiveFailures: 1, notBefore: nb, lastError: 'boom', currentRunId: null, updatedAt: now + 3 };
      expect(await task(t.id)).toMatchObject(want);
      const other = await h.openAnother();
      expect(await task(t.id, other)).toMatchObject(want);
      expect((await b.getRun(claim.run.id))!.accountedAt).toBe(now + 3);
      expect(await b.unaccountedRuns()).toEqual([]);
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({
        kind: 'requeued',
        runId: claim.run.id,
        data: { outcome: 'failed', consecutive_failures: 1, not_before: nb, counted: true },
      });
      expect(await b.claimBatch(1, nb - 1, LOG)).toEqual([]);
      const next = await claimOne(nb, other);
      expect(next.task.id).toBe(t.id);
      expect((await b.showTask(t.id))!.events.at(-1)!.data).toEqual({ attempt: 2 });
    });

    it('an uncounted requeue keeps the counter and the last error', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: 'supervisor shut down' }]);
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'requeue', consecutiveFailures: 0, notBefore: now, counted: false } }], now);
      expect(await task(t.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: now });
    });

    it('block at the limit: the task is blocked with the reason and the counter', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
      const reason = 'crashed 2 times in a row (limit 2): exit 1';
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 2, reason } }], now + 1);
      expect(await task(t.id)).toMatchObject({ status: 'blocked', consecutiveFailures: 2, lastError: reason, currentRunId: null });
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'blocked', runId: claim.run.id, data: { reason, consecutive_failures: 2 } });
      expect(await b.claimBatch(1, now + 1_000_000, LOG)).toEqual([]);
    });

    it('done resets the counter and the last error', async () => {
      await skill();
      const now = Date.now();
      const first = await running(now);
      await b.recordExits([{ runId: first.claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 3' }]);
      await accountAll(b, now);
      expect(await task(first.task.id)).toMatchObject({ consecutiveFailures: 1, lastError: 'exit 3' });
      const c = await claimOne(now + 1000);
      await b.recordExits([{ runId: c.run.id, at: now + 1001, gone: true, outcomeIfUnreported: 'completed' }]);
      expect(await accountAll(b, now + 1002)).toEqual([{ runId: c.run.id, action: { action: 'done', consecutiveFailures: 0 } }]);
      expect(await task(first.task.id)).toMatchObject({ status: 'done', consecutiveFailures: 0, lastError: null, currentRunId: null });
      expect((await kinds(first.task.id)).at(-1)).toBe('done');
    });

    it('a run is accounted only once: a second decision for it changes nothing', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
      const requeue: AccountAction = { action: 'requeue', consecutiveFailures: 1, notBefore: now + 10, counted: true };
      await b.applyAccountingBatch([{ runId: claim.run.id, action: requeue }], now + 1);
      const once = await snapshot(b, t.id);
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 9, reason: 'again' } }], now + 2);
      await b.applyAccountingBatch([{ runId: claim.run.id, action: requeue }], now + 3);
      expect(await snapshot(b, t.id)).toBe(once);
      expect((await b.getRun(claim.run.id))!.accountedAt).toBe(now + 1);
      await b.applyAccountingBatch([{ runId: 'r-none', action: requeue }], now); // unknown run: nothing
      await b.applyAccountingBatch([], now);
      expect(await snapshot(b, t.id)).toBe(once);
    });

    it('a task cancelled meanwhile is left cancelled, whatever was decided; its run is accounted and let go', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
      await b.cancelTask(t.id); // after the run ended, before it was accounted
      const [u] = await b.unaccountedRuns();
      expect(u!.task).toMatchObject({ status: 'cancelled', currentRunId: claim.run.id });
      // A stale decision (made before the cancel) must not bring the task back.
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: now, counted: true } }], now + 1);
      expect(await task(t.id)).toMatchObject({ status: 'cancelled', currentRunId: null, consecutiveFailures: 0 });
      expect((await b.getRun(claim.run.id))!.accountedAt).toBe(now + 1);
      expect(await kinds(t.id)).not.toContain('requeued');
      expect(await b.claimBatch(1, now + 1_000_000, LOG)).toEqual([]);
      expect(await b.idle()).toBe(true);
    });

    it('several runs are accounted in one batch', async () => {
      await skill();
      const now = Date.now();
      const a = await running(now, 'a');
      const c = await running(now, 'c');
      await b.report(c.cred, { outcome: 'deferred', seconds: 30, reason: 'later' }, now);
      await b.recordExits([
        { runId: a.claim.run.id, at: now + 1, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 2' },
        { runId: c.claim.run.id, at: now + 1, gone: true, outcomeIfUnreported: 'crashed' },
      ]);
      const decided = await accountAll(b, now + 2);
      expect(Object.fromEntries(decided.map((d) => [d.runId, d.action]))).toEqual({
        [a.claim.run.id]: { action: 'requeue', consecutiveFailures: 1, notBefore: now + 1002, counted: true },
        [c.claim.run.id]: { action: 'requeue', consecutiveFailures: 0, notBefore: now + 30_000, counted: false },
      });
      expect(await task(a.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 1, lastError: 'exit 2', notBefore: now + 1002 });
      expect(await task(c.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: now + 30_000 });
      expect(await b.unaccountedRuns()).toEqual([]);
    });

    it('with the policies: N crashes in a row with limit L requeue with growing backoff, and block at the L-th', async () => {
      await skill();
      const L = 3;
      const t = await b.createTask({ skill: 'echo', title: 'crashes' });
      let now = Date.now();
      const attempts: number[] = [];
      for (let i = 1; i <= L; i++) {
        const c = await claimOne(now);
        expect(c.task.id).toBe(t.id);
        expect(c.task.consecutiveFailures).toBe(i - 1); // the counter was committed before this claim
        await b.recordSpawns([{ runId: c.run.id, info: spawnInfo(5000 + i) }], now);
        await b.recordExits([{ runId: c.run.id, at: now + 10, exitCode: null, signal: 'SIGKILL', gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'killed by SIGKILL' }]);
        const [d] = await accountAll(b, now + 20, { ...POLICY, failureLimit: L });
        const after = await task(t.id);
        if (i < L) {
          const notBefore = now + 20 + retryDelayMs(i, POLICY.backoff);
          expect(d!.action).toEqual({ action: 'requeue', consecutiveFailures: i, notBefore, counted: true });
          expect(after).toMatchObject({ status: 'ready', consecutiveFailures: i, notBefore, lastError: 'killed by SIGKILL' });
          expect(await b.claimBatch(1, notBefore - 1, LOG)).toEqual([]);
          now = notBefore;
        } else {
          expect(d!.action).toEqual({ action: 'block', consecutiveFailures: L, reason: `crashed ${L} times in a row (limit ${L}): killed by SIGKILL` });
          expect(after).toMatchObject({ status: 'blocked', consecutiveFailures: L, lastError: `crashed ${L} times in a row (limit ${L}): killed by SIGKILL` });
        }
      }
      expect(await b.claimBatch(1, now + 10_000_000, LOG)).toEqual([]);
      const runs = await b.listRuns({ taskId: t.id });
      expect(runs.length).toBe(L);
      expect(runs.every((r) => r.outcome === 'crashed' && r.accountedAt !== null)).toBe(true);
      for (const e of (await b.showTask(t.id))!.events) if (e.kind === 'claimed') attempts.push((e.data as { attempt: number }).attempt);
      expect(attempts).toEqual([1, 2, 3]);
    });

    it('with the policies: a task\'s own max retries wins over the limit; deferred and abandoned runs do not count', async () => {
      await skill();
      const now = Date.now();
      const once = await running(now, 'once', { maxRetries: 1 });
      await b.recordExits([{ runId: once.claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
      await accountAll(b, now);
      expect(await task(once.task.id)).toMatchObject({ status: 'blocked', consecutiveFailures: 1, lastError: 'crashed 1 time in a row (limit 1)' });

      const d = await running(now, 'defers');
      await b.report(d.cred, { outcome: 'deferred', seconds: 30 }, now);
      await b.recordExits([{ runId: d.claim.run.id, at: now, gone: true }]);
      await accountAll(b, now);
      expect(await task(d.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, notBefore: now + 30_000 });

      const again = await claimOne(now + 30_000); // the same task, once due
      expect(again.task.id).toBe(d.task.id);
      expect(await b.beginReclaim(again.run.id, 'abandoned', now + 30_001)).toBe(true); // the supervisor shut down
      await b.recordExits([{ runId: again.run.id, at: now + 30_002, gone: true, signal: 'SIGTERM', outcomeIfUnreported: 'abandoned' }]);
      await accountAll(b, now + 30_003);
      expect(await task(d.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, notBefore: now + 30_003 });
    });
  });
}
