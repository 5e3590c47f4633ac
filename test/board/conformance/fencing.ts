/**
 * The fencing contract: a worker's writes (heartbeat, workerEvent, report, recordStop, loadRun)
 * land only with the current run token; a wrong token, a reclaim (beginReclaim), a cancel, an ended
 * run or a retry refuse them with NotCurrentError and change nothing.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, NotCurrentError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory } from './index.js';
import { POLICY, credOf, rejection, accountAll, useBoard } from './helpers.js';

/** Registers the `fencing of worker writes` block. */
export function fencingConformance(factory: BoardFactory): void {
  describe('fencing of worker writes', () => {
    let b: Board;
    const { skill, claimOne, running, snapshot, task } = useBoard(factory, (opened) => (b = opened.board));

    it('heartbeat, workerEvent and report with the current token write; heartbeat without progress keeps the last', async () => {
      await skill();
      const now = Date.now();
      const { claim, cred } = await running(now);
      expect((await b.getRun(claim.run.id))!).toMatchObject({ status: 'running', pid: 4000, pgid: 4000, procStartTime: 904_000, bootId: 'boot-conformance' });
      await b.heartbeat(cred, { step: 1 }, now + 1);
      expect(await b.getRun(claim.run.id)).toMatchObject({ heartbeatAt: now + 1, progress: { step: 1 } });
      await b.heartbeat(cred, undefined, now + 2);
      expect(await b.getRun(claim.run.id)).toMatchObject({ heartbeatAt: now + 2, progress: { step: 1 } });
      await b.workerEvent(cred, 'note:x', { a: [1] }, now + 3);
      expect((await b.showTask(cred.taskId))!.events.at(-1)).toMatchObject({ kind: 'note:x', runId: claim.run.id, data: { a: [1] }, at: now + 3 });
    });

    it('a wrong token (or another task\'s id) is refused with NotCurrentError, and changes nothing', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now, 'one');
      const { task: t2 } = await running(now, 'two');
      const wrong = { ...cred, token: '0'.repeat(32) };
      const otherTask = { ...cred, taskId: t2.id };
      const before = await snapshot(b, t.id, t2.id);
      for (const c of [wrong, otherTask]) {
        // Each refusal is awaited through `rejection` at once: a backend may refuse them in any order.
        const refusals = [
          b.heartbeat(c, { step: 1 }, now),
          b.workerEvent(c, 'note', null, now),
          b.report(c, { outcome: 'completed', result: 1 }, now),
          b.report(c, { outcome: 'failed', error: 'x' }, now),
          b.recordStop(c, 'SIGTERM', now),
          b.loadRun(c),
        ].map(rejection);
        for (const refused of refusals) {
          const err = await refused;
          expect(err).toBeInstanceOf(NotCurrentError);
          expect(err.message).toBe(`run ${claim.run.id} is no longer current for task ${c.taskId}`);
          expect((err as NotCurrentError).runId).toBe(claim.run.id);
        }
      }
      expect(await snapshot(b, t.id, t2.id)).toBe(before);
    });

    it('beats (bare heartbeats of many runs in a transaction): each fenced as heartbeat is; the refused ones returned, nothing of theirs written', async () => {
      await skill();
      const now = Date.now();
      const live = await running(now, 'live');
      const live2 = await running(now, 'live2');
      const reclaimed = await running(now, 'reclaimed');
      const cancelled = await running(now, 'cancelled');
      const ended = await running(now, 'ended');
      const wrong = await running(now, 'wrong');
      const elsewhere = await running(now, 'elsewhere');
      await b.heartbeat(live2.cred, { step: 1 }, now);
      expect(await b.beginReclaim(reclaimed.claim.run.id, 'stalled', now)).toBe(true);
      await b.cancelTask(cancelled.task.id);
      await b.report(ended.cred, { outcome: 'completed' }, now);
      const others = [reclaimed, cancelled, ended, wrong, elsewhere].map((r) => r.task.id);
      // Their tasks with runs and events (snapshot() would also show the live runs' beats).
      const shown = async () => JSON.stringify(await Promise.all(others.map((id) => b.showTask(id))));
      const before = await shown();
      const tx = b.begin();
      try {
        expect(await tx.beats([])).toEqual([]);
        const refused = await tx.beats([
          { cred: live.cred, at: now + 5 },
          { cred: reclaimed.cred, at: now + 5 },
          { cred: cancelled.cred, at: now + 5 },
          { cred: ended.cred, at: now + 5 },
          { cred: { ...wrong.cred, token: '0'.repeat(32) }, at: now + 5 },
          { cred: { ...elsewhere.cred, taskId: live.task.id }, at: now + 5 },
          { cred: { ...wrong.cred, runId: 'r-none' }, at: now + 5 },
          // Two of one run: the forged token is refused on its own, the right one written.
          { cred: { ...live2.cred, token: 'f'.repeat(32) }, at: now + 7 },
          { cred: live2.cred, at: now + 6 },
        ]);
        expect(refused.sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7]);
        await tx.commit();
      } finally {
        tx.close();
      }
      expect(await b.getRun(live.claim.run.id)).toMatchObject({ heartbeatAt: now + 5, progress: null });
      // A bare beat keeps the run's progress; the forged item's time was not written.
      expect(await b.getRun(live2.claim.run.id)).toMatchObject({ heartbeatAt: now + 6, progress: { step: 1 } });
      expect(await shown()).toBe(before);
      // Not committed: nothing written.
      const tx2 = b.begin();
      try {
        expect(await tx2.beats([{ cred: live.cred, at: now + 9 }])).toEqual([]);
      } finally {
        tx2.close();
      }
      expect((await b.getRun(live.claim.run.id))!.heartbeatAt).toBe(now + 5);
      // A beat heard earlier and written later (the worker wrote a later one itself meanwhile): the
      // run's time does not go back; the beat is still accepted (its run is current).
      await b.heartbeat(live.cred, undefined, now + 20);
      const tx3 = b.begin();
      try {
        expect(await tx3.beats([{ cred: live.cred, at: now + 12 }, { cred: live2.cred, at: now + 12 }])).toEqual([]);
        await tx3.commit();
      } finally {
        tx3.close();
      }
      expect((await b.getRun(live.claim.run.id))!.heartbeatAt).toBe(now + 20);
      expect((await b.getRun(live2.claim.run.id))!.heartbeatAt).toBe(now + 12);
    });

    it('after beginReclaim the worker\'s writes are refused, but recordStop is allowed', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      await b.heartbeat(cred, { step: 1 }, now);
      expect(await b.beginReclaim(claim.run.id, 'timed_out', now + 1)).toBe(true);
      expect(await b.getRun(claim.run.id)).toMatchObject({ stopReason: 'timed_out', sigtermAt: now + 1, status: 'running' });
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'sigterm_sent', data: { reason: 'timed_out', at: now + 1, pid: 4000 } });
      const mid = await snapshot(b, t.id);
      for (const w of [
        b.heartbeat(cred, { step: 2 }, now + 2),
        b.report(cred, { outcome: 'completed', result: 2 }, now + 2),
        b.workerEvent(cred, 'note', null, now + 2),
        b.loadRun(cred),
      ].map(rejection)) {
        expect(await w).toBeInstanceOf(NotCurrentError);
      }
      expect(await snapshot(b, t.id)).toBe(mid);
      await b.recordStop(cred, 'SIGTERM', now + 3);
      expect(await b.getRun(claim.run.id)).toMatchObject({ stoppedOnRequest: true, status: 'running', outcome: null });
      expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'stopped_on_request', data: { signal: 'SIGTERM' }, at: now + 3 });
      expect((await task(t.id)).status).toBe('running');
    });

    it('beginReclaim closes a fence once: false for a run already being reclaimed, gone, unknown, or ended unless hung after its report', async () => {
      await skill();
      const now = Date.now();
      const a = await running(now, 'a');
      expect(await b.beginReclaim(a.claim.run.id, 'hung_after_report', now)).toBe(false); // it has not reported
      expect(await b.beginReclaim(a.claim.run.id, 'stalled', now)).toBe(true);
      expect(await b.beginReclaim(a.claim.run.id, 'timed_out', now + 1)).toBe(false);
      expect((await b.getRun(a.claim.run.id))!.stopReason).toBe('stalled');
      expect(await b.beginReclaim('r-none', 'stalled', now)).toBe(false);

      const r = await running(now, 'reported');
      await b.report(r.cred, { outcome: 'failed', error: 'x' }, now);
      expect(await b.beginReclaim(r.claim.run.id, 'timed_out', now + 1)).toBe(false); // ended: only a hang after the report
      expect(await b.beginReclaim(r.claim.run.id, 'hung_after_report', now + 1)).toBe(true);
      expect((await b.getRun(r.claim.run.id))!).toMatchObject({ stopReason: 'hung_after_report', outcome: 'failed' });

      const g = await running(now, 'gone');
      await b.recordExits([{ runId: g.claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
      expect(await b.beginReclaim(g.claim.run.id, 'timed_out', now + 1)).toBe(false);
      expect((await b.getRun(g.claim.run.id))!.stopReason).toBeNull();
    });

    it('recordSigkill records the first SIGKILL only', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim } = await running(now);
      await b.beginReclaim(claim.run.id, 'timed_out', now);
      await b.recordSigkill(claim.run.id, now + 5);
      await b.recordSigkill(claim.run.id, now + 9);
      expect((await b.getRun(claim.run.id))!.sigkillAt).toBe(now + 5);
      const kills = (await b.showTask(t.id))!.events.filter((e) => e.kind === 'sigkill_sent');
      expect(kills.map((e) => e.data)).toEqual([{ at: now + 5, pid: 4000 }]);
      await b.recordSigkill('r-none', now); // nothing to record it on: no error
    });

    it('a cancelled task\'s worker can no longer write, but may record its stop once reclaimed', async () => {
      await skill();
      const now = Date.now();
      const { task: t, cred } = await running(now);
      await b.cancelTask(t.id);
      expect(await rejection(b.heartbeat(cred, null, now))).toBeInstanceOf(NotCurrentError);
      expect(await rejection(b.report(cred, { outcome: 'completed' }, now))).toBeInstanceOf(NotCurrentError);
      expect((await task(t.id)).status).toBe('cancelled');
      expect(await b.beginReclaim(cred.runId, 'cancelled', now + 1)).toBe(true);
      await b.recordStop(cred, 'SIGTERM', now + 2);
      expect((await b.getRun(cred.runId))!.stoppedOnRequest).toBe(true);
    });

    it('after its run ended every late write is refused, even recordStop; reportApplied tells what landed', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      expect(await b.reportApplied(cred, 'completed')).toBe(false);
      await b.report(cred, { outcome: 'completed', result: { v: 1 } }, now + 1);
      expect(await task(t.id)).toMatchObject({ status: 'done', result: { v: 1 }, consecutiveFailures: 0, lastError: null });
      expect(await b.getRun(claim.run.id)).toMatchObject({ status: 'ended', outcome: 'completed', endedAt: now + 1, exitedAt: null });
      const after = await snapshot(b, t.id);
      for (const w of [
        b.report(cred, { outcome: 'completed', result: { v: 2 } }, now + 2),
        b.report(cred, { outcome: 'failed', error: 'late' }, now + 2),
        b.heartbeat(cred, null, now + 2),
        b.workerEvent(cred, 'late', null, now + 2),
        b.recordStop(cred, 'SIGTERM', now + 2),
      ].map(rejection)) {
        expect(await w).toBeInstanceOf(NotCurrentError);
      }
      expect(await snapshot(b, t.id)).toBe(after);
      expect(await b.reportApplied(cred, 'completed')).toBe(true);
      expect(await b.reportApplied(cred, 'failed')).toBe(false);
      expect(await b.reportApplied({ ...cred, token: '0'.repeat(32) }, 'completed')).toBe(false);
      expect(await b.reportApplied({ ...cred, runId: 'r-none' }, 'completed')).toBe(false);
    });

    it('after a retry, the old run\'s token is refused and the new run has its own', async () => {
      await skill();
      const now = Date.now();
      const { task: t, claim, cred } = await running(now);
      await b.report(cred, { outcome: 'failed', error: 'boom' }, now);
      await b.recordExits([{ runId: claim.run.id, at: now, exitCode: 1, gone: true }]);
      await accountAll(b, now, { ...POLICY, failureLimit: 1 });
      expect((await task(t.id)).status).toBe('blocked');
      await b.retryTask(t.id);
      const again = await claimOne(now + 1);
      expect(again.task.id).toBe(t.id);
      expect(again.token).not.toBe(claim.token);
      expect(await rejection(b.heartbeat(cred, null, now + 2))).toBeInstanceOf(NotCurrentError);
      expect(await rejection(b.report(cred, { outcome: 'completed' }, now + 2))).toBeInstanceOf(NotCurrentError);
      // The old token does not open the new run either.
      expect(await rejection(b.heartbeat({ ...credOf(again), token: claim.token }, null, now + 2))).toBeInstanceOf(NotCurrentError);
      await b.heartbeat(credOf(again), { fresh: true }, now + 3);
      expect((await b.getRun(again.run.id))!.progress).toEqual({ fresh: true });
      expect((await b.getRun(claim.run.id))!.progress).toBeNull();
    });

    it('report: failed and deferred end the run and leave the task to accounting; a bad defer is refused', async () => {
      await skill();
      const now = Date.now();
      const f = await running(now, 'fails');
      await b.report(f.cred, { outcome: 'failed', error: 'x'.repeat(10_000) }, now + 1);
      const fr = (await b.getRun(f.claim.run.id))!;
      expect(fr).toMatchObject({ status: 'ended', outcome: 'failed', endedAt: now + 1 });
      expect(fr.error!.length).toBe(8192);
      expect(await task(f.task.id)).toMatchObject({ status: 'running', currentRunId: f.claim.run.id });
      expect(await b.reportApplied(f.cred, 'failed')).toBe(true);

      const d = await running(now, 'defers');
      const bad = await rejection(b.report(d.cred, { outcome: 'deferred', seconds: -1 }, now));
      expect(bad).toBeInstanceOf(BoardInputError);
      expect(bad.message).toContain('defer seconds must be a non-negative number, got -1');
      expect((await b.getRun(d.claim.run.id))!.status).toBe('running');
      await b.report(d.cred, { outcome: 'deferred', seconds: 2.5, reason: 'rate limited' }, now + 1);
      expect(await b.getRun(d.claim.run.id)).toMatchObject({ status: 'ended', outcome: 'deferred', deferUntil: now + 2501, error: 'rate limited' });
      expect(await task(d.task.id)).toMatchObject({ status: 'running' });
    });
  });
}
