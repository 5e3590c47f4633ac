/**
 * Issue 16's board contracts: per-skill caps on live workers (counted board-wide, runs being
 * reclaimed included; no head-of-line blocking by a full skill's backlog; setSkillCap), the next
 * due time of scheduled tasks (nextDueAt), idempotency keys and bulk adds (createTasks: all or
 * nothing, one task per key even from several connections at once).
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { LOG, accountAll, credOf, nextMs, rejection, spawnInfo, useBoard } from './helpers.js';

export function capsKeysConformance(factory: BoardFactory): void {
  describe('per-skill caps', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { handles } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });
    const capped = (name: string, maxConcurrent: number | null) => b.putSkill({ name, argv: ['/bin/true'], maxConcurrent });

    it('a skill capped at N never has more than N live runs; a run counts until its processes are gone (being reclaimed included)', async () => {
      expect((await capped('slow', 2)).maxConcurrent).toBe(2);
      expect((await b.getSkill('slow'))!.maxConcurrent).toBe(2);
      for (let i = 0; i < 5; i++) await b.createTask({ skill: 'slow', title: `s${i}` });
      const now = Date.now();
      const first = await b.claimBatch(10, now, LOG);
      expect(first.length).toBe(2);
      expect(await b.claimBatch(10, now, LOG)).toEqual([]);
      // One is reclaimed (cancelled, SIGTERM sent): it still counts until its processes are gone.
      await b.recordSpawns(first.map((c, i) => ({ runId: c.run.id, info: spawnInfo(5000 + i) })), now);
      await b.cancelTask(first[0]!.task.id);
      expect(await b.beginReclaim(first[0]!.run.id, 'cancelled', now + 1)).toBe(true);
      expect(await b.claimBatch(10, now + 2, LOG)).toEqual([]);
      await b.recordExits([{ runId: first[0]!.run.id, at: now + 3, gone: true, outcomeIfUnreported: 'cancelled' }]);
      await accountAll(b, now + 4);
      const next = await b.claimBatch(10, now + 5, LOG);
      expect(next.length).toBe(1);
      // A completed run frees its slot once its worker is gone and its run accounted.
      await b.report(credOf(first[1]!), { outcome: 'completed' }, now + 6);
      expect(await b.claimBatch(10, now + 7, LOG)).toEqual([]);
      await b.recordExits([{ runId: first[1]!.run.id, at: now + 8, gone: true }]);
      await accountAll(b, now + 9);
      expect((await b.claimBatch(10, now + 10, LOG)).length).toBe(1);
      expect((await b.counts()).tasks).toMatchObject({ ready: 1, running: 2, done: 1, cancelled: 1 });
    });

    it('no head-of-line blocking: 1,000 ready tasks of a skill capped at 1 at high priority never hold back another skill at low priority', async () => {
      await capped('slow', 1);
      await capped('fast', null);
      await b.createTasks(Array.from({ length: 1000 }, (_, i) => ({ skill: 'slow', title: `slow-${i}`, priority: 100 })));
      await nextMs();
      await b.createTasks(Array.from({ length: 10 }, (_, i) => ({ skill: 'fast', title: `fast-${i}`, priority: -5 })));
      const now = Date.now();
      const got = await b.claimBatch(11, now, LOG);
      expect(got.length).toBe(11);
      expect(got[0]!.task.skill, 'claim order kept: the high priority task first').toBe('slow');
      expect(got.slice(1).map((c) => c.task.title).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `fast-${i}`).sort());
      expect(await b.claimBatch(5, now, LOG)).toEqual([]);
    });

    it('within one batch each capped skill gets its room, uncapped skills fill the rest in claim order', async () => {
      await capped('a', 2);
      await capped('b', 1);
      await capped('c', null);
      for (let i = 0; i < 4; i++) {
        await b.createTask({ skill: 'a', title: `a${i}`, priority: 9 });
        await b.createTask({ skill: 'b', title: `b${i}`, priority: 8 });
        await b.createTask({ skill: 'c', title: `c${i}`, priority: i });
        await nextMs();
      }
      const got = await b.claimBatch(6, Date.now(), LOG);
      expect(got.map((c) => c.task.title)).toEqual(['a0', 'a1', 'b0', 'c3', 'c2', 'c1']);
    });

    it('setSkillCap changes the cap of an existing skill (its command untouched), null removes it; bad values and unknown skills are refused', async () => {
      await b.putSkill({ name: 'slow', argv: ['/bin/echo', 'hi'] });
      for (let i = 0; i < 4; i++) await b.createTask({ skill: 'slow' });
      expect(await b.setSkillCap('slow', 1)).toMatchObject({ name: 'slow', argv: ['/bin/echo', 'hi'], maxConcurrent: 1 });
      const now = Date.now();
      expect((await b.claimBatch(10, now, LOG)).length).toBe(1);
      await b.setSkillCap('slow', 2);
      expect((await b.claimBatch(10, now, LOG)).length).toBe(1);
      expect((await b.setSkillCap('slow', null)).maxConcurrent).toBeNull();
      expect((await b.claimBatch(10, now, LOG)).length).toBe(2);
      for (const bad of [0, -1, 1.5, Number.NaN]) {
        const e = await rejection(b.setSkillCap('slow', bad));
        expect(e).toBeInstanceOf(BoardInputError);
        expect(e.message).toMatch(/max concurrent must be an integer from 1/);
      }
      expect((await rejection(b.setSkillCap('nope', 3))).message).toMatch(/no skill "nope"/);
      expect((await rejection(b.putSkill({ name: 'x', argv: ['/bin/true'], maxConcurrent: 0 }))).message).toMatch(/max concurrent/);
    });

    it('two connections claiming at once never exceed a cap together', async () => {
      await capped('slow', 3);
      for (let i = 0; i < 20; i++) await b.createTask({ skill: 'slow' });
      const others = await Promise.all([h.openAnother(), h.openAnother(), h.openAnother()]);
      const now = Date.now();
      const got = await Promise.all([b, ...others].map((x) => x.claimBatch(5, now, LOG)));
      expect(got.flat().length).toBe(3);
      expect(new Set(got.flat().map((c) => c.task.id)).size).toBe(3);
      void handles;
    });
  });

  describe('scheduling', () => {
    let b: Board;
    const { skill } = useBoard(factory, (opened) => (b = opened.board));

    it('nextDueAt: the earliest not-before after now of a ready task; null when none; a due task is claimed only from its time', async () => {
      await skill();
      const now = Date.now();
      expect(await b.nextDueAt(now)).toBeNull();
      const later = await b.createTask({ skill: 'echo', title: 'later', notBefore: now + 60_000 });
      const soon = await b.createTask({ skill: 'echo', title: 'soon', notBefore: now + 5_000 });
      await b.createTask({ skill: 'echo', title: 'now' });
      expect(later.notBefore).toBe(now + 60_000);
      expect(await b.nextDueAt(now)).toBe(now + 5_000);
      expect(await b.nextDueAt(now + 5_000)).toBe(now + 60_000);
      expect(await b.nextDueAt(now + 60_000)).toBeNull();
      expect((await b.claimBatch(10, now, LOG)).map((c) => c.task.title)).toEqual(['now']);
      await b.cancelTask(soon.id);
      expect(await b.nextDueAt(now), 'a cancelled task is not due').toBe(now + 60_000);
      expect(await b.claimBatch(10, now + 59_999, LOG)).toEqual([]);
      expect((await b.claimBatch(10, now + 60_000, LOG)).map((c) => c.task.title)).toEqual(['later']);
      expect((await rejection(b.createTask({ skill: 'echo', notBefore: -5 }))).message).toMatch(/notBefore/);
    });
  });

  describe('idempotency keys and bulk adds', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('a key already on the board (any status) adds nothing and returns that task', async () => {
      await skill();
      const [first] = await b.createTasks([{ skill: 'echo', title: 'one', key: 'k-1' }]);
      expect(first).toMatchObject({ created: true, task: { key: 'k-1', title: 'one', status: 'ready' } });
      const [again] = await b.createTasks([{ skill: 'echo', title: 'two', key: 'k-1' }]);
      expect(again).toEqual({ created: false, task: first!.task });
      expect((await b.createTask({ skill: 'echo', key: 'k-1' })).id).toBe(first!.task.id);
      await b.cancelTask(first!.task.id);
      const [cancelled] = await b.createTasks([{ skill: 'echo', key: 'k-1' }]);
      expect(cancelled).toMatchObject({ created: false, task: { id: first!.task.id, status: 'cancelled' } });
      expect((await b.counts()).tasks).toMatchObject({ ready: 0, cancelled: 1 });
      const other = await b.createTask({ skill: 'echo', key: 'k-2' });
      expect(other.id).not.toBe(first!.task.id);
      expect((await b.createTask({ skill: 'echo' })).key).toBeNull();
      for (const bad of ['', 'x'.repeat(201)]) expect((await rejection(b.createTask({ skill: 'echo', key: bad }))).message).toMatch(/key must be a string of 1-200/);
    });

    it('createTasks is all or nothing: a bad task or an unknown skill anywhere adds none, naming its place', async () => {
      await skill();
      const before = await b.counts();
      const e1 = await rejection(b.createTasks([{ skill: 'echo' }, { skill: 'echo', priority: 1.5 }]));
      expect(e1).toBeInstanceOf(BoardInputError);
      expect(e1.message).toMatch(/^tasks\[1\]: priority must be an integer/);
      const e2 = await rejection(b.createTasks([{ skill: 'echo', key: 'a' }, { skill: 'echo' }, { skill: 'ghost' }]));
      expect(e2.message).toMatch(/^tasks\[2\]: unknown skill "ghost"/);
      expect(await b.counts()).toEqual(before);
      expect((await b.createTask({ skill: 'echo', key: 'a' })).key).toBe('a');
      const added = await b.createTasks([
        { skill: 'echo', title: 'x', key: 'dup' },
        { skill: 'echo', title: 'y', key: 'dup' },
        { skill: 'echo', title: 'z', key: 'a' },
        { skill: 'echo', title: 'w' },
      ]);
      expect(added.map((a) => a.created)).toEqual([true, false, false, true]);
      expect(added[1]!.task.id).toBe(added[0]!.task.id);
      expect((await b.counts()).tasks.ready).toBe(3);
      expect(await b.createTasks([])).toEqual([]);
    });

    it('adds of one key from several connections at once create exactly one task', async () => {
      await skill();
      const boards = [b, ...(await Promise.all([1, 2, 3, 4, 5].map(() => h.openAnother())))];
      for (let round = 0; round < 5; round++) {
        const key = `race-${round}`;
        const got = await Promise.all(boards.map((x, i) => x.createTasks([{ skill: 'echo', title: `by ${i}`, key }])));
        expect(new Set(got.map((g) => g[0]!.task.id)).size).toBe(1);
        expect(got.filter((g) => g[0]!.created).length).toBe(1);
      }
      expect((await b.counts()).tasks.ready).toBe(5);
    });
  });
}
