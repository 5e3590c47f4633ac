/**
 * The PostgreSQL board: the `Board` interface and a change feed (LISTEN/NOTIFY), over a pool of
 * connections to one PostgreSQL schema. Several supervisors on several hosts can share it. Each
 * method delegates to its operation module (skills, tasks, claims, runs, worker, accounting,
 * events), which runs its statements through a `Writer` (tx.ts): on their own, each write is one
 * transaction on a pooled connection; in a BoardTx (`begin()`), a savepoint of the transaction held
 * on a dedicated connection. Input rules live in ../validate.ts, shared by every backend.
 *
 * What differs from SQLite: the board object's own reads go through the pool, so they do not see
 * its open BoardTx's uncommitted writes (the BoardTx's own reads do); there is no local connection
 * to close synchronously and no WAL to checkpoint (no LocalConnection, no Checkpointing).
 */
import type { RunOutcome, StopReason, TaskStatus } from '@kanban-supervisor/policies';
import type {
  AccountAction,
  AddedTask,
  PruneBatch,
  PruneQuery,
  Board,
  BoardCounts,
  BoardTx,
  ChangeFeed,
  Claim,
  ExitObservation,
  Json,
  LiveRun,
  OwnerInfo,
  ParentPage,
  Run,
  RunCredentials,
  RunFilter,
  RunListing,
  HostHold,
  LeaseRenewal,
  Skill,
  SupervisorIdentity,
  SupervisorRegistry,
  SupervisorRow,
  SkillInput,
  SpawnInfo,
  Task,
  TxOptions,
  TaskDetail,
  TaskInput,
  TaskPage,
  TaskPageQuery,
  FeedEvent,
  WorkerReport,
  WriteResult,
  TaskCount,
  WaitingFor,
} from '../types.js';
import * as accounting from './accounting.js';
import * as claims from './claims.js';
import { PgConn, type PgPoolOptions } from './connection.js';
import * as events from './events.js';
import { PgChangeFeed } from './feed.js';
import { pgTarget } from './location.js';
import { checkSchema, migrate, storedVersion } from './migrate.js';
import * as graph from './graph.js';
import * as pages from './pages.js';
import * as retention from './retention.js';
import * as runs from './runs.js';
import { PgHostLock } from './host-lock.js';
import * as skills from './skills.js';
import * as supervisors from './supervisors.js';
import * as tasks from './tasks.js';
import { Transactions, type Writer } from './tx.js';
import * as worker from './worker.js';

export interface PgBoardOptions extends PgPoolOptions {
  /** The PostgreSQL schema of the board (default: the URL's `schema` parameter, else `kanban`). */
  schema?: string;
  /** Read only: no schema change (the board must exist); for inspecting a board. */
  readonly?: boolean;
  /** Create the board's schema when it has none (default true); false: a missing board is refused (BoardPathError). */
  create?: boolean;
  /** How many times a write is retried on a serialization failure or a deadlock. */
  busyRetries?: number;
}

type OwnerWrite = { pid: number; host: string; startedAt: number; state?: string; detail?: string | null };

export class PgBoard implements Board, ChangeFeed, SupervisorRegistry {
  readonly kind = 'postgres' as const;
  /** The board's URL, its password masked. */
  readonly location: string;
  /** The board's PostgreSQL schema. */
  readonly schema: string;
  private readonly c: PgConn;
  private readonly tx: Transactions;
  private readonly w: Writer;
  private readonly feed: PgChangeFeed;
  /** The supervisor this board object acts for (registerSupervisor), with its lease length. */
  private me: { id: string; hostId: string; leaseMs: number } | null = null;

  private constructor(c: PgConn, opts: PgBoardOptions) {
    this.c = c;
    this.location = c.location;
    this.schema = c.schema;
    this.tx = new Transactions(c, opts.busyRetries ?? 20);
    this.w = this.tx.direct;
    this.feed = new PgChangeFeed(c);
  }

