/**
 * The SQLite implementation of the Board operations. Every SQL statement of the project lives
 * in this package. Every write is one BEGIN IMMEDIATE transaction, retried on SQLITE_BUSY with
 * jitter; no transaction ever spans an await.
 */
import type { RunOutcome, StopReason, TaskStatus } from '@kanban-supervisor/policies';
import { LIMITS, isStopReason, limitProblem, TASK_STATUSES, type LimitRange } from '@kanban-supervisor/policies';
import type Database from 'better-sqlite3';
import { BoardDamagedError, BoardError, BoardInputError, NotCurrentError, WriteGroupLostError, classifyError, isBusy } from './errors.js';
import { newRunId, newTaskId, newToken } from './ids.js';
import { openDatabase, resolveBoardPath, type BoardPathOptions, type Db, type OpenOptions } from './open.js';
import type {
  AccountAction,
  Board,
  BoardTx,
  ChangeFeed,
  Checkpointing,
  LocalConnection,
  BoardCounts,
  BoardEvent,
  Claim,
  ExitObservation,
  Json,
  LiveRun,
  OwnerInfo,
  Run,
  RunCredentials,
  RunFilter,
  RunListing,
  Skill,
  SkillInput,
  SpawnInfo,
  Task,
  TaskDetail,
  TaskInput,
  WorkerReport,
} from './types.js';

export interface SqliteBoardOptions extends OpenOptions {
  /** How many times a write is retried on SQLITE_BUSY after the busy timeout ran out. */
  busyRetries?: number;
}

type Row = Record<string, unknown>;

/** How an operation's statements run: each write its own transaction, or a savepoint of a BoardTx. */
interface Writer {
  read<T>(fn: () => T): Promise<T>;
  write<T>(fn: () => T): Promise<T>;
}

/** The state of one BoardTx: its transaction (if begun), the error that broke it, if any. */
interface TxState {
  begun: boolean;
  broken: unknown;
  begunAt: number;
  closed: boolean;
  longestHoldMs: number;
}

/**
 * The statements the supervisor runs every tick. Each must stay flat in the board's size (an index
 * seek, never a scan or a sort of the queue): test/board.test.ts checks their query plans.
 */
export const HOT_SQL = {
  // INDEXED BY: left alone, the planner picks tasks_status and sorts every ready task per claim.
  claimReady: `SELECT t.* FROM tasks t INDEXED BY tasks_ready
  WHERE t.status = 'ready' AND t.not_before <= ?
    AND EXISTS (SELECT 1 FROM skills s WHERE s.name = t.skill)
  ORDER BY t.priority DESC, t.created_at, t.id LIMIT ?`,
  // The distinct skills of the ready tasks, one index seek each (a loose index scan).
  firstReadySkill: `SELECT skill FROM tasks INDEXED BY tasks_ready_skill WHERE status = 'ready' ORDER BY skill LIMIT 1`,
  nextReadySkill: `SELECT skill FROM tasks INDEXED BY tasks_ready_skill WHERE status = 'ready' AND skill > ? ORDER BY skill LIMIT 1`,
  readyTasksOfSkill: `SELECT id FROM tasks INDEXED BY tasks_ready_skill WHERE status = 'ready' AND skill = ?`,
  // Read as raw rows (see toLiveRun for the column order).
  liveRuns: `SELECT r.id, r.task_id, r.status, r.outcome, r.pid, r.pgid, r.proc_start_time, r.boot_id, r.started_at,
        r.heartbeat_at, r.progress, r.ended_at, r.exit_code, r.signal, r.error, r.log_path, r.stop_reason,
        r.sigterm_at, r.sigkill_at, r.exited_at, r.accounted_at, r.defer_until, r.stopped_on_request,
        t.status, t.max_runtime_seconds, s.max_runtime_seconds, s.heartbeat_timeout_seconds,
        s.reclaim_grace_seconds, s.max_rss_mb
   FROM runs r JOIN tasks t ON t.id = r.task_id LEFT JOIN skills s ON s.name = t.skill
  WHERE r.exited_at IS NULL ORDER BY r.started_at`,
  unaccountedRuns: `SELECT r.id AS r_id, r.task_id AS r_task_id, r.token AS r_token, r.status AS r_status, r.outcome AS r_outcome,
        r.pid AS r_pid, r.pgid AS r_pgid, r.proc_start_time AS r_proc_start_time, r.boot_id AS r_boot_id,
        r.started_at AS r_started_at, r.heartbeat_at AS r_heartbeat_at, r.progress AS r_progress,
        r.ended_at AS r_ended_at, r.exit_code AS r_exit_code, r.signal AS r_signal, r.error AS r_error,
        r.log_path AS r_log_path, r.stop_reason AS r_stop_reason, r.sigterm_at AS r_sigterm_at,
        r.sigkill_at AS r_sigkill_at, r.exited_at AS r_exited_at, r.accounted_at AS r_accounted_at,
        r.defer_until AS r_defer_until, r.stopped_on_request AS r_stopped_on_request, t.*
   FROM runs r JOIN tasks t ON t.id = r.task_id
  WHERE r.status = 'ended' AND r.accounted_at IS NULL AND r.exited_at IS NOT NULL
  ORDER BY r.ended_at`,
} as const;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function parseJson(v: unknown): Json | null {
  if (v === null || v === undefined) return null;
  return JSON.parse(String(v)) as Json;
}

