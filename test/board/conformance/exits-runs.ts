/**
 * The exits and runs contract: recordExits, endUnspawned and recordSpawns, and what liveRuns,
 * unaccountedRuns, getRun and listRuns then report.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory } from './index.js';
import { spawnInfo, credOf, rejection, accountAll, useBoard } from './helpers.js';

/** Registers the `exits` block. */
export function exitsRunsConformance(factory: BoardFactory): void {
  describe('exits', () => {
    let b: Board;
    const { skill, claimOne, running, task } = useBoard(factory, (opened) => (b = opened.board));

    it('recordExits: an exit with outcomeIfUnreported ends the run; gone sets exited_at once; liveRuns and unaccountedRuns follow', async () => {
      await skill();
      const now = Date.now();
      const { claim } = await running(now);
      const id = claim.run.id;
      expect((await b.liveRuns()).map((r) => r.id)).toEqual([id]);
      await b.recordExits([{ runId: id, at: now + 1, exitCode: 1, signal: null, gone: false, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 1' }]);
      expect(await b.getRun(id)).toMatchObject({ status: 'ended', outcome: 'crashed', error: 'exit 1', endedAt: now + 1, exitCode: 1, signal: null, exitedAt: null });
      expect((await b.liveRuns()).map((r) => r.id)).toEqual([id]); // its group may still hold processes
      expect(await b.unaccountedRuns()).toEqual([]);
      expect((await b.counts()).liveRuns).toBe(1);
      await b.recordExits([{ runId: id, at: now + 2, gone: true }]);
      expect(await b.getRun(id)).toMatchObject({ outcome: 'crashed', exitCode: 1, exitedAt: now + 2 });
      expect(await b.liveRuns()).toEqual([]);
      expect((await b.counts()).liveRuns).toBe(0);
      const un = await b.unaccountedRuns();
      expect(un.map((u) => [u.run.id, u.run.outcome, u.task.id, u.task.status])).toEqual([[id, 'crashed', claim.task.id, 'running']]);
      await b.recordExits([{ runId: id, at: now + 3, gone: true, outcomeIfUnreported: 'timed_out' }]);
      expect(await b.getRun(id)).toMatchObject({ outcome: 'crashed', exitedAt: now + 2 });
      await b.recordExits([{ runId: 'r-none', at: now, gone: true }]); // unknown: nothing to record
      await b.recordExits([]);
    });

    it('recordExits never overwrites an outcome the worker reported; it records the signal', async () => {
      await skill();
      const now = Date.now();
      const { claim, cred } = await running(now);
      await b.report(cred, { outcome: 'failed', error: 'boom' }, now + 1);
      await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: null, signal: 'SIGKILL', gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'killed' }]);
      expect(await b.getRun(claim.run.id)).toMatchObject({ outcome: 'failed', error: 'boom', endedAt: now + 1, signal: 'SIGKILL', exitCode: null, exitedAt: now + 2 });
      expect((await b.showTask(claim.task.id))!.events.at(-1)).toMatchObject({ kind: 'exited', data: { exit_code: null, signal: 'SIGKILL', pid: 4000 } });
    });

    it('endUnspawned ends a run that never had a process: gone at once, awaiting accounting', async () => {
      await skill();
      const now = Date.now();
      const t = await b.createTask({ skill: 'echo' });
      const c = await claimOne(now);
      await b.endUnspawned(c.run.id, 'spawn_failed', 'spawn /bin/nope ENOENT', now + 1);
      expect(await b.getRun(c.run.id)).toMatchObject({ status: 'ended', outcome: 'spawn_failed', error: 'spawn /bin/nope ENOENT', endedAt: now + 1, exitedAt: now + 1, pid: null });
      expect(await b.liveRuns()).toEqual([]);
      expect((await b.unaccountedRuns()).map((u) => u.run.id)).toEqual([c.run.id]);
      await accountAll(b, now + 2);
      expect(await task(t.id)).toMatchObject({ status: 'ready', consecutiveFailures: 1, lastError: 'spawn /bin/nope ENOENT', notBefore: now + 1002 });
      const err = await rejection(b.endUnspawned('r-none', 'spawn_failed', 'x', now));
      expect(err).toBeInstanceOf(BoardInputError);
    });

    it('recordSpawns marks the run running with its process identity; unknown runs are skipped', async () => {
      await skill();
      const now = Date.now();
      await b.createTask({ skill: 'echo' });
      const c = await claimOne(now);
      await b.recordSpawns([{ runId: 'r-none', info: spawnInfo(1) }, { runId: c.run.id, info: spawnInfo(777) }], now + 1);
      expect(await b.getRun(c.run.id)).toMatchObject({ status: 'running', pid: 777, pgid: 777, procStartTime: 900_777, bootId: 'boot-conformance' });
      expect((await b.showTask(c.task.id))!.events.at(-1)).toMatchObject({ kind: 'spawned', data: { pid: 777 }, at: now + 1 });
      await b.recordSpawns([], now);
    });

    it('liveRuns carries the task\'s status and the limits of its task and skill (null once the skill is gone)', async () => {
      await b.putSkill({ name: 'echo', argv: ['/bin/true'], maxRuntimeSeconds: 10, heartbeatTimeoutSeconds: 5, reclaimGraceSeconds: 3, maxRssMb: 100 });
      await skill('plain');
      const now = Date.now();
      const a = await running(now, 'a', { maxRuntimeSeconds: 7 });
      await b.createTask({ skill: 'plain' });
      const p = await claimOne(now + 1);
      const live = await b.liveRuns();
      expect(live.map((r) => r.id)).toEqual([a.claim.run.id, p.run.id]); // oldest first
      expect(live[0]).toMatchObject({
        taskId: a.task.id,
        status: 'running',
        pid: 4000,
        taskStatus: 'running',
        taskMaxRuntimeSeconds: 7,
        skillMaxRuntimeSeconds: 10,
        skillHeartbeatTimeoutSeconds: 5,
        skillReclaimGraceSeconds: 3,
        skillMaxRssMb: 100,
      });
      expect(live[1]).toMatchObject({ status: 'starting', taskMaxRuntimeSeconds: null, skillMaxRuntimeSeconds: null, skillMaxRssMb: null });
      await b.removeSkill('echo');
      expect((await b.liveRuns())[0]).toMatchObject({ id: a.claim.run.id, taskMaxRuntimeSeconds: 7, skillMaxRuntimeSeconds: null, skillReclaimGraceSeconds: null });
    });

    it('getRun and listRuns: newest first, with the attempt number, filtered by task, outcome and liveness, up to the limit', async () => {
      await skill();
      const now = Date.now();
      const t1 = await b.createTask({ skill: 'echo', title: 'one' });
      const a1 = await claimOne(now);
      await b.recordExits([{ runId: a1.run.id, at: now + 1, gone: true, outcomeIfUnreported: 'crashed' }]);
      await accountAll(b, now + 2);
      const t2 = await b.createTask({ skill: 'echo', title: 'two' });
      const b1 = await claimOne(now + 10); // t1 waits for its backoff
      expect(b1.task.id).toBe(t2.id);
      await b.report(credOf(b1), { outcome: 'completed' }, now + 11);
      await b.recordExits([{ runId: b1.run.id, at: now + 12, gone: true }]);
      const a2 = await claimOne(now + 2000);
      expect(a2.task.id).toBe(t1.id);
      const all = await b.listRuns();
      expect(all.map((r) => [r.id, r.attempt, r.taskTitle, r.taskStatus, r.skill])).toEqual([
        [a2.run.id, 2, 'one', 'running', 'echo'],
        [b1.run.id, 1, 'two', 'done', 'echo'],
        [a1.run.id, 1, 'one', 'running', 'echo'],
      ]);
      expect(all[2]).toMatchObject({ ...(await b.getRun(a1.run.id)) });
      expect((await b.listRuns({ taskId: t1.id })).map((r) => r.id)).toEqual([a2.run.id, a1.run.id]);
      expect((await b.listRuns({ outcome: 'crashed' })).map((r) => r.id)).toEqual([a1.run.id]);
      expect((await b.listRuns({ live: true })).map((r) => r.id)).toEqual([a2.run.id]);
      expect((await b.listRuns({ taskId: t2.id, live: true })).map((r) => r.id)).toEqual([]);
      expect((await b.listRuns({ limit: 1 })).map((r) => r.id)).toEqual([a2.run.id]);
    });
  });
}
