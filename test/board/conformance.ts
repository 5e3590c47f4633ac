/**
 * The board conformance suite: the contract of every board operation, exercised through the `Board`
 * and `BoardTx` interfaces only (board/src/types.ts), so that every backend runs the same tests.
 * A backend registers it with `boardConformance(name, factory)` from its own test file
 * (conformance-sqlite.test.ts; the PostgreSQL board will have its own). What only one backend can
 * do to a board (bump its schema version, break a commit) comes from that factory or stays in that
 * backend's test file; where a behaviour must differ per backend, `BoardDifferences` says so, and
 * nothing else in this file asks which backend it runs on.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BoardInputError,
  NotCurrentError,
  SchemaTooNewError,
  type AccountAction,
  type Board,
  type BoardTx,
  type Claim,
  type RunCredentials,
  type SpawnInfo,
  type SupervisorOps,
  type Task,
} from '@kanban-supervisor/board';
import { TASK_STATUSES, decideAccounting, retryDelayMs, type AccountPolicy, type AccountingDecision } from '@kanban-supervisor/policies';

/** The behaviours that differ per backend, stated once by each backend's factory. */
export interface BoardDifferences {
  /**
   * Whether a board object's own reads (`getTask`, `showTask`…) see the uncommitted writes of the
   * transaction it has open. SQLite: yes (one connection carries both). A backend whose reads go
   * through a pool of connections (PostgreSQL): no. The transaction's own reads (`liveRuns`,
   * `unaccountedRuns` on the BoardTx) see them on every backend.
   */
  boardReadsSeeOpenTransaction: boolean;
}

/** One fresh board, opened with `openBoard`, and what the suite may do to it. */
export interface BoardUnderTest {
  board: Board;
  /** Another connection to the same board, as a second process would open it (`openBoard` again). */
  openAnother(): Promise<Board>;
  /** The schema version stored on the board (SQLite: `user_version`). */
  schemaVersion(): Promise<number>;
  /** Store another schema version on the board, behind the board's back (to fake a newer build's board). */
  setSchemaVersion(n: number): Promise<void>;
  /** Close every board this handle opened and remove the location. */
  cleanup(): Promise<void>;
}

export interface BoardFactory {
  /** A board at a new location (nothing there before): opening it creates the schema. */
  open(): Promise<BoardUnderTest>;
  /** A board at a location that exists but holds nothing yet (SQLite: a 0-byte file). */
  openEmpty(): Promise<BoardUnderTest>;
  /** The schema version this build creates and accepts. */
  schemaVersion: number;
  differences: BoardDifferences;
}

const LOG = (runId: string): string => `/var/log/kanban/${runId}.log`;

/** The failure policy of the accounting tests: limit 3, backoff 1 s, 4 s, 16 s… without jitter. */
const POLICY: AccountPolicy = { failureLimit: 3, backoff: { baseSeconds: 1, factor: 4, maxSeconds: 300, jitter: 0 } };

const spawnInfo = (pid: number): SpawnInfo => ({ pid, pgid: pid, procStartTime: 900_000 + pid, bootId: 'boot-conformance' });

const credOf = (c: Claim): RunCredentials => ({ taskId: c.task.id, runId: c.run.id, token: c.token });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait until the wall clock moved on, so that the next task is strictly younger (claims go by age). */
async function nextMs(): Promise<void> {
  const t = Date.now();
  while (Date.now() <= t) await sleep(1);
}

/** The error a refused operation rejected with (fails the test if it was not refused). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the operation to be refused, and it succeeded');
}

/** The supervisor's accounting step, as the daemon does it: decide with the policies, apply in one batch. */
async function accountAll(ops: SupervisorOps, now: number, policy: AccountPolicy = POLICY): Promise<Array<{ runId: string; action: AccountingDecision }>> {
  const items = (await ops.unaccountedRuns()).map(({ run, task }) => ({
    runId: run.id,
    action: decideAccounting(
      {
        outcome: run.outcome ?? 'crashed',
        consecutiveFailures: task.consecutiveFailures,
        taskMaxRetries: task.maxRetries,
        taskStatus: task.currentRunId === run.id ? task.status : 'cancelled',
        error: run.error,
        deferUntil: run.deferUntil,
        now,
        random: 0.5,
      },
      policy,
    ),
  }));
  await ops.applyAccountingBatch(items, now);
  return items;
}

