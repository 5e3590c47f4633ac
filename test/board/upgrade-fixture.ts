/**
 * The populated board of the upgrade tests (upgrade.test.ts, upgrade-pg.test.ts): what a v4 board
 * could hold, made through the board's API, and the issue 16 features tried on its old tasks.
 */
import { expect } from 'vitest';
import { detailJson, type Board } from '@kanban-supervisor/board';
import { LOG, accountAll, credOf, spawnInfo } from './conformance/helpers.js';

export const V4 = 4;

/** What a v4 board could hold, made through the board's API; returns every task id. */
export async function populate(b: Board): Promise<string[]> {
  await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'hi'], env: { A: '1' }, maxRuntimeSeconds: 60 });
  await b.putSkill({ name: 'other', argv: ['/bin/true'] });
  const now = Date.now();
  const mk = (title: string, extra: Record<string, unknown> = {}) =>
    b.createTask({ skill: 'echo', title, payload: { title, n: [1, 2] }, ...extra });
  const done = await mk('done', { priority: 90 });
  const failed = await mk('failed', { priority: 80, maxRetries: 5 });
  const running = await mk('running', { priority: 70, maxRuntimeSeconds: 30 });
  const blocked = await mk('blocked');
  const cancelled = await mk('cancelled');
  const scheduled = await mk('scheduled', { notBefore: now + 3_600_000 });
  const ready = await b.createTask({ skill: 'other', title: 'ready', priority: -3 });
  // done: claimed, spawned, an event and a heartbeat, completed with a result, exited, accounted.
  let [c] = await b.claimBatch(1, now, LOG);
  expect(c!.task.id).toBe(done.id);
  await b.recordSpawns([{ runId: c!.run.id, info: spawnInfo(4101) }], now);
  await b.workerEvent(credOf(c!), 'note', { step: 1 }, now);
  await b.heartbeat(credOf(c!), { pct: 50 }, now);
  await b.report(credOf(c!), { outcome: 'completed', result: { answer: 42 } }, now);
  await b.recordExits([{ runId: c!.run.id, at: now, gone: true, exitCode: 0 }]);
  // failed: a failure counted (the task is ready again, later, with consecutive_failures 1).
  [c] = await b.claimBatch(1, now, LOG);
  expect(c!.task.id).toBe(failed.id);
  await b.recordSpawns([{ runId: c!.run.id, info: spawnInfo(4102) }], now);
  await b.report(credOf(c!), { outcome: 'failed', error: 'it broke' }, now);
  await b.recordExits([{ runId: c!.run.id, at: now, gone: true, exitCode: 1 }]);
  await accountAll(b, now);
  // running: a live run.
  [c] = await b.claimBatch(1, now, LOG);
  expect(c!.task.id).toBe(running.id);
  await b.recordSpawns([{ runId: c!.run.id, info: spawnInfo(4103) }], now);
  await b.heartbeat(credOf(c!), null, now);
  await b.blockTask(blocked.id, 'needs a key');
  await b.cancelTask(cancelled.id);
  return [done, failed, running, blocked, cancelled, scheduled, ready].map((t) => t.id);
}

export async function details(b: Board, ids: string[]): Promise<unknown[]> {
  return Promise.all(ids.map(async (id) => detailJson((await b.showTask(id))!)));
}

/** Rows of a table, each as its v4 columns, in a stable order. */
export function sorted(rows: unknown[]): string[] {
  return rows.map((r) => JSON.stringify(r)).sort();
}

export /** Issue 16 on the old tasks: a child of an old task waits, keys, caps, prune keeps a parent. */
async function worksAfterUpgrade(b: Board, ids: string[]): Promise<void> {
  const [done, failed, running, blocked] = ids as [string, string, string, string];
  const child = await b.createTask({ skill: 'echo', title: 'child', after: [running, done], key: 'after-upgrade' });
  expect(child.status).toBe('waiting');
  expect((await b.createTasks([{ skill: 'echo', key: 'after-upgrade' }]))[0]).toMatchObject({ created: false, task: { id: child.id } });
  expect((await b.waitingFor([child.id])).map((w) => w.parent.id)).toEqual([running]);
  await b.linkTasks(failed, blocked);
  expect((await b.getTask(failed))!.status).toBe('waiting');
  await b.setSkillCap('echo', 1);
  expect((await b.listSkills()).find((s) => s.name === 'echo')!.maxConcurrent).toBe(1);
  // The done task is a parent of a waiting child: kept by a prune of everything finished.
  const r = await b.pruneBatch({ before: Date.now() + 60_000, limit: 100 });
  expect(await b.getTask(done)).not.toBeNull();
  expect(r.tasks).toBe(1); // the cancelled one
  expect((await b.counts()).tasks).toMatchObject({ waiting: 2, done: 1, cancelled: 0, running: 1, blocked: 1 });
}
