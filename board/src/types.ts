/**
 * The board as a set of operations. The supervisor, the worker runtime and the CLI speak only
 * these interfaces (they get a board from `openBoard`); SqliteBoard implements them, a PostgreSQL
 * board will too. Every operation is async so that a networked store fits the same shape.
 *
 * - `Board`: every operation, each its own transaction (atomic on its own).
 * - `BoardTx` (`board.begin()`): the supervisor's tick writes grouped into one transaction, with an
 *   explicit commit; nothing changes meaning because a transaction is open elsewhere.
 * - Abilities a backend may or may not have, each its own small interface: `ChangeFeed` (learn
 *   cheaply that another connection committed), `Checkpointing` (SQLite's WAL), `LocalConnection`
 *   (a connection in this process that can be closed synchronously, from a signal handler).
 */
import type { AccountingDecision, ExitReport, ReportMode, ResultSource, RunOutcome, StopReason, TaskStatus } from '@kanban-supervisor/policies';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface SkillInput {
  name: string;
  argv: string[];
  cwd?: string | null;
  env?: Record<string, string>;
  /** Names of variables the skill's workers get from the supervisor's environment at spawn (names only; values are never stored). */
  passEnv?: string[];
  maxRuntimeSeconds?: number | null;
  heartbeatTimeoutSeconds?: number | null;
  reclaimGraceSeconds?: number | null;
  maxRssMb?: number | null;
  /** At most this many live workers of the skill at once, board-wide (runs being reclaimed count); null: no cap. */
  maxConcurrent?: number | null;
  /** How its workers report (default 'board'): 'exit' = by their exit status alone, never touching the board. */
  report?: ReportMode;
  /** An exit-code skill's result: 'stdout-json' = the last non-empty line of the run's log, as JSON (default: none, the result is null). */
  resultFrom?: ResultSource | null;
}

export interface Skill {
  name: string;
  argv: string[];
  cwd: string | null;
  env: Record<string, string>;
  /** Names of variables passed from the supervisor's environment at spawn. */
  passEnv: string[];
  maxRuntimeSeconds: number | null;
  heartbeatTimeoutSeconds: number | null;
  reclaimGraceSeconds: number | null;
  maxRssMb: number | null;
  /** At most this many live workers of the skill at once; null: no cap (only the pool's). */
  maxConcurrent: number | null;
  /** 'board': workers report through the board (run token); 'exit': the supervisor ends the run from the worker's exit status. */
  report: ReportMode;
  /** An exit-code skill's result source (null: none). */
  resultFrom: ResultSource | null;
}

export interface TaskInput {
  skill: string;
  /** Default (absent or empty): the skill name. */
  title?: string;
  payload?: Json;
  priority?: number;
  maxRuntimeSeconds?: number | null;
  maxRetries?: number | null;
  /** Not claimed before this time, ms since the epoch (0: at once). */
  notBefore?: number;
  /** Parents (task graph): the task is `waiting` until every one of them is `done` (1-100 distinct existing task ids). */
  after?: string[];
  /** An idempotency key (1-200 characters): a task with this key already on the board is returned instead of a new one. */
  key?: string | null;
}

/** A task added (`created`), or the one that already had its key. */
export interface AddedTask {
  task: Task;
  created: boolean;
}

/**
 * What `pruneBatch` removes: finished tasks whose last change is older than `before`, never a
 * parent of a task that is not finished; their runs, events and links go with them.
 */
export interface PruneQuery {
  /** ms since the epoch: tasks last changed before this. */
  before: number;
  /** Which finished statuses (default done and cancelled). */
  statuses?: Array<'done' | 'cancelled'>;
  /** Most tasks in this batch (1-10,000). */
  limit: number;
}

export interface PruneBatch {
  tasks: number;
  runs: number;
  events: number;
  /** Task graph links removed with the tasks (either end pruned). */
  links: number;
  /** The log files of the removed runs (the caller deletes them once the batch committed). */
  logPaths: string[];
  /** How long the batch's transaction took, ms (from its first statement to its commit: the write lock's hold). */
  holdMs: number;
  /** Whether more tasks may be prunable (the batch was full). */
  more: boolean;
}

