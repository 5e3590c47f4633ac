/**
 * The tasks contract: createTask and its validation, getTask/showTask/listTasks, and the operator's
 * transitions (cancel, block, unblock, retry) with the states each one accepts or refuses.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board, type Task } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { LOG, spawnInfo, credOf, nextMs, rejection, accountAll, useBoard } from './helpers.js';

/** Registers the `tasks` block. */
export function tasksConformance(factory: BoardFactory): void {
  describe('tasks', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, claimOne, running, task, kinds } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('createTask makes a ready task with its defaults and a `created` event', async () => {
      await skill();
      const before = Date.now();
      const t = await b.createTask({ skill: 'echo' });
      const after = Date.now();
      expect(t).toEqual({
        id: expect.any(String),
        title: 'echo',
        skill: 'echo',
        payload: null,
        status: 'ready',
        priority: 0,
        createdAt: expect.any(Number),
        updatedAt: t.createdAt,
        notBefore: 0,
        consecutiveFailures: 0,
        maxRetries: null,
        maxRuntimeSeconds: null,
        lastError: null,
        result: null,
        currentRunId: null,
        key: null,
      });
      expect(t.createdAt).toBeGreaterThanOrEqual(before);
      expect(t.createdAt).toBeLessThanOrEqual(after);
      expect(await b.getTask(t.id)).toEqual(t);
      const shown = (await b.showTask(t.id))!;
      expect(shown.runs).toEqual([]);
      expect(shown.events).toEqual([{ id: expect.any(Number), taskId: t.id, runId: null, kind: 'created', data: { skill: 'echo', priority: 0 }, at: t.createdAt }]);
    });

    it('createTask keeps every field given, and the payload as JSON', async () => {
      await skill();
      const payload = { list: [1, 'two', null, { deep: true }], text: 'ünïcode', n: -1.5 };
      const t = await b.createTask({ skill: 'echo', title: 'full', payload, priority: -7, maxRuntimeSeconds: 2.5, maxRetries: 5, notBefore: 1_700_000_000_000 });
      expect(t).toMatchObject({ title: 'full', payload, priority: -7, maxRuntimeSeconds: 2.5, maxRetries: 5, notBefore: 1_700_000_000_000, status: 'ready' });
      const other = await h.openAnother();
      expect(await other.getTask(t.id)).toEqual(t);
      expect((await b.createTask({ skill: 'echo', payload: 'just a string' })).payload).toBe('just a string');
    });

    it('refuses an unknown skill naming it, the board and the registered skills', async () => {
      await skill('echo');
      await skill('alpha');
      const err = await rejection(b.createTask({ skill: 'nope' }));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain('unknown skill "nope"');
      expect(err.message).toContain(b.location);
      expect(err.message).toContain('registered: alpha, echo');
      expect(await b.listTasks()).toEqual([]);
    });

    it.each([
      ['a fractional priority', { priority: 1.5 }, 'priority must be an integer'],
      ['max retries 0', { maxRetries: 0 }, 'max retries must be'],
      ['a negative max runtime', { maxRuntimeSeconds: -1 }, 'max runtime must be'],
      ['a payload that is not JSON', { payload: { big: 10n } as never }, 'payload is not serialisable as JSON'],
    ])('refuses %s with BoardInputError, creating nothing', async (_what, bad, msg) => {
      await skill();
      const err = await rejection(b.createTask({ skill: 'echo', ...bad }));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(msg);
      expect(await b.listTasks()).toEqual([]);
      expect((await b.counts()).tasks.ready).toBe(0);
    });

    it('getTask and showTask answer null for an unknown id', async () => {
      expect(await b.getTask('t-none')).toBeNull();
      expect(await b.showTask('t-none')).toBeNull();
      expect(await b.getRun('r-none')).toBeNull();
    });

    it('listTasks filters by status and skill, oldest first, up to the limit', async () => {
      await skill('echo');
      await skill('other');
      const made: Task[] = [];
      for (const [i, s] of ['echo', 'other', 'echo', 'echo', 'other'].entries()) {
        made.push(await b.createTask({ skill: s, title: `t${i}` }));
        await nextMs();
      }
      await b.blockTask(made[2]!.id, 'held');
      await b.cancelTask(made[4]!.id);
      const ids = (ts: Task[]) => ts.map((t) => t.id);
      expect(ids(await b.listTasks())).toEqual(ids(made));
      expect(ids(await b.listTasks({ skill: 'echo' }))).toEqual([made[0]!.id, made[2]!.id, made[3]!.id]);
      expect(ids(await b.listTasks({ status: 'ready' }))).toEqual([made[0]!.id, made[1]!.id, made[3]!.id]);
      expect(ids(await b.listTasks({ status: 'ready', skill: 'other' }))).toEqual([made[1]!.id]);
      expect(ids(await b.listTasks({ status: 'blocked' }))).toEqual([made[2]!.id]);
      expect(ids(await b.listTasks({ status: 'cancelled' }))).toEqual([made[4]!.id]);
      expect(ids(await b.listTasks({ status: 'done' }))).toEqual([]);
      expect(ids(await b.listTasks({ limit: 2 }))).toEqual([made[0]!.id, made[1]!.id]);
      expect(ids(await b.listTasks({ skill: 'nope' }))).toEqual([]);
      const err = await rejection(b.listTasks({ status: 'sleeping' as never }));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain('unknown status "sleeping"');
    });

    it('showTask lists the runs in order and the task\'s events in the order they happened', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo', title: 'life' });
      await nextMs();
      const other = await b.createTask({ skill: 'echo', title: 'other' });
      const now = Date.now();
      const c1 = await claimOne(now);
      expect(c1.task.id).toBe(t.id);
      await b.recordSpawns([{ runId: c1.run.id, info: spawnInfo(4001) }], now + 1);
      await b.workerEvent(credOf(c1), 'step', { n: 1 }, now + 2);
      await b.report(credOf(c1), { outcome: 'failed', error: 'boom' }, now + 3);
      await b.recordExits([{ runId: c1.run.id, at: now + 4, exitCode: 1, signal: null, gone: true }]);
      expect((await accountAll(b, now + 5)).map((d) => d.action.action)).toEqual(['requeue']);
      const c2 = await claimOne(now + 1005); // the backoff of one failure, and t is older than `other`
      expect(c2.task.id).toBe(t.id);
      await b.report(credOf(c2), { outcome: 'completed', result: { ok: true } }, now + 1006);
      await b.recordExits([{ runId: c2.run.id, at: now + 1007, exitCode: 0, signal: null, gone: true }]);
      expect((await accountAll(b, now + 1008)).map((d) => d.action.action)).toEqual(['leave']);

      const shown = (await b.showTask(t.id))!;
      expect(shown.task).toMatchObject({ status: 'done', result: { ok: true }, consecutiveFailures: 0, lastError: null, currentRunId: null });
      expect(shown.runs.map((r) => [r.id, r.status, r.outcome, r.startedAt, r.endedAt, r.exitedAt, r.accountedAt])).toEqual([
        [c1.run.id, 'ended', 'failed', now, now + 3, now + 4, now + 5],
        [c2.run.id, 'ended', 'completed', now + 1005, now + 1006, now + 1007, now + 1008],
      ]);
      expect(shown.events.map((e) => [e.kind, e.runId, e.at])).toEqual([
        ['created', null, t.createdAt],
        ['claimed', c1.run.id, now],
        ['spawned', c1.run.id, now + 1],
        ['step', c1.run.id, now + 2],
        ['reported', c1.run.id, now + 3],
        ['exited', c1.run.id, now + 4],
        ['requeued', c1.run.id, now + 5],
        ['claimed', c2.run.id, now + 1005],
        ['reported', c2.run.id, now + 1006],
        ['exited', c2.run.id, now + 1007],
      ]);
      const data = shown.events.map((e) => e.data);
      expect(data[1]).toEqual({ attempt: 1 });
      expect(data[2]).toEqual({ pid: 4001 });
      expect(data[3]).toEqual({ n: 1 });
      expect(data[4]).toEqual({ outcome: 'failed', error: 'boom' });
      expect(data[5]).toEqual({ exit_code: 1, signal: null, pid: 4001 });
      expect(data[6]).toEqual({ outcome: 'failed', consecutive_failures: 1, not_before: now + 1005, counted: true });
      expect(data[7]).toEqual({ attempt: 2 });
      const ids = shown.events.map((e) => e.id);
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
      expect(shown.events.every((e) => e.taskId === t.id)).toBe(true);
      expect(await kinds(other.id)).toEqual(['created']);
    });

    it('cancel: a ready or blocked task is cancelled once; a done task is refused; an unknown id is refused', async () => {
      await skill();
      const ready = await b.createTask({ skill: 'echo' });
      const c = await b.cancelTask(ready.id);
      expect(c).toMatchObject({ id: ready.id, status: 'cancelled', currentRunId: null });
      expect(await b.getTask(ready.id)).toEqual(c);
      const again = await b.cancelTask(ready.id);
      expect(again.status).toBe('cancelled');
      expect(await kinds(ready.id)).toEqual(['created', 'cancelled']);
      expect((await b.showTask(ready.id))!.events[1]!.data).toEqual({ from: 'ready' });

      const blocked = await b.createTask({ skill: 'echo' });
      await b.blockTask(blocked.id, 'wait');
      expect((await b.cancelTask(blocked.id)).status).toBe('cancelled');

      const { task: done, cred } = await running(Date.now());
      await b.report(cred, { outcome: 'completed' }, Date.now());
      const err = await rejection(b.cancelTask(done.id));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(`task ${done.id} is done; it cannot be cancelled`);
      expect((await task(done.id)).status).toBe('done');

      const unknown = await rejection(b.cancelTask('t-none'));
      expect(unknown).toBeInstanceOf(BoardInputError);
      expect(unknown.message).toContain('no task "t-none"');
      expect((await b.claimBatch(10, Date.now(), LOG)).length).toBe(0);
    });

    it('cancel: a running task is cancelled and keeps its run until the supervisor reclaims it', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      const c = await b.cancelTask(t.id);
      expect(c).toMatchObject({ status: 'cancelled', currentRunId: claim.run.id });
      const live = await b.liveRuns();
      expect(live.map((r) => [r.id, r.taskStatus])).toEqual([[claim.run.id, 'cancelled']]);
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'cancelled', runId: claim.run.id, data: { from: 'running' } });
    });

    it('block: only a ready (or already blocked) task, with a reason; a blocked task is never claimed', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const blank = await rejection(b.blockTask(t.id, '  '));
      expect(blank).toBeInstanceOf(BoardInputError);
      expect(blank.message).toContain('a block needs a reason');
      expect((await task(t.id)).status).toBe('ready');
      expect(await b.blockTask(t.id, 'waiting for the API key')).toMatchObject({ status: 'blocked', lastError: 'waiting for the API key' });
      expect((await b.blockTask(t.id, 'still waiting')).lastError).toBe('still waiting');
      expect((await b.showTask(t.id))!.events.slice(1).map((e) => [e.kind, e.data])).toEqual([
        ['blocked', { reason: 'waiting for the API key', by: 'operator' }],
        ['blocked', { reason: 'still waiting', by: 'operator' }],
      ]);
      expect(await b.claimBatch(5, Date.now(), LOG)).toEqual([]);

      const { task: r } = await running(Date.now());
      const err = await rejection(b.blockTask(r.id, 'no'));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(`task ${r.id} is running; only a ready task can be blocked`);
      const cancelled = await b.createTask({ skill: 'echo' });
      await b.cancelTask(cancelled.id);
      expect(await rejection(b.blockTask(cancelled.id, 'no'))).toBeInstanceOf(BoardInputError);
      expect((await task(cancelled.id)).status).toBe('cancelled');
    });

    it('unblock: a blocked task becomes ready with its counter, error and backoff cleared; anything else is refused', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 1' }]);
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 2, reason: 'crashed twice' } }], now);
      expect(await task(t.id)).toMatchObject({ status: 'blocked', consecutiveFailures: 2, lastError: 'crashed twice' });
      const u = await b.unblockTask(t.id);
      expect(u).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: 0, currentRunId: null });
      expect((await kinds(t.id)).at(-1)).toBe('unblocked');
      const err = await rejection(b.unblockTask(t.id));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(`task ${t.id} is ready, not blocked`);
      expect((await claimOne(now + 1)).task.id).toBe(t.id);
    });

    it('retry: refused for a ready or running task, naming why', async () => {
      await skill();
      const later = await b.createTask({ skill: 'echo', notBefore: Date.now() + 3_600_000 });
      const e1 = await rejection(b.retryTask(later.id));
      expect(e1).toBeInstanceOf(BoardInputError);
      expect(e1.message).toContain(`task ${later.id} is ready (waiting until`);
      await b.cancelTask(later.id);
      const { task: r, claim } = await running(Date.now());
      const e2 = await rejection(b.retryTask(r.id));
      expect(e2).toBeInstanceOf(BoardInputError);
      expect(e2.message).toContain(`task ${r.id} is running (run ${claim.run.id})`);
      expect((await task(r.id)).status).toBe('running');
      expect(await rejection(b.retryTask('t-none'))).toBeInstanceOf(BoardInputError);
    });

    it('retry: a blocked task becomes ready with its counter reset (event `retried`)', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
      await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 3, reason: 'crashed 3 times' } }], now);
      const r = await b.retryTask(t.id);
      expect(r).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: 0, result: null, currentRunId: null });
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'retried', runId: null, data: { from: 'blocked', consecutive_failures: 3 } });
      expect((await claimOne(now + 1)).task.id).toBe(t.id);
    });

    it('retry: refused while a run of the task is not accounted (cancelled, its worker stopping), allowed once it is', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.cancelTask(t.id);
      const refused = async () => {
        const err = await rejection(b.retryTask(t.id));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`task ${t.id} is cancelled but its run ${claim.run.id} has not ended yet`);
        expect((await task(t.id)).status).toBe('cancelled');
      };
      await refused(); // the worker is alive
      expect(await b.beginReclaim(claim.run.id, 'cancelled', now + 1)).toBe(true);
      await refused(); // SIGTERM sent
      await b.recordExits([{ runId: claim.run.id, at: now + 2, signal: 'SIGTERM', gone: false, outcomeIfUnreported: 'cancelled' }]);
      await refused(); // ended, its process group not confirmed gone
      await b.recordExits([{ runId: claim.run.id, at: now + 3, gone: true }]);
      await refused(); // gone, not accounted
      expect((await accountAll(b, now + 4)).map((d) => d.action)).toEqual([{ action: 'leave' }]);
      const r = await b.retryTask(t.id);
      expect(r).toMatchObject({ status: 'ready', currentRunId: null, consecutiveFailures: 0 });
      const again = await claimOne(now + 5);
      expect(again.task.id).toBe(t.id);
      expect(again.run.id).not.toBe(claim.run.id);
    });

    it('retry: a done task whose worker is still exiting is refused; once accounted it runs again, its result cleared', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      await b.report(cred, { outcome: 'completed', result: 42 }, now + 1);
      expect(await task(t.id)).toMatchObject({ status: 'done', result: 42 });
      const err = await rejection(b.retryTask(t.id));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(`run ${claim.run.id} has not ended yet`);
      await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: 0, gone: true }]);
      await accountAll(b, now + 3);
      const r = await b.retryTask(t.id);
      expect(r).toMatchObject({ status: 'ready', result: null, currentRunId: null });
    });
  });
}
