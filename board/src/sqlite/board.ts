/**
 * The SQLite board: the `Board` interface and the abilities of a local SQLite connection, over one
 * connection. Each method delegates to its operation module (skills, tasks, claims, runs, worker,
 * accounting, events), which runs its statements through a `Writer` (tx.ts): on their own, each
 * write is one BEGIN IMMEDIATE transaction retried on SQLITE_BUSY; in a BoardTx (`begin()`), a
 * savepoint of the tick's transaction. Input rules live in ../validate.ts, shared by every backend.
 */
import type { RunOutcome, StopReason, TaskStatus } from '@kanban-supervisor/policies';
import type { Db, OpenOptions } from '../open.js';
import type {
  AccountAction,
  AddedTask,
  PruneBatch,
  PruneQuery,
  Board,
  BoardCounts,
  BoardTx,
  ChangeFeed,
  Checkpointing,
  Claim,
  ExitObservation,
  Json,
  LiveRun,
  LocalConnection,
  OwnerInfo,
  ParentPage,
  Run,
  RunCredentials,
  RunFilter,
  RunListing,
  Skill,
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
import { closeNow, dataVersion, openConn, openReadonlyConn, setBusyTimeout, walCheckpoint, type Conn } from './connection.js';
import * as events from './events.js';
import * as graph from './graph.js';
import * as pages from './pages.js';
import * as retention from './retention.js';
import * as runs from './runs.js';
import * as skills from './skills.js';
import * as tasks from './tasks.js';
import { Transactions, type Writer } from './tx.js';
import * as worker from './worker.js';

export interface SqliteBoardOptions extends OpenOptions {
  /** How many times a write is retried on SQLITE_BUSY after the busy timeout ran out. */
  busyRetries?: number;
}

type OwnerWrite = { pid: number; host: string; startedAt: number; state?: string; detail?: string | null };

export class SqliteBoard implements Board, ChangeFeed, Checkpointing, LocalConnection {
  readonly kind = 'sqlite' as const;
  /** The board file (symlinks resolved). */
  readonly path: string;
  /** The raw connection (tests and the chaos suite inspect it). */
  readonly db: Db;
  private readonly c: Conn;
  private readonly tx: Transactions;
  /** Each operation on its own (its own transaction). */
  private readonly w: Writer;

  private constructor(c: Conn, opts: SqliteBoardOptions) {
    this.c = c;
    this.path = c.path;
    this.db = c.db;
    this.tx = new Transactions(c, opts.busyRetries ?? 20);
    this.w = this.tx.direct;
  }

  /** Open the board at `path` (hardened open: WAL once, migrations, per-connection pragmas). */
  static open(path: string, opts: SqliteBoardOptions = {}): SqliteBoard {
    return new SqliteBoard(openConn(path, opts), opts);
  }

  /** Open read-only (no WAL change, no migration): for inspecting a board one does not own. */
  static openReadonly(path: string, busyTimeoutMs = 1000): SqliteBoard {
    return new SqliteBoard(openReadonlyConn(path, busyTimeoutMs), {});
  }

  get location(): string {
    return this.path;
  }

  async close(): Promise<void> {
    this.c.close();
  }

  // ---------------------------------------------------------------- transactions

  begin(opts: TxOptions = {}): BoardTx {
    const { g, w } = this.tx.open(opts.relaxed === true);
    const c = this.c;
    const tx = this.tx;
    return {
      liveRuns: () => runs.liveRuns(c, w),
      unaccountedRuns: () => runs.unaccountedRuns(c, w),
      claimBatch: (max, now, logPathFor) => claims.claimBatch(c, w, max, now, logPathFor),
      blockUnknownSkillTasks: (now) => claims.blockUnknownSkillTasks(c, w, now),
      recordSpawns: (items, now) => runs.recordSpawns(c, w, items, now),
      endUnspawned: (runId, outcome, error, now) => runs.endUnspawned(c, w, runId, outcome, error, now),
      recordExits: (observations) => runs.recordExits(c, w, observations),
      beginReclaim: (runId, reason, now) => runs.beginReclaim(c, w, runId, reason, now),
      recordSigkill: (runId, now) => runs.recordSigkill(c, w, runId, now),
      applyAccountingBatch: (items, now) => accounting.applyAccountingBatch(c, w, items, now),
      appendEvent: (taskId, runId, kind, data, now) => events.appendEvent(c, w, taskId, runId, kind, data, now),
      setOwner: (info) => events.setOwner(c, w, info),
      // Worker reports that came through the supervisor's report channel (one savepoint each).
      heartbeat: (cred, progress, now) => worker.heartbeat(c, w, cred, progress, now),
      beats: (items) => worker.beats(c, w, items),
      workerEvent: (cred, kind, data, now, seq) => worker.workerEvent(c, w, cred, kind, data, now, seq),
      report: (cred, report, now, seq) => worker.report(c, w, cred, report, now, seq),
      recordStop: (cred, signal, now, seq) => worker.recordStop(c, w, cred, signal, now, seq),
      loadRun: (cred) => worker.loadRun(c, w, cred),
      parentResults: (cred) => graph.parentResults(c, w, cred),
      parentIds: (cred) => graph.parentIds(c, w, cred),
      parentPage: (cred, after, maxBytes) => graph.parentPage(c, w, cred, after, maxBytes),
      commit: () => tx.commit(g),
      close: () => tx.close(g),
      get longestHoldMs() {
        return g.longestHoldMs;
      },
    };
  }

  // ---------------------------------------------------------------- abilities (ChangeFeed, Checkpointing, LocalConnection)

  /** SQLite's `data_version`: changes when another connection committed (cheap: no I/O when nothing changed). */
  changeVersion(): number {
    return dataVersion(this.c);
  }

  async checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): Promise<{ busy: boolean; logFrames: number; checkpointed: number }> {
    return this.w.read(() => walCheckpoint(this.c, mode));
  }

  closeNow(checkpoint: 'PASSIVE' | 'TRUNCATE' | 'free' | null = null): void {
    closeNow(this.c, checkpoint);
  }

  setBusyTimeout(ms: number): void {
    setBusyTimeout(this.c, ms);
  }

  // ---------------------------------------------------------------- reads

  getSkill(name: string): Promise<Skill | null> {
    return skills.getSkill(this.c, this.w, name);
  }

  listSkills(): Promise<Skill[]> {
    return skills.listSkills(this.c, this.w);
  }

  getTask(id: string): Promise<Task | null> {
    return tasks.getTask(this.c, this.w, id);
  }

  listTasks(filter?: { status?: TaskStatus; skill?: string; limit?: number }): Promise<Task[]> {
    return tasks.listTasks(this.c, this.w, filter);
  }

  listTasksPage(query: TaskPageQuery): Promise<TaskPage> {
    return pages.listTasksPage(this.c, this.w, query);
  }

  eventsAfter(cursor: string | null, limit: number): Promise<{ events: FeedEvent[]; cursor: string }> {
    return pages.eventsAfter(this.c, this.w, cursor, limit);
  }

  showTask(id: string, opts?: { boundedEvents?: boolean }): Promise<TaskDetail | null> {
    return tasks.showTask(this.c, this.w, id, opts?.boundedEvents === true);
  }

  getRun(id: string): Promise<Run | null> {
    return runs.getRun(this.c, this.w, id);
  }

  listRuns(filter?: RunFilter): Promise<RunListing[]> {
    return runs.listRuns(this.c, this.w, filter);
  }

  counts(): Promise<BoardCounts> {
    return tasks.counts(this.c, this.w);
  }

  taskCountsBySkill(): Promise<TaskCount[]> {
    return tasks.taskCountsBySkill(this.c, this.w);
  }

  idle(): Promise<boolean> {
    return tasks.idle(this.c, this.w);
  }

  getOwner(): Promise<OwnerInfo | null> {
    return events.getOwner(this.c, this.w);
  }

  nextDueAt(now: number): Promise<number | null> {
    return tasks.nextDueAt(this.c, this.w, now);
  }

  // ---------------------------------------------------------------- operator writes

  putSkill(input: SkillInput): Promise<Skill> {
    return skills.putSkill(this.c, this.w, input);
  }

  removeSkill(name: string): Promise<boolean> {
    return skills.removeSkill(this.c, this.w, name);
  }

  createTask(input: TaskInput): Promise<Task> {
    return tasks.createTask(this.c, this.w, input);
  }

  createTasks(inputs: TaskInput[]): Promise<AddedTask[]> {
    return tasks.createTasks(this.c, this.w, inputs);
  }

  setSkillCap(name: string, maxConcurrent: number | null): Promise<Skill> {
    return skills.setSkillCap(this.c, this.w, name, maxConcurrent);
  }

  pruneBatch(query: PruneQuery): Promise<PruneBatch> {
    return retention.pruneBatch(this.c, this.w, query);
  }

  cancelTask(id: string): Promise<Task> {
    return tasks.cancelTask(this.c, this.w, id);
  }

  blockTask(id: string, reason: string): Promise<Task> {
    return tasks.blockTask(this.c, this.w, id, reason);
  }

  unblockTask(id: string): Promise<Task> {
    return tasks.unblockTask(this.c, this.w, id);
  }

  retryTask(id: string): Promise<Task> {
    return tasks.retryTask(this.c, this.w, id);
  }

  linkTasks(child: string, parent: string): Promise<Task> {
    return graph.linkTasks(this.c, this.w, child, parent);
  }

  unlinkTasks(child: string, parent: string): Promise<Task> {
    return graph.unlinkTasks(this.c, this.w, child, parent);
  }

  cancelCascade(id: string): Promise<string[]> {
    return graph.cancelCascade(this.c, this.w, id);
  }

  waitingFor(taskIds: string[]): Promise<WaitingFor[]> {
    return graph.waitingFor(this.c, this.w, taskIds);
  }

  parentResults(cred: RunCredentials): Promise<Record<string, Json | null>> {
    return graph.parentResults(this.c, this.w, cred);
  }

  parentIds(cred: RunCredentials): Promise<string[]> {
    return graph.parentIds(this.c, this.w, cred);
  }

  parentPage(cred: RunCredentials, after: string | null, maxBytes: number): Promise<ParentPage> {
    return graph.parentPage(this.c, this.w, cred, after, maxBytes);
  }

  // ---------------------------------------------------------------- supervisor (each its own transaction; see begin())

  liveRuns(): Promise<LiveRun[]> {
    return runs.liveRuns(this.c, this.w);
  }

  unaccountedRuns(): Promise<Array<{ run: Run; task: Task }>> {
    return runs.unaccountedRuns(this.c, this.w);
  }

  claimBatch(max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]> {
    return claims.claimBatch(this.c, this.w, max, now, logPathFor);
  }

  blockUnknownSkillTasks(now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>> {
    return claims.blockUnknownSkillTasks(this.c, this.w, now);
  }

  recordSpawns(items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void> {
    return runs.recordSpawns(this.c, this.w, items, now);
  }

  endUnspawned(runId: string, outcome: RunOutcome, error: string, now: number): Promise<void> {
    return runs.endUnspawned(this.c, this.w, runId, outcome, error, now);
  }

  recordExits(observations: ExitObservation[]): Promise<void> {
    return runs.recordExits(this.c, this.w, observations);
  }

  beginReclaim(runId: string, reason: StopReason, now: number): Promise<boolean> {
    return runs.beginReclaim(this.c, this.w, runId, reason, now);
  }

  recordSigkill(runId: string, now: number): Promise<void> {
    return runs.recordSigkill(this.c, this.w, runId, now);
  }

  applyAccountingBatch(items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void> {
    return accounting.applyAccountingBatch(this.c, this.w, items, now);
  }

  appendEvent(taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void> {
    return events.appendEvent(this.c, this.w, taskId, runId, kind, data, now);
  }

  setOwner(info: OwnerWrite): Promise<void> {
    return events.setOwner(this.c, this.w, info);
  }

  // ---------------------------------------------------------------- worker (fenced by run token)

  loadRun(cred: RunCredentials): Promise<{ task: Task; run: Run }> {
    return worker.loadRun(this.c, this.w, cred);
  }

  heartbeat(cred: RunCredentials, progress: Json | undefined, now: number): Promise<void> {
    return worker.heartbeat(this.c, this.w, cred, progress, now);
  }

  workerEvent(cred: RunCredentials, kind: string, data: Json | null, now: number, seq?: string | null): Promise<WriteResult> {
    return worker.workerEvent(this.c, this.w, cred, kind, data, now, seq);
  }

  report(cred: RunCredentials, report: WorkerReport, now: number, seq?: string | null): Promise<WriteResult> {
    return worker.report(this.c, this.w, cred, report, now, seq);
  }

  reportApplied(cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean> {
    return worker.reportApplied(this.c, this.w, cred, outcome);
  }

  recordStop(cred: RunCredentials, signal: string, now: number, seq?: string | null): Promise<WriteResult> {
    return worker.recordStop(this.c, this.w, cred, signal, now, seq);
  }
}
