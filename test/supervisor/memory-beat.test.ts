/**
 * Bare heartbeats answered from memory (supervisor/src/channel/batch.ts, policies
 * heartbeatFromMemory), on a real SQLite board: a run's first beat is committed before it is
 * answered (it proves the run's credentials); later bare beats are answered at once while the
 * supervisor says the worker is live, and their times reach the board all together every
 * MEMORY_BEAT_WRITE_MS (the first of a round with the next transaction);
 * a beat with progress is never answered before its commit; a fenced run loses the proof at the
 * flush, and its next beat is refused; a wrong token is never answered from memory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import pino from 'pino';
import { SqliteBoard, type RunCredentials } from '@kanban-supervisor/board';
import { MEMORY_BEAT_WRITE_MS, heartbeatFromMemory, memoryBeatFreshMs, reclaimReason } from '@kanban-supervisor/policies';
import { ReportBatch, type AnswerBody } from '../../supervisor/dist/channel/batch.js';
import { Cleanups, waitFor } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function setup(runs: number) {
  const dir = cleanups.tempDir('ks-membeat-');
  const b = SqliteBoard.open(join(dir, 'kanban.db'));
  cleanups.push(() => b.close());
  await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
  for (let i = 0; i < runs; i++) await b.createTask({ skill: 'echo', title: `t${i}` });
  const creds: RunCredentials[] = (await b.claimBatch(runs, Date.now(), () => join(dir, 'x.log'))).map((c) => ({ taskId: c.task.id, runId: c.run.id, token: c.token }));
  const live = new Set(creds.map((c) => c.runId));
  const batch = new ReportBatch({ board: () => b, log: pino({ level: 'silent' }), windowMs: 0, heartbeatWindowMs: 0, memoryBeat: (runId) => live.has(runId) });
  return { b, creds, batch, live };
}

/** Push a report; resolves with its answer and whether it came synchronously (from memory). */
function send(batch: ReportBatch, report: Parameters<ReportBatch['push']>[0], at?: number): Promise<{ a: AnswerBody; sync: boolean }> {
  return new Promise((resolve) => {
    let pushing = true;
    batch.push(report, (a) => resolve({ a, sync: pushing }), at);
    pushing = false;
  });
}

/** A transaction of the batch's (as a tick's would be): what is waiting goes on the board. */
async function flush(b: SqliteBoard, batch: ReportBatch): Promise<void> {
  await batch.hold();
  const tx = b.begin();
  try {
    const applied = await batch.applyQueued(tx);
    await tx.commit();
    batch.committed(applied);
  } finally {
    tx.close();
    batch.release();
  }
}

const beat = (cred: RunCredentials) => ({ op: 'heartbeat' as const, cred, progress: undefined });

