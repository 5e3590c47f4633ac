/**
 * What the conformance modules share: constants (log paths, the failure policy), small functions
 * (spawn info, credentials, waiting, refusals, the supervisor's accounting step), and `useBoard`,
 * which gives every test of a describe block a fresh board plus the fixtures that act on it.
 * Everything here goes through the `Board` and `BoardTx` interfaces only.
 */
import { afterEach, beforeEach, expect } from 'vitest';
import type { Board, BoardTx, Claim, RunCredentials, SpawnInfo, SupervisorOps, Task } from '@kanban-supervisor/board';
import { accountInput, decideAccounting, type AccountPolicy, type AccountingDecision } from '@kanban-supervisor/policies';
import type { BoardFactory, BoardUnderTest } from './index.js';

export const LOG = (runId: string): string => `/var/log/kanban/${runId}.log`;

/** The failure policy of the accounting tests: limit 3, backoff 1 s, 4 s, 16 s… without jitter. */
export const POLICY: AccountPolicy = { failureLimit: 3, backoff: { baseSeconds: 1, factor: 4, maxSeconds: 300, jitter: 0 } };

export const spawnInfo = (pid: number): SpawnInfo => ({ pid, pgid: pid, procStartTime: 900_000 + pid, bootId: 'boot-conformance' });

export const credOf = (c: Claim): RunCredentials => ({ taskId: c.task.id, runId: c.run.id, token: c.token });

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait until the wall clock moved on, so that the next task is strictly younger (claims go by age). */
export async function nextMs(): Promise<void> {
  const t = Date.now();
  while (Date.now() <= t) await sleep(1);
}

/** The error a refused operation rejected with (fails the test if it was not refused). */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the operation to be refused, and it succeeded');
}

/** The supervisor's accounting step, as the daemon does it: decide with the policies, apply in one batch. */
export async function accountAll(ops: SupervisorOps, now: number, policy: AccountPolicy = POLICY): Promise<Array<{ runId: string; action: AccountingDecision }>> {
  const items = (await ops.unaccountedRuns()).map(({ run, task }) => ({
    runId: run.id,
    action: decideAccounting(accountInput(run, task, now, 0.5), policy),
  }));
  await ops.applyAccountingBatch(items, now);
  return items;
}

/** The fixtures `useBoard` hands to a describe block; each acts on the current test's board. */
export interface BoardFixture {
  /** Every handle opened for the current test; each is cleaned up after it (push one opened by hand). */
  handles: BoardUnderTest[];
  /** A registered skill `name` (default `echo`) running `/bin/true`. */
  skill(name?: string): ReturnType<Board['putSkill']>;
  /** Claim exactly one task (failing the test otherwise), on the test's board or the one given. */
  claimOne(now: number, board?: Board | BoardTx): Promise<Claim>;
  /** A claimed task's run, its process spawned. */
  running(now: number, title?: string, extra?: Partial<Parameters<Board['createTask']>[0]>): Promise<{ task: Task; claim: Claim; cred: RunCredentials }>;
  /** Everything another reader could see of these tasks (refused writes must leave it as it was). */
  snapshot(board: Board, ...taskIds: string[]): Promise<string>;
  /** The task `id` as `board` (default: the test's board) reads it; throws if there is none. */
  task(id: string, board?: Board): Promise<Task>;
  /** The kinds of the task's events, in order. */
  kinds(id: string, board?: Board): Promise<string[]>;
}

/**
 * Registers, in the calling describe block, a fresh board for every test (`factory.open()`) and the
 * clean-up of every handle after it. `onOpen` receives each test's handle before the test runs.
 */
export function useBoard(factory: BoardFactory, onOpen: (h: BoardUnderTest) => void): BoardFixture {
  const handles: BoardUnderTest[] = [];
  let b: Board;

  beforeEach(async () => {
    const h = await factory.open();
    handles.push(h);
    b = h.board;
    onOpen(h);
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

  async function running(now: number, title = 'work', extra: Partial<Parameters<Board['createTask']>[0]> = {}): Promise<{ task: Task; claim: Claim; cred: RunCredentials }> {
    const made = await b.createTask({ skill: 'echo', title, ...extra });
    const claim = await claimOne(now);
    expect(claim.task.id, 'the task just created is the one claimed').toBe(made.id);
    await b.recordSpawns([{ runId: claim.run.id, info: spawnInfo(4000) }], now);
    return { task: made, claim, cred: credOf(claim) };
  }

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

  return { handles, skill, claimOne, running, snapshot, task, kinds };
}