  /** Open the board at `url`: create its schema or migrate it (unless read-only); a newer schema is refused. */
  static async open(url: string, opts: PgBoardOptions = {}): Promise<PgBoard> {
    const c = new PgConn(pgTarget(url, opts.schema), opts);
    try {
      if (opts.readonly || (opts.create === false && (await storedVersion(c)) === null)) await checkSchema(c);
      else await migrate(c);
    } catch (e) {
      await c.end();
      throw e;
    }
    return new PgBoard(c, opts);
  }

  /** The schema version stored on the board (null if it has none). */
  schemaVersion(): Promise<number | null> {
    return storedVersion(this.c);
  }

  async close(): Promise<void> {
    await this.tx.drain();
    await this.feed.close();
    await this.c.end();
  }

  /** TxOptions.relaxed is not taken on PostgreSQL (tx.ts txWrite says why): every commit is durable. */
  begin(_opts: TxOptions = {}): BoardTx {
    const { g, w } = this.tx.open();
    const tx = this.tx;
    const me = this.me;
    const out: BoardTx & Partial<LeaseRenewal> = {
      liveRuns: () => runs.liveRuns(w, me?.hostId ?? null),
      unaccountedRuns: () => runs.unaccountedRuns(w, me?.hostId ?? null),
      claimBatch: (max, now, logPathFor) => claims.claimBatch(w, max, now, logPathFor, me?.id ?? null),
      blockUnknownSkillTasks: (now) => claims.blockUnknownSkillTasks(w, now),
      recordSpawns: (items, now) => runs.recordSpawns(w, items, now),
      endUnspawned: (runId, outcome, error, now) => runs.endUnspawned(w, runId, outcome, error, now),
      recordExits: (observations) => runs.recordExits(w, observations),
      beginReclaim: (runId, reason, now) => runs.beginReclaim(w, runId, reason, now),
      recordSigkill: (runId, now) => runs.recordSigkill(w, runId, now),
      applyAccountingBatch: (items, now) => accounting.applyAccountingBatch(w, items, now),
      appendEvent: (taskId, runId, kind, data, now) => events.appendEvent(w, taskId, runId, kind, data, now),
      setOwner: (info) => events.setOwner(w, info),
      // Worker reports that came through this supervisor's report channel (a savepoint each): of
      // a run this supervisor claimed, else refused as not current.
      heartbeat: (cred, progress, now) => worker.heartbeat(w, cred, progress, now, me?.id ?? null),
      beats: (items) => worker.beats(w, items, me?.id ?? null),
      workerEvent: (cred, kind, data, now, seq) => worker.workerEvent(w, cred, kind, data, now, seq, me?.id ?? null),
      report: (cred, report, now, seq) => worker.report(w, cred, report, now, seq, me?.id ?? null),
      recordStop: (cred, signal, now, seq) => worker.recordStop(w, cred, signal, now, seq, me?.id ?? null),
      loadRun: (cred) => worker.loadRun(w, cred, me?.id ?? null),
      parentResults: (cred) => graph.parentResults(w, cred, me?.id ?? null),
      parentIds: (cred) => graph.parentIds(w, cred, me?.id ?? null),
      parentPage: (cred, after, maxBytes) => graph.parentPage(w, cred, after, maxBytes, me?.id ?? null),
      commit: () => tx.commit(g),
      close: () => tx.close(g),
      get longestHoldMs() {
        return g.longestHoldMs;
      },
    };
    if (me) {
      out.renewLease = (now: number) => supervisors.renewLease(w, me.id, me.leaseMs, now);
      out.takeOverExpired = (now, decide, requeueNotBefore) => supervisors.takeOverExpired(w, me.id, me.hostId, now, decide, requeueNotBefore);
    }
    return out;
  }

  // ---------------------------------------------------------------- supervisors (SupervisorRegistry)

