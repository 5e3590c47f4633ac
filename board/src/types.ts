/**
 * The board as a set of operations. The supervisor, the worker runtime and the CLI speak
 * only this interface; SqliteBoard implements it, and a PostgreSQL store can later.
 * Every method is async so that a networked store fits the same shape.
 */
import type { RunOutcome, TaskStatus } from '@kanban-supervisor/policies';

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
}

export interface TaskInput {
  skill: string;
  title?: string;
  payload?: Json;
  priority?: number;
  maxRuntimeSeconds?: number | null;
  maxRetries?: number | null;
  notBefore?: number;
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
  stopReason: string | null;
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
}

export interface Claim {
  task: Task;
  run: Run;
  /** The run token: hand it to the worker only (environment), never log it. */
  token: string;
  skill: Skill;
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
}

export type AccountAction =
  | { action: 'done' }
  | { action: 'requeue'; consecutiveFailures: number; notBefore: number; counted: boolean }
  | { action: 'block'; consecutiveFailures: number; reason: string }
  | { action: 'leave' };

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

export interface TaskDetail {
  task: Task;
  runs: Run[];
  events: BoardEvent[];
}

export interface BoardCounts {
  tasks: Record<TaskStatus, number>;
  liveRuns: number;
}

export interface Board {
  readonly path: string;
  close(): Promise<void>;

  // Skills
  putSkill(input: SkillInput): Promise<Skill>;
  getSkill(name: string): Promise<Skill | null>;
  listSkills(): Promise<Skill[]>;
  removeSkill(name: string): Promise<boolean>;

  // Tasks (operator)
  createTask(input: TaskInput): Promise<Task>;
  getTask(id: string): Promise<Task | null>;
  listTasks(filter?: { status?: TaskStatus; skill?: string; limit?: number }): Promise<Task[]>;
  showTask(id: string): Promise<TaskDetail | null>;
  cancelTask(id: string): Promise<Task>;
  blockTask(id: string, reason: string): Promise<Task>;
  unblockTask(id: string): Promise<Task>;
  /**
   * A blocked, cancelled or done task becomes ready again for a new attempt, its failure counter
   * reset (event `retried`). Refused (BoardInputError) for a ready or running task, and while any
   * run of the task has not ended and been accounted (its worker may still be alive).
   */
  retryTask(id: string): Promise<Task>;
  /** One run by id (null if none). */
  getRun(id: string): Promise<Run | null>;
  /** Runs across tasks (or of one task), newest first; seeks an index (runs_task, runs_started, runs_live). */
  listRuns(filter?: RunFilter): Promise<RunListing[]>;
  counts(): Promise<BoardCounts>;
  /** True when nothing is ready (now or later), running, or awaiting accounting. */
  idle(): Promise<boolean>;

  // Write groups (the supervisor's one commit per tick)
  /**
   * Group the writes that follow into one transaction: one commit (one fsync) for a whole tick.
   * The transaction begins at the group's first write; each write stays atomic on its own (a
   * failed write undoes only itself) and reads see the group's earlier writes. Keep a group short:
   * it holds the board's write lock until commitGroup().
   */
  beginGroup(): void;
  /** Commit what the group wrote so far (a no-op if nothing); the group stays open for more writes. Throws WriteGroupLostError if nothing of it landed. */
  commitGroup(): Promise<void>;
  /** Close the group; what it wrote since the last commitGroup() is rolled back. */
  endGroup(): void;

  // Supervisor
  /** Claim the next runnable task and open its run with a fresh token, atomically. */
  claimNext(now: number, logPathFor: (runId: string) => string): Promise<Claim | null>;
  /** Claim up to `max` runnable tasks in one transaction. */
  claimBatch(max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]>;
  /** Block every ready task whose skill is not registered (they could never run); returns them. */
  blockUnknownSkillTasks(now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>>;
  recordSpawn(runId: string, info: SpawnInfo, now: number): Promise<void>;
  /** Record several spawns in one transaction. */
  recordSpawns(items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void>;
  /** End a run that never produced a process (spawn failed, validation refused), in one transaction. */
  endUnspawned(runId: string, outcome: RunOutcome, error: string, now: number): Promise<void>;
  /** Runs whose processes may be alive (not yet confirmed gone). */
  liveRuns(): Promise<LiveRun[]>;
  /** Record observed exits in ONE transaction. */
  recordExits(observations: ExitObservation[]): Promise<void>;
  /** Close the run's fence and record the SIGTERM. Returns false if the run already ended for another reason. */
  beginReclaim(runId: string, reason: string, now: number): Promise<boolean>;
  recordSigkill(runId: string, now: number): Promise<void>;
  /** Ended runs whose processes are gone and whose task was not updated yet. */
  unaccountedRuns(): Promise<Array<{ run: Run; task: Task }>>;
  applyAccounting(runId: string, action: AccountAction, now: number): Promise<void>;
  /** Apply several accounting decisions in one transaction. */
  applyAccountingBatch(items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void>;
  dataVersion(): Promise<number>;
  setOwner(info: { pid: number; host: string; startedAt: number; state?: string; detail?: string | null }): Promise<void>;
  getOwner(): Promise<OwnerInfo | null>;
  checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): Promise<{ busy: boolean; logFrames: number; checkpointed: number }>;
  appendEvent(taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void>;

  // Worker (fenced by run id + token + run still current)
  loadRun(cred: RunCredentials): Promise<{ task: Task; run: Run }>;
  heartbeat(cred: RunCredentials, progress: Json | undefined, now: number): Promise<void>;
  workerEvent(cred: RunCredentials, kind: string, data: Json | null, now: number): Promise<void>;
  report(cred: RunCredentials, report: WorkerReport, now: number): Promise<void>;
  /**
   * Whether a spooled report is already on the board: the run exists with this token, has ended,
   * and with the same outcome. Used to delete a spool file only when nothing would be lost.
   */
  reportApplied(cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean>;
  /** Record that the worker stopped on a signal; allowed while its run is being reclaimed. */
  recordStop(cred: RunCredentials, signal: string, now: number): Promise<void>;
}