function num(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

function toTask(r: Row): Task {
  return {
    id: String(r.id),
    title: String(r.title),
    skill: String(r.skill),
    payload: parseJson(r.payload),
    status: r.status as TaskStatus,
    priority: Number(r.priority),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    notBefore: Number(r.not_before),
    consecutiveFailures: Number(r.consecutive_failures),
    maxRetries: num(r.max_retries),
    maxRuntimeSeconds: num(r.max_runtime_seconds),
    lastError: (r.last_error as string | null) ?? null,
    result: parseJson(r.result),
    currentRunId: (r.current_run_id as string | null) ?? null,
  };
}

/** A stored stop reason: only beginReclaim writes the column, with a typed reason; anything else reads as null. */
function stopReasonOf(v: unknown): StopReason | null {
  return isStopReason(v) ? v : null;
}

function toRun(r: Row, prefix = ''): Run {
  const g = (k: string) => r[prefix + k];
  return {
    id: String(g('id')),
    taskId: String(g('task_id')),
    status: g('status') as Run['status'],
    outcome: (g('outcome') as RunOutcome | null) ?? null,
    pid: num(g('pid')),
    pgid: num(g('pgid')),
    procStartTime: num(g('proc_start_time')),
    bootId: (g('boot_id') as string | null) ?? null,
    startedAt: Number(g('started_at')),
    heartbeatAt: num(g('heartbeat_at')),
    progress: parseJson(g('progress')),
    endedAt: num(g('ended_at')),
    exitCode: num(g('exit_code')),
    signal: (g('signal') as string | null) ?? null,
    error: (g('error') as string | null) ?? null,
    logPath: (g('log_path') as string | null) ?? null,
    stopReason: stopReasonOf(g('stop_reason')),
    sigtermAt: num(g('sigterm_at')),
    sigkillAt: num(g('sigkill_at')),
    exitedAt: num(g('exited_at')),
    accountedAt: num(g('accounted_at')),
    deferUntil: num(g('defer_until')),
    stoppedOnRequest: Number(g('stopped_on_request') ?? 0) === 1,
  };
}

/** A raw row of HOT_SQL.liveRuns (columns in its order): one object per run, nothing else. */
function toLiveRun(v: unknown[]): LiveRun {
  return {
    id: String(v[0]),
    taskId: String(v[1]),
    status: v[2] as Run['status'],
    outcome: (v[3] as RunOutcome | null) ?? null,
    pid: num(v[4]),
    pgid: num(v[5]),
    procStartTime: num(v[6]),
    bootId: (v[7] as string | null) ?? null,
    startedAt: Number(v[8]),
    heartbeatAt: num(v[9]),
    progress: parseJson(v[10]),
    endedAt: num(v[11]),
    exitCode: num(v[12]),
    signal: (v[13] as string | null) ?? null,
    error: (v[14] as string | null) ?? null,
    logPath: (v[15] as string | null) ?? null,
    stopReason: stopReasonOf(v[16]),
    sigtermAt: num(v[17]),
    sigkillAt: num(v[18]),
    exitedAt: num(v[19]),
    accountedAt: num(v[20]),
    deferUntil: num(v[21]),
    stoppedOnRequest: Number(v[22] ?? 0) === 1,
    taskStatus: v[23] as TaskStatus,
    taskMaxRuntimeSeconds: num(v[24]),
    skillMaxRuntimeSeconds: num(v[25]),
    skillHeartbeatTimeoutSeconds: num(v[26]),
    skillReclaimGraceSeconds: num(v[27]),
    skillMaxRssMb: num(v[28]),
  };
}

function toSkill(r: Row): Skill {
  return {
    name: String(r.name),
    argv: JSON.parse(String(r.argv)) as string[],
    cwd: (r.cwd as string | null) ?? null,
    env: JSON.parse(String(r.env ?? '{}')) as Record<string, string>,
    passEnv: JSON.parse(String(r.pass_env ?? '[]')) as string[],
    maxRuntimeSeconds: num(r.max_runtime_seconds),
    heartbeatTimeoutSeconds: num(r.heartbeat_timeout_seconds),
    reclaimGraceSeconds: num(r.reclaim_grace_seconds),
    maxRssMb: num(r.max_rss_mb),
  };
}

const SKILL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const EVENT_KIND = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

function jsonText(what: string, v: Json | undefined | null): string | null {
  if (v === undefined) return null;
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch (e) {
    throw new BoardInputError(`${what} is not serialisable as JSON: ${(e as Error).message}`);
  }
  if (s === undefined) throw new BoardInputError(`${what} is not serialisable as JSON`);
  if (s.length > 4 * 1024 * 1024) throw new BoardInputError(`${what} is larger than 4 MiB of JSON`);
  return s;
}

/** An optional limit inside its range (LIMITS, shared with the CLI, the supervisor and the worker runtime). */
function optLimit(what: string, v: number | null | undefined, range: LimitRange): number | null {
  if (v === null || v === undefined) return null;
  const problem = limitProblem(v, range);
  if (problem !== null) throw new BoardInputError(`${what} ${problem}`);
  return v;
}

export class SqliteBoard implements Board, ChangeFeed, Checkpointing, LocalConnection {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  readonly db: Db;
  private readonly stmts = new Map<string, Database.Statement>();
  private readonly busyRetries: number;

  private constructor(path: string, db: Db, opts: SqliteBoardOptions) {
    this.path = path;
    this.db = db;
    this.busyRetries = opts.busyRetries ?? 20;
  }

  /** Open the board at `path` (hardened open: WAL once, migrations, per-connection pragmas). */
  static open(path: string, opts: SqliteBoardOptions = {}): SqliteBoard {
    const abs = resolveBoardPath(path, { allowHardLinks: true });
    return new SqliteBoard(abs, openDatabase(abs, opts), opts);
  }

  /**
   * The board's one path (a symlinked board file resolved to its target), checked: throws
   * BoardPathError for a directory, a non-regular file, a board file with several hard links, and
   * as `opts` asks for a missing board. Every entry point (CLI, supervisor) starts with it.
   */
  static resolvePath(path: string, opts: Omit<BoardPathOptions, 'allowHardLinks'> = {}): string {
    return resolveBoardPath(path, opts);
  }

  /** Read the owner row through a short read-only connection (null if unreadable). */
  static async readOwner(path: string): Promise<OwnerInfo | null> {
    try {
      const abs = resolveBoardPath(path, { allowHardLinks: true });
      const b = new SqliteBoard(abs, openDatabase(abs, { readonly: true, busyTimeoutMs: 1000 }), {});
      try {
        return await b.getOwner();
      } finally {
        b.closeSync();
      }
    } catch {
      return null;
    }
  }

  /** Open read-only (no WAL change, no migration): for inspecting a board one does not own. */
  static openReadonly(path: string, busyTimeoutMs = 1000): SqliteBoard {
    const abs = resolveBoardPath(path, { allowHardLinks: true });
    return new SqliteBoard(abs, openDatabase(abs, { readonly: true, busyTimeoutMs }), {});
  }

  get location(): string {
    return this.path;
  }

  async close(): Promise<void> {
    this.closeSync();
  }

  closeNow(checkpoint: 'PASSIVE' | 'TRUNCATE' | 'free' | null = null): void {
    if (checkpoint === 'free') this.checkpointAndCloseSync();
    else {
      try {
        this.closeSync(checkpoint);
      } catch {
        /* SQLite recovers from an unclosed connection */
      }
    }
  }

  /** Change this connection's busy timeout (e.g. to keep a shutdown's last writes inside its grace). */
  setBusyTimeout(ms: number): void {
    if (this.db.open) this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
  }

  /**
   * Checkpoint without waiting (PASSIVE; then TRUNCATE when everything was checkpointed, so the
   * -wal shrinks) and close. Never throws: a busy or failed checkpoint leaves a valid WAL.
   */
  checkpointAndCloseSync(): void {
    try {
      if (!this.db.open) return;
      try {
        const rows = this.db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
        const r = rows[0];
        if (r && r.busy === 0 && r.log > 0 && r.log === r.checkpointed) {
          this.db.pragma('busy_timeout = 0');
          this.db.pragma('wal_checkpoint(TRUNCATE)');
        }
      } catch {
        /* harmless */
      }
      this.closeSync(null);
    } catch {
      /* SQLite recovers from an unclosed connection */
    }
  }

  /** Checkpoint what is free to checkpoint, then close (used by signal handlers). */
  closeSync(checkpoint: 'PASSIVE' | 'TRUNCATE' | null = null): void {
    if (!this.db.open) return;
    if (checkpoint) {
      try {
        this.db.pragma(`wal_checkpoint(${checkpoint})`);
      } catch {
        /* a busy or failed checkpoint is harmless: the WAL stays valid */
      }
    }
    this.stmts.clear();
    this.db.close();
  }

  // ---------------------------------------------------------------- plumbing

  private stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  private get(sql: string, ...params: unknown[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }

  private all(sql: string, ...params: unknown[]): Row[] {
    return this.stmt(sql).all(...params) as Row[];
  }

  private run(sql: string, ...params: unknown[]): Database.RunResult {
    return this.stmt(sql).run(...params);
  }

  private wrap(e: unknown): unknown {
    if (classifyError(e) === 'damaged' && !(e instanceof BoardDamagedError)) {
      return new BoardDamagedError(this.path, (e as Error).message, { cause: e });
    }
    return e;
  }

  /** One BEGIN IMMEDIATE transaction; if ROLLBACK fails, the original error still surfaces. */
  private txImmediate<T>(fn: () => T): T {
    this.stmt('BEGIN IMMEDIATE').run();
    try {
      const out = fn();
      this.stmt('COMMIT').run();
      return out;
    } catch (e) {
      this.rollbackQuietly();
      throw e;
    }
  }

  /** Roll back the open transaction, if any; a failing ROLLBACK never hides the error being handled. */
  private rollbackQuietly(): void {
    if (!this.db.open || !this.db.inTransaction) return;
    try {
      this.stmt('ROLLBACK').run();
    } catch {
      /* keep the original error (closing the connection rolls back too) */
    }
  }

  /**
   * A write on its own: one BEGIN IMMEDIATE transaction, retried on SQLITE_BUSY with jittered
   * backoff (asynchronous: the event loop runs meanwhile). Refused while a BoardTx is open on this
   * connection: its writes go through it, so no write changes meaning because a transaction is open.
   */
  private async write<T>(fn: () => T): Promise<T> {
    if (this.legacyGroup) return this.txWrite(this.legacyGroup, fn);
    for (let attempt = 0; ; attempt++) {
      if (this.openTx) throw new Error(`a transaction is open on board ${this.path}: write through it`);
      try {
        return this.txImmediate(fn);
      } catch (e) {
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(this.busyDelayMs(attempt));
          continue;
        }
        throw this.wrap(e);
      }
    }
  }

  private busyDelayMs(attempt: number): number {
    return Math.min(200, 5 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random());
  }

  // ---------------------------------------------------------------- transactions (BoardTx)

  private readonly direct: Writer = { read: (fn) => this.read(fn), write: (fn) => this.write(fn) };
  /** The open BoardTx of this connection, if any (at most one). */
  private openTx: TxState | null = null;

  begin(): BoardTx {
    if (this.openTx || this.legacyGroup) throw new Error(`a transaction is already open on board ${this.path}`);
    const g: TxState = { begun: false, broken: null, begunAt: 0, closed: false, longestHoldMs: 0 };
    this.openTx = g;
    const w: Writer = { read: (fn) => this.txRead(g, fn), write: (fn) => this.txWrite(g, fn) };
    return {
      liveRuns: () => this.txRead(g, () => this.liveRunsNow()),
      unaccountedRuns: () => this.txRead(g, () => this.unaccountedRunsNow()),
      claimBatch: (max, now, logPathFor) => this.claimBatchIn(w, max, now, logPathFor),
      blockUnknownSkillTasks: (now) => this.blockUnknownSkillTasksIn(w, now),
      recordSpawns: (items, now) => this.recordSpawnsIn(w, items, now),
      endUnspawned: (runId, outcome, error, now) => this.endUnspawnedIn(w, runId, outcome, error, now),
      recordExits: (observations) => this.recordExitsIn(w, observations),
      beginReclaim: (runId, reason, now) => this.beginReclaimIn(w, runId, reason, now),
      recordSigkill: (runId, now) => this.recordSigkillIn(w, runId, now),
      applyAccountingBatch: (items, now) => this.applyAccountingBatchIn(w, items, now),
      appendEvent: (taskId, runId, kind, data, now) => this.appendEventIn(w, taskId, runId, kind, data, now),
      setOwner: (info) => this.setOwnerIn(w, info),
      commit: () => this.txCommit(g),
      close: () => this.txClose(g),
      get longestHoldMs() {
        return g.longestHoldMs;
      },
    };
  }

  private txUsable(g: TxState): void {
    if (g.closed) throw new Error(`the transaction on board ${this.path} is closed`);
  }

  private async txRead<T>(g: TxState, fn: () => T): Promise<T> {
    this.txUsable(g);
    return this.read(fn);
  }

  private noteHold(g: TxState): void {
    g.longestHoldMs = Math.max(g.longestHoldMs, performance.now() - g.begunAt);
  }

  private async txCommit(g: TxState): Promise<void> {
    this.txUsable(g);
    if (g.broken !== null) {
      const e = g.broken;
      g.broken = null;
      g.begun = false;
      throw new WriteGroupLostError(this.path, e);
    }
    if (!g.begun) return;
    g.begun = false;
    try {
      this.stmt('COMMIT').run();
    } catch (e) {
      this.rollbackQuietly();
      throw new WriteGroupLostError(this.path, this.wrap(e));
    } finally {
      this.noteHold(g);
    }
  }

  private txClose(g: TxState): void {
    if (g.closed) return;
    g.closed = true;
    if (this.openTx === g) this.openTx = null;
    if (this.legacyGroup === g) this.legacyGroup = null;
    // What was not committed (its owner failed before commit) is rolled back, never half-kept.
    if (g.begun) {
      g.begun = false;
      this.rollbackQuietly();
      this.noteHold(g);
    }
  }

  /**
   * A write inside a transaction: its BEGIN IMMEDIATE is taken at its first write (retried on BUSY
   * like any write); each write is its own SAVEPOINT, so a failed write undoes only itself. If
   * SQLite had to roll the whole transaction back (I/O error, full disk), the transaction is broken:
   * this write and the commit throw WriteGroupLostError, so the caller knows its earlier writes did
   * not land.
   */
  private async txWrite<T>(g: TxState, fn: () => T): Promise<T> {
    this.txUsable(g);
    if (g.broken !== null) throw new WriteGroupLostError(this.path, g.broken);
    // While this write sleeps on a busy lock, another write of the transaction may begin it:
    // re-check before every attempt.
    for (let attempt = 0; !g.begun; attempt++) {
      try {
        this.stmt('BEGIN IMMEDIATE').run();
        g.begun = true;
        g.begunAt = performance.now();
      } catch (e) {
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(this.busyDelayMs(attempt));
          if (g.closed) throw new Error('the transaction was closed while a write waited for the lock');
          if (g.broken !== null) throw new WriteGroupLostError(this.path, g.broken);
          continue;
        }
        throw this.wrap(e);
      }
    }
    this.stmt('SAVEPOINT w').run();
    try {
      const out = fn();
      this.stmt('RELEASE w').run();
      return out;
    } catch (e) {
      if (!this.db.inTransaction) {
        g.broken = this.wrap(e);
        throw new WriteGroupLostError(this.path, g.broken);
      }
      try {
        this.stmt('ROLLBACK TO w').run();
        this.stmt('RELEASE w').run();
      } catch {
        /* keep the original error */
      }
      throw this.wrap(e);
    }
  }

  // ---------------------------------------------------------------- legacy write groups
  // TEMPORARY (issue 13 in progress): the daemon still calls these; removed once it uses begin().

  private legacyGroup: TxState | null = null;
  private legacyLongest = 0;

  takeLongestGroupHold(): number {
    const ms = this.legacyLongest;
    this.legacyLongest = 0;
    return ms;
  }

  beginGroup(): void {
    if (this.legacyGroup || this.openTx) throw new Error('a write group is already open');
    this.legacyGroup = { begun: false, broken: null, begunAt: 0, closed: false, longestHoldMs: 0 };
  }

  async commitGroup(): Promise<void> {
    const g = this.legacyGroup;
    if (!g) throw new Error('no write group is open');
    try {
      await this.txCommit(g);
    } finally {
      this.legacyLongest = Math.max(this.legacyLongest, g.longestHoldMs);
    }
  }

  endGroup(): void {
    const g = this.legacyGroup;
    if (!g) return;
    this.txClose(g);
    this.legacyLongest = Math.max(this.legacyLongest, g.longestHoldMs);
  }

  private async read<T>(fn: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return fn();
      } catch (e) {
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(5 * (0.5 + Math.random()));
          continue;
        }
        throw this.wrap(e);
      }
    }
  }

  private event(taskId: string, runId: string | null, kind: string, data: Json | null, at: number): void {
    this.run(
      'INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, ?, ?, ?, ?)',
      taskId,
      runId,
      kind,
      data === null ? null : JSON.stringify(data),
      at,
    );
  }

  async appendEvent(taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void> {
    return this.appendEventIn(this.direct, taskId, runId, kind, data, now);
  }

  private async appendEventIn(w: Writer, taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void> {
    await w.write(() => this.event(taskId, runId, kind, data, now));
  }

  // ---------------------------------------------------------------- skills

  async putSkill(input: SkillInput): Promise<Skill> {
    if (!SKILL_NAME.test(input.name)) {
      throw new BoardInputError(`skill name ${JSON.stringify(input.name)} is invalid: use 1-64 letters, digits, '.', '_' or '-'`);
    }
    if (!Array.isArray(input.argv) || input.argv.length === 0 || !input.argv.every((a) => typeof a === 'string')) {
      throw new BoardInputError(`skill ${input.name}: the command must be a non-empty array of strings`);
    }
    if (input.argv[0] === '') throw new BoardInputError(`skill ${input.name}: the command name is empty`);
    const env = input.env ?? {};
    for (const [k, v] of Object.entries(env)) {
      if (!ENV_NAME.test(k)) throw new BoardInputError(`skill ${input.name}: invalid environment variable name ${JSON.stringify(k)}`);
      if (typeof v !== 'string') throw new BoardInputError(`skill ${input.name}: environment variable ${k} must be a string`);
      if (k.startsWith('KANBAN_')) throw new BoardInputError(`skill ${input.name}: environment variable ${k} is reserved for the supervisor`);
    }
    const passEnv = [...new Set(input.passEnv ?? [])];
    for (const k of passEnv) {
      if (typeof k !== 'string' || !ENV_NAME.test(k)) throw new BoardInputError(`skill ${input.name}: --pass-env must name an environment variable, got ${JSON.stringify(k)}`);
      if (k.startsWith('KANBAN_')) throw new BoardInputError(`skill ${input.name}: --pass-env ${k}: KANBAN_* variables are set by the supervisor`);
    }
    const maxRuntime = optLimit(`skill ${input.name}: max runtime`, input.maxRuntimeSeconds, LIMITS.maxRuntimeSeconds);
    const hb = optLimit(`skill ${input.name}: heartbeat timeout`, input.heartbeatTimeoutSeconds, LIMITS.heartbeatTimeoutSeconds);
    const grace = optLimit(`skill ${input.name}: reclaim grace`, input.reclaimGraceSeconds, LIMITS.reclaimGraceSeconds);
    const rss = optLimit(`skill ${input.name}: max RSS`, input.maxRssMb, LIMITS.maxRssMb);
    const now = Date.now();
    await this.write(() =>
      this.run(
        `INSERT INTO skills (name, argv, cwd, env, pass_env, max_runtime_seconds, heartbeat_timeout_seconds, reclaim_grace_seconds, max_rss_mb, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET argv = excluded.argv, cwd = excluded.cwd, env = excluded.env, pass_env = excluded.pass_env,
           max_runtime_seconds = excluded.max_runtime_seconds, heartbeat_timeout_seconds = excluded.heartbeat_timeout_seconds,
           reclaim_grace_seconds = excluded.reclaim_grace_seconds, max_rss_mb = excluded.max_rss_mb, updated_at = excluded.updated_at`,
        input.name,
        JSON.stringify(input.argv),
        input.cwd ?? null,
        JSON.stringify(env),
        JSON.stringify(passEnv),
        maxRuntime,
        hb,
        grace,
        rss,
        now,
        now,
      ),
    );
    return (await this.getSkill(input.name))!;
  }

  async getSkill(name: string): Promise<Skill | null> {
    return this.read(() => {
      const r = this.get('SELECT * FROM skills WHERE name = ?', name);
      return r ? toSkill(r) : null;
    });
  }

  async listSkills(): Promise<Skill[]> {
    return this.read(() => this.all('SELECT * FROM skills ORDER BY name').map(toSkill));
  }

  async removeSkill(name: string): Promise<boolean> {
    return this.write(() => this.run('DELETE FROM skills WHERE name = ?', name).changes > 0);
  }

  // ---------------------------------------------------------------- tasks

  async createTask(input: TaskInput): Promise<Task> {
    const payload = jsonText('payload', input.payload ?? null) ?? 'null';
    const priority = input.priority ?? 0;
    if (!Number.isSafeInteger(priority)) throw new BoardInputError(`priority must be an integer, got ${String(input.priority)}`);
    const maxRuntime = optLimit('max runtime', input.maxRuntimeSeconds, LIMITS.maxRuntimeSeconds);
    const maxRetries = optLimit('max retries', input.maxRetries, LIMITS.failureLimit);
    const title = input.title ?? input.skill;
    const now = Date.now();
    return this.write(() => {
      if (!this.get('SELECT 1 FROM skills WHERE name = ?', input.skill)) {
        const known = this.all('SELECT name FROM skills ORDER BY name').map((r) => String(r.name));
        throw new BoardInputError(
          `unknown skill ${JSON.stringify(input.skill)} on board ${this.path}; registered: ${known.length ? known.join(', ') : '(none)'}`,
        );
      }
      for (let i = 0; ; i++) {
        const id = newTaskId();
        if (this.get('SELECT 1 FROM tasks WHERE id = ?', id)) {
          if (i > 10) throw new BoardError('could not allocate a unique task id');
          continue;
        }
        this.run(
          `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, max_retries, max_runtime_seconds)
           VALUES (?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?, ?)`,
          id,
          title,
          input.skill,
          payload,
          priority,
          now,
          now,
          input.notBefore ?? 0,
          maxRetries,
          maxRuntime,
        );
        this.event(id, null, 'created', { skill: input.skill, priority }, now);
        return toTask(this.get('SELECT * FROM tasks WHERE id = ?', id)!);
      }
    });
  }

  async getTask(id: string): Promise<Task | null> {
    return this.read(() => {
      const r = this.get('SELECT * FROM tasks WHERE id = ?', id);
      return r ? toTask(r) : null;
    });
  }

  async listTasks(filter: { status?: TaskStatus; skill?: string; limit?: number } = {}): Promise<Task[]> {
    const limit = filter.limit ?? 1000;
    if (filter.status && !(TASK_STATUSES as readonly string[]).includes(filter.status)) {
      throw new BoardInputError(`unknown status ${JSON.stringify(filter.status)}; one of ${TASK_STATUSES.join(', ')}`);
    }
    const where = [...(filter.status ? ['status = ?'] : []), ...(filter.skill !== undefined ? ['skill = ?'] : [])];
    const params = [...(filter.status ? [filter.status] : []), ...(filter.skill !== undefined ? [filter.skill] : [])];
    return this.read(() =>
      this.all(`SELECT * FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT ?`, ...params, limit).map(toTask),
    );
  }

  async showTask(id: string): Promise<TaskDetail | null> {
    return this.read(() => {
      const t = this.get('SELECT * FROM tasks WHERE id = ?', id);
      if (!t) return null;
      const runs = this.all('SELECT * FROM runs WHERE task_id = ? ORDER BY started_at, id', id).map((r) => toRun(r));
      const events = this.all(
        'SELECT * FROM (SELECT * FROM events WHERE task_id = ? ORDER BY id DESC LIMIT 1000) ORDER BY id',
        id,
      ).map(
        (r): BoardEvent => ({
          id: Number(r.id),
          taskId: String(r.task_id),
          runId: (r.run_id as string | null) ?? null,
          kind: String(r.kind),
          data: parseJson(r.data),
          at: Number(r.at),
        }),
      );
      return { task: toTask(t), runs, events };
    });
  }

  private taskOrThrow(id: string): Task {
    const r = this.get('SELECT * FROM tasks WHERE id = ?', id);
    if (!r) throw new BoardInputError(`no task ${JSON.stringify(id)} on board ${this.path}`);
    return toTask(r);
  }

  async cancelTask(id: string): Promise<Task> {
    const now = Date.now();
    return this.write(() => {
      const t = this.taskOrThrow(id);
      if (t.status === 'cancelled') return t;
      if (t.status === 'done') throw new BoardInputError(`task ${id} is done; it cannot be cancelled`);
      // A running task keeps current_run_id: the supervisor reclaims its worker (outcome `cancelled`).
      this.run(
        `UPDATE tasks SET status = 'cancelled', updated_at = ?, current_run_id = CASE WHEN status = 'running' THEN current_run_id ELSE NULL END WHERE id = ?`,
        now,
        id,
      );
      this.event(id, t.currentRunId, 'cancelled', { from: t.status }, now);
      return this.taskOrThrow(id);
    });
  }

  async blockTask(id: string, reason: string): Promise<Task> {
    if (!reason.trim()) throw new BoardInputError('a block needs a reason');
    const now = Date.now();
    return this.write(() => {
      const t = this.taskOrThrow(id);
      if (t.status !== 'ready' && t.status !== 'blocked') {
        throw new BoardInputError(`task ${id} is ${t.status}; only a ready task can be blocked`);
      }
      this.run(`UPDATE tasks SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?`, reason, now, id);
      this.event(id, null, 'blocked', { reason, by: 'operator' }, now);
      return this.taskOrThrow(id);
    });
  }

  async unblockTask(id: string): Promise<Task> {
    const now = Date.now();
    return this.write(() => {
      const t = this.taskOrThrow(id);
      if (t.status !== 'blocked') throw new BoardInputError(`task ${id} is ${t.status}, not blocked`);
      this.run(
        `UPDATE tasks SET status = 'ready', consecutive_failures = 0, last_error = NULL, not_before = 0, updated_at = ? WHERE id = ?`,
        now,
        id,
      );
      this.event(id, null, 'unblocked', null, now);
      return this.taskOrThrow(id);
    });
  }

  async retryTask(id: string): Promise<Task> {
    const now = Date.now();
    return this.write(() => {
      const t = this.taskOrThrow(id);
      if (t.status === 'running') {
        throw new BoardInputError(
          `task ${id} is running (run ${t.currentRunId ?? '?'}); it is retried only once it has ended (blocked, cancelled or done): cancel it first to stop it`,
        );
      }
      if (t.status === 'ready') {
        const when = t.notBefore > now ? ` (waiting until ${new Date(t.notBefore).toISOString()})` : '';
        throw new BoardInputError(`task ${id} is ready${when}: it will run without a retry`);
      }
      // Fenced against a live run: a cancelled task keeps its run until the worker is gone, and a
      // done task's worker may still be exiting. Made ready now, it could get a second live worker.
      const live = this.get(
        `SELECT id FROM runs WHERE task_id = ? AND (exited_at IS NULL OR (status = 'ended' AND accounted_at IS NULL)) ORDER BY started_at DESC LIMIT 1`,
        id,
      );
      if (t.currentRunId !== null || live) {
        throw new BoardInputError(
          `task ${id} is ${t.status} but its run ${String(live?.id ?? t.currentRunId)} has not ended yet (its worker may still be stopping); retry it once the run has ended`,
        );
      }
      this.run(
        `UPDATE tasks SET status = 'ready', consecutive_failures = 0, last_error = NULL, not_before = 0, result = NULL, updated_at = ? WHERE id = ?`,
        now,
        id,
      );
      this.event(id, null, 'retried', { from: t.status, consecutive_failures: t.consecutiveFailures }, now);
      return this.taskOrThrow(id);
    });
  }

  async getRun(id: string): Promise<Run | null> {
    return this.read(() => {
      const r = this.get('SELECT * FROM runs WHERE id = ?', id);
      return r ? toRun(r) : null;
    });
  }

  async listRuns(filter: RunFilter = {}): Promise<RunListing[]> {
    const limit = Math.max(1, Math.min(filter.limit ?? 100, 1_000_000));
    // Each shape seeks one index in started_at order and stops at the limit (no sort of all runs):
    // runs_task (task_id, started_at), runs_live (started_at WHERE exited_at IS NULL), runs_started.
    const where: string[] = [];
    const params: unknown[] = [];
    let index = 'runs_started';
    if (filter.taskId !== undefined) {
      where.push('r.task_id = ?');
      params.push(filter.taskId);
      index = 'runs_task';
    }
    if (filter.live) {
      where.push('r.exited_at IS NULL');
      if (filter.taskId === undefined) index = 'runs_live';
    }
    if (filter.outcome !== undefined) {
      where.push('r.outcome = ?');
      params.push(filter.outcome);
    }
    const sql = `SELECT r.*, t.title AS t_title, t.status AS t_status, t.skill AS t_skill,
        (SELECT count(*) FROM runs p WHERE p.task_id = r.task_id AND (p.started_at < r.started_at OR (p.started_at = r.started_at AND p.rowid <= r.rowid))) AS attempt
       FROM runs r INDEXED BY ${index} JOIN tasks t ON t.id = r.task_id
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?`;
    return this.read(() =>
      this.all(sql, ...params, limit).map(
        (r): RunListing => ({ ...toRun(r), taskTitle: String(r.t_title), taskStatus: r.t_status as TaskStatus, skill: String(r.t_skill), attempt: Number(r.attempt) }),
      ),
    );
  }

  async counts(): Promise<BoardCounts> {
    return this.read(() => {
      const tasks = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
      for (const r of this.all('SELECT status, count(*) AS n FROM tasks GROUP BY status')) {
        tasks[r.status as TaskStatus] = Number(r.n);
      }
      const live = Number(this.get('SELECT count(*) AS n FROM runs WHERE exited_at IS NULL')!.n);
      return { tasks, liveRuns: live };
    });
  }

  async idle(): Promise<boolean> {
    return this.read(() => {
      const r = this.get(
        `SELECT EXISTS (SELECT 1 FROM tasks WHERE status IN ('ready', 'running'))
             OR EXISTS (SELECT 1 FROM runs WHERE exited_at IS NULL)
             OR EXISTS (SELECT 1 FROM runs WHERE status = 'ended' AND accounted_at IS NULL) AS busy`,
      )!;
      return Number(r.busy) === 0;
    });
  }

  // ---------------------------------------------------------------- supervisor

  async claimNext(now: number, logPathFor: (runId: string) => string): Promise<Claim | null> {
    return (await this.claimBatch(1, now, logPathFor))[0] ?? null;
  }

  /** Claim up to `max` runnable tasks in ONE transaction (one commit per tick, not per task). */
  async claimBatch(max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]> {
    return this.claimBatchIn(this.direct, max, now, logPathFor);
  }

  private async claimBatchIn(w: Writer, max: number, now: number, logPathFor: (runId: string) => string): Promise<Claim[]> {
    if (max <= 0) return [];
    return w.write(() => {
      const claims: Claim[] = [];
      const rows = this.all(
        HOT_SQL.claimReady,
        now,
        max,
      );
      for (const t of rows) {
        const task = toTask(t);
        const skill = toSkill(this.get('SELECT * FROM skills WHERE name = ?', task.skill)!);
        const runId = newRunId();
        const token = newToken();
        const logPath = logPathFor(runId);
        this.run(
          `INSERT INTO runs (id, task_id, token, status, started_at, log_path) VALUES (?, ?, ?, 'starting', ?, ?)`,
          runId,
          task.id,
          token,
          now,
          logPath,
        );
        this.run(`UPDATE tasks SET status = 'running', current_run_id = ?, updated_at = ? WHERE id = ?`, runId, now, task.id);
        this.event(task.id, runId, 'claimed', { attempt: task.consecutiveFailures + 1 }, now);
        const run = toRun(this.get('SELECT * FROM runs WHERE id = ?', runId)!);
        claims.push({ task: { ...task, status: 'running', currentRunId: runId, updatedAt: now }, run, token, skill });
      }
      return claims;
    });
  }

  async blockUnknownSkillTasks(now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>> {
    return this.blockUnknownSkillTasksIn(this.direct, now);
  }

  private async blockUnknownSkillTasksIn(w: Writer, now: number): Promise<Array<{ taskId: string; skill: string; reason: string }>> {
    // Read first: the common case (nothing to block) must not cost a write transaction every tick,
    // nor a scan of the ready queue: one index seek per distinct skill of the ready tasks.
    const unknown = await w.read(() => this.unknownReadySkills());
    if (unknown.length === 0) return [];
    return w.write(() => {
      const blocked: Array<{ taskId: string; skill: string; reason: string }> = [];
      for (const skill of this.unknownReadySkills()) {
        const reason = `skill ${JSON.stringify(skill)} is not registered on board ${this.path}`;
        const rows = this.all(HOT_SQL.readyTasksOfSkill, skill);
        for (const r of rows) {
          const taskId = String(r.id);
          this.run(`UPDATE tasks SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?`, reason, now, taskId);
          this.event(taskId, null, 'blocked', { reason }, now);
          blocked.push({ taskId, skill, reason });
        }
      }
      return blocked;
    });
  }

  /** The skills that ready tasks name but the board does not have (a loose scan of tasks_ready_skill). */
  private unknownReadySkills(): string[] {
    const unknown: string[] = [];
    let row = this.get(HOT_SQL.firstReadySkill);
    while (row) {
      const skill = String(row.skill);
      if (!this.get('SELECT 1 FROM skills WHERE name = ?', skill)) unknown.push(skill);
      row = this.get(HOT_SQL.nextReadySkill, skill);
    }
    return unknown;
  }

  async recordSpawn(runId: string, info: SpawnInfo, now: number): Promise<void> {
    await this.recordSpawns([{ runId, info }], now);
  }

  /** Record several spawns in ONE transaction. */
  async recordSpawns(items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void> {
    return this.recordSpawnsIn(this.direct, items, now);
  }

  private async recordSpawnsIn(w: Writer, items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void> {
    if (items.length === 0) return;
    await w.write(() => {
      for (const { runId, info } of items) {
        const r = this.get('SELECT task_id FROM runs WHERE id = ?', runId);
        if (!r) continue; // nothing to record it on (a run is never deleted while its worker lives)
        this.run(
          `UPDATE runs SET pid = ?, pgid = ?, proc_start_time = ?, boot_id = ?,
                  status = CASE WHEN status = 'starting' THEN 'running' ELSE status END
            WHERE id = ?`,
          info.pid,
          info.pgid,
          info.procStartTime,
          info.bootId,
          runId,
        );
        this.event(String(r.task_id), runId, 'spawned', { pid: info.pid }, now);
      }
    });
  }

  async endUnspawned(runId: string, outcome: RunOutcome, error: string, now: number): Promise<void> {
    return this.endUnspawnedIn(this.direct, runId, outcome, error, now);
  }

  private async endUnspawnedIn(w: Writer, runId: string, outcome: RunOutcome, error: string, now: number): Promise<void> {
    await w.write(() => {
      const r = this.get('SELECT task_id FROM runs WHERE id = ?', runId);
      if (!r) throw new BoardInputError(`no run ${runId}`);
      this.run(
        `UPDATE runs SET status = 'ended', outcome = ?, error = ?, ended_at = ?, exited_at = ? WHERE id = ? AND status != 'ended'`,
        outcome,
        error,
        now,
        now,
        runId,
      );
      this.event(String(r.task_id), runId, 'ended', { outcome, error }, now);
    });
  }

  async liveRuns(): Promise<LiveRun[]> {
    return this.read(() => this.liveRunsNow());
  }

  private liveRunsNow(): LiveRun[] {
    // Every tick reads this. Row objects spread into LiveRuns cost ~620 KB of garbage per call with
    // 64 live runs (~10 KB a run); raw rows and one object per run cost ~70 KB. Under churn the
    // first kept the supervisor's young generation at its maximum (RSS +30 MB).
    return (this.stmt(HOT_SQL.liveRuns).raw(true).all() as unknown[][]).map(toLiveRun);
  }

  async recordExits(observations: ExitObservation[]): Promise<void> {
    return this.recordExitsIn(this.direct, observations);
  }

  private async recordExitsIn(w: Writer, observations: ExitObservation[]): Promise<void> {
    if (observations.length === 0) return;
    await w.write(() => {
      for (const o of observations) {
        const r = this.get('SELECT * FROM runs WHERE id = ?', o.runId);
        if (!r) continue;
        const run = toRun(r);
        if (o.exitCode !== undefined || o.signal !== undefined) {
          this.run(
            'UPDATE runs SET exit_code = ?, signal = ? WHERE id = ?',
            o.exitCode ?? null,
            o.signal ?? null,
            o.runId,
          );
          this.event(run.taskId, run.id, 'exited', { exit_code: o.exitCode ?? null, signal: o.signal ?? null, pid: run.pid }, o.at);
        }
        if (run.status !== 'ended' && o.outcomeIfUnreported) {
          this.run(
            `UPDATE runs SET status = 'ended', outcome = ?, error = ?, ended_at = ? WHERE id = ?`,
            o.outcomeIfUnreported,
            o.errorIfUnreported ?? null,
            o.at,
            o.runId,
          );
          this.event(run.taskId, run.id, 'ended', { outcome: o.outcomeIfUnreported, error: o.errorIfUnreported ?? null }, o.at);
        }
        if (o.gone && run.exitedAt === null) {
          this.run('UPDATE runs SET exited_at = ? WHERE id = ?', o.at, o.runId);
        }
      }
    });
  }

  async beginReclaim(runId: string, reason: StopReason, now: number): Promise<boolean> {
    return this.beginReclaimIn(this.direct, runId, reason, now);
  }

  private async beginReclaimIn(w: Writer, runId: string, reason: StopReason, now: number): Promise<boolean> {
    return w.write(() => {
      const r = this.get('SELECT * FROM runs WHERE id = ?', runId);
      if (!r) return false;
      const run = toRun(r);
      if (run.stopReason !== null || run.exitedAt !== null) return false;
      const afterReport = reason === 'hung_after_report';
      if (afterReport !== (run.status === 'ended')) return false;
      this.run('UPDATE runs SET stop_reason = ?, sigterm_at = ? WHERE id = ?', reason, now, runId);
      this.event(run.taskId, runId, 'sigterm_sent', { reason, at: now, pid: run.pid }, now);
      return true;
    });
  }

  async recordSigkill(runId: string, now: number): Promise<void> {
    return this.recordSigkillIn(this.direct, runId, now);
  }

  private async recordSigkillIn(w: Writer, runId: string, now: number): Promise<void> {
    await w.write(() => {
      const r = this.get('SELECT task_id, pid, sigkill_at FROM runs WHERE id = ?', runId);
      if (!r || r.sigkill_at !== null) return;
      this.run('UPDATE runs SET sigkill_at = ? WHERE id = ?', now, runId);
      this.event(String(r.task_id), runId, 'sigkill_sent', { at: now, pid: num(r.pid) }, now);
    });
  }

  async unaccountedRuns(): Promise<Array<{ run: Run; task: Task }>> {
    return this.read(() => this.unaccountedRunsNow());
  }

  private unaccountedRunsNow(): Array<{ run: Run; task: Task }> {
    return this.all(HOT_SQL.unaccountedRuns).map((row) => ({ run: toRun(row, 'r_'), task: toTask(row) }));
  }

  async applyAccounting(runId: string, action: AccountAction, now: number): Promise<void> {
    await this.applyAccountingBatch([{ runId, action }], now);
  }

  /** Apply several accounting decisions in ONE transaction. */
  async applyAccountingBatch(items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void> {
    return this.applyAccountingBatchIn(this.direct, items, now);
  }

  private async applyAccountingBatchIn(w: Writer, items: Array<{ runId: string; action: AccountAction }>, now: number): Promise<void> {
    if (items.length === 0) return;
    await w.write(() => {
      for (const { runId, action } of items) this.accountOne(runId, action, now);
    });
  }

  private accountOne(runId: string, action: AccountAction, now: number): void {
    {
      const r = this.get('SELECT * FROM runs WHERE id = ?', runId);
      if (!r) return;
      const run = toRun(r);
      if (run.accountedAt !== null) return;
      const t = this.get('SELECT * FROM tasks WHERE id = ?', run.taskId);
      const task = t ? toTask(t) : null;
      const mine = task !== null && task.currentRunId === runId;
      if (mine && task.status === 'running' && action.action !== 'leave') {
        switch (action.action) {
          case 'done':
            this.run(
              `UPDATE tasks SET status = 'done', consecutive_failures = 0, last_error = NULL, current_run_id = NULL, updated_at = ? WHERE id = ?`,
              now,
              task.id,
            );
            this.event(task.id, runId, 'done', null, now);
            break;
          case 'requeue':
            this.run(
              `UPDATE tasks SET status = 'ready', consecutive_failures = ?, not_before = ?, current_run_id = NULL,
                      last_error = CASE WHEN ? THEN ? ELSE last_error END, updated_at = ? WHERE id = ?`,
              action.consecutiveFailures,
              action.notBefore,
              action.counted ? 1 : 0,
              run.error ?? run.outcome,
              now,
              task.id,
            );
            this.event(
              task.id,
              runId,
              'requeued',
              { outcome: run.outcome, consecutive_failures: action.consecutiveFailures, not_before: action.notBefore, counted: action.counted },
              now,
            );
            break;
          case 'block':
            this.run(
              `UPDATE tasks SET status = 'blocked', consecutive_failures = ?, last_error = ?, current_run_id = NULL, updated_at = ? WHERE id = ?`,
              action.consecutiveFailures,
              action.reason,
              now,
              task.id,
            );
            this.event(task.id, runId, 'blocked', { reason: action.reason, consecutive_failures: action.consecutiveFailures }, now);
            break;
        }
      } else if (mine && task.status !== 'running') {
        this.run('UPDATE tasks SET current_run_id = NULL, updated_at = ? WHERE id = ?', now, task.id);
      }
      this.run('UPDATE runs SET accounted_at = ? WHERE id = ?', now, runId);
    }
  }

  async dataVersion(): Promise<number> {
    return this.read(() => Number(this.db.pragma('data_version', { simple: true })));
  }

  /** SQLite's `data_version`: changes when another connection committed (cheap: no I/O when nothing changed). */
  changeVersion(): number {
    return this.dataVersionSync();
  }

  /** Synchronous variant for the supervisor's cheap change poll. */
  dataVersionSync(): number {
    return Number(this.db.pragma('data_version', { simple: true }));
  }

  async setOwner(info: { pid: number; host: string; startedAt: number; state?: string; detail?: string | null }): Promise<void> {
    return this.setOwnerIn(this.direct, info);
  }

  private async setOwnerIn(w: Writer, info: { pid: number; host: string; startedAt: number; state?: string; detail?: string | null }): Promise<void> {
    const now = Date.now();
    await w.write(() =>
      this.run(
        `INSERT INTO owner (id, pid, host, started_at, seen_at, state, detail) VALUES (1, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, started_at = excluded.started_at,
           seen_at = excluded.seen_at, state = excluded.state, detail = excluded.detail`,
        info.pid,
        info.host,
        info.startedAt,
        now,
        info.state ?? 'running',
        info.detail ?? null,
      ),
    );
  }

  async getOwner(): Promise<OwnerInfo | null> {
    return this.read(() => {
      const r = this.get('SELECT * FROM owner WHERE id = 1');
      if (!r) return null;
      return {
        pid: Number(r.pid),
        host: String(r.host),
        startedAt: Number(r.started_at),
        seenAt: Number(r.seen_at),
        state: String(r.state),
        detail: (r.detail as string | null) ?? null,
      };
    });
  }

  async checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): Promise<{ busy: boolean; logFrames: number; checkpointed: number }> {
    return this.read(() => {
      const r = this.db.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number; log: number; checkpointed: number }>;
      const row = r[0] ?? { busy: 0, log: 0, checkpointed: 0 };
      return { busy: row.busy !== 0, logFrames: row.log, checkpointed: row.checkpointed };
    });
  }

  // ---------------------------------------------------------------- worker (fenced)

  /** Throws NotCurrentError unless the run is the task's current, unended, unreclaimed run with this token. */
  private fence(cred: RunCredentials, allowReclaiming = false): Run {
    const r = this.get(
      `SELECT r.*, t.status AS t_status, t.current_run_id AS t_current FROM runs r JOIN tasks t ON t.id = r.task_id
        WHERE r.id = ? AND r.task_id = ?`,
      cred.runId,
      cred.taskId,
    );
    const current =
      r !== undefined &&
      r.token === cred.token &&
      r.status !== 'ended' &&
      r.exited_at === null &&
      (allowReclaiming || (r.stop_reason === null && r.t_status === 'running' && r.t_current === cred.runId));
    if (!current) throw new NotCurrentError(cred.runId, cred.taskId);
    return toRun(r);
  }

  async loadRun(cred: RunCredentials): Promise<{ task: Task; run: Run }> {
    return this.read(() => {
      const run = this.fence(cred);
      return { run, task: toTask(this.get('SELECT * FROM tasks WHERE id = ?', cred.taskId)!) };
    });
  }

  async heartbeat(cred: RunCredentials, progress: Json | undefined, now: number): Promise<void> {
    const text = progress === undefined ? null : jsonText('progress', progress);
    await this.write(() => {
      this.fence(cred);
      this.run(
        'UPDATE runs SET heartbeat_at = ?, progress = COALESCE(?, progress) WHERE id = ?',
        now,
        text,
        cred.runId,
      );
    });
  }

  async workerEvent(cred: RunCredentials, kind: string, data: Json | null, now: number): Promise<void> {
    if (!EVENT_KIND.test(kind)) {
      throw new BoardInputError(`event kind ${JSON.stringify(kind)} is invalid: use 1-64 letters, digits, '.', '_', ':' or '-'`);
    }
    const text = jsonText('event data', data);
    await this.write(() => {
      this.fence(cred);
      this.run(
        'INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, ?, ?, ?, ?)',
        cred.taskId,
        cred.runId,
        kind,
        text,
        now,
      );
    });
  }

  async report(cred: RunCredentials, report: WorkerReport, now: number): Promise<void> {
    const resultText = report.outcome === 'completed' ? (jsonText('result', report.result ?? null) ?? 'null') : null;
    if (report.outcome === 'deferred' && (!Number.isFinite(report.seconds) || report.seconds < 0)) {
      throw new BoardInputError(`defer seconds must be a non-negative number, got ${String(report.seconds)}`);
    }
    await this.write(() => {
      this.fence(cred);
      switch (report.outcome) {
        case 'completed':
          this.run(`UPDATE runs SET status = 'ended', outcome = 'completed', ended_at = ? WHERE id = ?`, now, cred.runId);
          this.run(
            `UPDATE tasks SET status = 'done', result = ?, consecutive_failures = 0, last_error = NULL, updated_at = ? WHERE id = ?`,
            resultText,
            now,
            cred.taskId,
          );
          this.event(cred.taskId, cred.runId, 'reported', { outcome: 'completed' }, now);
          break;
        case 'failed':
          this.run(
            `UPDATE runs SET status = 'ended', outcome = 'failed', error = ?, ended_at = ? WHERE id = ?`,
            report.error.slice(0, 8192),
            now,
            cred.runId,
          );
          this.event(cred.taskId, cred.runId, 'reported', { outcome: 'failed', error: report.error.slice(0, 1024) }, now);
          break;
        case 'deferred': {
          const until = now + Math.round(report.seconds * 1000);
          this.run(
            `UPDATE runs SET status = 'ended', outcome = 'deferred', defer_until = ?, error = ?, ended_at = ? WHERE id = ?`,
            until,
            report.reason ?? null,
            now,
            cred.runId,
          );
          this.event(cred.taskId, cred.runId, 'reported', { outcome: 'deferred', until, reason: report.reason ?? null }, now);
          break;
        }
      }
    });
  }

  async reportApplied(cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean> {
    return this.read(() => {
      const r = this.get('SELECT token, status, outcome FROM runs WHERE id = ? AND task_id = ?', cred.runId, cred.taskId);
      return r !== undefined && r.token === cred.token && r.status === 'ended' && r.outcome === outcome;
    });
  }

  async recordStop(cred: RunCredentials, signal: string, now: number): Promise<void> {
    await this.write(() => {
      this.fence(cred, true);
      this.run('UPDATE runs SET stopped_on_request = 1 WHERE id = ?', cred.runId);
      this.event(cred.taskId, cred.runId, 'stopped_on_request', { signal }, now);
    });
  }
}