export interface Task {
  id: string;
  title: string;
  skill: string;
  payload: Json;
  status: TaskStatus;
  priority: number;
  createdAt: number;
  updatedAt: number;
  notBefore: number;
  consecutiveFailures: number;
  maxRetries: number | null;
  maxRuntimeSeconds: number | null;
  lastError: string | null;
  result: Json | null;
  currentRunId: string | null;
  /** The task's idempotency key (null: none). */
  key: string | null;
}

export type RunStatus = 'starting' | 'running' | 'ended';

export interface Run {
  id: string;
  taskId: string;
  status: RunStatus;
  outcome: RunOutcome | null;
  pid: number | null;
  pgid: number | null;
  procStartTime: number | null;
  bootId: string | null;
  startedAt: number;
  heartbeatAt: number | null;
  progress: Json | null;
  endedAt: number | null;
  exitCode: number | null;
  signal: string | null;
  error: string | null;
  logPath: string | null;
  stopReason: StopReason | null;
  sigtermAt: number | null;
  sigkillAt: number | null;
  exitedAt: number | null;
  accountedAt: number | null;
  deferUntil: number | null;
  stoppedOnRequest: boolean;
}

export interface BoardEvent {
  id: number;
  taskId: string;
  runId: string | null;
  kind: string;
  data: Json | null;
  at: number;
}

/** A run still of interest to the supervisor: its processes may be alive or it awaits accounting. */
export interface LiveRun extends Run {
  taskStatus: TaskStatus;
  taskMaxRuntimeSeconds: number | null;
  skillMaxRuntimeSeconds: number | null;
  skillHeartbeatTimeoutSeconds: number | null;
  skillReclaimGraceSeconds: number | null;
  skillMaxRssMb: number | null;
  /** The task's skill (metrics by skill). */
  taskSkill: string;
  /** How the skill's workers report ('board' when the skill is gone). */
  skillReport: ReportMode;
  /**
   * The run's token: for the supervisor that adopts the run's worker (it writes the heartbeats it
   * reads from the worker's heartbeat slot with it, fenced as the worker's own). A secret: never
   * logged, never served.
   */
  token: string;
}

export interface Claim {
  task: Task;
  run: Run;
  /** The run token: hand it to the worker only (environment), never log it. */
  token: string;
  skill: Skill;
  /** When the task became runnable, ms: the later of its last change before the claim and its not-before time (dispatch latency). */
  readyAt: number;
}

/** What a worker presents with every write. */
export interface RunCredentials {
  taskId: string;
  runId: string;
  token: string;
}

export type WorkerReport =
  | { outcome: 'completed'; result?: Json }
  | { outcome: 'failed'; error: string }
  | { outcome: 'deferred'; seconds: number; reason?: string };

export interface SpawnInfo {
  pid: number;
  pgid: number;
  procStartTime: number;
  bootId: string;
}

/** A run end the supervisor observed (process exit or confirmed gone). */
export interface ExitObservation {
  runId: string;
  at: number;
  exitCode?: number | null;
  signal?: string | null;
  /** Set when the whole process group/tree is confirmed gone. */
  gone: boolean;
  /** The outcome to record if the worker did not report one. */
  outcomeIfUnreported?: RunOutcome;
  errorIfUnreported?: string;
  /**
   * Exit-code skills: the run's end decided from the worker's exit status (policies' exitReport),
   * applied like a worker's report and fenced like one (policies' exitReportApplies): a run that
   * ended keeps its end, a run being reclaimed ends with its reclaim's outcome, and a completed
   * report makes the task done with its result only while the run is the task's current one and
   * the task is running. Takes the place of outcomeIfUnreported.
   */
  exitReport?: ExitReport;
}

/** What the board applies to a task whose run was accounted: the policy's decision, as decided. */
export type AccountAction = AccountingDecision;

export interface OwnerInfo {
  pid: number;
  host: string;
  startedAt: number;
  seenAt: number;
  state: string;
  detail: string | null;
}

/** A run with what `runs` and `status` show about its task. */
export interface RunListing extends Run {
  taskTitle: string;
  taskStatus: TaskStatus;
  skill: string;
  /** The run's place among its task's runs, from 1 (the order `show` lists them in). */
  attempt: number;
}

