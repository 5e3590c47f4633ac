/**
 * The claims contract: claimBatch takes ready tasks by priority then age (notBefore respected), never
 * more than asked, never one task twice even from two connections at once; tasks of a removed
 * skill are not claimed and blockUnknownSkillTasks blocks them.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { type Board, type Claim, type Task } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { LOG, credOf, nextMs, useBoard } from './helpers.js';

/** Registers the `claims` block. */
export function claimsConformance(factory: BoardFactory): void {
  describe('claims', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, running, task } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('claims by priority (highest first), then age (oldest first); a task waiting for notBefore is skipped until then', async () => {
      await skill();
      const mk = async (title: string, priority: number, notBefore?: number) => {
        const t = await b.createTask({ skill: 'echo', title, priority, notBefore });
        await nextMs();
        return t;
      };
      const now = Date.now() + 10;
      const p0old = await mk('p0-old', 0);
      const p5old = await mk('p5-old', 5);
      const p0new = await mk('p0-new', 0);
      const waiting = await mk('p9-later', 9, now + 60_000);
      const p5new = await mk('p5-new', 5);
      const neg = await mk('p-3', -3);
      const first = await b.claimBatch(3, now, LOG);
      expect(first.map((c) => c.task.title)).toEqual(['p5-old', 'p5-new', 'p0-old']);
      const rest = await b.claimBatch(10, now, LOG);
      expect(rest.map((c) => c.task.title)).toEqual(['p0-new', 'p-3']);
      expect(await b.claimBatch(10, now + 59_999, LOG)).toEqual([]);
      const due = await b.claimBatch(10, now + 60_000, LOG);
      expect(due.map((c) => c.task.id)).toEqual([waiting.id]);
      for (const t of [p0old, p5old, p0new, p5new, neg, waiting]) expect((await task(t.id)).status).toBe('running');
    });

    it('claimBatch(max) never returns more than max, and 0 or less claims nothing', async () => {
      await skill();
      for (let i = 0; i < 7; i++) await b.createTask({ skill: 'echo', title: `t${i}` });
      const now = Date.now();
      expect(await b.claimBatch(0, now, LOG)).toEqual([]);
      expect(await b.claimBatch(-1, now, LOG)).toEqual([]);
      expect((await b.counts()).tasks.ready).toBe(7);
      const sizes: number[] = [];
      for (;;) {
        const got = await b.claimBatch(3, now, LOG);
        if (got.length === 0) break;
        sizes.push(got.length);
      }
      expect(sizes).toEqual([3, 3, 1]);
      expect(await b.counts()).toEqual({ tasks: { waiting: 0, ready: 0, running: 7, done: 0, blocked: 0, cancelled: 0 }, liveRuns: 7 });
    });

    it('a claimed task is running with a current run (starting, its log path) and a fresh token; claim, task and run agree', async () => {
      const s = await b.putSkill({ name: 'echo', argv: ['/bin/echo'], env: { K: 'v' }, maxRssMb: 64 });
      const t1 = await b.createTask({ skill: 'echo', title: 'a', payload: { n: 1 } });
      await nextMs();
      await b.createTask({ skill: 'echo', title: 'b' });
      const now = Date.now();
      const claims = await b.claimBatch(2, now, LOG);
      expect(claims.length).toBe(2);
      const [c] = claims as [Claim, Claim];
      expect(c.task.id).toBe(t1.id);
      expect(c.task).toEqual({ ...t1, status: 'running', currentRunId: c.run.id, updatedAt: now });
      expect(c.skill).toEqual(s);
      // Runnable since its creation (its last change; no not-before).
      expect(c.readyAt).toBe(t1.updatedAt);
      expect(c.run).toMatchObject({
        taskId: t1.id,
        status: 'starting',
        outcome: null,
        pid: null,
        startedAt: now,
        logPath: LOG(c.run.id),
        endedAt: null,
        exitedAt: null,
        accountedAt: null,
        stopReason: null,
        stoppedOnRequest: false,
      });
      expect(await b.getTask(t1.id)).toEqual(c.task);
      expect(await b.getRun(c.run.id)).toEqual(c.run);
      const other = await h.openAnother();
      expect(await other.getTask(t1.id)).toEqual(c.task);
      for (const x of claims) expect(x.token).toMatch(/^[0-9a-f]{32,}$/);
      expect(claims[0]!.token).not.toBe(claims[1]!.token);
      expect(claims[0]!.run.id).not.toBe(claims[1]!.run.id);
      expect((await b.showTask(t1.id))!.events.at(-1)).toEqual({ id: expect.any(Number), taskId: t1.id, runId: c.run.id, kind: 'claimed', data: { attempt: 1 }, at: now });
      // The worker can load its run with the token, and only with it.
      expect(await b.loadRun(credOf(c))).toEqual({ task: c.task, run: c.run });
      // A task is never claimed twice while it runs.
      expect(await b.claimBatch(5, now, LOG)).toEqual([]);
      // The live runs name their task's skill.
      expect((await b.liveRuns()).map((r) => [r.id, r.taskSkill]).sort()).toEqual(claims.map((x) => [x.run.id, 'echo']).sort());
    });

    it('a claim says since when its task was runnable: the later of its last change and its not-before time', async () => {
      await b.putSkill({ name: 'echo', argv: ['/bin/echo'] });
      const later = Date.now() + 60_000;
      const waited = await b.createTask({ skill: 'echo', notBefore: later });
      const retried = await b.createTask({ skill: 'echo' });
      await b.blockTask(retried.id, 'x');
      await nextMs();
      const unblocked = await b.unblockTask(retried.id);
      expect(unblocked.updatedAt).toBeGreaterThan(retried.updatedAt);
      const claims = await b.claimBatch(5, later, LOG);
      const readyAt = new Map(claims.map((c) => [c.task.id, c.readyAt]));
      expect(readyAt.get(waited.id)).toBe(later);
      expect(readyAt.get(retried.id)).toBe(unblocked.updatedAt);
    });

    it('only ready tasks are claimed: blocked, cancelled, done and running ones are not', async () => {
      await skill();
      const now = Date.now();
      const { task: done, cred } = await running(now, 'done');
      await b.report(cred, { outcome: 'completed' }, now);
      await running(now, 'running');
      const blocked = await b.createTask({ skill: 'echo' });
      await b.blockTask(blocked.id, 'x');
      const cancelled = await b.createTask({ skill: 'echo' });
      await b.cancelTask(cancelled.id);
      expect(await b.claimBatch(10, now + 1_000_000, LOG)).toEqual([]);
      expect((await task(done.id)).status).toBe('done');
    });

    it('two connections claiming at the same time never claim one task twice', async () => {
      await skill();
      const N = 60;
      const made = new Set<string>();
      for (let i = 0; i < N; i++) made.add((await b.createTask({ skill: 'echo', title: `t${i}` })).id);
      const other = await h.openAnother();
      const now = Date.now();
      const drain = async (board: Board): Promise<Claim[]> => {
        const got: Claim[] = [];
        for (;;) {
          const batch = await board.claimBatch(4, now, LOG);
          expect(batch.length).toBeLessThanOrEqual(4);
          if (batch.length === 0) return got;
          got.push(...batch);
        }
      };
      const [mine, theirs] = await Promise.all([drain(b), drain(other)]);
      const all = [...mine, ...theirs];
      expect(all.length).toBe(N);
      expect(new Set(all.map((c) => c.task.id))).toEqual(made);
      expect(new Set(all.map((c) => c.run.id)).size).toBe(N);
      expect(new Set(all.map((c) => c.token)).size).toBe(N);
      const runs = await b.listRuns({ limit: 1000 });
      expect(runs.length).toBe(N);
      for (const c of all) expect((await task(c.task.id)).currentRunId).toBe(c.run.id);
      expect((await b.counts()).tasks).toMatchObject({ ready: 0, running: N });
    });

    it('tasks whose skill was removed are never claimed; blockUnknownSkillTasks blocks exactly the ready ones, naming the skill, once', async () => {
      for (const s of ['alpha', 'echo', 'zulu']) await skill(s);
      const now = Date.now();
      const runningEcho = await running(now, 'running-echo'); // skill echo, claimed before the removal
      const made: Task[] = [];
      for (let i = 0; i < 9; i++) made.push(await b.createTask({ skill: ['alpha', 'echo', 'zulu'][i % 3]!, title: `t${i}` }));
      expect(await b.blockUnknownSkillTasks(now)).toEqual([]); // every skill is known: nothing to do
      await b.removeSkill('echo');
      await b.removeSkill('zulu');
      const claimed = await b.claimBatch(10, now, LOG);
      expect(claimed.map((c) => c.task.skill)).toEqual(['alpha', 'alpha', 'alpha']);
      const blocked = await b.blockUnknownSkillTasks(now + 1);
      const want = made.filter((t) => t.skill !== 'alpha').map((t) => t.id);
      expect(blocked.map((x) => x.taskId).sort()).toEqual([...want].sort());
      for (const x of blocked) {
        const t = made.find((m) => m.id === x.taskId)!;
        expect(x.skill).toBe(t.skill);
        expect(x.reason).toContain(`skill ${JSON.stringify(t.skill)} is not registered`);
        expect(await task(t.id)).toMatchObject({ status: 'blocked', lastError: x.reason, updatedAt: now + 1 });
        expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'blocked', data: { reason: x.reason } });
      }
      expect((await task(runningEcho.task.id)).status).toBe('running');
      expect(await b.blockUnknownSkillTasks(now + 2)).toEqual([]);
    });
  });
}