describe('bare heartbeats answered from memory', () => {
  it('the first beat is committed before its answer; the next are answered at once and reach the board with the next transaction (the first of a round)', async () => {
    const { b, creds, batch } = await setup(1);
    const cred = creds[0]!;
    const first = await send(batch, beat(cred), 1_000);
    expect(first).toEqual({ a: { ok: true }, sync: false });
    expect((await b.getRun(cred.runId))!.heartbeatAt).toBe(1_000);
    const second = await send(batch, beat(cred), 2_000);
    expect(second).toEqual({ a: { ok: true }, sync: true });
    expect((await b.getRun(cred.runId))!.heartbeatAt, 'not written yet').toBe(1_000);
    expect(batch.size).toBe(1);
    await send(batch, beat(cred), 3_000); // coalesced with the one before
    expect(batch.size).toBe(1);
    await flush(b, batch);
    expect((await b.getRun(cred.runId))!.heartbeatAt).toBe(3_000);
    expect(batch.size).toBe(0);
    expect(batch.stats.applied).toBe(3);
  });

  it('beats answered from memory are written all together at most every MEMORY_BEAT_WRITE_MS (a commit of their own when no tick takes them); the supervisor hears them meanwhile', async () => {
    const { b, creds, batch } = await setup(2);
    const [c1, c2] = creds as [RunCredentials, RunCredentials];
    for (const c of creds) await send(batch, beat(c), 1_000); // committed: proven
    expect(batch.heardAt(c1.runId), 'a committed beat is on the board: nothing only heard').toBeNull();
    // The first after a quiet spell goes with the next transaction (here a commit of its own, at once).
    expect((await send(batch, beat(c1), 2_000)).sync).toBe(true);
    // (The round's clock starts when its transaction takes the beats: after this.)
    const t0 = performance.now();
    await waitFor(async () => (await b.getRun(c1.runId))!.heartbeatAt === 2_000, 2_000);
    // The next round waits: answered at once, heard, not written, not even by a tick's transaction.
    expect((await send(batch, beat(c1), 3_000)).sync).toBe(true);
    expect((await send(batch, beat(c2), 3_500)).sync).toBe(true);
    expect(batch.heardAt(c1.runId)).toBe(3_000);
    expect(batch.heardAt(c2.runId)).toBe(3_500);
    expect(batch.size, 'nothing due: a tick has nothing of them to apply').toBe(0);
    await flush(b, batch);
    expect((await b.getRun(c1.runId))!.heartbeatAt).toBe(2_000);
    expect((await b.getRun(c2.runId))!.heartbeatAt).toBe(1_000);
    // Both written by one commit once the round is due.
    // (The bound is below: not before the round is due; the wait is long for a loaded machine.)
    await waitFor(async () => (await b.getRun(c1.runId))!.heartbeatAt === 3_000 || null, MEMORY_BEAT_WRITE_MS + 15_000);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(MEMORY_BEAT_WRITE_MS - 50);
    expect((await b.getRun(c2.runId))!.heartbeatAt).toBe(3_500);
    expect(batch.size).toBe(0);
    // Stopping: the supervisor's last transaction takes them, due or not.
    expect((await send(batch, beat(c1), 4_000)).sync).toBe(true);
    await flush(b, batch);
    expect((await b.getRun(c1.runId))!.heartbeatAt, 'not due').toBe(3_000);
    batch.writeMemoryBeatsNow();
    expect(batch.size).toBe(1);
    await flush(b, batch);
    expect((await b.getRun(c1.runId))!.heartbeatAt).toBe(4_000);
    // A run forgotten (no longer supervised) is no longer heard.
    batch.forget(c2.runId);
    expect(batch.heardAt(c2.runId)).toBeNull();
  });

  it('a run that ended by its own report is no longer answered from memory: its next beat waits for the board, which refuses it (fenced)', async () => {
    const { b, creds, batch } = await setup(1);
    const cred = creds[0]!;
    expect((await send(batch, beat(cred), 1_000)).sync).toBe(false); // committed: proven
    const end = send(batch, { op: 'end', cred, seq: null, report: { outcome: 'completed', result: { ok: 1 } } });
    await flush(b, batch);
    expect((await end).a).toEqual({ ok: true });
    expect((await b.getRun(cred.runId))!.endedAt).not.toBeNull();
    // The worker's process is still alive (the supervisor still vouches for it), its run is not.
    const after = send(batch, beat(cred), 3_000);
    let sync = true;
    void after.then(() => (sync = false));
    await flush(b, batch);
    const a = await after;
    expect(a.sync, 'not answered from memory').toBe(false);
    expect(a.a).toMatchObject({ ok: false, code: 'fenced' });
    expect(sync).toBe(false);
  });

  it('a beat heard but not yet on the board counts for the stall verdict (policies reclaimReason)', () => {
    const run = { startedAt: 0, heartbeatAt: 10_000, maxRuntimeSeconds: null, heartbeatTimeoutSeconds: 3, maxRssMb: null, rssBytes: null, taskCancelled: false, endedAt: null };
    expect(reclaimReason(run, 13_500)).toBe('stalled');
    expect(reclaimReason({ ...run, heardAt: 12_000 }, 13_500)).toBeNull();
    expect(reclaimReason({ ...run, heardAt: 10_400 }, 13_500)).toBe('stalled');
    expect(reclaimReason({ ...run, heardAt: null }, 13_500)).toBe('stalled');
  });

  it('a heartbeat with progress, or of a run the supervisor does not vouch for, or with another token, waits for its commit', async () => {
    const { b, creds, batch, live } = await setup(2);
    const [c1, c2] = creds as [RunCredentials, RunCredentials];
    for (const c of creds) expect((await send(batch, beat(c), 1_000)).sync).toBe(false);
    // Progress is the worker's data: committed first, whatever the proof.
    const p = await send(batch, { op: 'heartbeat', cred: c1, progress: { n: 7 } }, 2_000);
    expect(p).toEqual({ a: { ok: true }, sync: false });
    expect((await b.getRun(c1.runId))!.progress).toEqual({ n: 7 });
    // Not live (being stopped, gone, the supervisor's ticks not committing): through a transaction.
    live.delete(c2.runId);
    expect((await send(batch, beat(c2), 3_000)).sync).toBe(false);
    expect((await b.getRun(c2.runId))!.heartbeatAt).toBe(3_000);
    live.add(c2.runId);
    // A forged token is never vouched for from memory, and the board refuses it.
    const forged = await send(batch, beat({ ...c2, token: 'x'.repeat(c2.token.length) }), 4_000);
    expect(forged.sync).toBe(false);
    expect(forged.a).toMatchObject({ ok: false, code: 'fenced' });
    // The real token still is.
    expect((await send(batch, beat(c2), 5_000)).sync).toBe(true);
    // forget(): the run left the supervisor; its next beat goes through a transaction.
    batch.forget(c1.runId);
    expect((await send(batch, beat(c1), 6_000)).sync).toBe(false);
  });

  it('a run the supervisor never vouched for is never proven, however many of its beats commit', async () => {
    const { creds, batch, live } = await setup(1);
    const c = creds[0]!;
    live.delete(c.runId); // not one of its live workers (another supervisor's, or already stopping)
    for (let i = 1; i <= 3; i++) expect(await send(batch, beat(c), i * 1_000)).toEqual({ a: { ok: true }, sync: false });
    live.add(c.runId);
    expect((await send(batch, beat(c), 4_000)).sync, 'its first beat while vouched for proves it').toBe(false);
    expect((await send(batch, beat(c), 5_000)).sync).toBe(true);
  });

  it('a run fenced behind the supervisor\'s back (cancelled by another process): the flush withdraws the proof, the next beat is refused', async () => {
    const { b, creds, batch } = await setup(1);
    const cred = creds[0]!;
    await send(batch, beat(cred), 1_000);
    expect((await b.cancelTask(cred.taskId)).status).toBe('cancelled');
    // Until the next transaction, the supervisor does not know.
    expect((await send(batch, beat(cred), 2_000)).sync).toBe(true);
    await flush(b, batch);
    const next = await send(batch, beat(cred), 3_000);
    expect(next.sync).toBe(false);
    expect(next.a).toMatchObject({ ok: false, code: 'fenced' });
  });
});

