/**
 * The measured cycle of the flat-cost figures, the same on both stores (flat.ts: SQLite, pg-flat.ts:
 * PostgreSQL): a task created, claimed and dispatched (claim, record spawn), the tick's reads, its
 * report and accounting, on a small and a big board in turn.
 */
import type { Board } from '@kanban-supervisor/board';
import { median } from '../lib.js';

export type FlatMedians = { claim: number; reads: number; account: number };

/**
 * 20 warm-up cycles on each board (statement caches, plans, connections, page cache), then `iters`
 * measured ones, interleaved so that disk and CPU noise hit the boards alike; the medians per board.
 */
export async function flatCycles(boards: Board[], iters: number): Promise<FlatMedians[]> {
  const times = boards.map(() => ({ claim: [] as number[], reads: [] as number[], account: [] as number[] }));
  const cycle = async (i: number, record: boolean) => {
    const b = boards[i]!;
    await b.createTask({ skill: 'noop' });
    const t0 = performance.now();
    const c = (await b.claimBatch(1, Date.now(), (r) => `/dev/null#${r}`))[0];
    if (!c) throw new Error('nothing to claim');
    await b.recordSpawns([{ runId: c.run.id, info: { pid: 4242, pgid: 4242, procStartTime: 1, bootId: 'bench-boot' } }], Date.now());
    const t1 = performance.now();
    await b.liveRuns();
    await b.unaccountedRuns();
    await b.blockUnknownSkillTasks(Date.now());
    await b.idle();
    const t2 = performance.now();
    await b.report({ taskId: c.task.id, runId: c.run.id, token: c.token }, { outcome: 'completed', result: null }, Date.now());
    const t3 = performance.now();
    await b.recordExits([{ runId: c.run.id, at: Date.now(), exitCode: 0, signal: null, gone: true }]);
    await b.applyAccountingBatch([{ runId: c.run.id, action: { action: 'done', consecutiveFailures: 0 } }], Date.now());
    const t4 = performance.now();
    if (record) {
      times[i]!.claim.push(t1 - t0);
      times[i]!.reads.push(t2 - t1);
      times[i]!.account.push(t4 - t3);
    }
  };
  for (let k = 0; k < 20; k++) for (let i = 0; i < boards.length; i++) await cycle(i, false);
  const order = boards.map((_, i) => i);
  const reversed = [...order].reverse();
  for (let k = 0; k < iters; k++) for (const i of k % 2 ? reversed : order) await cycle(i, true);
  return times.map((t) => ({ claim: median(t.claim), reads: median(t.reads), account: median(t.account) }));
}
