/**
 * The exit-code skills contract (issue 17): a skill's report mode and result source are stored,
 * validated, carried by claims and live runs; recordExits applies an exit report fenced like a
 * worker's report (a completed one makes the task done with its result; a run that ended keeps its
 * end; a run being reclaimed ends with its reclaim's outcome; a task that moved on is left alone).
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board, type ExitObservation } from '@kanban-supervisor/board';
import { exitReport } from '@kanban-supervisor/policies';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { accountAll, rejection, spawnInfo, useBoard } from './helpers.js';

/** Registers the `exit-code skills` block. */
export function exitSkillsConformance(factory: BoardFactory): void {
  describe('exit-code skills', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { claimOne, task } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    const exitSkill = (resultFrom: 'stdout-json' | null = null) => b.putSkill({ name: 'echo', argv: ['/bin/true'], report: 'exit', resultFrom });

    /** The next ready task claimed and spawned. */
    async function claimRun(now: number) {
      const claim = await claimOne(now);
      await b.recordSpawns([{ runId: claim.run.id, info: spawnInfo(4100) }], now);
      return { t: claim.task, claim, runId: claim.run.id };
    }

    /** A new task of the exit-code skill, claimed and spawned (no other task is ready). */
    async function runningExit(now: number) {
      const t = await b.createTask({ skill: 'echo', payload: { n: 1 } });
      const r = await claimRun(now);
      expect(r.t.id).toBe(t.id);
      return r;
    }

    const exitObs = (runId: string, at: number, exitCode: number | null, signal: string | null, text?: string): ExitObservation => ({
      runId,
      at,
      exitCode,
      signal,
      gone: true,
      exitReport: exitReport({ exitCode, signal }, text === undefined ? null : 'stdout-json', text === undefined ? null : { text, whole: true }),
    });

    it('stores the report mode and result source (board and no result by default), on every connection; the listing and a replacement carry them', async () => {
      const plain = await b.putSkill({ name: 'plain', argv: ['/bin/true'] });
      expect(plain).toMatchObject({ report: 'board', resultFrom: null });
      const ex = await b.putSkill({ name: 'ex', argv: ['/bin/true'], report: 'exit' });
      expect(ex).toMatchObject({ report: 'exit', resultFrom: null });
      const js = await b.putSkill({ name: 'js', argv: ['/bin/true'], report: 'exit', resultFrom: 'stdout-json' });
      expect(js).toMatchObject({ report: 'exit', resultFrom: 'stdout-json' });
      const other = await h.openAnother();
      expect(await other.listSkills()).toEqual([ex, js, plain]);
      const back = await b.putSkill({ name: 'js', argv: ['/bin/true'] });
      expect(back).toMatchObject({ report: 'board', resultFrom: null });
      expect(await other.getSkill('js')).toEqual(back);
    });

    it.each([
      ['an unknown report mode', { report: 'socket' }, 'skill x: --report must be one of board, exit, got "socket"'],
      ['an unknown result source', { report: 'exit', resultFrom: 'stderr' }, 'skill x: --result must be one of stdout-json, got "stderr"'],
      ['a result source without --report exit', { resultFrom: 'stdout-json' }, 'skill x: --result stdout-json is for exit-code skills only (add --report exit)'],
    ])('refuses %s with BoardInputError naming the skill, storing nothing', async (_what, bad, msg) => {
      const err = await rejection(b.putSkill({ name: 'x', argv: ['/bin/true'], ...(bad as object) }));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toBe(msg);
      expect(await b.getSkill('x')).toBeNull();
    });

    it('a claim carries the skill\'s report mode and result source; liveRuns carries the report mode (board once the skill is gone)', async () => {
      await exitSkill('stdout-json');
      const now = Date.now();
      const { claim, runId } = await runningExit(now);
      expect(claim.skill).toMatchObject({ report: 'exit', resultFrom: 'stdout-json' });
      expect((await b.liveRuns()).map((r) => [r.id, r.skillReport])).toEqual([[runId, 'exit']]);
      await b.removeSkill('echo');
      expect((await b.liveRuns()).map((r) => [r.id, r.skillReport])).toEqual([[runId, 'board']]);
    });

    it('exit 0 with a result line: the run completes and the task is done with the result, in the same write; accounting leaves it', async () => {
      await exitSkill('stdout-json');
      const now = Date.now();
      const { t, runId } = await runningExit(now);
      await b.recordExits([exitObs(runId, now + 5, 0, null, 'progress…\n{"answer": 42}\n\n')]);
      expect(await b.getRun(runId)).toMatchObject({ status: 'ended', outcome: 'completed', error: null, exitCode: 0, endedAt: now + 5, exitedAt: now + 5 });
      expect(await task(t.id)).toMatchObject({ status: 'done', result: { answer: 42 }, consecutiveFailures: 0, lastError: null });
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'ended', data: { outcome: 'completed', error: null, report: 'exit' } });
      const acted = await accountAll(b, now + 6);
      expect(acted.map((a) => a.action.action)).toEqual(['leave']);
      expect(await task(t.id)).toMatchObject({ status: 'done', currentRunId: null, result: { answer: 42 } });
    });

    it('exit 0 releases the task\'s waiting children in the same write (the last parent done: ready; another parent not done: still waiting)', async () => {
      await exitSkill();
      const now = Date.now();
      const { t, runId } = await runningExit(now);
      const other = await b.createTask({ skill: 'echo', title: 'other parent', priority: 10 });
      const child = await b.createTask({ skill: 'echo', title: 'child', after: [t.id] });
      const both = await b.createTask({ skill: 'echo', title: 'both', after: [t.id, other.id] });
      expect(await task(child.id)).toMatchObject({ status: 'waiting' });
      await b.recordExits([exitObs(runId, now + 5, 0, null)]);
      expect(await task(t.id)).toMatchObject({ status: 'done' });
      expect(await task(child.id)).toMatchObject({ status: 'ready' });
      expect(await task(both.id)).toMatchObject({ status: 'waiting' });
      expect((await b.showTask(child.id))!.events.map((e) => e.kind)).toContain('released');
      // A failed exit releases nothing.
      const o = await claimRun(now + 10);
      expect(o.t.id).toBe(other.id);
      await b.recordExits([exitObs(o.runId, now + 11, 3, null)]);
      expect(await task(both.id)).toMatchObject({ status: 'waiting' });
    });

    it('exit 0 without a result source: done with a null result; a bad result line fails the run (counted) with the parse error', async () => {
      await exitSkill();
      const now = Date.now();
      const a = await runningExit(now);
      await b.recordExits([exitObs(a.runId, now + 1, 0, null)]);
      expect(await task(a.t.id)).toMatchObject({ status: 'done', result: null });
      await exitSkill('stdout-json');
      const c = await runningExit(now + 10);
      await b.recordExits([exitObs(c.runId, now + 11, 0, null, 'not json\n')]);
      expect(await b.getRun(c.runId)).toMatchObject({ outcome: 'failed' });
      expect((await b.getRun(c.runId))!.error).toMatch(/^exit-code skill: the worker exited with code 0 but the last line of its log is not JSON \(.*\): "not json" \(--result stdout-json\)$/);
      await accountAll(b, now + 12);
      expect(await task(c.t.id)).toMatchObject({ status: 'ready', consecutiveFailures: 1, result: null });
      expect((await task(c.t.id)).lastError).toContain('is not JSON');
    });

    it('exit 75 is deferred (not counted); a signal is crashed (counted); another code failed (counted)', async () => {
      await exitSkill();
      const now = Date.now();
      const d = await runningExit(now);
      await b.recordExits([exitObs(d.runId, now + 1, 75, null)]);
      await accountAll(b, now + 2);
      expect(await b.getRun(d.runId)).toMatchObject({ outcome: 'deferred', deferUntil: null });
      expect(await task(d.t.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0 });
      const k = await claimRun(now + 3000);
      expect(k.t.id).toBe(d.t.id);
      await b.recordExits([exitObs(k.runId, now + 3001, null, 'SIGKILL')]);
      await accountAll(b, now + 3002);
      expect(await b.getRun(k.runId)).toMatchObject({ outcome: 'crashed', error: 'exit-code skill: the worker was killed by signal SIGKILL', signal: 'SIGKILL' });
      expect(await task(d.t.id)).toMatchObject({ status: 'ready', consecutiveFailures: 1 });
    });

    it('fenced: a run that ended keeps its end, a run being reclaimed ends with its reclaim\'s outcome, a cancelled task is left alone', async () => {
      await exitSkill('stdout-json');
      const now = Date.now();
      // Ended already (the supervisor's own earlier verdict): nothing is overwritten.
      const e = await runningExit(now);
      await b.recordExits([{ runId: e.runId, at: now + 1, exitCode: 0, signal: null, gone: false, outcomeIfUnreported: 'crashed', errorIfUnreported: 'first' }]);
      await b.recordExits([exitObs(e.runId, now + 2, 0, null, '{"late":true}')]);
      expect(await b.getRun(e.runId)).toMatchObject({ outcome: 'crashed', error: 'first', exitedAt: now + 2 });
      expect(await task(e.t.id)).toMatchObject({ status: 'running', result: null });
      await accountAll(b, now + 3);
      await b.cancelTask(e.t.id);
      // Being reclaimed (timed out): the reclaim's outcome, the result is not taken.
      const r = await runningExit(now + 5000);
      expect(await b.beginReclaim(r.runId, 'timed_out', now + 5001)).toBe(true);
      await b.recordExits([exitObs(r.runId, now + 5002, 0, null, '{"late":true}')]);
      expect(await b.getRun(r.runId)).toMatchObject({ outcome: 'timed_out' });
      expect((await b.getRun(r.runId))!.error).toMatch(/^reclaimed \(.*\); the worker exited with code 0$/);
      expect(await task(r.t.id)).toMatchObject({ status: 'running', result: null });
      await accountAll(b, now + 5003);
      // The task was cancelled before the reclaim began: the run ends as reported, the task stays cancelled.
      await b.cancelTask(r.t.id);
      const c = await b.createTask({ skill: 'echo' });
      const cc = await claimOne(now + 9000);
      expect(cc.task.id).toBe(c.id);
      await b.cancelTask(c.id);
      await b.recordExits([exitObs(cc.run.id, now + 9001, 0, null, '{"x":1}')]);
      expect(await b.getRun(cc.run.id)).toMatchObject({ outcome: 'completed' });
      expect(await task(c.id)).toMatchObject({ status: 'cancelled', result: null });
    });
  });
}