  async tryHoldHost(hostId: string): Promise<HostHold | null> {
    return PgHostLock.tryAcquire(this.c, hostId);
  }

  async registerSupervisor(me: SupervisorIdentity, leaseMs: number, now: number): Promise<string> {
    const id = supervisors.newSupervisorId();
    await supervisors.registerSupervisor(this.w, id, me, leaseMs, now);
    this.me = { id, hostId: me.hostId, leaseMs };
    this.c.idleInTransactionTimeoutMs = leaseMs;
    return id;
  }

  async markSupervisorStopped(now: number): Promise<void> {
    if (this.me) await supervisors.markStopped(this.w, this.me.id, now);
  }

  liveSupervisors(hostId?: string): Promise<SupervisorRow[]> {
    return supervisors.liveSupervisors(this.w, hostId ?? null);
  }

  connectionLimit(): Promise<number> {
    return supervisors.connectionLimit(this.w);
  }

  /** ChangeFeed: a counter bumped by the board's notifications (LISTEN/NOTIFY, see feed.ts). */
  changeVersion(): number {
    return this.feed.changeVersion();
  }

  onChange(fn: () => void): void {
    this.feed.onChange(fn);
  }

  // ---------------------------------------------------------------- reads

  getSkill(name: string): Promise<Skill | null> {
    return skills.getSkill(this.w, name);
  }

  listSkills(): Promise<Skill[]> {
    return skills.listSkills(this.w);
  }

  getTask(id: string): Promise<Task | null> {
    return tasks.getTask(this.w, id);
  }

  listTasks(filter?: { status?: TaskStatus; skill?: string; limit?: number }): Promise<Task[]> {
    return tasks.listTasks(this.w, filter);
  }

  listTasksPage(query: TaskPageQuery): Promise<TaskPage> {
    return pages.listTasksPage(this.w, query);
  }

  eventsAfter(cursor: string | null, limit: number): Promise<{ events: FeedEvent[]; cursor: string }> {
    return pages.eventsAfter(this.w, cursor, limit);
  }

  showTask(id: string, opts?: { boundedEvents?: boolean }): Promise<TaskDetail | null> {
    return tasks.showTask(this.w, id, opts?.boundedEvents === true);
  }

  getRun(id: string): Promise<Run | null> {
    return runs.getRun(this.w, id);
  }

  listRuns(filter?: RunFilter): Promise<RunListing[]> {
    return runs.listRuns(this.w, filter);
  }

  counts(): Promise<BoardCounts> {
    return tasks.counts(this.w);
  }

  taskCountsBySkill(): Promise<TaskCount[]> {
    return tasks.taskCountsBySkill(this.w);
  }

  idle(): Promise<boolean> {
    return tasks.idle(this.w);
  }

  getOwner(): Promise<OwnerInfo | null> {
    return events.getOwner(this.w);
  }

  nextDueAt(now: number): Promise<number | null> {
    return tasks.nextDueAt(this.w, now);
  }

  // ---------------------------------------------------------------- operator writes

  putSkill(input: SkillInput): Promise<Skill> {
    return skills.putSkill(this.w, input);
  }

  removeSkill(name: string): Promise<boolean> {
    return skills.removeSkill(this.w, name);
  }

  createTask(input: TaskInput): Promise<Task> {
    return tasks.createTask(this.w, input);
  }

  createTasks(inputs: TaskInput[]): Promise<AddedTask[]> {
    return tasks.createTasks(this.w, inputs);
  }

  setSkillCap(name: string, maxConcurrent: number | null): Promise<Skill> {
    return skills.setSkillCap(this.w, name, maxConcurrent);
  }

  pruneBatch(query: PruneQuery): Promise<PruneBatch> {
    return retention.pruneBatch(this.w, query);
  }

  cancelTask(id: string): Promise<Task> {
    return tasks.cancelTask(this.w, id);
  }

  blockTask(id: string, reason: string): Promise<Task> {
    return tasks.blockTask(this.w, id, reason);
  }

