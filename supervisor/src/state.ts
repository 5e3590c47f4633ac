/**
 * What the supervisor knows, in one place: the tick context every step and service takes (the
 * configuration, the logger, the reaper, the board's path) and the one mutable state object they
 * share (the workers, what is held for the board, the storm breaker, quarantine, cadences).
 * Only createContext (this host's boot id and our own process identity, from /proc) and
 * openSupervisorBoard (the board connection) do I/O.
 */
import { newRetentionState, type RetentionState } from './services/retention.js';
import { boardFiles, isPgLocation, openBoard, pgLocationLabel, type Board, type BoardFiles, type ExitObservation, type HostHold, type SpawnInfo } from '@kanban-supervisor/board';
import { initialStorm, type ReportMode, type ResultSource, type StopReason, type StormState, type SupervisorConfig } from '@kanban-supervisor/policies';
import { bootId, type ExitRecord, type ProcessIdentity, type Reaper, type TerminationState } from '@kanban-supervisor/reaper';
import type { Logger } from './logger.js';
import type { BoardAccessProblem } from './board-access.js';
import type { ReportBatch } from './channel/batch.js';
import type { BeatSlots } from './services/beat-slots.js';
import { hostIdOf, leaseMsOf } from './host-owner.js';
import { SupervisorMetrics } from './metrics/registry.js';
import { selfIdentity } from './owner.js';

export interface SupervisorOptions {
  standby?: boolean;
  untilIdle?: boolean;
  detachOnExit?: boolean;
  passEnv?: string[];
  /** Variables given to every worker (`run --env-file`), read once at start; never stored or logged. */
  envFile?: Record<string, string>;
  /** Milliseconds between cheap change polls (the board's change feed, child exits). */
  pollMs?: number;
}

/**
 * The supervisor's connection: a short busy timeout (its event loop must not block long), then
 * retries on later turns of the event loop (3 times), then the tick step fails and the next tick
 * tries again. (Polling the lock every 0.2 ms instead was measured: the supervisor then wins the
 * lock ahead of workers sleeping in their busy handler, and throughput fell.)
 */
export const SUPERVISOR_CONNECTION = { busyTimeoutMs: 50, busyRetries: 3 } as const;

/** Open the board the way the supervisor does (start, and a lifted quarantine). */
export function openSupervisorBoard(boardPath: string): Promise<Board> {
  return openBoard(boardPath, SUPERVISOR_CONNECTION);
}

/** A worker process under supervision (spawned by us or adopted). */
export interface Worker {
  runId: string;
  taskId: string;
  /** The task's skill (metrics by skill). */
  skill: string;
  identity: ProcessIdentity;
  /** Spawned by this supervisor (exit events come from Node) or adopted (liveness from /proc). */
  own: boolean;
  /** When this supervisor adopted it (null: spawned by it); a stall is judged from then at the earliest (policies reclaimReason). */
  adoptedAt: number | null;
  leaderExit: ExitRecord | null;
  term: TerminationState | null;
  graceMs: number;
  stopReason: StopReason | null;
  sigkillRecorded: boolean;
  cleanup: TerminationState | null;
  rssBytes: number | null;
  cpuPercent: number | null;
  logPath: string | null;
  /** How its skill's workers report: 'exit' = the supervisor ends the run from the exit status (exit-skills.ts). */
  report: ReportMode;
  /** An exit-code skill's result source (null: none). */
  resultFrom: ResultSource | null;
}

/**
 * An exit observation held for the board. `exitLog`: an exit-code skill's exit whose report still
 * needs the end of the run's log (its result line, or the last lines a failure quotes); read and
 * settled at the accounting (exit-skills.ts settleExitReports) before the observation is written.
 */
export type HeldObservation = ExitObservation & { exitLog?: { path: string | null; bytes: number; resultFrom: ResultSource | null } };

/** The spawns of one dispatch (or found by detect), as they go on the board (recordSpawns). */
export type SpawnBatch = { at: number; items: Array<{ runId: string; info: SpawnInfo }> };

export interface Quarantine {
  since: number;
  reason: string;
  fingerprint: string | null;
  backup: string | null;
  probes: number;
  nextProbeAt: number;
}

