/**
 * The contracts of events (appendEvent, worker event validation), the owner record
 * (setOwner/getOwner) and idle/counts.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board } from '@kanban-supervisor/board';
import { TASK_STATUSES } from '@kanban-supervisor/policies';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { rejection, accountAll, useBoard } from './helpers.js';

/** Registers the `events`, `owner` and `idle and counts` blocks. */
export function eventsOwnerCountsConformance(factory: BoardFactory): void {
  describe('events', () => {
    let b: Board;
    const { skill, running, snapshot, kinds } = useBoard(factory, (opened) => (b = opened.board));

    it('appendEvent adds to the task\'s events, listed in the order written (not by time stamp)', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      const u = await b.createTask({ skill: 'echo' });
      for (let i = 0; i < 5; i++) await b.appendEvent(t.id, null, 'note', { i }, now);
      await b.appendEvent(u.id, null, 'elsewhere', null, now);
      await b.appendEvent(t.id, claim.run.id, 'earlier', null, now - 60_000);
      const events = (await b.showTask(t.id))!.events;
      expect(events.slice(0, 3).map((e) => e.kind)).toEqual(['created', 'claimed', 'spawned']);
      expect(events.slice(3).map((e) => [e.kind, e.runId, e.data, e.at])).toEqual([
        ['note', null, { i: 0 }, now],
        ['note', null, { i: 1 }, now],
        ['note', null, { i: 2 }, now],
        ['note', null, { i: 3 }, now],
        ['note', null, { i: 4 }, now],
        ['earlier', claim.run.id, null, now - 60_000],
      ]);
      expect(await kinds(u.id)).toEqual(['created', 'elsewhere']);
    });

    it.each(['', 'bad kind', '-x', 'k'.repeat(65), 'a/b'])('a worker event of kind %j is refused with BoardInputError, writing nothing', async (bad) => {
      await skill();
      const { task: t, cred } = await running(Date.now());
      const before = await snapshot(b, t.id);
      const err = await rejection(b.workerEvent(cred, bad, null, Date.now()));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(`event kind ${JSON.stringify(bad)} is invalid`);
      expect(await snapshot(b, t.id)).toBe(before);
    });

    it('a worker event or heartbeat whose data is not JSON is refused with BoardInputError', async () => {
      await skill();
      const { task: t, cred } = await running(Date.now());
      const before = await snapshot(b, t.id);
      const e1 = await rejection(b.workerEvent(cred, 'note', { n: 1n } as never, Date.now()));
      expect(e1).toBeInstanceOf(BoardInputError);
      expect(e1.message).toContain('event data is not serialisable as JSON');
      const e2 = await rejection(b.heartbeat(cred, { n: 1n } as never, Date.now()));
      expect(e2).toBeInstanceOf(BoardInputError);
      expect(e2.message).toContain('progress is not serialisable as JSON');
      expect(await snapshot(b, t.id)).toBe(before);
    });
  });

  describe('owner', () => {
    let h: BoardUnderTest;
    let b: Board;
    useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('setOwner records the owner (state `running` unless given), getOwner reads it on every connection, a new setOwner replaces it', async () => {
      expect(await b.getOwner()).toBeNull();
      const before = Date.now();
      await b.setOwner({ pid: 4242, host: 'host-a', startedAt: 1_700_000_000_000 });
      const after = Date.now();
      const o = (await b.getOwner())!;
      expect(o).toEqual({ pid: 4242, host: 'host-a', startedAt: 1_700_000_000_000, seenAt: expect.any(Number), state: 'running', detail: null });
      expect(o.seenAt).toBeGreaterThanOrEqual(before);
      expect(o.seenAt).toBeLessThanOrEqual(after);
      await b.setOwner({ pid: 4343, host: 'host-b', startedAt: 1_700_000_001_000, state: 'stopping', detail: 'draining 3 workers' });
      const other = await h.openAnother();
      expect(await other.getOwner()).toMatchObject({ pid: 4343, host: 'host-b', startedAt: 1_700_000_001_000, state: 'stopping', detail: 'draining 3 workers' });
    });
  });

  describe('idle and counts', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, running } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('idle is true only when nothing is ready (now or later), running, alive or awaiting accounting; counts follow every state', async () => {
      const zero = { waiting: 0, ready: 0, running: 0, done: 0, blocked: 0, cancelled: 0 };
      expect(await b.counts()).toEqual({ tasks: zero, liveRuns: 0 });
      expect(Object.keys((await b.counts()).tasks).sort()).toEqual([...TASK_STATUSES].sort());
      expect(await b.idle()).toBe(true);
      await skill();
      const later = await b.createTask({ skill: 'echo', notBefore: Date.now() + 3_600_000 });
      expect(await b.idle()).toBe(false); // ready later still counts
      await b.blockTask(later.id, 'x');
      expect(await b.idle()).toBe(true);
      expect((await b.counts()).tasks).toEqual({ ...zero, blocked: 1 });
      const c = await b.createTask({ skill: 'echo' });
      await b.cancelTask(c.id);
      expect(await b.idle()).toBe(true);

      const now = Date.now();
      const { claim, cred } = await running(now);
      expect(await b.idle()).toBe(false);
      expect(await b.counts()).toEqual({ tasks: { ...zero, blocked: 1, cancelled: 1, running: 1 }, liveRuns: 1 });
      await b.report(cred, { outcome: 'completed' }, now + 1);
      expect(await b.counts()).toEqual({ tasks: { ...zero, blocked: 1, cancelled: 1, done: 1 }, liveRuns: 1 });
      expect(await b.idle()).toBe(false); // its worker may still be alive
      await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: 0, gone: true }]);
      expect((await b.counts()).liveRuns).toBe(0);
      expect(await b.idle()).toBe(false); // awaiting accounting
      await accountAll(b, now + 3);
      expect(await b.idle()).toBe(true);
      const other = await h.openAnother();
      expect(await other.idle()).toBe(true);
      expect(await other.counts()).toEqual({ tasks: { ...zero, blocked: 1, cancelled: 1, done: 1 }, liveRuns: 0 });
    });

    it('taskCountsBySkill counts tasks by status and skill (pairs with tasks only), on every connection; it agrees with counts()', async () => {
      expect(await b.taskCountsBySkill()).toEqual([]);
      await skill();
      await skill('other');
      const sorted = async (board: Board) => (await board.taskCountsBySkill()).sort((x, y) => x.skill.localeCompare(y.skill) || x.status.localeCompare(y.status));
      await running(Date.now()); // an echo task, running
      for (let i = 0; i < 3; i++) await b.createTask({ skill: 'echo' });
      const o1 = await b.createTask({ skill: 'other' });
      const o2 = await b.createTask({ skill: 'other' });
      await b.blockTask(o1.id, 'x');
      await b.cancelTask(o2.id);
      const expected = [
        { status: 'ready', skill: 'echo', count: 3 },
        { status: 'running', skill: 'echo', count: 1 },
        { status: 'blocked', skill: 'other', count: 1 },
        { status: 'cancelled', skill: 'other', count: 1 },
      ].sort((x, y) => x.skill.localeCompare(y.skill) || x.status.localeCompare(y.status));
      expect(await sorted(b)).toEqual(expected);
      const other = await h.openAnother();
      expect(await sorted(other)).toEqual(expected);
      const byStatus = (await b.counts()).tasks;
      for (const status of TASK_STATUSES) {
        const sum = expected.filter((e) => e.status === status).reduce((n, e) => n + e.count, 0);
        expect(byStatus[status], status).toBe(sum);
      }
    });
  });
}