  unblockTask(id: string): Promise<Task> {
    return tasks.unblockTask(this.w, id);
  }

  retryTask(id: string): Promise<Task> {
    return tasks.retryTask(this.w, id);
  }

  linkTasks(child: string, parent: string): Promise<Task> {
    return graph.linkTasks(this.w, child, parent);
  }

  unlinkTasks(child: string, parent: string): Promise<Task> {
    return graph.unlinkTasks(this.w, child, parent);
  }

  cancelCascade(id: string): Promise<string[]> {
    return graph.cancelCascade(this.w, id);
  }

  waitingFor(taskIds: string[]): Promise<WaitingFor[]> {
    return graph.waitingFor(this.w, taskIds);
  }

  parentResults(cred: RunCredentials): Promise<Record<string, Json | null>> {
    return graph.parentResults(this.w, cred);
  }

  parentIds(cred: RunCredentials): Promise<string[]> {
    return graph.parentIds(this.w, cred);
  }

  parentPage(cred: RunCredentials, after: string | null, maxBytes: number): Promise<ParentPage> {
    return graph.parentPage(this.w, cred, after, maxBytes);
  }

  // ---------------------------------------------------------------- supervisor (each its own transaction; see begin())

  liveRuns(): Promise<LiveRun[]> {
    return runs.liveRuns(this.w, this.me?.hostId ?? null);
  }

  unaccountedRuns(): Promise<Array<{ run: Run; task: Task }>> {
    return runs.unaccountedRuns(this.w, this.me?.hostId ?? null);
  }

  claimBatch(max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]> {
    return claims.claimBatch(this.w, max, now, logPathFor, this.me?.id ?? null);
  }

  blockUnknownSkillTasks(now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>> {
    return claims.blockUnknownSkillTasks(this.w, now);
  }

  recordSpawns(items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void> {
    return runs.recordSpawns(this.w, items, now);
  }

  endUnspawned(runId: string, outcome: RunOutcome, error: string, now: number): Promise<void> {
    return runs.endUnspawned(this.w, runId, outcome, error, now);
  }

  recordExits(observations: ExitObservation[]): Promise<void> {
    return runs.recordExits(this.w, observations);
  }

  beginReclaim(runId: string, reason: StopReason, now: number): Promise<boolean> {
    return runs.beginReclaim(this.w, runId, reason, now);
  }

  recordSigkill(runId: string, now: number): Promise<void> {
    return runs.recordSigkill(this.w, runId, now);
  }

  applyAccountingBatch(items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void> {
    return accounting.applyAccountingBatch(this.w, items, now);
  }

  appendEvent(taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void> {
    return events.appendEvent(this.w, taskId, runId, kind, data, now);
  }

  setOwner(info: OwnerWrite): Promise<void> {
    return events.setOwner(this.w, info);
  }

  // ---------------------------------------------------------------- worker (fenced by run token)

  loadRun(cred: RunCredentials): Promise<{ task: Task; run: Run }> {
    return worker.loadRun(this.w, cred);
  }

  heartbeat(cred: RunCredentials, progress: Json | undefined, now: number): Promise<void> {
    return worker.heartbeat(this.w, cred, progress, now);
  }

  workerEvent(cred: RunCredentials, kind: string, data: Json | null, now: number, seq?: string | null): Promise<WriteResult> {
    return worker.workerEvent(this.w, cred, kind, data, now, seq);
  }

  report(cred: RunCredentials, report: WorkerReport, now: number, seq?: string | null): Promise<WriteResult> {
    return worker.report(this.w, cred, report, now, seq);
  }

  reportApplied(cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean> {
    return worker.reportApplied(this.w, cred, outcome);
  }

  recordStop(cred: RunCredentials, signal: string, now: number, seq?: string | null): Promise<WriteResult> {
    return worker.recordStop(this.w, cred, signal, now, seq);
  }
}
