/**
 * The HTTP view's reads: keyset pages of tasks (listTasksPage, newest first, stable while tasks are
 * added) and the event feed (eventsAfter: commit order, resumable, never a committed event skipped).
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board, type Task, type TaskKey } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { rejection, useBoard } from './helpers.js';

/** Every page of `query` (limit `limit`), in order. */
async function allPages(b: Board, query: Parameters<Board['listTasksPage']>[0], between?: () => Promise<void>): Promise<Task[]> {
  const out: Task[] = [];
  let after: TaskKey | null = null;
  for (let i = 0; i < 1000; i++) {
    const page = await b.listTasksPage({ ...query, after });
    out.push(...page.tasks);
    if (!page.next) return out;
    after = page.next;
    await between?.();
  }
  throw new Error('no end of pages');
}

const newestFirst = (a: Task, b: Task) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/** Registers the `pages and feed` block. */
export function pagesConformance(factory: BoardFactory): void {
  describe('pages and feed', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('listTasksPage: newest first (created_at DESC, id DESC), pages that join up, filters, limits', async () => {
      await skill('echo');
      await skill('other');
      const made: Task[] = [];
      for (let i = 0; i < 23; i++) made.push(await b.createTask({ skill: i % 3 === 0 ? 'other' : 'echo', title: `job ${i}${i === 7 ? ' needle_%' : ''}` }));
      const expected = [...made].sort(newestFirst);
      const first = await b.listTasksPage({ limit: 5 });
      expect(first.tasks.map((t) => t.id)).toEqual(expected.slice(0, 5).map((t) => t.id));
      expect(first.next).toEqual({ createdAt: first.tasks[4]!.createdAt, id: first.tasks[4]!.id });
      expect((await allPages(b, { limit: 5 })).map((t) => t.id)).toEqual(expected.map((t) => t.id));
      expect((await b.listTasksPage({})).tasks).toHaveLength(23);
      expect((await b.listTasksPage({ limit: 23 })).next).toBeNull();
      expect((await allPages(b, { skill: 'other', limit: 2 })).map((t) => t.id)).toEqual(expected.filter((t) => t.skill === 'other').map((t) => t.id));
      await b.cancelTask(made[4]!.id);
      await b.blockTask(made[9]!.id, 'why');
      expect((await allPages(b, { status: 'cancelled', limit: 1 })).map((t) => t.id)).toEqual([made[4]!.id]);
      expect((await allPages(b, { status: 'ready', limit: 4 })).map((t) => t.id)).toEqual(expected.filter((t) => t.id !== made[4]!.id && t.id !== made[9]!.id).map((t) => t.id));
      // A search: a substring of the title (LIKE's % and _ taken literally), or the exact id.
      expect((await b.listTasksPage({ q: 'needle_%' })).tasks.map((t) => t.id)).toEqual([made[7]!.id]);
      expect((await b.listTasksPage({ q: '%' })).tasks).toEqual([expect.objectContaining({ id: made[7]!.id })]);
      expect((await b.listTasksPage({ q: made[12]!.id })).tasks.map((t) => t.id)).toEqual([made[12]!.id]);
      expect((await b.listTasksPage({ q: 'job 1', skill: 'echo' })).tasks.map((t) => t.title).sort()).toEqual(['job 1', 'job 10', 'job 11', 'job 13', 'job 14', 'job 16', 'job 17', 'job 19'].sort());
      // A search looks at `scan` tasks at most per page (a bounded walk on any board), then goes on
      // from where it stopped: the pages of a budget of 4 join up to the same answer, with no task
      // twice; an exact id is found at once wherever it is.
      const small = await b.listTasksPage({ q: 'job 1', skill: 'echo', scan: 4 });
      expect(small.partial).toBe(true);
      expect(small.next).not.toBeNull();
      const found: string[] = [];
      let after: TaskKey | null = null;
      for (let i = 0; i < 100; i++) {
        const p = await b.listTasksPage({ q: 'job 1', skill: 'echo', scan: 4, limit: 2, after });
        expect(p.tasks.length).toBeLessThanOrEqual(2);
        found.push(...p.tasks.map((t) => t.title!));
        if (!p.next) break;
        after = p.next;
      }
      // In the page order (tasks added in one millisecond go by id, newest first): from `expected`.
      expect(found).toEqual(expected.filter((t) => t.skill === 'echo' && t.title.startsWith('job 1')).map((t) => t.title));
      expect([...found].sort()).toEqual(['job 1', 'job 10', 'job 11', 'job 13', 'job 14', 'job 16', 'job 17', 'job 19']);
      expect((await b.listTasksPage({ q: made[0]!.id, scan: 1 })).tasks.map((t) => t.id)).toEqual([made[0]!.id]);
      expect((await b.listTasksPage({ q: 'needle' })).partial).toBeUndefined();
      for (const bad of [0, 5001, 2.5]) expect(await rejection(b.listTasksPage({ q: 'x', scan: bad }))).toBeInstanceOf(BoardInputError);
      for (const bad of [0, 501, 1.5]) expect(await rejection(b.listTasksPage({ limit: bad }))).toBeInstanceOf(BoardInputError);
      expect(await rejection(b.listTasksPage({ status: 'nope' as never }))).toBeInstanceOf(BoardInputError);
      expect(await rejection(b.listTasksPage({ q: 'x'.repeat(201) }))).toBeInstanceOf(BoardInputError);
    });

    it('listTasksPage is stable under concurrent adds: every task that existed at the first page is listed once, in order', async () => {
      await skill();
      const before: Task[] = [];
      for (let i = 0; i < 12; i++) before.push(await b.createTask({ skill: 'echo', title: `old ${i}` }));
      const other = await h.openAnother();
      const added: string[] = [];
      const seen = await allPages(b, { limit: 3 }, async () => {
        added.push((await other.createTask({ skill: 'echo', title: 'new' })).id);
      });
      const ids = seen.map((t) => t.id);
      expect(new Set(ids).size, 'no task twice').toBe(ids.length);
      expect(ids).toEqual([...before].sort(newestFirst).map((t) => t.id));
      expect(added.length).toBeGreaterThan(0);
      // The new tasks are on the next first page.
      const firstNow = (await b.listTasksPage({ limit: added.length })).tasks.map((t) => t.id);
      expect(new Set(firstNow)).toEqual(new Set(added));
    });

    it('eventsAfter: the feed end, then every later committed event once, in commit order, with its task; resumable', async () => {
      await skill();
      const start = await b.eventsAfter(null, 100);
      expect(start.events).toEqual([]);
      const t1 = await b.createTask({ skill: 'echo', title: 'one' });
      const t2 = await b.createTask({ skill: 'echo', title: 'two' });
      await b.cancelTask(t1.id);
      const a = await b.eventsAfter(start.cursor, 2);
      expect(a.events.map((e) => [e.taskId, e.kind])).toEqual([
        [t1.id, 'created'],
        [t2.id, 'created'],
      ]);
      expect(a.events[0]!.task).toMatchObject({ id: t1.id, title: 'one', status: 'cancelled' });
      expect(a.cursor).toBe(a.events[1]!.cursor);
      const rest = await b.eventsAfter(a.cursor, 100);
      expect(rest.events.map((e) => [e.taskId, e.kind])).toEqual([[t1.id, 'cancelled']]);
      // Resuming from the middle gives the same events again, none lost, none twice.
      const again = await b.eventsAfter(a.events[0]!.cursor, 100);
      expect(again.events.map((e) => e.id)).toEqual([a.events[1]!.id, rest.events[0]!.id]);
      const end = await b.eventsAfter(rest.cursor, 100);
      expect(end).toEqual({ events: [], cursor: rest.cursor });
      // Another connection's view is the same.
      const other = await h.openAnother();
      expect((await other.eventsAfter(start.cursor, 100)).events.map((e) => e.id)).toEqual([...a.events, ...rest.events].map((e) => e.id));
      for (const bad of ['', 'x', '1.2.3', '-1', '1'.repeat(60)]) expect(await rejection(b.eventsAfter(bad, 10))).toBeInstanceOf(BoardInputError);
      expect(await rejection(b.eventsAfter(start.cursor, 0))).toBeInstanceOf(BoardInputError);
    });

    it('the view reads long JSON bounded: a page and the feed carry a payload over 16 KiB as a truncation marker; showTask keeps it whole', async () => {
      await skill();
      const start = await b.eventsAfter(null, 10);
      const big = { s: 'p'.repeat(20_000) };
      const t = await b.createTask({ skill: 'echo', title: 'big', payload: big });
      const small = await b.createTask({ skill: 'echo', title: 'small', payload: { s: 'q' } });
      const marker = { truncated: true, chars: JSON.stringify(big).length };
      const page = await b.listTasksPage({ limit: 10 });
      expect(page.tasks.map((x) => [x.id, x.payload])).toEqual([
        [small.id, { s: 'q' }],
        [t.id, marker],
      ]);
      const feed = await b.eventsAfter(start.cursor, 10);
      expect(feed.events.find((e) => e.taskId === t.id)!.task!.payload).toEqual(marker);
      expect((await b.showTask(t.id))!.task.payload).toEqual(big);
      expect((await b.showTask(t.id, { boundedEvents: true }))!.task.payload).toEqual(big);
    });

    it("eventsAfter: a transaction's events appear only once it committed, and none is skipped", async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const other = await h.openAnother();
      const start = await other.eventsAfter(null, 100);
      const tx = b.begin();
      try {
        await tx.appendEvent(t.id, null, 'note', { n: 1 }, Date.now());
        expect((await other.eventsAfter(start.cursor, 100)).events).toEqual([]);
        await tx.commit();
      } finally {
        tx.close();
      }
      const got = await other.eventsAfter(start.cursor, 100);
      expect(got.events.map((e) => [e.kind, e.data])).toEqual([['note', { n: 1 }]]);
    });
  });
}