export interface RunFilter {
  taskId?: string;
  outcome?: RunOutcome;
  /** Only runs whose processes may be alive (not yet confirmed gone). */
  live?: boolean;
  /** Most runs returned (default 100), newest first. */
  limit?: number;
}

/** A task as another sees it through a link of the task graph: who it is, where it is, and why it stopped. */
export interface LinkedTask {
  id: string;
  title: string;
  status: TaskStatus;
  lastError: string | null;
}

export interface TaskDetail {
  task: Task;
  runs: Run[];
  events: BoardEvent[];
  /** The tasks it waits for (task graph), by id. */
  parents: LinkedTask[];
  /** The tasks that wait for it, by id (the first 1,000). */
  children: LinkedTask[];
}

/** One parent that is not done, of one task (what holds a waiting task). */
export interface WaitingFor {
  taskId: string;
  parent: LinkedTask;
}

export interface BoardCounts {
  tasks: Record<TaskStatus, number>;
  liveRuns: number;
}

/** A task's place in the newest-first order (created_at DESC, id DESC): a keyset page's bound. */
export interface TaskKey {
  createdAt: number;
  id: string;
}

/** A page of tasks, newest first: the filter (status, skill, `q` a substring of the title or the exact id), at most `limit` (1-500, default 50), after `after`. */
export interface TaskPageQuery {
  status?: TaskStatus;
  skill?: string;
  q?: string;
  limit?: number;
  after?: TaskKey | null;
  /** A search's scan budget, 1 to TASK_SEARCH_SCAN (the default): how many tasks it looks at, at most. */
  scan?: number;
}

export interface TaskPage {
  tasks: Task[];
  /** Where the next page starts (null: this was the last one). */
  next: TaskKey | null;
  /**
   * A search (`q`) stopped at its scan budget (TASK_SEARCH_SCAN rows) before it filled the page:
   * `next` continues it from the last task it looked at. Never set without `q`.
   */
  partial?: boolean;
}

/** An event of the board's feed, with its task as it is now (null if the task is gone). */
export interface FeedEvent extends BoardEvent {
  /** The feed's position just after this event (resume with eventsAfter(cursor)). */
  cursor: string;
  task: Task | null;
}

/** How many tasks have one status and skill (metrics); only pairs with tasks are listed. */
export interface TaskCount {
  status: TaskStatus;
  skill: string;
  count: number;
}

/** Reads: operators, `status`, the HTTP view and the supervisor. */
export interface BoardReads {
  /**
   * A keyset page of tasks, newest first (created_at DESC, id DESC): stable under concurrent adds
   * (a page never repeats or skips a task that existed when the first page was read).
   */
  listTasksPage(query: TaskPageQuery): Promise<TaskPage>;
  /**
   * The events committed after `cursor`, in commit order, at most `limit` (1-1000), and the cursor
   * to resume from. `cursor` null: nothing, and the cursor of the feed's end now. A cursor is the
   * backend's own opaque text (SQLite: the event id; PostgreSQL: the transaction id and the event id,
   * events delivered only once no older transaction is running, so a later commit is never skipped).
   * A malformed cursor is a BoardInputError.
   */
  eventsAfter(cursor: string | null, limit: number): Promise<{ events: FeedEvent[]; cursor: string }>;
  getSkill(name: string): Promise<Skill | null>;
  listSkills(): Promise<Skill[]>;
  getTask(id: string): Promise<Task | null>;
  listTasks(filter?: { status?: TaskStatus; skill?: string; limit?: number }): Promise<Task[]>;
  /** A task, its runs and its last 1,000 events; `boundedEvents`: event data longer than 16 KiB reads as a truncation marker (the HTTP view). */
  showTask(id: string, opts?: { boundedEvents?: boolean }): Promise<TaskDetail | null>;
  /** The parents that are not done of each of these tasks (at most 500 ids): what holds a waiting task, and why. */
  waitingFor(taskIds: string[]): Promise<WaitingFor[]>;
  /** One run by id (null if none). */
  getRun(id: string): Promise<Run | null>;
  /** Runs across tasks (or of one task), newest first; seeks an index (runs_task, runs_started, runs_live). */
  listRuns(filter?: RunFilter): Promise<RunListing[]>;
  counts(): Promise<BoardCounts>;
  /** Tasks by status and skill: one GROUP BY over tasks, its answer bounded by statuses × skills. */
  taskCountsBySkill(): Promise<TaskCount[]>;
  /** True when nothing is ready (now or later), running, or awaiting accounting. */
  idle(): Promise<boolean>;
  getOwner(): Promise<OwnerInfo | null>;
  /** The earliest time after `now` at which a ready task falls due (its not-before), or null: a seek of tasks_ready_due. */
  nextDueAt(now: number): Promise<number | null>;
}