export interface BoardAccess {
  ok: boolean;
  since: number;
  problem: BoardAccessProblem | null;
}

/** The supervisor's shared mutable state. */
export interface SupervisorState {
  /** Our connection; null until opened (a board quarantined at start is never opened). */
  board: Board | null;
  /** Supervised workers by run id, and run ids by worker pid. */
  readonly workers: Map<string, Worker>;
  readonly byPid: Map<number, string>;
  /** Exits Node reported (drained by the poll) that the next reap has not looked at yet. */
  pendingExits: ExitRecord[];
  /** Exit observations not on the board yet: written at the accounting (or once the board is healthy). */
  heldObs: HeldObservation[];
  /** Spawns not on the board yet: written with the next tick's transaction (one commit per tick). */
  pendingSpawns: SpawnBatch[];
  /** Processes of runs that already ended, found at start-up: terminated (SIGTERM, grace, SIGKILL). */
  readonly strays: Map<string, { id: ProcessIdentity; runId: string }>;
  /** This host's ownership of a shared board (PostgreSQL; null on SQLite, whose owner lock is a file). */
  host: { hold: HostHold; lostLogged: boolean; taken?: boolean } | null;
  /** Our row on a shared board (PostgreSQL), once registered. */
  supervisorId: string | null;
  /** Whether the start-up sweep for processes of ended runs of this board has run. */
  swept: boolean;
  storm: StormState;
  /** Whether workers can reach the board by path (see boardAccessProblem): changes are logged once each. */
  access: BoardAccess;
  stopping: { since: number; hurry: boolean } | null;
  stopped: boolean;
  quarantine: Quarantine | null;
  /** Some tick transaction of ours committed (READY=1 waits for it). */
  committedOnce: boolean;
  /** When a tick transaction of ours last committed, monotonic ms (performance.now(); null: never): bare heartbeats are answered from memory only while it is recent (policies heartbeatFromMemory). */
  tickCommittedAt: number | null;
  /** A shared board: when this supervisor's lease was last renewed, monotonic ms (performance.now() at the tick's start; null: not yet). */
  leaseRenewedAt: number | null;
  /** The board's change version at the last poll. */
  lastDataVersion: number;
  /** A spawn failed for a fault of the supervisor's own: no claim before this time (ms). */
  spawnHeldUntil: number;
  /** The recent spawn duration, ms (policies nextSpawnMs; null before the first spawn): sizes a tick's claims. */
  spawnMs: number | null;
  /** The last dispatch claimed a full slice while slots stayed free: the loop ticks again at once. */
  dispatchMore: boolean;
  /** Whether the run logs' folder was usable at the last dispatch (changes are logged once). */
  logDirOk: boolean;
  /** Inherited runs already looked for by their run id in /proc environ (one scan per run). */
  readonly envScanned: Set<string>;
  /** Inherited runs with no recorded process and none found yet: first seen at (ms). */
  readonly unstartedSeen: Map<string, number>;
  /** Spool entries that could not be moved aside: skipped from then on (already logged). */
  readonly spoolSetAside: Set<string>;
  /** When each periodic service last ran (ms). */
  lastSampleAt: number;
  lastOrphanScanAt: number;
  lastCheckpointAt: number;
  lastPruneAt: number;
  lastAccessProbeAt: number;
  /** The earliest time a scheduled (or backed-off) ready task falls due, as last read (null: none): the loop wakes for it. */
  nextDueAt: number | null;
  /** The retention service (RETENTION_DAYS) across ticks. */
  readonly retention: RetentionState;
  /** The HTTP server's URL (without its token), once it listens; in the status file for `status`. */
  httpUrl: string | null;
  /** The report channel's queue (channel/batch.ts); null when the channel is off. */
  reports: ReportBatch | null;
  /** The report channel's socket once it listens (workers get it as KANBAN_SOCKET); null: off. */
  socketPath: string | null;
  /** The workers' heartbeat slots (services/beat-slots.ts), with the channel; null: off. */
  slots: BeatSlots | null;
}

