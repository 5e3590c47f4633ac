/**
 * What the supervisor's tick costs in memory (issue 11, item 12). Under churn the supervisor ticks
 * several times a second; whatever a tick allocates decides how far V8 grows its young generation
 * (above ~1 MB/s it stays at its 32 MB maximum). The RSS figure under churn itself is measured by
 * the chaos scenario "load" and the bench ("under load").
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { openBoard, type Board, type LiveRun } from '@kanban-supervisor/board';
import { Cleanups } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** A board with `n` live runs, as the supervisor sees them at a tick: spawned, heartbeating with progress. */
async function boardWithLiveRuns(n: number): Promise<Board> {
  const dir = cleanups.tempDir();
  const b = await openBoard(join(dir, 'kanban.db'));
  await b.putSkill({ name: 'hb', argv: ['/bin/true'], heartbeatTimeoutSeconds: 30, reclaimGraceSeconds: 5 });
  for (let i = 0; i < n; i++) await b.createTask({ skill: 'hb', title: `task ${i}`, payload: { i }, maxRuntimeSeconds: 600 });
  const claims = await b.claimBatch(n, Date.now(), (runId) => join(dir, 'logs', `${runId}.log`));
  await b.recordSpawns(
    claims.map((c, i) => ({ runId: c.run.id, info: { pid: 100_000 + i, pgid: 100_000 + i, procStartTime: 12_345 + i, bootId: '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0' } })),
    Date.now(),
  );
  for (const c of claims) await b.heartbeat({ taskId: c.task.id, runId: c.run.id, token: c.token }, { step: 3, of: 10 }, Date.now());
  return b;
}

/** Bytes allocated per call of `fn` (sampling heap profiler, counting what the GC already collected). */
async function bytesPerCall(fn: () => Promise<unknown>, calls: number): Promise<number> {
  const s = new Session();
  s.connect();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) => s.post(method, params ?? {}, (e: Error | null, r?: unknown) => (e ? reject(e) : resolve(r as T))));
  try {
    for (let i = 0; i < 50; i++) await fn(); // warm (statement cache, JIT)
    await post('HeapProfiler.enable');
    await post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    for (let i = 0; i < calls; i++) await fn();
    const { profile } = await post<{ profile: { head: ProfileNode } }>('HeapProfiler.stopSampling');
    let total = 0;
    const walk = (n: ProfileNode) => {
      total += n.selfSize;
      for (const c of n.children) walk(c);
    };
    walk(profile.head);
    return total / calls;
  } finally {
    s.disconnect();
  }
}
interface ProfileNode {
  selfSize: number;
  children: ProfileNode[];
}

describe('the cost of a tick', () => {
  it("liveRuns (read at every tick) allocates under 200 KB for 64 live runs, and still reads every field of every run", async () => {
    const b = await boardWithLiveRuns(64);
    try {
      const live = await b.liveRuns();
      expect(live).toHaveLength(64);
      // Every field as the run itself reads (getRun), plus the task's and skill's limits.
      for (const r of live) {
        const { taskStatus, taskSkill, taskMaxRuntimeSeconds, skillMaxRuntimeSeconds, skillHeartbeatTimeoutSeconds, skillReclaimGraceSeconds, skillMaxRssMb, skillReport, token, ...run } = r as LiveRun;
        expect(run).toEqual(await b.getRun(r.id));
        expect(token, 'the run token (an adopting supervisor writes slot heartbeats with it)').toMatch(/^[0-9a-f]{32}$/);
        expect({ taskStatus, taskSkill, taskMaxRuntimeSeconds, skillMaxRuntimeSeconds, skillHeartbeatTimeoutSeconds, skillReclaimGraceSeconds, skillMaxRssMb, skillReport }).toEqual({
          taskStatus: 'running',
          taskSkill: 'hb',
          taskMaxRuntimeSeconds: 600,
          skillMaxRuntimeSeconds: null,
          skillHeartbeatTimeoutSeconds: 30,
          skillReclaimGraceSeconds: 5,
          skillMaxRssMb: null,
          skillReport: 'board',
        });
      }
      expect(live[0]!.progress).toEqual({ step: 3, of: 10 });
      // Was ~620 KB a call (a row object per run spread into a LiveRun: ~10 KB a run); now ~75 KB.
      const bytes = await bytesPerCall(() => b.liveRuns(), 400);
      expect(bytes, `${Math.round(bytes / 1024)} KB per liveRuns() call`).toBeLessThan(200 * 1024);
    } finally {
      await b.close();
    }
  });
});