/** Operator writes (CLI, HTTP): each one transaction. */
export interface OperatorOps {
  putSkill(input: SkillInput): Promise<Skill>;
  removeSkill(name: string): Promise<boolean>;
  /** Add a task; with a key already on the board, nothing is added and that task is returned. */
  createTask(input: TaskInput): Promise<Task>;
  /**
   * Add tasks in ONE transaction, all or nothing: each input is checked first (a refusal names its
   * place, `tasks[i]`), keys already on the board (or repeated in `inputs`) return the existing task
   * with `created: false`. Concurrent adds of one key create exactly one task.
   */
  createTasks(inputs: TaskInput[]): Promise<AddedTask[]>;
  /** Change a skill's cap on live workers (null: no cap) without touching its command; BoardInputError if there is no such skill. */
  setSkillCap(name: string, maxConcurrent: number | null): Promise<Skill>;
  /**
   * One bounded batch of retention: removes up to `limit` finished tasks (done or cancelled, never
   * waiting, ready, running or blocked, nor one whose run has not ended and been accounted) last
   * changed before `before`, with their runs and events, in one transaction.
   */
  pruneBatch(query: PruneQuery): Promise<PruneBatch>;
  cancelTask(id: string): Promise<Task>;
  blockTask(id: string, reason: string): Promise<Task>;
  unblockTask(id: string): Promise<Task>;
  /**
   * A blocked, cancelled or done task becomes ready again for a new attempt, its failure counter
   * reset (event `retried`). Refused (BoardInputError) for a ready or running task, and while any
   * run of the task has not ended and been accounted (its worker may still be alive).
   */
  retryTask(id: string): Promise<Task>;
  /**
   * Task graph: `child` waits for `parent` from now on (the child must be waiting or ready; a ready
   * child of a parent that is not done becomes waiting). Refused (BoardInputError) for an unknown
   * task (named), and for a link that would close a cycle (naming it, ids in order). Idempotent.
   */
  linkTasks(child: string, parent: string): Promise<Task>;
  /** Remove the link; a waiting child whose other parents are all done becomes ready. Refused when there is no such link. */
  unlinkTasks(child: string, parent: string): Promise<Task>;
  /**
   * Cancel the task and every task waiting on it, transitively, in one transaction; returns the ids
   * cancelled (the task first). Refused for a done task, as cancelTask.
   */
  cancelCascade(id: string): Promise<string[]>;
}

/**
 * The supervisor's operations: the reads and writes of a tick. On a `Board` each write is its own
 * transaction; on a `BoardTx` each write is atomic on its own (a failed write undoes only itself)
 * and they all commit together at `commit()`. Reads on a `BoardTx` see its uncommitted writes.
 */
