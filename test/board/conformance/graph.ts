/**
 * The task graph contract: tasks added after others wait until every parent is done and become
 * ready in the transaction that marks the last parent done (a reader never sees the parent done
 * and the child still waiting), links on existing tasks (cycles and unknown tasks refused, named),
 * what holds a waiting task, cascaded cancels, and the parents' results a worker reads (fenced).
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, NotCurrentError, type Board, type ParentPage, type Task } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { accountAll, credOf, rejection, spawnInfo, useBoard } from './helpers.js';

/** Registers the `task graph` block. */
export function graphConformance(factory: BoardFactory): void {
  describe('task graph', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, claimOne, task, kinds } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    const add = (title: string, after: string[] = [], priority = 0): Promise<Task> => b.createTask({ skill: 'echo', title, after, priority });

    /** Claim the task `id` (it must be the only ready one), spawn it and report it completed with `result`. */
    async function complete(id: string, result: unknown = { from: id }, board: Board = b): Promise<void> {
      const now = Date.now();
      const c = await claimOne(now, board);
      expect(c.task.id).toBe(id);
      await board.recordSpawns([{ runId: c.run.id, info: spawnInfo(5000) }], now);
      await board.report(credOf(c), { outcome: 'completed', result: result as never }, now);
    }

    it('a task added after unfinished parents is waiting, never claimed; one whose parents are all done starts ready', async () => {
      await skill();
      const a = await add('a');
      const child = await add('child', [a.id]);
      expect(child.status).toBe('waiting');
      expect((await b.showTask(child.id))!.events[0]).toMatchObject({ kind: 'created', data: { after: [a.id], status: 'waiting' } });
      await complete(a.id);
      expect(await b.claimBatch(10, Date.now(), (r) => `/tmp/${r}`).then((cs) => cs.map((c) => c.task.id))).toEqual([child.id]);
      const late = await add('late', [a.id]);
      expect(late.status).toBe('ready');
      expect((await b.counts()).tasks.waiting).toBe(0);
    });

    it('an unknown parent is refused naming it, and nothing is added; so are a non-array and over 100 parents', async () => {
      await skill();
      const a = await add('a');
      const e = await rejection(add('x', [a.id, 'nope-123']));
      expect(e).toBeInstanceOf(BoardInputError);
      expect(e.message).toMatch(/no task "nope-123"/);
      expect((await b.listTasks()).map((t) => t.id)).toEqual([a.id]);
      await expect(b.createTask({ skill: 'echo', after: 'x' as never })).rejects.toThrow(/after must be an array/);
      await expect(b.createTask({ skill: 'echo', after: Array.from({ length: 101 }, (_, i) => `t${i}`) })).rejects.toThrow(/at most 100 parents/);
    });

    it('diamond A→B,C→D: D waits until both B and C are done, then is ready in the same transaction as the last report', async () => {
      await skill();
      const A = await add('A');
      // B before C by priority (both ready at once; made in one millisecond, their order would be their ids').
      const B = await add('B', [A.id], 1);
      const C = await add('C', [A.id]);
      const D = await add('D', [B.id, C.id]);
      await complete(A.id);
      expect((await task(B.id)).status).toBe('ready');
      expect((await task(C.id)).status).toBe('ready');
      expect((await task(D.id)).status).toBe('waiting');
      await complete(B.id, { from: 'B' });
      expect((await task(D.id)).status).toBe('waiting');
      const other = await h.openAnother();
      await complete(C.id, { from: 'C' });
      // Another connection, right after the report's commit: D is ready already.
      expect((await task(D.id, other)).status).toBe('ready');
      expect(await kinds(D.id)).toEqual(['created', 'released']);
      const released = (await b.showTask(D.id))!.events.at(-1)!;
      expect(released.data).toEqual({ after: C.id });
    });

    it('a reader never sees a parent done with its child still waiting (readiness commits with the parent)', async () => {
      await skill();
      const other = await h.openAnother();
      for (let round = 0; round < 5; round++) {
        const p = await add(`p${round}`);
        const c = await add(`c${round}`, [p.id]);
        let stop = false;
        let seen = 0;
        const reader = (async () => {
          while (!stop) {
            // One statement: one snapshot of both tasks.
            const ts = await other.listTasks({ limit: 1000 });
            const pp = ts.find((t) => t.id === p.id)!;
            const cc = ts.find((t) => t.id === c.id)!;
            seen++;
            if (pp.status === 'done') expect(cc.status, 'child of a done parent').not.toBe('waiting');
          }
        })();
        await complete(p.id);
        const cl = await claimOne(Date.now());
        expect(cl.task.id).toBe(c.id);
        await b.recordSpawns([{ runId: cl.run.id, info: spawnInfo(5001) }], Date.now());
        await b.report(credOf(cl), { outcome: 'completed' }, Date.now());
        stop = true;
        await reader;
        expect(seen).toBeGreaterThan(0);
      }
    });

    it('two parents finishing at once on two connections: their common child is ready (never left waiting)', async () => {
      await skill();
      const other = await h.openAnother();
      for (let round = 0; round < 4; round++) {
        const B = await add(`B${round}`);
        const C = await add(`C${round}`);
        const D = await add(`D${round}`, [B.id, C.id]);
        const now = Date.now();
        const claims = await b.claimBatch(2, now, (r) => `/tmp/${r}`);
        expect(claims.map((c) => c.task.id).sort()).toEqual([B.id, C.id].sort());
        await b.recordSpawns(claims.map((c, i) => ({ runId: c.run.id, info: spawnInfo(6000 + i) })), now);
        await Promise.all([
          b.report(credOf(claims[0]!), { outcome: 'completed' }, now),
          other.report(credOf(claims[1]!), { outcome: 'completed' }, now),
        ]);
        expect((await task(D.id)).status).toBe('ready');
        const cl = await claimOne(Date.now());
        expect(cl.task.id).toBe(D.id);
        await b.recordSpawns([{ runId: cl.run.id, info: spawnInfo(6100) }], Date.now());
        await b.report(credOf(cl), { outcome: 'completed' }, Date.now());
      }
    });

    it('accounting that marks the parent done (in a supervisor transaction) makes its child ready in that transaction', async () => {
      await skill();
      const p = await add('p');
      const c = await add('c', [p.id]);
      const now = Date.now();
      const cl = await claimOne(now);
      await b.recordSpawns([{ runId: cl.run.id, info: spawnInfo(5002) }], now);
      await b.recordExits([{ runId: cl.run.id, at: now, exitCode: 0, gone: true, outcomeIfUnreported: 'completed' }]);
      const tx = b.begin();
      try {
        await tx.applyAccountingBatch([{ runId: cl.run.id, action: { action: 'done', consecutiveFailures: 0 } }], now);
        const other = await h.openAnother();
        expect((await task(c.id, other)).status, 'not before the commit').toBe('waiting');
        await tx.commit();
        expect((await task(p.id, other)).status).toBe('done');
        expect((await task(c.id, other)).status).toBe('ready');
      } finally {
        tx.close();
      }
    });

    it('a parent that ends blocked or cancelled leaves its children waiting; waitingFor, showTask and list say which parent and why', async () => {
      await skill();
      const p1 = await add('p1');
      const p2 = await add('p2');
      const done = await add('p3');
      const c = await add('c', [p1.id, p2.id, done.id]);
      await b.blockTask(p1.id, 'needs a key');
      await b.cancelTask(p2.id);
      // p3 runs to done: c still waits for the other two.
      const cl = await claimOne(Date.now());
      expect(cl.task.id).toBe(done.id);
      await b.recordSpawns([{ runId: cl.run.id, info: spawnInfo(5003) }], Date.now());
      await b.report(credOf(cl), { outcome: 'completed' }, Date.now());
      expect((await task(c.id)).status).toBe('waiting');
      const holds = await b.waitingFor([c.id, p1.id]);
      expect(holds.map((x) => x.taskId)).toEqual([c.id, c.id]);
      const byId = new Map(holds.map((x) => [x.parent.id, x.parent]));
      expect(byId.get(p1.id)).toEqual({ id: p1.id, title: 'p1', status: 'blocked', lastError: 'needs a key' });
      expect(byId.get(p2.id)).toMatchObject({ id: p2.id, status: 'cancelled' });
      const shown = (await b.showTask(c.id))!;
      expect(shown.parents.map((x) => [x.id, x.status])).toEqual([
        [p1.id, 'blocked'],
        [p2.id, 'cancelled'],
        [done.id, 'done'],
      ].sort((x, y) => (x[0]! < y[0]! ? -1 : 1)));
      expect(shown.children).toEqual([]);
      expect((await b.showTask(p1.id))!.children).toEqual([{ id: c.id, title: 'c', status: 'waiting', lastError: null }]);
      expect((await b.listTasks({ status: 'waiting' })).map((t) => t.id)).toEqual([c.id]);
      expect((await b.counts()).tasks.waiting).toBe(1);
      // The blocked parent unblocked and done: the cancelled one still holds the child.
      await b.unblockTask(p1.id);
      await b.retryTask(p2.id);
      expect((await b.waitingFor([c.id])).map((x) => x.parent.status).sort()).toEqual(['ready', 'ready']);
    });

    it('link: a ready child of an unfinished parent becomes waiting; of a done parent it stays ready; idempotent; unlink frees it', async () => {
      await skill();
      const p = await add('p');
      const q = await add('q');
      const c = await add('c');
      expect((await b.linkTasks(c.id, p.id)).status).toBe('waiting');
      expect((await b.linkTasks(c.id, p.id)).status).toBe('waiting');
      expect((await b.linkTasks(c.id, q.id)).status).toBe('waiting');
      expect((await b.showTask(c.id))!.parents.map((x) => x.id).sort()).toEqual([p.id, q.id].sort());
      expect((await b.unlinkTasks(c.id, p.id)).status).toBe('waiting');
      expect((await b.unlinkTasks(c.id, q.id)).status).toBe('ready');
      expect(await kinds(c.id)).toEqual(['created', 'linked', 'linked', 'unlinked', 'unlinked']);
      await expect(b.unlinkTasks(c.id, q.id)).rejects.toThrow(new RegExp(`task ${c.id} does not wait for ${q.id}`));
      // A done parent: the link is kept (its result is read), the child stays ready.
      await b.linkTasks(c.id, p.id);
      await b.unlinkTasks(c.id, p.id);
      const d = await add('d');
      const cl = await claimOne(Date.now());
      expect([p.id, q.id, c.id, d.id]).toContain(cl.task.id);
    });

    it('link is refused for an unknown task (named), a task that is running or ended, and a cycle (named, ids in order)', async () => {
      await skill();
      const a = await add('a');
      const b1 = await add('b', [a.id]);
      const c = await add('c', [b1.id]);
      const before = await b.showTask(a.id);
      let e = await rejection(b.linkTasks(a.id, c.id));
      expect(e).toBeInstanceOf(BoardInputError);
      expect(e.message).toContain(`would close a cycle: ${a.id} → ${c.id} → ${b1.id} → ${a.id}`);
      e = await rejection(b.linkTasks(a.id, a.id));
      expect(e.message).toContain(`cycle: ${a.id} → ${a.id}`);
      expect(await b.showTask(a.id)).toEqual(before);
      await expect(b.linkTasks('nope-1', a.id)).rejects.toThrow(/no task "nope-1"/);
      await expect(b.linkTasks(a.id, 'nope-2')).rejects.toThrow(/no task "nope-2"/);
      await expect(b.unlinkTasks(a.id, 'nope-3')).rejects.toThrow(/no task "nope-3"/);
      const cl = await claimOne(Date.now());
      expect(cl.task.id).toBe(a.id);
      const x = await add('x');
      e = await rejection(b.linkTasks(a.id, x.id));
      expect(e.message).toMatch(new RegExp(`task ${a.id} is running; only a waiting or ready task can be linked`));
      await b.cancelTask(x.id);
      await expect(b.linkTasks(x.id, c.id)).rejects.toThrow(/is cancelled; only a waiting or ready task/);
    });

    it('cancelCascade cancels the task and every task waiting on it, transitively, in one transaction; others are untouched', async () => {
      await skill();
      const a = await add('a');
      const b1 = await add('b', [a.id]);
      const c = await add('c', [b1.id]);
      const d = await add('d', [a.id, c.id]);
      const free = await add('free');
      const other = await add('other-parent');
      const e2 = await add('e', [other.id]);
      const ids = await b.cancelCascade(a.id);
      expect(ids[0]).toBe(a.id);
      expect([...ids].sort()).toEqual([a.id, b1.id, c.id, d.id].sort());
      for (const id of ids) expect((await task(id)).status).toBe('cancelled');
      expect((await task(free.id)).status).toBe('ready');
      expect((await task(e2.id)).status).toBe('waiting');
      expect((await b.showTask(c.id))!.events.at(-1)).toMatchObject({ kind: 'cancelled', data: { from: 'waiting', cascade_from: a.id } });
      // Again on the cancelled root: nothing more waits on it.
      expect(await b.cancelCascade(a.id)).toEqual([a.id]);
      // A parent that ended cancelled leaves its children waiting; --cascade on it takes them.
      await b.cancelTask(other.id);
      expect((await task(e2.id)).status).toBe('waiting');
      expect(await b.cancelCascade(other.id)).toEqual([other.id, e2.id]);
    });

    it('cancelCascade of a done task is refused, nothing changed', async () => {
      await skill();
      const a = await add('a');
      await complete(a.id);
      await expect(b.cancelCascade(a.id)).rejects.toThrow(/is done; it cannot be cancelled/);
      await expect(b.cancelCascade('nope-4')).rejects.toThrow(/no task "nope-4"/);
    });

    it('retry and unblock of a task whose parents are not all done make it waiting, not ready', async () => {
      await skill();
      const p = await add('p');
      const c = await add('c', [p.id]);
      await b.cancelTask(c.id);
      expect((await b.retryTask(c.id)).status).toBe('waiting');
      await complete(p.id);
      expect((await task(c.id)).status).toBe('ready');
      const q = await add('q');
      const c2 = await add('c2');
      await b.blockTask(c2.id, 'hold');
      await b.linkTasks(q.id, p.id); // p done: q stays ready
      expect((await task(q.id)).status).toBe('ready');
      await expect(b.linkTasks(c2.id, q.id)).rejects.toThrow(/is blocked/);
    });

    it('createTasks: each task its parents; an unknown parent names the task\'s place; a keyed add that finds its task adds no links', async () => {
      await skill();
      const p = await add('p');
      const q = await add('q');
      const [k1, free] = await b.createTasks([
        { skill: 'echo', title: 'k1', key: 'K', after: [p.id] },
        { skill: 'echo', title: 'free' },
      ]);
      expect(k1).toMatchObject({ created: true, task: { status: 'waiting' } });
      expect(free!.task.status).toBe('ready');
      expect((await b.showTask(k1!.task.id))!.parents.map((x) => x.id)).toEqual([p.id]);
      // The key is on the board: that task, unchanged (no link to q, still waiting only for p).
      const [again] = await b.createTasks([{ skill: 'echo', title: 'other', key: 'K', after: [q.id] }]);
      expect(again).toMatchObject({ created: false, task: { id: k1!.task.id, title: 'k1' } });
      expect((await b.showTask(k1!.task.id))!.parents.map((x) => x.id)).toEqual([p.id]);
      expect((await b.showTask(q.id))!.children).toEqual([]);
      const n = (await b.listTasks()).length;
      const e = await rejection(b.createTasks([{ skill: 'echo', title: 'ok', after: [p.id] }, { skill: 'echo', title: 'bad', after: ['nope-9'] }]));
      expect(e).toBeInstanceOf(BoardInputError);
      expect(e.message).toMatch(/^tasks\[1\]: no task "nope-9"/);
      expect((await b.listTasks()).length, 'all or nothing').toBe(n);
    });

    it('retry of a done parent: children already released stay as they are; children still waiting now wait for its new run too', async () => {
      await skill();
      const p = await add('p');
      const q = await add('q');
      const c1 = await add('c1', [p.id]);
      const c2 = await add('c2', [p.id, q.id]);
      await b.blockTask(q.id, 'later');
      const first = await claimOne(Date.now());
      expect(first.task.id).toBe(p.id);
      await b.recordSpawns([{ runId: first.run.id, info: spawnInfo(5101) }], Date.now());
      await b.report(credOf(first), { outcome: 'completed', result: { v: 1 } }, Date.now());
      await b.recordExits([{ runId: first.run.id, at: Date.now(), gone: true }]);
      await accountAll(b, Date.now()); // the run ended and accounted: a retry is allowed
      expect((await task(c1.id)).status).toBe('ready');
      expect((await task(c2.id)).status).toBe('waiting');
      expect((await b.retryTask(p.id)).status).toBe('ready');
      // c1 was released: it stays ready (its result is p's when it runs: null while p runs again).
      expect((await task(c1.id)).status).toBe('ready');
      expect((await b.waitingFor([c2.id])).map((w) => w.parent.id).sort()).toEqual([p.id, q.id].sort());
      await b.cancelTask(c1.id); // out of the way of the claims below
      await b.unblockTask(q.id);
      const cq = await claimOne(Date.now());
      const cp = cq.task.id === p.id ? cq : await claimOne(Date.now());
      const other = cq.task.id === p.id ? await claimOne(Date.now()) : cq;
      for (const [c, result] of [[other, 'q'], [cp, { v: 2 }]] as const) {
        await b.recordSpawns([{ runId: c.run.id, info: spawnInfo(5100) }], Date.now());
        expect((await task(c2.id)).status, 'waiting until both are done again').toBe('waiting');
        await b.report(credOf(c), { outcome: 'completed', result: result as never }, Date.now());
      }
      expect((await task(c2.id)).status).toBe('ready');
      expect((await b.showTask(c2.id))!.events.filter((e) => e.kind === 'released')).toHaveLength(1);
      expect((await task(p.id)).result).toEqual({ v: 2 });
    });

    it("parentResults: the parents' results by id, read fenced (a wrong token or a reclaimed run is refused)", async () => {
      await skill();
      const p1 = await add('p1');
      const c1 = await claimOne(Date.now());
      await b.recordSpawns([{ runId: c1.run.id, info: spawnInfo(5005) }], Date.now());
      expect(await b.parentResults(credOf(c1)), 'a task without parents').toEqual({});
      await b.report(credOf(c1), { outcome: 'completed', result: { summary: 'one' } }, Date.now());
      const p2 = await add('p2');
      await complete(p2.id, [1, 2]);
      const c = await add('c', [p1.id, p2.id]);
      const now = Date.now();
      const cl = await claimOne(now);
      expect(cl.task.id).toBe(c.id);
      await b.recordSpawns([{ runId: cl.run.id, info: spawnInfo(5004) }], now);
      expect(await b.parentResults(credOf(cl))).toEqual({ [p1.id]: { summary: 'one' }, [p2.id]: [1, 2] });
      await expect(b.parentResults({ ...credOf(cl), token: 'x'.repeat(43) })).rejects.toBeInstanceOf(NotCurrentError);
      expect(await b.beginReclaim(cl.run.id, 'cancelled', now)).toBe(true);
      await expect(b.parentResults(credOf(cl))).rejects.toBeInstanceOf(NotCurrentError);
    });

    it("parentIds and parentPage: the parents' ids, and their results in pages of a byte budget (a larger result alone), read fenced", async () => {
      await skill();
      // Results of 10, 10, 50, 10 bytes of JSON text (a "…" is 3 UTF-8 bytes), in id order p0 < p1 < p2 < p3.
      const sizes = ['x'.repeat(8), 'é'.repeat(4), '…'.repeat(16), 'y'.repeat(8)];
      const ps: Task[] = [];
      for (const [i, v] of sizes.entries()) {
        const p = await b.createTask({ skill: 'echo', title: `p${i}` });
        await complete(p.id, v);
        ps.push(p);
      }
      const byId = new Map(ps.map((p, i) => [p.id, sizes[i]!]));
      const ids = [...byId.keys()].sort();
      const c = await add('c', ids);
      const now = Date.now();
      const cl = await claimOne(now);
      expect(cl.task.id).toBe(c.id);
      await b.recordSpawns([{ runId: cl.run.id, info: spawnInfo(5006) }], now);
      expect(await b.parentIds(credOf(cl))).toEqual(ids);
      // Walk the pages with a budget of 25 bytes: every result once, in id order, each page within
      // the budget unless it holds a single result.
      const seen: string[] = [];
      let after: string | null = null;
      for (let n = 0; n < 10; n++) {
        const page: ParentPage = await b.parentPage(credOf(cl), after, 25);
        const keys = Object.keys(page.results);
        expect(keys.length).toBeGreaterThan(0);
        const bytes = keys.reduce((t, k) => t + Buffer.byteLength(JSON.stringify(byId.get(k))), 0);
        if (keys.length > 1) expect(bytes).toBeLessThanOrEqual(25);
        for (const k of keys) expect(page.results[k]).toEqual(byId.get(k));
        seen.push(...keys);
        if (page.next === null) break;
        expect(page.next).toBe(keys[keys.length - 1]);
        after = page.next;
      }
      expect(seen).toEqual(ids);
      // One page holds all of them with a budget large enough; none after the last id.
      expect(await b.parentPage(credOf(cl), null, 1000)).toEqual({ results: Object.fromEntries(ids.map((id) => [id, byId.get(id)])), next: null });
      expect(await b.parentPage(credOf(cl), ids[ids.length - 1]!, 1000)).toEqual({ results: {}, next: null });
      await expect(b.parentPage({ ...credOf(cl), token: 'x'.repeat(43) }, null, 1000)).rejects.toBeInstanceOf(NotCurrentError);
      await expect(b.parentIds({ ...credOf(cl), token: 'x'.repeat(43) })).rejects.toBeInstanceOf(NotCurrentError);
    });
  });
}