/** What every tick step and service takes: what does not change, and the shared state. */
export interface TickContext {
  readonly cfg: SupervisorConfig;
  readonly log: Logger;
  readonly opts: SupervisorOptions;
  readonly reaper: Reaper;
  /** The board's one location (a resolved path, or a PostgreSQL URL): what workers get in KANBAN_DB. Never log it (a URL may carry a password): log `boardLabel`. */
  readonly boardPath: string;
  /** The board as logs and messages name it (a PostgreSQL URL with its password masked). */
  readonly boardLabel: string;
  readonly kind: 'sqlite' | 'postgres';
  /** Where the board's local files are: next to a SQLite board, in a PostgreSQL board's state folder. */
  readonly files: BoardFiles;
  /** The run logs' folder (files.logDir). */
  readonly logDir: string;
  /** This host's id (PostgreSQL: one supervisor per board and host id); null on SQLite. */
  readonly hostId: string | null;
  /** The lease of this supervisor's row, ms (PostgreSQL). */
  readonly leaseMs: number;
  /** This machine's boot id. */
  readonly boot: string;
  readonly startedAt: number;
  /** Our start time and boot id, written to the status file (a pid alone may be reused). */
  readonly identity: { procStartTime: number | null; bootId: string | null };
  readonly state: SupervisorState;
  /** The Prometheus metrics (a registry of their own) and the last hour's history (metrics/). */
  readonly metrics: SupervisorMetrics;
}

export function initialState(now = Date.now()): SupervisorState {
  return {
    board: null,
    workers: new Map(),
    byPid: new Map(),
    pendingExits: [],
    heldObs: [],
    pendingSpawns: [],
    strays: new Map(),
    host: null,
    supervisorId: null,
    swept: false,
    storm: initialStorm,
    access: { ok: true, since: now, problem: null },
    stopping: null,
    stopped: false,
    quarantine: null,
    committedOnce: false,
    tickCommittedAt: null,
    leaseRenewedAt: null,
    lastDataVersion: -1,
    spawnHeldUntil: 0,
    spawnMs: null,
    dispatchMore: false,
    logDirOk: true,
    envScanned: new Set(),
    unstartedSeen: new Map(),
    spoolSetAside: new Set(),
    lastSampleAt: 0,
    lastOrphanScanAt: 0,
    lastCheckpointAt: 0,
    lastPruneAt: 0,
    nextDueAt: null,
    retention: newRetentionState(),
    lastAccessProbeAt: 0,
    httpUrl: null,
    reports: null,
    socketPath: null,
    slots: null,
  };
}

/**
 * A context for the board at `boardPath` (a resolved path, or a PostgreSQL URL), its files where
 * boardFiles puts them (logs/ next to a SQLite board; a PostgreSQL board's in cfg.stateDir, else
 * under $XDG_STATE_HOME). On PostgreSQL the host id is cfg.hostId, else /etc/machine-id
 * (host-owner.ts; a bad machine id throws ConfigError), and the lease cfg.leaseSeconds.
 */
export function createContext(c: { cfg: SupervisorConfig; log: Logger; opts?: SupervisorOptions; reaper: Reaper; boardPath: string; env?: NodeJS.ProcessEnv }): TickContext {
  const startedAt = Date.now();
  const env = c.env ?? process.env;
  const pg = isPgLocation(c.boardPath);
  const files = boardFiles(c.boardPath, env, c.cfg.stateDir);
  const boardLabel = pg ? pgLocationLabel(c.boardPath) : c.boardPath;
  return {
    cfg: c.cfg,
    log: c.log,
    opts: c.opts ?? {},
    reaper: c.reaper,
    boardPath: c.boardPath,
    boardLabel,
    kind: pg ? 'postgres' : 'sqlite',
    files,
    logDir: files.logDir,
    hostId: pg ? hostIdOf(c.cfg.hostId, boardLabel) : null,
    leaseMs: pg ? leaseMsOf(c.cfg) : 0,
    boot: bootId(),
    startedAt,
    identity: selfIdentity(),
    state: initialState(startedAt),
    metrics: new SupervisorMetrics(),
  };
}