export interface SupervisorOps {
  /** Runs whose processes may be alive (not yet confirmed gone). */
  liveRuns(): Promise<LiveRun[]>;
  /** Ended runs whose processes are gone and whose task was not updated yet. */
  unaccountedRuns(): Promise<Array<{ run: Run; task: Task }>>;
  /** Claim up to `max` runnable tasks (priority order), each with its run and a fresh token. */
  claimBatch(max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]>;
  /** Block every ready task whose skill is not registered (they could never run); returns them. */
  blockUnknownSkillTasks(now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>>;
  /** Record spawned processes (pid, group, start time, boot id) of started runs. */
  recordSpawns(items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void>;
  /** End a run that never produced a process (spawn failed, validation refused). */
  endUnspawned(runId: string, outcome: RunOutcome, error: string, now: number): Promise<void>;
  /** Record observed exits. */
  recordExits(observations: ExitObservation[]): Promise<void>;
  /** Close the run's fence and record the SIGTERM. Returns false if the run already ended for another reason. */
  beginReclaim(runId: string, reason: StopReason, now: number): Promise<boolean>;
  recordSigkill(runId: string, now: number): Promise<void>;
  /** Apply accounting decisions (the failure counter, backoff, block) to the runs' tasks. */
  applyAccountingBatch(items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void>;
  appendEvent(taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void>;
  setOwner(info: { pid: number; host: string; startedAt: number; state?: string; detail?: string | null }): Promise<void>;
}

/**
 * What a worker write did: `applied`, or `duplicate`: a report with this run's `seq` was applied
 * already (its answer was lost, and the worker sent it again), so nothing was written.
 */
export type WriteResult = 'applied' | 'duplicate';

/**
 * The worker's writes (fenced by run id + token + run still current). On a `Board` each is one
 * transaction; on a `BoardTx` (the supervisor applying reports that came through its report
 * channel) each is atomic on its own (a refused report undoes only itself) and they commit with
 * the transaction. A write's `seq` (per run, increasing; reportSeq) makes it apply at most once:
 * the same (run, seq) again answers `duplicate`, writing nothing, even after its run ended.
 */
export interface WorkerWrites {
  heartbeat(cred: RunCredentials, progress: Json | undefined, now: number): Promise<void>;
  workerEvent(cred: RunCredentials, kind: string, data: Json | null, now: number, seq?: string | null): Promise<WriteResult>;
  report(cred: RunCredentials, report: WorkerReport, now: number, seq?: string | null): Promise<WriteResult>;
  /** Record that the worker stopped on a signal; allowed while its run is being reclaimed. */
  recordStop(cred: RunCredentials, signal: string, now: number, seq?: string | null): Promise<WriteResult>;
  /** The run and its task, fenced as a write is (a worker reading its payload). */
  loadRun(cred: RunCredentials): Promise<{ task: Task; run: Run }>;
  /** The results of the task's parents (task graph), by id, read fenced like loadRun (all at once: a worker's own direct read). */
  parentResults(cred: RunCredentials): Promise<Record<string, Json | null>>;
  /** The ids of the task's parents, in id order, read fenced like loadRun (no result read). */
  parentIds(cred: RunCredentials): Promise<string[]>;
  /**
   * One page of the parents' results, in id order after `after` (null: from the first), read fenced
   * like loadRun: as many as fit in `maxBytes` of stored JSON text, at least one (graph-rules.ts
   * parentPageIds). Only the results of the page are read (the sizes come from the store).
   */
  parentPage(cred: RunCredentials, after: string | null, maxBytes: number): Promise<ParentPage>;
}

/** A page of a task's parents' results (WorkerWrites.parentPage). */
export interface ParentPage {
  results: Record<string, Json | null>;
  /** The cursor of the next page (pass it as `after`), null after the last. */
  next: string | null;
}

/** Worker operations, each fenced by run id + token + run still current, each one transaction. */
export interface WorkerOps extends WorkerWrites {
  /**
   * Whether a spooled report is already on the board: the run exists with this token, has ended,
   * and with the same outcome. Used to delete a spool file only when nothing would be lost.
   */
  reportApplied(cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean>;
}

/**
 * A transaction of supervisor writes (one commit, one fsync for a whole tick). It begins at its
 * first write and holds the board's write lock until `commit()`: keep it short. After a commit the
 * object stays usable: the next write begins a new transaction.
 */
export interface BoardTx extends SupervisorOps, WorkerWrites {
  /**
   * Bare heartbeats of many runs at once (liveness times, no progress: the report channel's
   * heartbeats answered from memory and read in heartbeat slots): each is fenced as `heartbeat` is
   * and sets its run's `heartbeatAt` to its `at` unless that is later already (never back); one statement per run at most, no savepoint of
   * its own. Returns the indexes (in `items`) of the heartbeats refused (not current: the rest were
   * written); each item is judged on its own credentials, so two of one run with different tokens get
   * their own answers. Atomic as a whole: a failure (busy, I/O) writes none of them.
   */
  beats(items: ReadonlyArray<{ cred: RunCredentials; at: number }>): Promise<number[]>;
  /**
   * Commit what was written since the last commit (a no-op if nothing). Throws WriteGroupLostError
   * when none of it landed (the backend rolled it back as a whole): the caller must write again
   * what it carried.
   */
  commit(): Promise<void>;
  /** Roll back what was not committed and end the transaction; later calls throw. Idempotent. */
  close(): void;
  /** The longest time, ms, one of this transaction's commits held the write lock (what every other writer waited). */
  readonly longestHoldMs: number;
}

/** How a BoardTx commits. */
export interface TxOptions {
  /**
   * Commit without waiting for the disk: for a transaction whose loss at a power failure or an OS
   * crash harms nothing (the report channel's bare heartbeats: a liveness time, no data). Such a
   * commit is atomic and never corrupts the board; a process crash (the supervisor SIGKILLed) loses
   * nothing; a power failure may lose it (and only it, and other relaxed commits after the last
   * durable one). SQLite: `synchronous = NORMAL` for that transaction (WAL: no fsync at its
   * commit; the next durable commit's fsync covers it). PostgreSQL: a hint it does not take
   * (`synchronous_commit = off` would lose answered commits at a server crash, which a SIGKILLed
   * backend causes): the commit is durable as any other.
   */
  relaxed?: boolean;
}

export type BoardKind = 'sqlite' | 'postgres';

export interface Board extends BoardReads, OperatorOps, SupervisorOps, WorkerOps {
  readonly kind: BoardKind;
  /** Where the board is, for messages and logs: a file path (a PostgreSQL URL with its password masked). */
  readonly location: string;
  /**
   * Open a transaction for the supervisor's writes. One at a time per board object: while it is
   * open, writes on the board object itself are refused (write through the transaction).
   */
  begin(opts?: TxOptions): BoardTx;
  close(): Promise<void>;
}

/** A cheap way to learn that another connection committed a change (SQLite: `data_version`). */
export interface ChangeFeed {
  /** A number that changes whenever another connection committed; synchronous and cheap enough to poll every few ms. */
  changeVersion(): number;
  /** Call `fn` as soon as the number changes, when the backend is told (a notification) rather than polled; `fn` must not throw. */
  onChange?(fn: () => void): void;
}

/** The WAL of a SQLite board: checkpoints. */
export interface Checkpointing {
  checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): Promise<{ busy: boolean; logFrames: number; checkpointed: number }>;
}

/** A connection held in this process (SQLite): its busy timeout, and a synchronous close for signal handlers. */
export interface LocalConnection {
  /** This connection's busy timeout, ms (e.g. to keep a shutdown's last writes inside its grace). */
  setBusyTimeout(ms: number): void;
  /**
   * Close now, synchronously. `checkpoint`: PASSIVE or TRUNCATE first; 'free' checkpoints without
   * waiting (PASSIVE, then TRUNCATE when everything was checkpointed, so the -wal shrinks).
   * Never throws: an unfinished checkpoint leaves a valid WAL.
   */
  closeNow(checkpoint?: 'PASSIVE' | 'TRUNCATE' | 'free' | null): void;
}

/** Who a supervisor is, as its row on a board with several supervisors records it. */
export interface SupervisorIdentity {
  /** Its host's id (KANBAN_HOST_ID, else /etc/machine-id): one owner per (board, host id). */
  hostId: string;
  /** The host's name, for people. */
  host: string;
  pid: number;
  bootId: string | null;
  procStartTime: number | null;
  startedAt: number;
}

export interface SupervisorRow extends SupervisorIdentity {
  id: string;
  leaseExpiresAt: number;
  stoppedAt: number | null;
  /** The supervisor that took its runs over when its lease expired (null: none did). */
  takenOverBy: string | null;
}

/** A run taken over from a supervisor whose lease expired, and what became of its task. */
export interface TakenOverRun {
  runId: string;
  taskId: string;
  /** The worker's pid on the lost host (null if never recorded). */
  pid: number | null;
  /** The run's outcome: `abandoned` if it had not ended, else what its worker reported. */
  outcome: string;
  action: AccountAction;
}

/** A supervisor whose lease expired, taken over (its row marked stopped, its live runs fenced and accounted). */
export interface TakenOverSupervisor {
  id: string;
  hostId: string;
  host: string;
  pid: number;
  leaseExpiresAt: number;
  runs: TakenOverRun[];
}

/** Ownership of a board by one host, held by the server (released when its holder's connection dies). */
export interface HostHold {
  /** The holder's connection was lost: the server has released the ownership. */
  readonly lost: boolean;
  onLost(fn: (e: unknown) => void): void;
  release(): Promise<void>;
}

/**
 * A board that several supervisors share, one per host (PostgreSQL): ownership per host, and the
 * supervisors' rows with their leases. Once `registerSupervisor` ran, the board object acts for
 * that supervisor: its claims record it as their runs' owner, and `liveRuns`/`unaccountedRuns`
 * (on it and its transactions) return only its host's runs. A SQLite board has one owner (its
 * owner lock file) and no such ability.
 */
export interface SupervisorRegistry {
  /** Take `hostId`'s ownership of the board, without waiting: null when another supervisor of that host holds it. */
  tryHoldHost(hostId: string): Promise<HostHold | null>;
  /** Record this supervisor (its row, its lease `leaseMs` from `now`); returns its id. */
  registerSupervisor(me: SupervisorIdentity, leaseMs: number, now: number): Promise<string>;
  /** Mark the registered supervisor stopped (a clean exit). */
  markSupervisorStopped(now: number): Promise<void>;
  /** Supervisors not marked stopped, newest first (of one host with `hostId`). */
  liveSupervisors(hostId?: string): Promise<SupervisorRow[]>;
  /** How many connections the server accepts from ordinary users (the connection budget of every host together). */
  connectionLimit(): Promise<number>;
}

/** A transaction that renews the registered supervisor's lease with the tick's other writes (shared boards). */
export interface LeaseRenewal {
  /**
   * Push the lease to `now` + the lease length; false if the supervisor's row is gone or stopped
   * (taken over by another supervisor: its runs are fenced; register again). The row stays locked
   * until the transaction ends, so nobody can take this supervisor over meanwhile.
   */
  renewLease(now: number): Promise<boolean>;
  /**
   * Take over every supervisor of another host whose lease expired before `now` (and that no
   * transaction holds): in this transaction, its row is marked stopped (taken over by this one),
   * each of its live runs is fenced (ended `abandoned` unless it had ended, stop reason
   * `lease_lost`, accounted) and its task gets `decide(run, task)` (a requeue not before
   * `requeueNotBefore(run)`, at the earliest). The runs' processes are left to their own host: a
   * supervisor of that host terminates them when it sees the stop reason.
   */
  takeOverExpired(
    now: number,
    decide: (run: Run, task: Task) => AccountAction,
    requeueNotBefore: (run: LiveRun) => number,
  ): Promise<TakenOverSupervisor[]>;
}

export function supervisorRegistryOf(b: Board): SupervisorRegistry | null {
  return typeof (b as Partial<SupervisorRegistry>).registerSupervisor === 'function' ? (b as Board & SupervisorRegistry) : null;
}

export function leaseRenewalOf(tx: BoardTx): LeaseRenewal | null {
  return typeof (tx as Partial<LeaseRenewal>).renewLease === 'function' ? (tx as BoardTx & LeaseRenewal) : null;
}

export function changeFeedOf(b: Board): ChangeFeed | null {
  return typeof (b as Partial<ChangeFeed>).changeVersion === 'function' ? (b as Board & ChangeFeed) : null;
}

export function checkpointingOf(b: Board): Checkpointing | null {
  return typeof (b as Partial<Checkpointing>).checkpoint === 'function' ? (b as Board & Checkpointing) : null;
}

export function localConnectionOf(b: Board): LocalConnection | null {
  return typeof (b as Partial<LocalConnection>).closeNow === 'function' ? (b as Board & LocalConnection) : null;
}