describe('policies heartbeatFromMemory', () => {
  const base = { now: 100_000, workerLive: true, stopping: false, quarantined: false, tickIntervalMs: 1000, tickCommittedAt: 99_500, lease: null };
  it('allows a live worker of a supervisor whose ticks commit, and nothing else', () => {
    expect(heartbeatFromMemory(base)).toBe(true);
    expect(heartbeatFromMemory({ ...base, workerLive: false })).toBe(false);
    expect(heartbeatFromMemory({ ...base, stopping: true })).toBe(false);
    expect(heartbeatFromMemory({ ...base, quarantined: true })).toBe(false);
    expect(heartbeatFromMemory({ ...base, tickCommittedAt: 0 })).toBe(false);
    expect(heartbeatFromMemory({ ...base, tickCommittedAt: 100_000 - 3_000 })).toBe(true);
    expect(heartbeatFromMemory({ ...base, tickCommittedAt: 100_000 - 3_001 })).toBe(false);
  });
  it('on a shared board: only while the lease was renewed within half of it', () => {
    expect(memoryBeatFreshMs(1000, 30_000)).toBe(3_000);
    expect(memoryBeatFreshMs(1000, 4_000)).toBe(2_000);
    expect(heartbeatFromMemory({ ...base, lease: { ms: 30_000, renewedAt: null } })).toBe(false);
    expect(heartbeatFromMemory({ ...base, lease: { ms: 30_000, renewedAt: 99_000 } })).toBe(true);
    expect(heartbeatFromMemory({ ...base, lease: { ms: 4_000, renewedAt: 100_000 - 2_001 } })).toBe(false);
    // Never past the lease, whatever the tick interval.
    for (const tick of [100, 1000, 10_000]) expect(memoryBeatFreshMs(tick, 3 * tick)).toBeLessThan(3 * tick);
  });
});