export function boardConformance(name: string, factory: BoardFactory): void {
  describe(`board conformance: ${name}`, () => {
    const handles: BoardUnderTest[] = [];
    let h: BoardUnderTest;
    let b: Board;

    beforeEach(async () => {
      h = await factory.open();
      handles.push(h);
      b = h.board;
    });
    afterEach(async () => {
      while (handles.length) await handles.pop()!.cleanup();
    });

    const skill = (name = 'echo') => b.putSkill({ name, argv: ['/bin/true'] });

    async function claimOne(now: number, board: Board | BoardTx = b): Promise<Claim> {
      const claims = await board.claimBatch(1, now, LOG);
      expect(claims.length, 'one task claimed').toBe(1);
      return claims[0]!;
    }

    /** A claimed task's run, its process spawned. */
    async function running(now: number, title = 'work', extra: Partial<Parameters<Board['createTask']>[0]> = {}): Promise<{ task: Task; claim: Claim; cred: RunCredentials }> {
      const made = await b.createTask({ skill: 'echo', title, ...extra });
      const claim = await claimOne(now);
      expect(claim.task.id, 'the task just created is the one claimed').toBe(made.id);
      await b.recordSpawns([{ runId: claim.run.id, info: spawnInfo(4000) }], now);
      return { task: made, claim, cred: credOf(claim) };
    }

    /** Everything another reader could see of these tasks (refused writes must leave it as it was). */
    async function snapshot(board: Board, ...taskIds: string[]): Promise<string> {
      const shown = await Promise.all(taskIds.map((id) => board.showTask(id)));
      return JSON.stringify([shown, await board.listRuns({ limit: 1000 }), await board.counts(), await board.getOwner()]);
    }

    const task = async (id: string, board: Board = b): Promise<Task> => {
      const t = await board.getTask(id);
      if (!t) throw new Error(`no task ${id}`);
      return t;
    };
    const kinds = async (id: string, board: Board = b): Promise<string[]> => (await board.showTask(id))!.events.map((e) => e.kind);

    // ------------------------------------------------------------------------------------ skills

    describe('skills', () => {
      it('putSkill stores every field (defaults for those left out) and getSkill reads it back, on every connection', async () => {
        const minimal = await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'hi'] });
        expect(minimal).toEqual({
          name: 'echo',
          argv: ['/bin/echo', 'hi'],
          cwd: null,
          env: {},
          passEnv: [],
          maxRuntimeSeconds: null,
          heartbeatTimeoutSeconds: null,
          reclaimGraceSeconds: null,
          maxRssMb: null,
        });
        const full = await b.putSkill({
          name: 'full',
          argv: ['node', 'worker.js', '--flag'],
          cwd: '/srv/work',
          env: { MODE: 'fast', _X1: '' },
          passEnv: ['HOME', 'PATH', 'HOME'],
          maxRuntimeSeconds: 2.5,
          heartbeatTimeoutSeconds: 0,
          reclaimGraceSeconds: 3,
          maxRssMb: 0,
        });
        expect(full).toEqual({
          name: 'full',
          argv: ['node', 'worker.js', '--flag'],
          cwd: '/srv/work',
          env: { MODE: 'fast', _X1: '' },
          passEnv: ['HOME', 'PATH'],
          maxRuntimeSeconds: 2.5,
          heartbeatTimeoutSeconds: 0,
          reclaimGraceSeconds: 3,
          maxRssMb: 0,
        });
        expect(await b.getSkill('echo')).toEqual(minimal);
        const other = await h.openAnother();
        expect(await other.getSkill('full')).toEqual(full);
        expect(await other.getSkill('nope')).toBeNull();
      });

      it('putSkill on an existing name replaces its definition', async () => {
        await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'one'], cwd: '/a', env: { A: '1' }, maxRssMb: 10 });
        const second = await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'two'] });
        expect(second).toMatchObject({ argv: ['/bin/echo', 'two'], cwd: null, env: {}, maxRssMb: null });
        expect(await b.listSkills()).toEqual([second]);
      });

      it('listSkills is ordered by name; removeSkill says whether there was one to remove', async () => {
        for (const n of ['zeta', 'alpha', 'mid']) await skill(n);
        expect((await b.listSkills()).map((s) => s.name)).toEqual(['alpha', 'mid', 'zeta']);
        expect(await b.removeSkill('mid')).toBe(true);
        expect(await b.removeSkill('mid')).toBe(false);
        expect(await b.removeSkill('never')).toBe(false);
        expect(await b.getSkill('mid')).toBeNull();
        expect((await b.listSkills()).map((s) => s.name)).toEqual(['alpha', 'zeta']);
      });

      it('accepts names of 1 to 64 letters, digits, ".", "_" or "-" starting with a letter or digit', async () => {
        for (const n of ['a', '9', 'x.y_z-1', 'A'.repeat(64)]) expect((await b.putSkill({ name: n, argv: ['x'] })).name).toBe(n);
        expect((await b.listSkills()).length).toBe(4);
      });

      it.each(['', 'bad name', '-lead', '.hidden', 'a/b', 'é', 'a'.repeat(65)])('refuses the skill name %j with BoardInputError naming it, storing nothing', async (bad) => {
        await skill('keep');
        const err = await rejection(b.putSkill({ name: bad, argv: ['/bin/true'] }));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`skill name ${JSON.stringify(bad)} is invalid`);
        expect((await b.listSkills()).map((s) => s.name)).toEqual(['keep']);
      });

      it.each([
        ['an empty command', { argv: [] }, 'skill x: the command must be a non-empty array of strings'],
        ['an empty command name', { argv: [''] }, 'skill x: the command name is empty'],
        ['a reserved variable', { env: { KANBAN_DB: '/tmp/x' } }, 'skill x: environment variable KANBAN_DB is reserved for the supervisor'],
        ['an invalid variable name', { env: { '1X': 'a' } }, 'skill x: invalid environment variable name "1X"'],
        ['a passed reserved variable', { passEnv: ['KANBAN_TOKEN'] }, 'skill x: --pass-env KANBAN_TOKEN'],
        ['a passed invalid name', { passEnv: ['A B'] }, 'skill x: --pass-env must name an environment variable, got "A B"'],
        ['a zero max runtime', { maxRuntimeSeconds: 0 }, 'skill x: max runtime must be'],
        ['a negative heartbeat timeout', { heartbeatTimeoutSeconds: -1 }, 'skill x: heartbeat timeout must be'],
        ['a reclaim grace above a day', { reclaimGraceSeconds: 86_401 }, 'skill x: reclaim grace must be'],
        ['a fractional max RSS', { maxRssMb: 1.5 }, 'skill x: max RSS must be'],
      ])('refuses %s with BoardInputError naming the skill, storing nothing', async (_what, bad, msg) => {
        const err = await rejection(b.putSkill({ name: 'x', argv: ['/bin/true'], ...bad }));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(msg);
        expect(await b.getSkill('x')).toBeNull();
      });
    });

    // ------------------------------------------------------------------------------------- tasks

    describe('tasks', () => {
      it('createTask makes a ready task with its defaults and a `created` event', async () => {
        await skill();
        const before = Date.now();
        const t = await b.createTask({ skill: 'echo' });
        const after = Date.now();
        expect(t).toEqual({
          id: expect.any(String),
          title: 'echo',
          skill: 'echo',
          payload: null,
          status: 'ready',
          priority: 0,
          createdAt: expect.any(Number),
          updatedAt: t.createdAt,
          notBefore: 0,
          consecutiveFailures: 0,
          maxRetries: null,
          maxRuntimeSeconds: null,
          lastError: null,
          result: null,
          currentRunId: null,
        });
        expect(t.createdAt).toBeGreaterThanOrEqual(before);
        expect(t.createdAt).toBeLessThanOrEqual(after);
        expect(await b.getTask(t.id)).toEqual(t);
        const shown = (await b.showTask(t.id))!;
        expect(shown.runs).toEqual([]);
        expect(shown.events).toEqual([{ id: expect.any(Number), taskId: t.id, runId: null, kind: 'created', data: { skill: 'echo', priority: 0 }, at: t.createdAt }]);
      });

      it('createTask keeps every field given, and the payload as JSON', async () => {
        await skill();
        const payload = { list: [1, 'two', null, { deep: true }], text: 'ünïcode', n: -1.5 };
        const t = await b.createTask({ skill: 'echo', title: 'full', payload, priority: -7, maxRuntimeSeconds: 2.5, maxRetries: 5, notBefore: 1_700_000_000_000 });
        expect(t).toMatchObject({ title: 'full', payload, priority: -7, maxRuntimeSeconds: 2.5, maxRetries: 5, notBefore: 1_700_000_000_000, status: 'ready' });
        const other = await h.openAnother();
        expect(await other.getTask(t.id)).toEqual(t);
        expect((await b.createTask({ skill: 'echo', payload: 'just a string' })).payload).toBe('just a string');
      });

      it('refuses an unknown skill naming it, the board and the registered skills', async () => {
        await skill('echo');
        await skill('alpha');
        const err = await rejection(b.createTask({ skill: 'nope' }));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain('unknown skill "nope"');
        expect(err.message).toContain(b.location);
        expect(err.message).toContain('registered: alpha, echo');
        expect(await b.listTasks()).toEqual([]);
      });

      it.each([
        ['a fractional priority', { priority: 1.5 }, 'priority must be an integer'],
        ['max retries 0', { maxRetries: 0 }, 'max retries must be'],
        ['a negative max runtime', { maxRuntimeSeconds: -1 }, 'max runtime must be'],
        ['a payload that is not JSON', { payload: { big: 10n } as never }, 'payload is not serialisable as JSON'],
      ])('refuses %s with BoardInputError, creating nothing', async (_what, bad, msg) => {
        await skill();
        const err = await rejection(b.createTask({ skill: 'echo', ...bad }));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(msg);
        expect(await b.listTasks()).toEqual([]);
        expect((await b.counts()).tasks.ready).toBe(0);
      });

      it('getTask and showTask answer null for an unknown id', async () => {
        expect(await b.getTask('t-none')).toBeNull();
        expect(await b.showTask('t-none')).toBeNull();
        expect(await b.getRun('r-none')).toBeNull();
      });

      it('listTasks filters by status and skill, oldest first, up to the limit', async () => {
        await skill('echo');
        await skill('other');
        const made: Task[] = [];
        for (const [i, s] of ['echo', 'other', 'echo', 'echo', 'other'].entries()) {
          made.push(await b.createTask({ skill: s, title: `t${i}` }));
          await nextMs();
        }
        await b.blockTask(made[2]!.id, 'held');
        await b.cancelTask(made[4]!.id);
        const ids = (ts: Task[]) => ts.map((t) => t.id);
        expect(ids(await b.listTasks())).toEqual(ids(made));
        expect(ids(await b.listTasks({ skill: 'echo' }))).toEqual([made[0]!.id, made[2]!.id, made[3]!.id]);
        expect(ids(await b.listTasks({ status: 'ready' }))).toEqual([made[0]!.id, made[1]!.id, made[3]!.id]);
        expect(ids(await b.listTasks({ status: 'ready', skill: 'other' }))).toEqual([made[1]!.id]);
        expect(ids(await b.listTasks({ status: 'blocked' }))).toEqual([made[2]!.id]);
        expect(ids(await b.listTasks({ status: 'cancelled' }))).toEqual([made[4]!.id]);
        expect(ids(await b.listTasks({ status: 'done' }))).toEqual([]);
        expect(ids(await b.listTasks({ limit: 2 }))).toEqual([made[0]!.id, made[1]!.id]);
        expect(ids(await b.listTasks({ skill: 'nope' }))).toEqual([]);
        const err = await rejection(b.listTasks({ status: 'waiting' as never }));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain('unknown status "waiting"');
      });

      it('showTask lists the runs in order and the task\'s events in the order they happened', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo', title: 'life' });
        await nextMs();
        const other = await b.createTask({ skill: 'echo', title: 'other' });
        const now = Date.now();
        const c1 = await claimOne(now);
        expect(c1.task.id).toBe(t.id);
        await b.recordSpawns([{ runId: c1.run.id, info: spawnInfo(4001) }], now + 1);
        await b.workerEvent(credOf(c1), 'step', { n: 1 }, now + 2);
        await b.report(credOf(c1), { outcome: 'failed', error: 'boom' }, now + 3);
        await b.recordExits([{ runId: c1.run.id, at: now + 4, exitCode: 1, signal: null, gone: true }]);
        expect((await accountAll(b, now + 5)).map((d) => d.action.action)).toEqual(['requeue']);
        const c2 = await claimOne(now + 1005); // the backoff of one failure, and t is older than `other`
        expect(c2.task.id).toBe(t.id);
        await b.report(credOf(c2), { outcome: 'completed', result: { ok: true } }, now + 1006);
        await b.recordExits([{ runId: c2.run.id, at: now + 1007, exitCode: 0, signal: null, gone: true }]);
        expect((await accountAll(b, now + 1008)).map((d) => d.action.action)).toEqual(['leave']);

        const shown = (await b.showTask(t.id))!;
        expect(shown.task).toMatchObject({ status: 'done', result: { ok: true }, consecutiveFailures: 0, lastError: null, currentRunId: null });
        expect(shown.runs.map((r) => [r.id, r.status, r.outcome, r.startedAt, r.endedAt, r.exitedAt, r.accountedAt])).toEqual([
          [c1.run.id, 'ended', 'failed', now, now + 3, now + 4, now + 5],
          [c2.run.id, 'ended', 'completed', now + 1005, now + 1006, now + 1007, now + 1008],
        ]);
        expect(shown.events.map((e) => [e.kind, e.runId, e.at])).toEqual([
          ['created', null, t.createdAt],
          ['claimed', c1.run.id, now],
          ['spawned', c1.run.id, now + 1],
          ['step', c1.run.id, now + 2],
          ['reported', c1.run.id, now + 3],
          ['exited', c1.run.id, now + 4],
          ['requeued', c1.run.id, now + 5],
          ['claimed', c2.run.id, now + 1005],
          ['reported', c2.run.id, now + 1006],
          ['exited', c2.run.id, now + 1007],
        ]);
        const data = shown.events.map((e) => e.data);
        expect(data[1]).toEqual({ attempt: 1 });
        expect(data[2]).toEqual({ pid: 4001 });
        expect(data[3]).toEqual({ n: 1 });
        expect(data[4]).toEqual({ outcome: 'failed', error: 'boom' });
        expect(data[5]).toEqual({ exit_code: 1, signal: null, pid: 4001 });
        expect(data[6]).toEqual({ outcome: 'failed', consecutive_failures: 1, not_before: now + 1005, counted: true });
        expect(data[7]).toEqual({ attempt: 2 });
        const ids = shown.events.map((e) => e.id);
        expect([...ids].sort((x, y) => x - y)).toEqual(ids);
        expect(new Set(ids).size).toBe(ids.length);
        expect(shown.events.every((e) => e.taskId === t.id)).toBe(true);
        expect(await kinds(other.id)).toEqual(['created']);
      });

      it('cancel: a ready or blocked task is cancelled once; a done task is refused; an unknown id is refused', async () => {
        await skill();
        const ready = await b.createTask({ skill: 'echo' });
        const c = await b.cancelTask(ready.id);
        expect(c).toMatchObject({ id: ready.id, status: 'cancelled', currentRunId: null });
        expect(await b.getTask(ready.id)).toEqual(c);
        const again = await b.cancelTask(ready.id);
        expect(again.status).toBe('cancelled');
        expect(await kinds(ready.id)).toEqual(['created', 'cancelled']);
        expect((await b.showTask(ready.id))!.events[1]!.data).toEqual({ from: 'ready' });

        const blocked = await b.createTask({ skill: 'echo' });
        await b.blockTask(blocked.id, 'wait');
        expect((await b.cancelTask(blocked.id)).status).toBe('cancelled');

        const { task: done, cred } = await running(Date.now());
        await b.report(cred, { outcome: 'completed' }, Date.now());
        const err = await rejection(b.cancelTask(done.id));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`task ${done.id} is done; it cannot be cancelled`);
        expect((await task(done.id)).status).toBe('done');

        const unknown = await rejection(b.cancelTask('t-none'));
        expect(unknown).toBeInstanceOf(BoardInputError);
        expect(unknown.message).toContain('no task "t-none"');
        expect((await b.claimBatch(10, Date.now(), LOG)).length).toBe(0);
      });

      it('cancel: a running task is cancelled and keeps its run until the supervisor reclaims it', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        const c = await b.cancelTask(t.id);
        expect(c).toMatchObject({ status: 'cancelled', currentRunId: claim.run.id });
        const live = await b.liveRuns();
        expect(live.map((r) => [r.id, r.taskStatus])).toEqual([[claim.run.id, 'cancelled']]);
        expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'cancelled', runId: claim.run.id, data: { from: 'running' } });
      });

      it('block: only a ready (or already blocked) task, with a reason; a blocked task is never claimed', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const blank = await rejection(b.blockTask(t.id, '  '));
        expect(blank).toBeInstanceOf(BoardInputError);
        expect(blank.message).toContain('a block needs a reason');
        expect((await task(t.id)).status).toBe('ready');
        expect(await b.blockTask(t.id, 'waiting for the API key')).toMatchObject({ status: 'blocked', lastError: 'waiting for the API key' });
        expect((await b.blockTask(t.id, 'still waiting')).lastError).toBe('still waiting');
        expect((await b.showTask(t.id))!.events.slice(1).map((e) => [e.kind, e.data])).toEqual([
          ['blocked', { reason: 'waiting for the API key', by: 'operator' }],
          ['blocked', { reason: 'still waiting', by: 'operator' }],
        ]);
        expect(await b.claimBatch(5, Date.now(), LOG)).toEqual([]);

        const { task: r } = await running(Date.now());
        const err = await rejection(b.blockTask(r.id, 'no'));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`task ${r.id} is running; only a ready task can be blocked`);
        const cancelled = await b.createTask({ skill: 'echo' });
        await b.cancelTask(cancelled.id);
        expect(await rejection(b.blockTask(cancelled.id, 'no'))).toBeInstanceOf(BoardInputError);
        expect((await task(cancelled.id)).status).toBe('cancelled');
      });

      it('unblock: a blocked task becomes ready with its counter, error and backoff cleared; anything else is refused', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 1' }]);
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 2, reason: 'crashed twice' } }], now);
        expect(await task(t.id)).toMatchObject({ status: 'blocked', consecutiveFailures: 2, lastError: 'crashed twice' });
        const u = await b.unblockTask(t.id);
        expect(u).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: 0, currentRunId: null });
        expect((await kinds(t.id)).at(-1)).toBe('unblocked');
        const err = await rejection(b.unblockTask(t.id));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`task ${t.id} is ready, not blocked`);
        expect((await claimOne(now + 1)).task.id).toBe(t.id);
      });

      it('retry: refused for a ready or running task, naming why', async () => {
        await skill();
        const later = await b.createTask({ skill: 'echo', notBefore: Date.now() + 3_600_000 });
        const e1 = await rejection(b.retryTask(later.id));
        expect(e1).toBeInstanceOf(BoardInputError);
        expect(e1.message).toContain(`task ${later.id} is ready (waiting until`);
        await b.cancelTask(later.id);
        const { task: r, claim } = await running(Date.now());
        const e2 = await rejection(b.retryTask(r.id));
        expect(e2).toBeInstanceOf(BoardInputError);
        expect(e2.message).toContain(`task ${r.id} is running (run ${claim.run.id})`);
        expect((await task(r.id)).status).toBe('running');
        expect(await rejection(b.retryTask('t-none'))).toBeInstanceOf(BoardInputError);
      });

      it('retry: a blocked task becomes ready with its counter reset (event `retried`)', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 3, reason: 'crashed 3 times' } }], now);
        const r = await b.retryTask(t.id);
        expect(r).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: 0, result: null, currentRunId: null });
        expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'retried', runId: null, data: { from: 'blocked', consecutive_failures: 3 } });
        expect((await claimOne(now + 1)).task.id).toBe(t.id);
      });

      it('retry: refused while a run of the task is not accounted (cancelled, its worker stopping), allowed once it is', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.cancelTask(t.id);
        const refused = async () => {
          const err = await rejection(b.retryTask(t.id));
          expect(err).toBeInstanceOf(BoardInputError);
          expect(err.message).toContain(`task ${t.id} is cancelled but its run ${claim.run.id} has not ended yet`);
          expect((await task(t.id)).status).toBe('cancelled');
        };
        await refused(); // the worker is alive
        expect(await b.beginReclaim(claim.run.id, 'cancelled', now + 1)).toBe(true);
        await refused(); // SIGTERM sent
        await b.recordExits([{ runId: claim.run.id, at: now + 2, signal: 'SIGTERM', gone: false, outcomeIfUnreported: 'cancelled' }]);
        await refused(); // ended, its process group not confirmed gone
        await b.recordExits([{ runId: claim.run.id, at: now + 3, gone: true }]);
        await refused(); // gone, not accounted
        expect((await accountAll(b, now + 4)).map((d) => d.action)).toEqual([{ action: 'leave' }]);
        const r = await b.retryTask(t.id);
        expect(r).toMatchObject({ status: 'ready', currentRunId: null, consecutiveFailures: 0 });
        const again = await claimOne(now + 5);
        expect(again.task.id).toBe(t.id);
        expect(again.run.id).not.toBe(claim.run.id);
      });

      it('retry: a done task whose worker is still exiting is refused; once accounted it runs again, its result cleared', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim, cred } = await running(now);
        await b.report(cred, { outcome: 'completed', result: 42 }, now + 1);
        expect(await task(t.id)).toMatchObject({ status: 'done', result: 42 });
        const err = await rejection(b.retryTask(t.id));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`run ${claim.run.id} has not ended yet`);
        await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: 0, gone: true }]);
        await accountAll(b, now + 3);
        const r = await b.retryTask(t.id);
        expect(r).toMatchObject({ status: 'ready', result: null, currentRunId: null });
      });
    });

    // ------------------------------------------------------------------------------------ claims

    describe('claims', () => {
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
        expect(await b.counts()).toEqual({ tasks: { ready: 0, running: 7, done: 0, blocked: 0, cancelled: 0 }, liveRuns: 7 });
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

    // ----------------------------------------------------------------------------------- fencing

    describe('fencing of worker writes', () => {
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
          const writes: Array<Promise<unknown>> = [
            b.heartbeat(c, { step: 1 }, now),
            b.workerEvent(c, 'note', null, now),
            b.report(c, { outcome: 'completed', result: 1 }, now),
            b.report(c, { outcome: 'failed', error: 'x' }, now),
            b.recordStop(c, 'SIGTERM', now),
            b.loadRun(c),
          ];
          for (const w of writes) {
            const err = await rejection(w);
            expect(err).toBeInstanceOf(NotCurrentError);
            expect(err.message).toBe(`run ${claim.run.id} is no longer current for task ${c.taskId}`);
            expect((err as NotCurrentError).runId).toBe(claim.run.id);
          }
        }
        expect(await snapshot(b, t.id, t2.id)).toBe(before);
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
        ]) {
          expect(await rejection(w)).toBeInstanceOf(NotCurrentError);
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
        ]) {
          expect(await rejection(w)).toBeInstanceOf(NotCurrentError);
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

    // ------------------------------------------------------------------------- exits and spawns

    describe('exits', () => {
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

    // -------------------------------------------------------------------------------- accounting

    describe('accounting', () => {
      it('a failed run is accounted only once its processes are gone; requeue commits counter, backoff and error with it', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim, cred } = await running(now);
        await b.report(cred, { outcome: 'failed', error: 'boom' }, now + 1);
        expect(await b.unaccountedRuns()).toEqual([]);
        expect(await b.claimBatch(1, now + 1_000_000, LOG)).toEqual([]);
        await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: 1, signal: null, gone: true }]);
        const [u] = await b.unaccountedRuns();
        expect(u!.run).toMatchObject({ id: claim.run.id, outcome: 'failed', error: 'boom' });
        expect(u!.task).toMatchObject({ id: t.id, status: 'running', consecutiveFailures: 0, currentRunId: claim.run.id });
        const nb = now + 60_000;
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: nb, counted: true } }], now + 3);
        const want = { status: 'ready', consecutiveFailures: 1, notBefore: nb, lastError: 'boom', currentRunId: null, updatedAt: now + 3 };
        expect(await task(t.id)).toMatchObject(want);
        const other = await h.openAnother();
        expect(await task(t.id, other)).toMatchObject(want);
        expect((await b.getRun(claim.run.id))!.accountedAt).toBe(now + 3);
        expect(await b.unaccountedRuns()).toEqual([]);
        expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({
          kind: 'requeued',
          runId: claim.run.id,
          data: { outcome: 'failed', consecutive_failures: 1, not_before: nb, counted: true },
        });
        expect(await b.claimBatch(1, nb - 1, LOG)).toEqual([]);
        const next = await claimOne(nb, other);
        expect(next.task.id).toBe(t.id);
        expect((await b.showTask(t.id))!.events.at(-1)!.data).toEqual({ attempt: 2 });
      });

      it('an uncounted requeue keeps the counter and the last error', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: 'supervisor shut down' }]);
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'requeue', consecutiveFailures: 0, notBefore: now, counted: false } }], now);
        expect(await task(t.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: now });
      });

      it('block at the limit: the task is blocked with the reason and the counter', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
        const reason = 'crashed 2 times in a row (limit 2): exit 1';
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 2, reason } }], now + 1);
        expect(await task(t.id)).toMatchObject({ status: 'blocked', consecutiveFailures: 2, lastError: reason, currentRunId: null });
        expect((await b.showTask(t.id))!.events.at(-1)).toMatchObject({ kind: 'blocked', runId: claim.run.id, data: { reason, consecutive_failures: 2 } });
        expect(await b.claimBatch(1, now + 1_000_000, LOG)).toEqual([]);
      });

      it('done resets the counter and the last error', async () => {
        await skill();
        const now = Date.now();
        const first = await running(now);
        await b.recordExits([{ runId: first.claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 3' }]);
        await accountAll(b, now);
        expect(await task(first.task.id)).toMatchObject({ consecutiveFailures: 1, lastError: 'exit 3' });
        const c = await claimOne(now + 1000);
        await b.recordExits([{ runId: c.run.id, at: now + 1001, gone: true, outcomeIfUnreported: 'completed' }]);
        expect(await accountAll(b, now + 1002)).toEqual([{ runId: c.run.id, action: { action: 'done', consecutiveFailures: 0 } }]);
        expect(await task(first.task.id)).toMatchObject({ status: 'done', consecutiveFailures: 0, lastError: null, currentRunId: null });
        expect((await kinds(first.task.id)).at(-1)).toBe('done');
      });

      it('a run is accounted only once: a second decision for it changes nothing', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
        const requeue: AccountAction = { action: 'requeue', consecutiveFailures: 1, notBefore: now + 10, counted: true };
        await b.applyAccountingBatch([{ runId: claim.run.id, action: requeue }], now + 1);
        const once = await snapshot(b, t.id);
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'block', consecutiveFailures: 9, reason: 'again' } }], now + 2);
        await b.applyAccountingBatch([{ runId: claim.run.id, action: requeue }], now + 3);
        expect(await snapshot(b, t.id)).toBe(once);
        expect((await b.getRun(claim.run.id))!.accountedAt).toBe(now + 1);
        await b.applyAccountingBatch([{ runId: 'r-none', action: requeue }], now); // unknown run: nothing
        await b.applyAccountingBatch([], now);
        expect(await snapshot(b, t.id)).toBe(once);
      });

      it('a task cancelled meanwhile is left cancelled, whatever was decided; its run is accounted and let go', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
        await b.cancelTask(t.id); // after the run ended, before it was accounted
        const [u] = await b.unaccountedRuns();
        expect(u!.task).toMatchObject({ status: 'cancelled', currentRunId: claim.run.id });
        // A stale decision (made before the cancel) must not bring the task back.
        await b.applyAccountingBatch([{ runId: claim.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: now, counted: true } }], now + 1);
        expect(await task(t.id)).toMatchObject({ status: 'cancelled', currentRunId: null, consecutiveFailures: 0 });
        expect((await b.getRun(claim.run.id))!.accountedAt).toBe(now + 1);
        expect(await kinds(t.id)).not.toContain('requeued');
        expect(await b.claimBatch(1, now + 1_000_000, LOG)).toEqual([]);
        expect(await b.idle()).toBe(true);
      });

      it('several runs are accounted in one batch', async () => {
        await skill();
        const now = Date.now();
        const a = await running(now, 'a');
        const c = await running(now, 'c');
        await b.report(c.cred, { outcome: 'deferred', seconds: 30, reason: 'later' }, now);
        await b.recordExits([
          { runId: a.claim.run.id, at: now + 1, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 2' },
          { runId: c.claim.run.id, at: now + 1, gone: true, outcomeIfUnreported: 'crashed' },
        ]);
        const decided = await accountAll(b, now + 2);
        expect(Object.fromEntries(decided.map((d) => [d.runId, d.action]))).toEqual({
          [a.claim.run.id]: { action: 'requeue', consecutiveFailures: 1, notBefore: now + 1002, counted: true },
          [c.claim.run.id]: { action: 'requeue', consecutiveFailures: 0, notBefore: now + 30_000, counted: false },
        });
        expect(await task(a.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 1, lastError: 'exit 2', notBefore: now + 1002 });
        expect(await task(c.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, lastError: null, notBefore: now + 30_000 });
        expect(await b.unaccountedRuns()).toEqual([]);
      });

      it('with the policies: N crashes in a row with limit L requeue with growing backoff, and block at the L-th', async () => {
        await skill();
        const L = 3;
        const t = await b.createTask({ skill: 'echo', title: 'crashes' });
        let now = Date.now();
        const attempts: number[] = [];
        for (let i = 1; i <= L; i++) {
          const c = await claimOne(now);
          expect(c.task.id).toBe(t.id);
          expect(c.task.consecutiveFailures).toBe(i - 1); // the counter was committed before this claim
          await b.recordSpawns([{ runId: c.run.id, info: spawnInfo(5000 + i) }], now);
          await b.recordExits([{ runId: c.run.id, at: now + 10, exitCode: null, signal: 'SIGKILL', gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'killed by SIGKILL' }]);
          const [d] = await accountAll(b, now + 20, { ...POLICY, failureLimit: L });
          const after = await task(t.id);
          if (i < L) {
            const notBefore = now + 20 + retryDelayMs(i, POLICY.backoff);
            expect(d!.action).toEqual({ action: 'requeue', consecutiveFailures: i, notBefore, counted: true });
            expect(after).toMatchObject({ status: 'ready', consecutiveFailures: i, notBefore, lastError: 'killed by SIGKILL' });
            expect(await b.claimBatch(1, notBefore - 1, LOG)).toEqual([]);
            now = notBefore;
          } else {
            expect(d!.action).toEqual({ action: 'block', consecutiveFailures: L, reason: `crashed ${L} times in a row (limit ${L}): killed by SIGKILL` });
            expect(after).toMatchObject({ status: 'blocked', consecutiveFailures: L, lastError: `crashed ${L} times in a row (limit ${L}): killed by SIGKILL` });
          }
        }
        expect(await b.claimBatch(1, now + 10_000_000, LOG)).toEqual([]);
        const runs = await b.listRuns({ taskId: t.id });
        expect(runs.length).toBe(L);
        expect(runs.every((r) => r.outcome === 'crashed' && r.accountedAt !== null)).toBe(true);
        for (const e of (await b.showTask(t.id))!.events) if (e.kind === 'claimed') attempts.push((e.data as { attempt: number }).attempt);
        expect(attempts).toEqual([1, 2, 3]);
      });

      it('with the policies: a task\'s own max retries wins over the limit; deferred and abandoned runs do not count', async () => {
        await skill();
        const now = Date.now();
        const once = await running(now, 'once', { maxRetries: 1 });
        await b.recordExits([{ runId: once.claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed' }]);
        await accountAll(b, now);
        expect(await task(once.task.id)).toMatchObject({ status: 'blocked', consecutiveFailures: 1, lastError: 'crashed 1 time in a row (limit 1)' });

        const d = await running(now, 'defers');
        await b.report(d.cred, { outcome: 'deferred', seconds: 30 }, now);
        await b.recordExits([{ runId: d.claim.run.id, at: now, gone: true }]);
        await accountAll(b, now);
        expect(await task(d.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, notBefore: now + 30_000 });

        const again = await claimOne(now + 30_000); // the same task, once due
        expect(again.task.id).toBe(d.task.id);
        expect(await b.beginReclaim(again.run.id, 'abandoned', now + 30_001)).toBe(true); // the supervisor shut down
        await b.recordExits([{ runId: again.run.id, at: now + 30_002, gone: true, signal: 'SIGTERM', outcomeIfUnreported: 'abandoned' }]);
        await accountAll(b, now + 30_003);
        expect(await task(d.task.id)).toMatchObject({ status: 'ready', consecutiveFailures: 0, notBefore: now + 30_003 });
      });
    });

    // ------------------------------------------------------------------------------ transactions

    describe('transactions (BoardTx)', () => {
      it('every supervisor write of a transaction is invisible to another connection until commit, then all of it is there', async () => {
        await skill('echo');
        await skill('gone');
        const now = Date.now();
        const lost = await b.createTask({ skill: 'gone', title: 'lost' });
        await b.removeSkill('gone');
        const run = await running(now, 'to-reclaim');
        const end = await running(now, 'to-account');
        await b.report(end.cred, { outcome: 'failed', error: 'boom' }, now);
        await b.recordExits([{ runId: end.claim.run.id, at: now, gone: true }]);
        const fresh = await b.createTask({ skill: 'echo', title: 'fresh' });
        const other = await h.openAnother();
        const ids = [lost.id, run.task.id, end.task.id, fresh.id];
        const before = await snapshot(other, ...ids);

        const tx = b.begin();
        try {
          expect((await tx.blockUnknownSkillTasks(now + 1)).map((x) => x.taskId)).toEqual([lost.id]);
          const claims = await tx.claimBatch(5, now + 1, LOG);
          expect(claims.map((c) => c.task.id)).toEqual([fresh.id]);
          const c = claims[0]!;
          await tx.recordSpawns([{ runId: c.run.id, info: spawnInfo(6000) }], now + 2);
          expect(await tx.beginReclaim(run.claim.run.id, 'timed_out', now + 2)).toBe(true);
          await tx.recordSigkill(run.claim.run.id, now + 3);
          await tx.recordExits([{ runId: run.claim.run.id, at: now + 4, signal: 'SIGKILL', gone: true, outcomeIfUnreported: 'timed_out', errorIfUnreported: 'max runtime exceeded' }]);
          await tx.applyAccountingBatch([{ runId: end.claim.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: now + 1000, counted: true } }], now + 5);
          await tx.appendEvent(fresh.id, c.run.id, 'note', { x: 1 }, now + 6);
          await tx.setOwner({ pid: 77, host: 'host-a', startedAt: now });
          // The transaction's own reads see its writes.
          expect((await tx.liveRuns()).map((r) => [r.id, r.status, r.pid])).toEqual([[c.run.id, 'running', 6000]]);
          expect((await tx.unaccountedRuns()).map((u) => [u.run.id, u.run.outcome])).toEqual([[run.claim.run.id, 'timed_out']]);
          // Another connection sees none of them.
          expect(await snapshot(other, ...ids)).toBe(before);
          await tx.commit();
          expect(await task(lost.id, other)).toMatchObject({ status: 'blocked' });
          expect(await task(fresh.id, other)).toMatchObject({ status: 'running', currentRunId: c.run.id });
          expect(await other.getRun(c.run.id)).toMatchObject({ status: 'running', pid: 6000 });
          expect(await other.getRun(run.claim.run.id)).toMatchObject({ status: 'ended', outcome: 'timed_out', stopReason: 'timed_out', sigtermAt: now + 2, sigkillAt: now + 3, exitedAt: now + 4 });
          expect(await task(end.task.id, other)).toMatchObject({ status: 'ready', consecutiveFailures: 1, notBefore: now + 1000, lastError: 'boom' });
          expect((await other.showTask(fresh.id))!.events.at(-1)).toMatchObject({ kind: 'note', data: { x: 1 } });
          expect(await other.getOwner()).toMatchObject({ pid: 77, host: 'host-a', startedAt: now });
          expect(await snapshot(b, ...ids)).toBe(await snapshot(other, ...ids));
        } finally {
          tx.close();
        }
      });

      it(`the board object's own reads ${factory.differences.boardReadsSeeOpenTransaction ? 'see' : 'do not see'} its open transaction's writes (differences.boardReadsSeeOpenTransaction)`, async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const tx = b.begin();
        try {
          await tx.claimBatch(1, Date.now(), LOG);
          const seen = (await task(t.id)).status;
          expect(seen).toBe(factory.differences.boardReadsSeeOpenTransaction ? 'running' : 'ready');
          await tx.commit();
          expect((await task(t.id)).status).toBe('running');
        } finally {
          tx.close();
        }
      });

      it('a commit leaves the transaction usable: later writes commit on their own; an empty commit is a no-op', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const other = await h.openAnother();
        const tx = b.begin();
        try {
          await tx.commit();
          await tx.appendEvent(t.id, null, 'first', null, 1);
          await tx.commit();
          expect(await kinds(t.id, other)).toEqual(['created', 'first']);
          await tx.appendEvent(t.id, null, 'second', null, 2);
          expect(await kinds(t.id, other)).toEqual(['created', 'first']);
          await tx.commit();
          expect(await kinds(t.id, other)).toEqual(['created', 'first', 'second']);
          await tx.commit();
        } finally {
          tx.close();
        }
      });

      it('close rolls back what was not committed and ends the transaction; the board writes again', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const other = await h.openAnother();
        const tx = b.begin();
        await tx.appendEvent(t.id, null, 'kept', null, 1);
        await tx.commit();
        expect((await tx.claimBatch(1, Date.now(), LOG)).length).toBe(1);
        await tx.appendEvent(t.id, null, 'dropped', null, 2);
        tx.close();
        for (const board of [b, other]) {
          expect(await task(t.id, board)).toMatchObject({ status: 'ready', currentRunId: null });
          expect(await kinds(t.id, board)).toEqual(['created', 'kept']);
          expect(await board.listRuns()).toEqual([]);
        }
        expect(() => tx.close()).not.toThrow();
        expect(await rejection(tx.commit())).toBeInstanceOf(Error);
        expect(await rejection(tx.appendEvent(t.id, null, 'late', null, 3))).toBeInstanceOf(Error);
        expect(await rejection(tx.claimBatch(1, Date.now(), LOG))).toBeInstanceOf(Error);
        expect(await rejection(tx.liveRuns())).toBeInstanceOf(Error);
        expect(await kinds(t.id, other)).toEqual(['created', 'kept']);
        // The board object writes on its own again, and can open a new transaction.
        await b.appendEvent(t.id, null, 'after', null, 4);
        expect(await kinds(t.id, other)).toEqual(['created', 'kept', 'after']);
        const tx2 = b.begin();
        expect((await tx2.claimBatch(1, Date.now(), LOG)).length).toBe(1);
        await tx2.commit();
        tx2.close();
        expect((await task(t.id, other)).status).toBe('running');
      });

      it('a failed write inside a transaction undoes only itself', async () => {
        await skill();
        const t1 = await b.createTask({ skill: 'echo', title: 'one' });
        await nextMs();
        const t2 = await b.createTask({ skill: 'echo', title: 'two' });
        const other = await h.openAnother();
        const now = Date.now();
        const tx = b.begin();
        try {
          await tx.appendEvent(t1.id, null, 'before', null, now);
          let calls = 0;
          const failing = (runId: string) => {
            if (++calls === 2) throw new Error('no log folder');
            return LOG(runId);
          };
          // The first claim of this call was written when the second failed: both go.
          expect((await rejection(tx.claimBatch(2, now, failing))).message).toContain('no log folder');
          const refused = await rejection(tx.endUnspawned('r-none', 'spawn_failed', 'x', now));
          expect(refused).toBeInstanceOf(BoardInputError);
          expect(await tx.liveRuns()).toEqual([]);
          await tx.appendEvent(t1.id, null, 'after', null, now);
          await tx.commit();
        } finally {
          tx.close();
        }
        for (const id of [t1.id, t2.id]) expect(await task(id, other)).toMatchObject({ status: 'ready', currentRunId: null });
        expect(await other.listRuns()).toEqual([]);
        expect(await kinds(t1.id, other)).toEqual(['created', 'before', 'after']);
        expect(await kinds(t2.id, other)).toEqual(['created']);
        // And the board is still sound for the next claim.
        expect((await b.claimBatch(2, now, LOG)).map((c) => c.task.id)).toEqual([t1.id, t2.id]);
      });

      it('while a transaction is open, writes on the board object itself are refused and land nowhere; one transaction at a time', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const other = await h.openAnother();
        const now = Date.now();
        const tx = b.begin();
        const refusedWrites = () => [
          b.createTask({ skill: 'echo', title: 'refused' }),
          b.cancelTask(t.id),
          b.putSkill({ name: 'refused', argv: ['x'] }),
          b.appendEvent(t.id, null, 'refused', null, now),
          b.claimBatch(1, now, LOG),
          b.setOwner({ pid: 1, host: 'refused', startedAt: now }),
        ];
        try {
          expect(() => b.begin()).toThrow(/transaction/);
          for (const w of refusedWrites()) expect((await rejection(w)).message).toMatch(/transaction/);
          await tx.appendEvent(t.id, null, 'through-tx', null, now);
          for (const w of refusedWrites()) expect((await rejection(w)).message).toMatch(/transaction/);
          await tx.commit();
          for (const w of refusedWrites()) expect((await rejection(w)).message).toMatch(/transaction/); // still open after a commit
          expect((await b.getTask(t.id))!.id).toBe(t.id); // reads are not refused
        } finally {
          tx.close();
        }
        expect((await other.listTasks()).map((x) => [x.id, x.status])).toEqual([[t.id, 'ready']]);
        expect(await other.getSkill('refused')).toBeNull();
        expect(await other.getOwner()).toBeNull();
        expect(await kinds(t.id, other)).toEqual(['created', 'through-tx']);
        expect((await b.createTask({ skill: 'echo', title: 'after' })).title).toBe('after');
      });

      it('longestHoldMs is the longest a commit of this transaction held its writes open', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const tx = b.begin();
        try {
          expect(tx.longestHoldMs).toBe(0);
          await tx.appendEvent(t.id, null, 'slow', null, 1);
          await sleep(40);
          await tx.commit();
          const slow = tx.longestHoldMs;
          expect(slow).toBeGreaterThanOrEqual(35);
          await tx.appendEvent(t.id, null, 'quick', null, 2);
          await tx.commit();
          expect(tx.longestHoldMs).toBe(slow);
        } finally {
          tx.close();
        }
      });

      it('the counter and the requeue of a transaction land together at commit', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        await b.recordExits([{ runId: claim.run.id, at: now, gone: true, outcomeIfUnreported: 'crashed', errorIfUnreported: 'exit 1' }]);
        const other = await h.openAnother();
        const tx = b.begin();
        try {
          const [d] = await accountAll(tx, now + 1);
          expect(d!.action).toEqual({ action: 'requeue', consecutiveFailures: 1, notBefore: now + 1001, counted: true });
          expect(await tx.unaccountedRuns()).toEqual([]);
          expect(await task(t.id, other)).toMatchObject({ status: 'running', consecutiveFailures: 0, notBefore: 0 });
          await tx.commit();
        } finally {
          tx.close();
        }
        expect(await task(t.id, other)).toMatchObject({ status: 'ready', consecutiveFailures: 1, notBefore: now + 1001, lastError: 'exit 1' });
        expect(await other.claimBatch(1, now + 1000, LOG)).toEqual([]);
        expect((await claimOne(now + 1001, other)).task.consecutiveFailures).toBe(1);
      });
    });

    // ------------------------------------------------------------------------------------ events

    describe('events', () => {
      it('appendEvent adds to the task\'s events, listed in the order written (not by time stamp)', async () => {
        await skill();
        const now = Date.now();
        const { task: t, claim } = await running(now);
        const u = await b.createTask({ skill: 'echo' });
        for (let i = 0; i < 5; i++) await b.appendEvent(t.id, null, 'note', { i }, now);
        await b.appendEvent(u.id, null, 'elsewhere', null, now);
        await b.appendEvent(t.id, claim.run.id, 'earlier', null, now - 60_000);
        const events = (await b.showTask(t.id))!.events;
        expect(events.slice(0, 3).map((e) => e.kind)).toEqual(['created', 'claimed', 'spawned']);
        expect(events.slice(3).map((e) => [e.kind, e.runId, e.data, e.at])).toEqual([
          ['note', null, { i: 0 }, now],
          ['note', null, { i: 1 }, now],
          ['note', null, { i: 2 }, now],
          ['note', null, { i: 3 }, now],
          ['note', null, { i: 4 }, now],
          ['earlier', claim.run.id, null, now - 60_000],
        ]);
        expect(await kinds(u.id)).toEqual(['created', 'elsewhere']);
      });

      it.each(['', 'bad kind', '-x', 'k'.repeat(65), 'a/b'])('a worker event of kind %j is refused with BoardInputError, writing nothing', async (bad) => {
        await skill();
        const { task: t, cred } = await running(Date.now());
        const before = await snapshot(b, t.id);
        const err = await rejection(b.workerEvent(cred, bad, null, Date.now()));
        expect(err).toBeInstanceOf(BoardInputError);
        expect(err.message).toContain(`event kind ${JSON.stringify(bad)} is invalid`);
        expect(await snapshot(b, t.id)).toBe(before);
      });

      it('a worker event or heartbeat whose data is not JSON is refused with BoardInputError', async () => {
        await skill();
        const { task: t, cred } = await running(Date.now());
        const before = await snapshot(b, t.id);
        const e1 = await rejection(b.workerEvent(cred, 'note', { n: 1n } as never, Date.now()));
        expect(e1).toBeInstanceOf(BoardInputError);
        expect(e1.message).toContain('event data is not serialisable as JSON');
        const e2 = await rejection(b.heartbeat(cred, { n: 1n } as never, Date.now()));
        expect(e2).toBeInstanceOf(BoardInputError);
        expect(e2.message).toContain('progress is not serialisable as JSON');
        expect(await snapshot(b, t.id)).toBe(before);
      });
    });

    // ------------------------------------------------------------------------------------- owner

    describe('owner', () => {
      it('setOwner records the owner (state `running` unless given), getOwner reads it on every connection, a new setOwner replaces it', async () => {
        expect(await b.getOwner()).toBeNull();
        const before = Date.now();
        await b.setOwner({ pid: 4242, host: 'host-a', startedAt: 1_700_000_000_000 });
        const after = Date.now();
        const o = (await b.getOwner())!;
        expect(o).toEqual({ pid: 4242, host: 'host-a', startedAt: 1_700_000_000_000, seenAt: expect.any(Number), state: 'running', detail: null });
        expect(o.seenAt).toBeGreaterThanOrEqual(before);
        expect(o.seenAt).toBeLessThanOrEqual(after);
        await b.setOwner({ pid: 4343, host: 'host-b', startedAt: 1_700_000_001_000, state: 'stopping', detail: 'draining 3 workers' });
        const other = await h.openAnother();
        expect(await other.getOwner()).toMatchObject({ pid: 4343, host: 'host-b', startedAt: 1_700_000_001_000, state: 'stopping', detail: 'draining 3 workers' });
      });
    });

    // ------------------------------------------------------------------------- idle and counts

    describe('idle and counts', () => {
      it('idle is true only when nothing is ready (now or later), running, alive or awaiting accounting; counts follow every state', async () => {
        const zero = { ready: 0, running: 0, done: 0, blocked: 0, cancelled: 0 };
        expect(await b.counts()).toEqual({ tasks: zero, liveRuns: 0 });
        expect(Object.keys((await b.counts()).tasks).sort()).toEqual([...TASK_STATUSES].sort());
        expect(await b.idle()).toBe(true);
        await skill();
        const later = await b.createTask({ skill: 'echo', notBefore: Date.now() + 3_600_000 });
        expect(await b.idle()).toBe(false); // ready later still counts
        await b.blockTask(later.id, 'x');
        expect(await b.idle()).toBe(true);
        expect((await b.counts()).tasks).toEqual({ ...zero, blocked: 1 });
        const c = await b.createTask({ skill: 'echo' });
        await b.cancelTask(c.id);
        expect(await b.idle()).toBe(true);

        const now = Date.now();
        const { claim, cred } = await running(now);
        expect(await b.idle()).toBe(false);
        expect(await b.counts()).toEqual({ tasks: { ...zero, blocked: 1, cancelled: 1, running: 1 }, liveRuns: 1 });
        await b.report(cred, { outcome: 'completed' }, now + 1);
        expect(await b.counts()).toEqual({ tasks: { ...zero, blocked: 1, cancelled: 1, done: 1 }, liveRuns: 1 });
        expect(await b.idle()).toBe(false); // its worker may still be alive
        await b.recordExits([{ runId: claim.run.id, at: now + 2, exitCode: 0, gone: true }]);
        expect((await b.counts()).liveRuns).toBe(0);
        expect(await b.idle()).toBe(false); // awaiting accounting
        await accountAll(b, now + 3);
        expect(await b.idle()).toBe(true);
        const other = await h.openAnother();
        expect(await other.idle()).toBe(true);
        expect(await other.counts()).toEqual({ tasks: { ...zero, blocked: 1, cancelled: 1, done: 1 }, liveRuns: 0 });
      });
    });

    // -------------------------------------------------------------------------------- migrations

    describe('schema', () => {
      it('a new location is created at the current schema version, empty', async () => {
        expect(await h.schemaVersion()).toBe(factory.schemaVersion);
        expect(await b.listSkills()).toEqual([]);
        expect(await b.listTasks()).toEqual([]);
        expect(await b.listRuns()).toEqual([]);
        expect(await b.getOwner()).toBeNull();
        expect(await b.idle()).toBe(true);
      });

      it('an empty location is given the schema and works; the schema is created once', async () => {
        const e = await factory.openEmpty();
        handles.push(e);
        expect(await e.schemaVersion()).toBe(factory.schemaVersion);
        await e.board.putSkill({ name: 'echo', argv: ['/bin/true'] });
        const t = await e.board.createTask({ skill: 'echo', title: 'kept' });
        const again = await e.openAnother();
        expect(await again.getTask(t.id)).toEqual(t);
        expect(await e.schemaVersion()).toBe(factory.schemaVersion);
      });

      it('a board whose schema is newer is refused, naming the board and both versions; the refusal changes nothing', async () => {
        await skill();
        const t = await b.createTask({ skill: 'echo' });
        const newer = factory.schemaVersion + 5;
        await h.setSchemaVersion(newer);
        const err = await rejection(h.openAnother());
        expect(err).toBeInstanceOf(SchemaTooNewError);
        expect(err.message).toContain(b.location);
        expect(err.message).toContain(`schema version ${newer}`);
        expect(err.message).toContain(`supports (${factory.schemaVersion})`);
        expect((err as SchemaTooNewError).found).toBe(newer);
        expect((err as SchemaTooNewError).supported).toBe(factory.schemaVersion);
        expect(await h.schemaVersion()).toBe(newer);
        await h.setSchemaVersion(factory.schemaVersion);
        expect(await (await h.openAnother()).getTask(t.id)).toEqual(t);
      });
    });
  });
}
