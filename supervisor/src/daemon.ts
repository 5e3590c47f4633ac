/**
 * The supervisor daemon: owns one board and the lifecycle of its workers.
 *
 * A tick runs the five steps in order, each guarded so that one step's failure never skips
 * the others: reap, detect crashes, reclaim, account, dispatch. Nothing in a tick sleeps:
 * reclaim is a state machine across ticks (SIGTERM now, SIGKILL at the deadline, the run ends
 * only once the whole process group is confirmed gone).
 */
import { closeSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BoardDamagedError,
  BoardPathError,
  BoardInputError,
  NotCurrentError,
  OwnerLock,
  checkBoard,
  SqliteBoard,
  WriteGroupLostError,
  classifyError,
  type ExitObservation,
  type SpawnInfo,
  type LiveRun,
  type Run,
  type Task,
} from '@kanban-supervisor/board';
import {
  decideAccounting,
  countsAsFailure,
  dispatchPaused,
  effectiveLimit,
  initialStorm,
  pastCrashGrace,
  quarantineProbeDelayMs,
  reclaimReason,
  recordFailure,
  recordSuccess,
  DEFAULT_STORM,
  type AccountingDecision,
  type RunOutcome,
  type StopReason,
  type StormState,
  type SupervisorConfig,
} from '@kanban-supervisor/policies';
import { Reaper, alive, bootId, childPids, findAllByEnv, groupEmpty, scanEnv, isGone, readStat, processTable, resolveExecutable, type ExitRecord, type ProcessIdentity, type TerminationState } from '@kanban-supervisor/reaper';
import { boundLogFd, isOwnDirectory, openLogForBounding, writeFileAtomic } from '@kanban-supervisor/reaper';
import { SystemdNotifier } from '@kanban-supervisor/reaper';
import { runHelper } from '@kanban-supervisor/reaper';
import { readSpool, removeSpoolEntry, spoolDir } from '@kanban-supervisor/worker-runtime';
import type { Logger } from './logger.js';
import { boardAccessProblem, type BoardAccessProblem } from './board-access.js';
import { liveOwnerText, selfIdentity } from './owner.js';

interface Quarantine {
  since: number;
  reason: string;
  fingerprint: string | null;
  backup: string | null;
  probes: number;
  nextProbeAt: number;
}

/**
 * CPU and RSS of every worker are sampled this often (one /proc scan: ~10-20 ms of the event loop
 * with 64 workers). Memory limits are checked on these samples.
 */
const SAMPLE_INTERVAL_MS = 5000;

/**
 * Every live run's log is checked against LOG_MAX_BYTES this often (one fstat per log, on a
 * descriptor the supervisor holds), on a timer of its own. A log exceeds the bound by at most what
 * its processes write in one interval (plus any stall of the supervisor's event loop): see the
 * README for the figure measured at full speed.
 */
const LOG_CHECK_INTERVAL_MS = 20;

/**
 * The supervisor's connection: a short busy timeout (its event loop must not block long), then
 * retries on later turns of the event loop (3 times), then the tick step fails and the next tick
 * tries again. (Polling the lock every 0.2 ms instead was measured: the supervisor then wins the
 * lock ahead of workers sleeping in their busy handler, and throughput fell.)
 */
const SUPERVISOR_CONNECTION = { busyTimeoutMs: 50, busyRetries: 3 } as const;

/**
 * A tick holding the board's write lock longer than this is logged (`write_lock_held`). The tick
 * takes the lock at its first write and no /proc or file work is done while it holds it (a few ms
 * per tick; measured under churn with 64 workers: under 250 ms even with the CPU saturated).
 */
const WRITE_LOCK_WARN_MS = 1000;

/**
 * How often housekeeping checks that the board is still readable and writable by path (what every
 * new worker needs); dispatch also checks before it claims. access(2) only: a few µs.
 */
const ACCESS_PROBE_INTERVAL_MS = 5000;

/** The spawns of one dispatch, as they go on the board (recordSpawns). */
type SpawnBatch = { at: number; items: Array<{ runId: string; info: SpawnInfo }> };

export interface SupervisorOptions {
  standby?: boolean;
  untilIdle?: boolean;
  detachOnExit?: boolean;
  passEnv?: string[];
  /** Variables given to every worker (`run --env-file`), read once at start; never stored or logged. */
  envFile?: Record<string, string>;
  /** Milliseconds between cheap change polls (data_version, child exits). */
  pollMs?: number;
}

/** Dispatch pauses this long after a spawn failed for a fault of the supervisor's own. */
const SPAWN_FAULT_HOLD_MS = 5000;

/** A worker that exits with this status (sysexits EX_TEMPFAIL) without reporting is deferred, not counted. */
const EXIT_TEMPFAIL = 75;

/** Exit status of `run` when another supervisor owns the board. */
export const EXIT_BOARD_OWNED = 4;

interface Worker {
  runId: string;
  taskId: string;
  identity: ProcessIdentity;
  /** Spawned by this supervisor (exit events come from Node) or adopted (liveness from /proc). */
  own: boolean;
  leaderExit: ExitRecord | null;
  term: TerminationState | null;
  graceMs: number;
  stopReason: string | null;
  sigkillRecorded: boolean;
  cleanup: TerminationState | null;
  rssBytes: number | null;
  cpuPercent: number | null;
  logPath: string | null;
}

const CLI_PATH = fileURLToPath(new URL('./cli.js', import.meta.url));
const BASE_ENV = ['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR'];
const REASON_TEXT: Record<string, string> = {
  timed_out: 'max runtime exceeded',
  stalled: 'no heartbeat within the heartbeat timeout',
  memory_exceeded: 'memory limit exceeded',
  cancelled: 'task cancelled',
  abandoned: 'supervisor shut down',
  hung_after_report: 'worker did not exit after reporting',
};

export class Supervisor {
  readonly boardPath: string;
  private board!: SqliteBoard;
  private lock: OwnerLock | null = null;
  private readonly reaper: Reaper;
  private readonly workers = new Map<string, Worker>();
  private readonly byPid = new Map<number, string>();
  private pendingExits: ExitRecord[] = [];
  private storm: StormState = initialStorm;
  private stopping: { since: number; hurry: boolean } | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  /** A wake-up asked for while a tick was running: the next wait is skipped. */
  private wakeRequested = false;
  private lastDataVersion = -1;
  private lastSampleAt = 0;
  private lastPruneAt = 0;
  private lastOrphanScanAt = 0;
  private lastCheckpointAt = 0;
  private readonly logDir: string;
  private readonly startedAt = Date.now();
  private readonly boot = bootId();
  /** Our start time and boot id, written to the status file (a pid alone may be reused). */
  private readonly identity = selfIdentity();
  private tickErrors = 0;
  private quarantine: Quarantine | null = null;
  /** Exit observations made while the board could not take them; written once it is healthy. */
  private heldObs: ExitObservation[] = [];
  /** Spawns not yet on the board: written with the next tick's group (one commit per tick). */
  private pendingSpawns: SpawnBatch[] = [];
  /** What the open write group holds that lives only in memory: restored if the group is lost. */
  private uncommitted: { obs: ExitObservation[]; spawns: SpawnBatch[] } = { obs: [], spawns: [] };
  /** Log lines of state changes written in the open write group: emitted once it commits, dropped if it does not. */
  private afterCommit: Array<() => void> = [];
  private inGroup = false;
  /** Inherited runs already looked for by their run id in /proc environ (one scan per run). */
  private envScanned = new Set<string>();
  /** Spool entries that could not be moved aside: skipped from then on (already logged). */
  private spoolSetAside = new Set<string>();
  /** Inherited runs with no recorded process and none found yet: first seen at (ms). */
  private unstartedSeen = new Map<string, number>();
  /** Whether the start-up sweep for processes of ended runs of this board has run. */
  private swept = false;
  /** Processes of runs that already ended, found at start-up: terminated (SIGTERM, grace, SIGKILL). */
  private strays = new Map<string, { id: ProcessIdentity; runId: string }>();
  /** Whether workers can reach the board by path (see boardAccessProblem): changes are logged once each. */
  private access: { ok: boolean; since: number; problem: BoardAccessProblem | null } = { ok: true, since: Date.now(), problem: null };
  private lastAccessProbeAt = 0;
  /** A spawn failed for a fault of the supervisor's own: no claim before this time (ms). */
  private spawnHeldUntil = 0;
  private logDirOk = true;
  private pollTimer: NodeJS.Timeout | null = null;
  /** sd_notify (NOTIFY_SOCKET): READY, WATCHDOG and STATUS from the loop, STOPPING on the way out. */
  private readonly notifier: SystemdNotifier;
  /** Some write group of ours committed (READY=1 waits for it). */
  private committedOnce = false;
  private resolveDone!: (code: number) => void;
  readonly done: Promise<number>;

  constructor(
    private readonly cfg: SupervisorConfig,
    private readonly log: Logger,
    private readonly opts: SupervisorOptions = {},
  ) {
    this.boardPath = SqliteBoard.resolvePath(cfg.db);
    this.logDir = join(dirname(this.boardPath), 'logs');
    // A child's exit wakes the loop at once (the next tick reaps it and refills the slot).
    this.reaper = new Reaper({ logger: log, onExit: () => this.requestWake() });
    this.done = new Promise((r) => (this.resolveDone = r));
    this.notifier = SystemdNotifier.fromEnv(process.env, { logger: log });
  }

  // ------------------------------------------------------------------ ownership

  /** Take the board's owner lock. Returns false (after printing why) if another supervisor owns it. */
  async acquire(): Promise<boolean> {
    for (;;) {
      const attempt = OwnerLock.tryAcquire(this.boardPath);
      if (attempt.ok) {
        this.lock = attempt.lock;
        return true;
      }
      if (!this.opts.standby) {
        // The live owner (its status file, written right after it took the lock), never a dead one.
        const who = await liveOwnerText(this.boardPath);
        process.stderr.write(`kanban-supervisor: board ${this.boardPath} is owned by ${who}; not starting (use --standby to wait)\n`);
        return false;
      }
      if (this.stopping) return false;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async start(): Promise<number> {
    if (this.opts.standby) this.log.info({ event: 'standby', board: this.boardPath }, 'waiting for the board owner to go away');
    if (this.opts.standby) this.notifier.status('standby: waiting for the board owner to go away');
    if (!(await this.acquire())) return this.stopping ? 0 : EXIT_BOARD_OWNED;
    // Our identity, at once: a refused `run` or `status` names us, not the previous (dead) owner.
    this.writeStatusFile('starting');
    try {
      // A board this user may not read or write is not damaged: say so, never quarantine it.
      const denied = existsSync(this.boardPath) ? boardAccessProblem(this.boardPath) : null;
      if (denied) throw new BoardPathError(this.boardPath, `is not usable by this user (uid ${process.getuid?.() ?? '?'}): ${denied.error}`);
      // Before our first connection: header and quick_check of an existing board (cheap, once).
      const pre = existsSync(this.boardPath) ? checkBoard(this.boardPath) : null;
      if (pre && !pre.healthy) throw new BoardDamagedError(this.boardPath, pre.problems.join('; '));
      this.board = SqliteBoard.open(this.boardPath, SUPERVISOR_CONNECTION);
    } catch (e) {
      if (classifyError(e) !== 'damaged') {
        this.lock?.release();
        throw e;
      }
      await this.enterQuarantine(e instanceof BoardDamagedError ? e.detail : (e as Error).message, false);
    }
    mkdirSync(this.logDir, { recursive: true, mode: 0o700 });
    this.writeStatusFile();
    if (!this.quarantine) {
      await this.board.setOwner({ pid: process.pid, host: hostname(), startedAt: this.startedAt, detail: this.ownerDetail() });
    }
    this.log.info(
      {
        event: 'started',
        board: this.boardPath,
        maxConcurrentWorkers: this.cfg.maxConcurrentWorkers,
        reclaimGraceSeconds: this.cfg.reclaimGraceSeconds,
        subreaper: this.reaper.subreaperActive,
        procBackend: this.reaper.procBackend,
      },
      'supervisor started',
    );
    if (!this.quarantine) this.lastDataVersion = this.board.dataVersionSync();
    this.pollTimer = setInterval(() => this.poll(), this.opts.pollMs ?? 25);
    void this.loop();
    return this.done;
  }

  private ownerDetail(): string {
    return JSON.stringify({
      maxConcurrentWorkers: this.cfg.maxConcurrentWorkers,
      stopping: this.stopping !== null,
      stormPausedUntil: this.storm.pausedUntil || null,
      quarantine: this.quarantine ? { since: this.quarantine.since, reason: this.quarantine.reason } : null,
    });
  }

  /** `<board>.supervisor.json`: the owner's state, readable even when the board itself is not. */
  private writeStatusFile(state?: string): void {
    const q = this.quarantine;
    const body = {
      pid: process.pid,
      host: hostname(),
      startedAt: this.startedAt,
      ...this.identity,
      updatedAt: Date.now(),
      state: state ?? (q ? 'quarantined' : this.stopping ? 'stopping' : 'running'),
      maxConcurrentWorkers: this.cfg.maxConcurrentWorkers,
      liveWorkers: this.workers.size,
      quarantine: q ? { since: q.since, reason: q.reason, fingerprint: q.fingerprint, backup: q.backup, nextProbeAt: q.nextProbeAt } : null,
      boardAccess: this.access.ok ? { ok: true } : { ok: false, since: this.access.since, ...this.access.problem },
      storm:
        this.storm.pausedUntil > Date.now()
          ? { pausedUntil: this.storm.pausedUntil, trips: this.storm.trips, reason: `${this.cfg.stormDistinctTasks} different tasks failed within ${DEFAULT_STORM.windowMs / 1000} s` }
          : null,
    };
    try {
      // The board's folder is writable by workers: a temp file created exclusively (random name,
      // no symlink followed), renamed over the status file (a planted symlink there is replaced,
      // never written through); removed if the write fails. No fsync: informative only.
      writeFileAtomic(`${this.boardPath}.supervisor.json`, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, fsync: false });
    } catch {
      /* status is informative only */
    }
  }

  // ------------------------------------------------------------------ quarantine

  /**
   * Confirmed damage: stop claiming and writing, close our connection, back the files up once
   * (from a helper process that holds no connection), and re-probe with backoff.
   */
  private async enterQuarantine(reason: string, close = true): Promise<void> {
    if (this.quarantine) return;
    const now = Date.now();
    if (close) {
      try {
        this.board.closeSync();
      } catch {
        /* the connection is going away anyway */
      }
    }
    this.quarantine = { since: now, reason, fingerprint: null, backup: null, probes: 0, nextProbeAt: now + quarantineProbeDelayMs(0, this.cfg.quarantineProbeSeconds) };
    await this.backupOnce(true);
    this.writeStatusFile();
  }

  /**
   * One backup per damage fingerprint, made by a helper process (which dedupes across processes).
   * One error line when the quarantine starts, and one more only if the damage changes.
   */
  private async backupOnce(first: boolean): Promise<void> {
    const q = this.quarantine!;
    const res = await runBackupHelper(this.boardPath);
    const changed = !first && res.fingerprint !== undefined && q.fingerprint !== null && res.fingerprint !== q.fingerprint;
    q.fingerprint = res.fingerprint ?? q.fingerprint;
    q.backup = res.dir ?? q.backup;
    const fields = { board: this.boardPath, reason: q.reason, fingerprint: q.fingerprint, backup: q.backup, backupCreated: res.created, backupError: res.error, workers: this.workers.size };
    if (first) {
      this.log.error({ event: 'board_quarantined', ...fields }, 'board damaged: dispatch stopped, workers still supervised; run `kanban-supervisor check` and `kanban-supervisor recover`');
    } else if (changed) {
      this.log.error({ event: 'board_damage_changed', ...fields }, 'the damage changed: backed up once more');
    }
  }

  /** A damaged-class or I/O error from a tick step: I/O is transient until a check confirms damage. */
  private async suspectDamage(e: unknown): Promise<void> {
    if (this.quarantine) return;
    const cls = classifyError(e);
    if (cls === 'io') {
      // The check opens the board by path: one we may no longer open is not damaged.
      if (!this.probeAccess(Date.now())) return;
      const report = checkBoard(this.boardPath);
      if (report.healthy) {
        this.log.warn({ event: 'io_error_transient', err: e }, 'I/O error on the board; check says healthy: retrying next tick');
        return;
      }
      await this.enterQuarantine(report.problems.join('; '));
      return;
    }
    await this.enterQuarantine(e instanceof BoardDamagedError ? e.detail : (e as Error).message);
  }

  private async probeQuarantine(now: number): Promise<void> {
    const q = this.quarantine!;
    if (now < q.nextProbeAt) return;
    q.probes++;
    q.nextProbeAt = now + quarantineProbeDelayMs(q.probes, this.cfg.quarantineProbeSeconds);
    // A board we may not read is not more damaged: no check, no backup until it is readable again.
    if (existsSync(this.boardPath) && !this.probeAccess(now)) return;
    // integrity_check, not quick_check: index damage passes quick_check but fails writes.
    const report = checkBoard(this.boardPath, { full: true });
    if (!report.exists) return; // being swapped by an operator: look again later
    if (!report.healthy) {
      await this.backupOnce(false); // a new fingerprint gets its own (single) backup and log line
      this.writeStatusFile();
      return;
    }
    try {
      this.board = SqliteBoard.open(this.boardPath, SUPERVISOR_CONNECTION);
    } catch (e) {
      this.log.warn({ event: 'quarantine_reopen_failed', err: e }, 'board looked healthy but did not open');
      return;
    }
    const was = q;
    this.quarantine = null;
    this.lastDataVersion = this.board.dataVersionSync();
    await this.board.setOwner({ pid: process.pid, host: hostname(), startedAt: this.startedAt, detail: this.ownerDetail() });
    this.log.info({ event: 'quarantine_lifted', board: this.boardPath, since: was.since, probes: was.probes }, 'board healthy again: resuming');
    this.writeStatusFile();
  }

  /** SIGTERM/SIGINT: stop claiming, reclaim every worker (abandoned), exit once all are gone. A second call hurries. */
  requestStop(signal: string): void {
    if (this.stopping) {
      this.stopping.hurry = true;
      this.log.warn({ event: 'stop_hurried', signal }, 'second signal: SIGKILL what is left');
    } else {
      this.stopping = { since: Date.now(), hurry: false };
      this.notifier.stopping(this.notifyStatusText());
      this.log.info({ event: 'stopping', signal, workers: this.workers.size, detach: !!this.opts.detachOnExit }, 'stopping');
    }
    this.requestWake();
  }

  // ------------------------------------------------------------------ loop

  private poll(): void {
    // A full pool has nothing to dispatch, and exits wake the loop by themselves (onExit).
    if (this.workers.size >= this.cfg.maxConcurrentWorkers && !this.stopping) return;
    const exits = this.reaper.drainExits();
    if (exits.length) {
      this.pendingExits.push(...exits);
      this.requestWake();
      return;
    }
    if (!this.board || this.quarantine) return;
    try {
      const v = this.board.dataVersionSync();
      if (v !== this.lastDataVersion) {
        this.lastDataVersion = v;
        // Another process committed. Only a free slot makes that urgent (a new task to dispatch);
        // everything else is picked up by the periodic tick.
        if (this.workers.size < this.cfg.maxConcurrentWorkers && !this.stopping) this.requestWake();
      }
    } catch {
      /* the tick reports board errors */
    }
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      await this.tick();
      this.notifyTick();
      if (this.stopped) break;
      if (await this.finishedStopping()) break;
      if (this.wakeRequested) {
        this.wakeRequested = false;
        await new Promise((r) => setImmediate(r));
        continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.wake = null;
          resolve();
        }, this.nextWaitMs());
        this.wake = () => {
          clearTimeout(t);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  /**
   * sd_notify, from the tick loop itself (never a timer: a loop stuck in a tick stops the pings and
   * systemd's watchdog restarts us). READY=1 once the owner lock is held and a tick committed (or
   * the board is quarantined: the workers are supervised all the same).
   */
  private notifyTick(): void {
    if (!this.notifier.enabled) return;
    const now = Date.now();
    if (!this.notifier.ready && (this.committedOnce || this.quarantine)) this.notifier.notifyReady(this.notifyStatusText(), now);
    this.notifier.watchdog(now);
    this.notifier.status(this.notifyStatusText(), now);
  }

  /** STATUS= for `systemctl status`: the state first (a change is sent at once), then pool use. */
  private notifyStatusText(): string {
    const pool = `${this.workers.size}/${this.cfg.maxConcurrentWorkers} workers`;
    if (this.stopping) return `stopping: ${this.workers.size} worker(s) ${this.opts.detachOnExit ? 'left running (detach)' : 'being reclaimed'}`;
    const q = this.quarantine;
    if (q) return `quarantined: ${pool} supervised, no dispatch; since ${new Date(q.since).toISOString()}: ${q.reason}`;
    if (this.storm.pausedUntil > Date.now()) return `dispatch paused: ${pool}; failure storm, until ${new Date(this.storm.pausedUntil).toISOString()}`;
    if (!this.access.ok) return `dispatch held: ${pool}; board not usable by path: ${this.access.problem?.error ?? 'unknown'}`;
    return `running: ${pool}; board ok, not quarantined`;
  }

  private requestWake(): void {
    if (this.wake) this.wake();
    else this.wakeRequested = true;
  }

  /** Until the next tick: the tick interval, or sooner when a SIGKILL deadline falls due. */
  private nextWaitMs(): number {
    let wait = Math.min(this.cfg.tickIntervalMs, this.notifier.msUntilWatchdog());
    const now = Date.now();
    for (const w of this.workers.values()) {
      if (w.term && w.term.phase === 'term') {
        const grace = this.stopping?.hurry ? 0 : w.graceMs;
        wait = Math.min(wait, Math.max(0, w.term.sigtermAt + grace - now + 1));
      }
    }
    return wait;
  }

  private async finishedStopping(): Promise<boolean> {
    if (this.stopping && this.opts.detachOnExit) {
      await this.shutdown(0, 'detached: workers left running for the next supervisor');
      return true;
    }
    // Orphans being terminated (their grace running) are waited for too: nothing is left behind.
    if (this.stopping && this.workers.size === 0 && this.strays.size === 0 && this.reaper.orphansPending() === 0) {
      if (!this.quarantine) await this.guard('account', () => this.account(Date.now()));
      await this.shutdown(0, 'all workers gone');
      return true;
    }
    if (this.opts.untilIdle && !this.stopping && !this.quarantine && this.workers.size === 0 && this.strays.size === 0 && this.reaper.orphansPending() === 0) {
      let idle = false;
      await this.guard('idle', async () => {
        idle = await this.board.idle();
      });
      if (idle) {
        await this.shutdown(0, 'idle');
        return true;
      }
    }
    return false;
  }

  private async shutdown(code: number, why: string): Promise<void> {
    this.stopped = true;
    this.notifier.stopping(`stopping: ${why}`);
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (!this.quarantine) {
      try {
        await this.writeHeld();
        await this.board.setOwner({ pid: process.pid, host: hostname(), startedAt: this.startedAt, state: 'stopped', detail: this.ownerDetail() });
      } catch {
        /* best effort */
      }
      try {
        this.board.closeSync('PASSIVE');
      } catch (e) {
        this.log.error({ event: 'close_failed', err: e }, 'closing the board failed');
      }
    }
    this.writeStatusFile('stopped');
    this.lock?.release();
    this.log.info({ event: 'stopped', reason: why }, 'supervisor stopped');
    this.resolveDone(code);
  }

  /** Run one tick step; a failure is logged and the tick goes on. Returns whether the step succeeded. */
  private async guard(step: string, fn: () => Promise<void>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (e) {
      this.tickErrors++;
      if (e instanceof WriteGroupLostError) this.restoreUncommitted();
      const cls = classifyError(e);
      const level = cls === 'busy' ? 'warn' : 'error';
      if (!this.quarantine) this.log[level]({ event: 'tick_step_failed', step, errorClass: cls, err: e }, `tick step ${step} failed`);
      if (cls === 'damaged' || cls === 'io') await this.suspectDamage(e);
      return false;
    }
  }

  async tick(): Promise<void> {
    const now = Date.now();
    if (this.quarantine) {
      // Workers are still supervised from memory and /proc; nothing touches the board.
      await this.guard('reap', () => this.reap(now));
      await this.guard('reclaim', () => this.reclaim([], now));
      await this.guard('probe', () => this.probeQuarantine(now));
      if (this.quarantine) return;
    }
    let live: LiveRun[] = [];
    // Every write of the tick goes into one transaction (one commit, one fsync): exits, crash
    // verdicts, accounting and claims. It is committed before anything acts on it outside the
    // board: before a SIGTERM (the fence), before a spawn (the claim), before a spool file goes.
    const board = this.board;
    board.beginGroup();
    this.inGroup = true;
    try {
      // Reap before reading the spool: a worker renames its spool file before it exits, so every
      // exit collected here has its spooled report already in place (never judged unreported).
      await this.guard('reap', () => this.reap(now));
      const spoolRead = await this.guard('spool', () => this.ingestSpool());
      await this.guard('detect', async () => {
        live = await this.board.liveRuns();
        await this.detect(live, now);
        this.sweepStrays(live);
      });
      await this.guard('sample', async () => this.sample(now));
      await this.guard('reclaim', () => this.reclaim(live, now));
      // Exits and crash verdicts wait while a spooled report may still be unread: written first, an
      // unreported-exit verdict would book a run crashed whose result sits in the spool.
      if (spoolRead) await this.guard('account', () => this.account(now));
      await this.guard('dispatch', () => this.dispatch(now));
      if (!this.quarantine && this.board === board) await this.guard('commit', () => this.commitGroup());
    } finally {
      board.endGroup();
      this.inGroup = false;
      this.afterCommit = []; // what was not committed was rolled back: nothing of it happened
    }
    // Every worker's write waits while the tick holds the write lock (a heartbeat longer than its
    // busy timeout): a long hold is a defect to find, so it is logged.
    const heldMs = board.takeLongestGroupHold();
    if (heldMs > WRITE_LOCK_WARN_MS) {
      this.log.warn({ event: 'write_lock_held', ms: Math.round(heldMs), workers: this.workers.size }, `the tick held the board's write lock for ${Math.round(heldMs)} ms`);
    }
    await this.guard('housekeeping', async () => this.housekeeping(now));
  }

  /** Commit the tick's writes so far; what they carried from memory is then on the board. */
  private async commitGroup(): Promise<void> {
    await this.board.commitGroup();
    this.committedOnce = true;
    this.uncommitted = { obs: [], spawns: [] };
    const logs = this.afterCommit;
    this.afterCommit = [];
    for (const emit of logs) emit();
  }

  /** Log a state change once it is committed (at once when no write group is open). */
  private logCommitted(emit: () => void): void {
    if (this.inGroup) this.afterCommit.push(emit);
    else emit();
  }

  /** The tick's transaction was rolled back: put what it carried from memory back in line. */
  private restoreUncommitted(): void {
    this.heldObs = this.uncommitted.obs.concat(this.heldObs);
    this.pendingSpawns = this.uncommitted.spawns.concat(this.pendingSpawns);
    this.uncommitted = { obs: [], spawns: [] };
    this.afterCommit = [];
  }

  // ------------------------------------------------------------------ 1. reap

  private unreportedError(w: Worker, exit: ExitRecord | null): { outcome: RunOutcome; error: string } {
    const how = exit
      ? exit.signal
        ? `was killed by signal ${exit.signal}`
        : `exited with code ${exit.exitCode}`
      : 'disappeared';
    if (w.stopReason) {
      return {
        outcome: stopOutcome(w.stopReason),
        error: `reclaimed (${REASON_TEXT[w.stopReason] ?? w.stopReason}); worker ${how}`,
      };
    }
    if (exit && exit.signal === null && exit.exitCode === EXIT_TEMPFAIL) {
      // EX_TEMPFAIL: "try again later", as in the system this replaces. Not counted; retried after a backoff delay.
      return { outcome: 'deferred', error: `worker exited with code ${EXIT_TEMPFAIL} (EX_TEMPFAIL) without reporting: deferred, not counted` };
    }
    return { outcome: 'crashed', error: `worker ${how} without reporting an outcome` };
  }

  /**
   * Write what the tick observed into its transaction: spawns of the last tick first (so that an
   * exit in the same transaction finds its pid), then exits and crash verdicts. Held back while
   * quarantined; put back in line if the write fails.
   */
  private async writeHeld(): Promise<void> {
    if (this.quarantine) return;
    if (this.pendingSpawns.length) {
      const batches = this.pendingSpawns;
      this.pendingSpawns = [];
      try {
        for (const b of batches) await this.board.recordSpawns(b.items, b.at);
      } catch (e) {
        this.pendingSpawns = batches.concat(this.pendingSpawns);
        throw e;
      }
      this.uncommitted.spawns.push(...batches);
    }
    if (this.heldObs.length) {
      const batch = this.heldObs;
      this.heldObs = [];
      try {
        await this.board.recordExits(batch);
      } catch (e) {
        this.heldObs = batch.concat(this.heldObs);
        throw e;
      }
      this.uncommitted.obs.push(...batch);
    }
  }

  private async reap(now: number): Promise<void> {
    if (this.strays.size) this.reapStrays(now, this.stopping?.hurry ? 0 : 5000);
    const exits = this.pendingExits.concat(this.reaper.drainExits());
    this.pendingExits = [];
    const obs: ExitObservation[] = [];
    const gone: Worker[] = [];
    // Fast path: an empty process group is gone (escapees from the group re-parent to us, the
    // child subreaper, and are handled below); otherwise one /proc scan for every exit of this tick.
    let table: ReturnType<typeof processTable> | undefined;
    const goneNow = (id: ProcessIdentity) =>
      (this.reaper.subreaperActive && groupEmpty(id.pgid) && !alive(id)) || isGone(id, (table ??= processTable()));
    for (const ex of exits) {
      const runId = this.byPid.get(ex.pid);
      const w = runId ? this.workers.get(runId) : undefined;
      if (!w) continue;
      w.leaderExit = ex;
      const u = this.unreportedError(w, ex);
      const isAllGone = goneNow(w.identity);
      obs.push({ runId: w.runId, at: ex.at, exitCode: ex.exitCode, signal: ex.signal, gone: isAllGone, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
      if (isAllGone) gone.push(w);
      else w.cleanup = this.reaper.cleanupAfterExit(w.identity);
      this.log.info({ event: 'worker_exited', task: w.taskId, run: w.runId, workerPid: ex.pid, exitCode: ex.exitCode, signal: ex.signal }, 'worker exited');
    }
    for (const w of this.workers.values()) {
      if (obs.some((o) => o.runId === w.runId)) continue;
      if (w.leaderExit) {
        // The leader is gone; whatever it left in its group (or tree, or escapees) is being terminated.
        w.cleanup = this.reaper.cleanupAfterExit(w.identity);
        // An own worker whose group and tree are empty is gone: its escapees re-parent to us, the
        // child subreaper, and end as orphans. Without a subreaper (the portable backend) they go to
        // init: the run lasts until the cleanup has seen the last of its known escapees go.
        if ((w.cleanup.phase === 'gone' || (w.own && this.reaper.subreaperActive && isGone(w.identity))) && !this.adoptedRemains(w)) {
          const u = w.own ? null : this.unreportedError(w, null);
          obs.push({ runId: w.runId, at: now, gone: true, ...(u ? { outcomeIfUnreported: u.outcome, errorIfUnreported: u.error } : {}) });
          gone.push(w);
        }
      } else if (!w.own && !alive(w.identity)) {
        // Adopted worker: no exit status to collect; its outcome comes from its own report.
        // What it leaves (group, tree, escapees carrying its run id) is cleaned up first.
        this.log.info({ event: 'worker_exited', task: w.taskId, run: w.runId, workerPid: w.identity.pid, adopted: true }, 'adopted worker exited');
        if (this.reaper.liveMembers(w.identity).length === 0 && !this.adoptedRemains(w)) {
          const u = this.unreportedError(w, null);
          obs.push({ runId: w.runId, at: now, gone: true, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
          gone.push(w);
        } else {
          w.leaderExit = { pid: w.identity.pid, exitCode: null, signal: null, at: now };
          w.cleanup = this.reaper.cleanupAfterExit(w.identity);
        }
      }
    }
    for (const w of gone) this.forget(w);
    this.heldObs.push(...obs);
    // They go on the board with the accounting (account() writes what is held first): the tick's
    // write lock is taken as late as possible, after the /proc work below and detect's reads, so
    // that workers waiting to write find it free more often (measured: lock held per tick halved).
    // Orphans re-parented to us (child subreaper). Our direct children are cheap to list; the full
    // /proc scan of reapOrphans runs only when one of them is not a known worker (or every 30 s, a safety net).
    const known = new Set<number>([...this.workers.values()].map((w) => w.identity.pid));
    const children = childPids();
    const strangerPids = children?.filter((pid) => !known.has(pid)) ?? [];
    const strangers = children === null || strangerPids.length > 0;
    // Zombies among them are reaped at every tick (one /proc read each); the full scan that also
    // terminates live orphans runs at most every 250 ms.
    if (strangerPids.length) {
      const reaped = this.reaper.reapZombieChildren(strangerPids);
      if (reaped.length) this.log.info({ event: 'orphans', terminated: [], reaped }, 'reaped orphaned zombies');
    }
    if (!strangers && now - this.lastOrphanScanAt < 30_000) return;
    if (strangers && exits.length === 0 && now - this.lastOrphanScanAt < 250) return;
    this.lastOrphanScanAt = now;
    const orphans = this.reaper.reapOrphans(known);
    if (orphans.terminated.length || orphans.reaped.length) {
      this.log.info({ event: 'orphans', terminated: orphans.terminated, reaped: orphans.reaped }, 'cleaned up orphaned descendants');
    }
  }

  private forget(w: Worker): void {
    this.workers.delete(w.runId);
    if (this.byPid.get(w.identity.pid) === w.runId) this.byPid.delete(w.identity.pid);
    this.reaper.untrack(w.identity.pid);
  }

  // ------------------------------------------------------------------ 2. detect crashes / adopt

  private async detect(live: LiveRun[], now: number): Promise<void> {
    // detect never writes: everything it learns is held for the accounting (spawns found by run id,
    // then exits and verdicts), so the board's write lock is not held across its /proc work (the
    // environ scan, one process-table scan per adopted worker: seconds with many processes).
    const obs: ExitObservation[] = [];
    const spawns: SpawnBatch['items'] = [];
    // Runs whose end is observed but not on the board yet (written at the accounting, or waiting
    // for a retry after a failed write): not crashes to detect.
    const observed = new Set(this.heldObs.map((o) => o.runId));
    const inherited = live.filter((run) => !this.workers.has(run.id) && !observed.has(run.id));
    for (const id of this.envScanned) if (!inherited.some((r) => r.id === id)) this.envScanned.delete(id);
    for (const id of this.unstartedSeen.keys()) if (!inherited.some((r) => r.id === id)) this.unstartedSeen.delete(id);
    // One /proc environ scan finds every process that carries one of these runs' KANBAN_RUN_ID: the
    // worker of a run whose pid was never recorded (its supervisor died between spawn and record),
    // and escapees that left the worker's group and tree (setsid, double fork) before a restart.
    // Each inherited run is scanned for once; one with no process yet, again until it is decided.
    const toScan = inherited.filter((r) => !this.envScanned.has(r.id) || (r.pid === null && r.status !== 'ended'));
    const carriersOf = toScan.length ? findAllByEnv('KANBAN_RUN_ID', toScan.map((r) => r.id)) : new Map<string, ProcessIdentity[]>();
    for (const r of toScan) this.envScanned.add(r.id);
    for (const run of inherited) {
      const carriers = carriersOf.get(run.id) ?? [];
      let id = this.identityOf(run);
      if (!id) {
        // The worker leads its own session and group, and starts before anything it starts: if it
        // lives, it is the earliest carrier. An earliest carrier that does not lead its session is
        // a descendant (or an escapee) of a leader already gone.
        const first = [...carriers].sort((a, b) => a.startTime - b.startTime || a.pid - b.pid)[0];
        const leads = !!first && first.pid === first.pgid && readStat(first.pid)?.sid === first.pid;
        if (first && !leads) {
          // Its leader is gone before anyone recorded it: what carries its run id is cleaned up,
          // and the run ends with what it reported (or as a crash).
          const w = this.adopt(run, first, carriers.filter((c) => c !== first));
          w.leaderExit = { pid: first.pid, exitCode: null, signal: null, at: now };
          continue;
        }
        const found = first;
        if (found) {
          id = found;
          // Recorded with the accounting (writeHeld writes spawns first), not here: a write here
          // would take the board's write lock for the rest of the tick's /proc work.
          spawns.push({ runId: run.id, info: { pid: found.pid, pgid: found.pgid, procStartTime: found.startTime, bootId: found.bootId } });
        } else if (run.status === 'ended') {
          obs.push({ runId: run.id, at: now, gone: true });
          continue;
        } else {
          // No process was recorded and none carries the run id: the supervisor that claimed the
          // task died before starting its worker. Looked for twice, a second apart (a process
          // between fork and exec does not carry the id yet); then the run ends abandoned (not
          // counted against the task) and the task is ready again at once, with no crash grace.
          const seen = this.unstartedSeen.get(run.id);
          if (seen === undefined) this.unstartedSeen.set(run.id, now);
          if (seen === undefined || now - seen < 1000) continue;
          this.unstartedSeen.delete(run.id);
          const error = 'the worker was never started (its supervisor stopped between claiming the task and spawning it)';
          obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: error });
          this.logCommitted(() => this.log.warn({ event: 'run_abandoned', task: run.taskId, run: run.id, workerPid: null, error }, 'run never started: abandoned (not counted)'));
          continue;
        }
      }
      const escapees = carriers.filter((c) => c.pid !== id!.pid);
      if (id.bootId === this.boot && alive(id)) {
        this.adopt(run, id, escapees);
        continue;
      }
      if (id.bootId === this.boot && (!isGone(id) || escapees.length > 0)) {
        // Leader gone but part of its group, its tree or its escapees lives on: adopt it so that
        // cleanup finishes the job.
        const w = this.adopt(run, id, escapees);
        w.leaderExit = { pid: id.pid, exitCode: null, signal: null, at: now };
        continue;
      }
      if (id.bootId !== this.boot) {
        obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: 'the machine rebooted under the run' });
        continue;
      }
      if (run.status === 'ended') {
        // It reported, and its processes are gone: only the exit is left to record.
        obs.push({ runId: run.id, at: now, gone: true });
        continue;
      }
      if (!pastCrashGrace(run.startedAt, now, this.cfg.crashGraceSeconds)) continue;
      const error = `worker pid ${id.pid} is gone (or a zombie, or its pid was reused) without reporting an outcome`;
      const outcome: RunOutcome = run.stopReason ? stopOutcome(run.stopReason) : 'crashed';
      obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: outcome, errorIfUnreported: error });
      this.logCommitted(() => this.log.warn({ event: 'crash_detected', task: run.taskId, run: run.id, workerPid: run.pid, outcome, error }, `run ${outcome}`));
    }
    if (spawns.length) this.pendingSpawns.push({ at: now, items: spawns });
    this.heldObs.push(...obs);
  }

  /**
   * Once, at start-up: processes that carry this board's KANBAN_DB and the id of a run that has
   * already ended (escapees of a worker whose group was gone when the previous supervisor died,
   * while it was still terminating them as orphans) are terminated like orphans.
   */
  private sweepStrays(live: LiveRun[]): void {
    if (this.swept) return;
    this.swept = true;
    const liveIds = new Set(live.map((r) => r.id));
    for (const w of this.workers.values()) liveIds.add(w.runId);
    for (const { id, env } of scanEnv(['KANBAN_DB', 'KANBAN_RUN_ID'])) {
      const runId = env.KANBAN_RUN_ID;
      if (env.KANBAN_DB !== this.boardPath || !runId || liveIds.has(runId)) continue;
      this.strays.set(`${id.pid}:${id.startTime}`, { id, runId });
      this.log.warn({ event: 'stray_found', run: runId, workerPid: id.pid }, 'a process of an ended run outlived its supervisor: terminating it');
    }
  }

  /** Strays found at start-up: SIGTERM, the cleanup grace, SIGKILL; forgotten once gone. */
  private reapStrays(now: number, graceMs: number): void {
    for (const [key, s] of this.strays) {
      const st = this.reaper.terminate(s.id, graceMs, now);
      if (st.phase === 'gone') {
        this.strays.delete(key);
        this.reaper.untrack(s.id.pid);
      }
    }
  }

  private identityOf(run: Run): ProcessIdentity | null {
    if (run.pid === null || run.procStartTime === null || run.bootId === null) return null;
    return { pid: run.pid, pgid: run.pgid ?? run.pid, startTime: run.procStartTime, bootId: run.bootId };
  }

  private adopt(run: LiveRun, id: ProcessIdentity, escapees: ProcessIdentity[] = []): Worker {
    this.reaper.track(id);
    // Processes that left the worker's group and tree but carry its run id are its own.
    if (escapees.length) this.reaper.addKnown(id, escapees);
    const w = this.register(run.id, run.taskId, id, {
      own: false,
      graceSeconds: run.skillReclaimGraceSeconds,
      stopReason: run.stopReason,
      sigkillRecorded: run.sigkillAt !== null,
      logPath: run.logPath,
    });
    if (run.stopReason !== null && run.sigtermAt !== null) {
      // Its reclaim had begun under the previous supervisor: resume it where it stood (SIGTERM
      // again, SIGKILL at the original SIGTERM time + grace, or at once if that has passed).
      this.reaper.resumeTermination(id, run.sigtermAt, run.sigkillAt);
      w.term = { pid: id.pid, phase: run.sigkillAt === null ? 'term' : 'kill', sigtermAt: run.sigtermAt, sigkillAt: run.sigkillAt, remaining: [] };
    }
    this.log.info(
      { event: 'adopted', task: run.taskId, run: run.id, workerPid: id.pid, escapees: escapees.map((e) => e.pid), reclaiming: run.stopReason },
      run.stopReason ? 'adopted a worker being reclaimed: resuming its reclaim' : 'adopted a live worker',
    );
    return w;
  }

  /**
   * An adopted worker's processes are not our descendants: before its run is declared gone, one
   * more look for processes that carry its run id (escapees that left after the adoption).
   */
  private adoptedRemains(w: Worker): boolean {
    if (w.own) return false;
    const found = (this.runIdCarriers().get(w.runId) ?? []).filter((p) => !(p.pid === w.identity.pid && p.startTime === w.identity.startTime));
    if (found.length === 0) return false;
    this.reaper.addKnown(w.identity, found);
    return true;
  }

  /**
   * Live processes by the KANBAN_RUN_ID they carry: one /proc environ scan per turn of the event
   * loop, however many adopted workers end together (one scan each: 64 × 1,000 processes kept the
   * event loop busy for ~17 s after a restart). Dropped at the next turn.
   */
  private runIdCarriers(): Map<string, ProcessIdentity[]> {
    if (!this.carriersOfTurn) {
      const m = new Map<string, ProcessIdentity[]>();
      for (const { id, env } of scanEnv(['KANBAN_RUN_ID'])) {
        const runId = env.KANBAN_RUN_ID!;
        let list = m.get(runId);
        if (!list) m.set(runId, (list = []));
        list.push(id);
      }
      this.carriersOfTurn = m;
      setImmediate(() => {
        if (this.carriersOfTurn === m) this.carriersOfTurn = null;
      });
    }
    return this.carriersOfTurn;
  }

  private carriersOfTurn: Map<string, ProcessIdentity[]> | null = null;

  /** Start supervising a worker process (spawned by us or adopted). */
  private register(
    runId: string,
    taskId: string,
    identity: ProcessIdentity,
    o: { own: boolean; graceSeconds: number | null; stopReason: string | null; sigkillRecorded: boolean; logPath: string | null },
  ): Worker {
    const w: Worker = {
      runId,
      taskId,
      identity,
      own: o.own,
      leaderExit: null,
      term: null,
      graceMs: Math.round((o.graceSeconds ?? this.cfg.reclaimGraceSeconds) * 1000),
      stopReason: o.stopReason,
      sigkillRecorded: o.sigkillRecorded,
      cleanup: null,
      rssBytes: null,
      cpuPercent: null,
      logPath: o.logPath,
    };
    this.workers.set(runId, w);
    this.byPid.set(identity.pid, runId);
    return w;
  }

  // ------------------------------------------------------------------ sampling

  private sample(now: number): void {
    this.boundLogs(); // every tick, and on its own LOG_CHECK_INTERVAL_MS timer
    if (now - this.lastSampleAt < SAMPLE_INTERVAL_MS || this.workers.size === 0) return;
    this.lastSampleAt = now;
    const ids = [...this.workers.values()].filter((w) => !w.leaderExit).map((w) => w.identity);
    const usage = this.reaper.sample(ids);
    for (const w of this.workers.values()) {
      const u = usage.get(w.identity.pid);
      if (u) {
        w.rssBytes = u.rssBytes;
        w.cpuPercent = u.cpuPercent;
      }
    }
  }

  /**
   * Per run: the descriptor its log is bounded through (opened once, without following a symlink,
   * checked to be a regular file of ours with one link; null when it was refused), and counters.
   */
  private readonly logBounds = new Map<string, { fd: number | null; ctx: { task: string; run: string; workerPid: number }; truncations: number; lastWarnAt: number }>();
  private logTimer: NodeJS.Timeout | null = null;

  /**
   * Bound every run's log, at every tick and every LOG_CHECK_INTERVAL_MS on a timer of its own
   * (armed at the first tick, cleared once the supervisor stopped), for as long as the run is in
   * `workers`, i.e. while any process of its group lives, not only its leader. A run that left
   * `workers` gets one last check (what its processes wrote in their last interval), then its
   * descriptor is closed. Never throws (it runs from a timer).
   */
  private boundLogs(): void {
    try {
      if (!this.stopped && !this.logTimer) {
        this.logTimer = setInterval(() => this.boundLogs(), LOG_CHECK_INTERVAL_MS);
        this.logTimer.unref();
      }
      if (!this.stopped) for (const w of this.workers.values()) if (w.logPath) this.boundLog(w);
      for (const [runId, b] of this.logBounds) {
        if (!this.stopped && this.workers.has(runId)) continue;
        this.logBounds.delete(runId);
        if (b.fd !== null) {
          this.boundFd(b);
          try {
            closeSync(b.fd);
          } catch {
            /* closed already */
          }
        }
      }
      if (this.stopped && this.logTimer) {
        clearInterval(this.logTimer);
        this.logTimer = null;
      }
    } catch (e) {
      this.log.error({ event: 'log_bound_failed', err: e }, 'bounding worker logs failed');
    }
  }

  /** Keep one run's log under LOG_MAX_BYTES: its head, one marker line, its newest tail. */
  private boundLog(w: Worker): void {
    let b = this.logBounds.get(w.runId);
    if (!b) {
      b = { fd: null, ctx: { task: w.taskId, run: w.runId, workerPid: w.identity.pid }, truncations: 0, lastWarnAt: 0 };
      this.logBounds.set(w.runId, b);
      try {
        b.fd = openLogForBounding(w.logPath!);
      } catch (e) {
        // A symlink, FIFO, hard link or another user's file at the log's name (a worker put it
        // there) is never followed, opened or truncated; a missing log has nothing to bound.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn({ event: 'log_not_bounded', ...b.ctx, log: w.logPath, error: (e as Error).message }, 'worker log is not a regular file of ours: not bounded');
        }
        return;
      }
    }
    if (b.fd !== null) this.boundFd(b);
  }

  private boundFd(b: { fd: number | null; ctx: { task: string; run: string; workerPid: number }; truncations: number; lastWarnAt: number }): void {
    try {
      const r = boundLogFd(b.fd!, this.cfg.logMaxBytes, { boundName: `LOG_MAX_BYTES=${this.cfg.logMaxBytes}` });
      if (!r.truncated) return;
      b.truncations++;
      const now = Date.now();
      // Once per run at first, then at most every 10 s (a flooding worker is truncated often).
      if (b.truncations === 1 || now - b.lastWarnAt >= 10_000) {
        b.lastWarnAt = now;
        this.log.warn({ event: 'log_truncated', ...b.ctx, bytes: r.size, kept: r.kept, dropped: r.dropped, truncations: b.truncations }, 'worker log truncated');
      }
    } catch (e) {
      const now = Date.now();
      if (now - b.lastWarnAt >= 10_000) {
        b.lastWarnAt = now;
        this.log.warn({ event: 'log_bound_failed', ...b.ctx, err: e }, 'bounding the worker log failed');
      }
    }
  }

  // ------------------------------------------------------------------ 3. reclaim

  private async reclaim(live: LiveRun[], now: number): Promise<void> {
    const runs = new Map(live.map((r) => [r.id, r]));
    for (const w of this.workers.values()) {
      if (w.leaderExit) continue; // being cleaned up in reap
      if (w.term) {
        const grace = this.stopping?.hurry ? 0 : w.graceMs;
        w.term = this.reaper.terminate(w.identity, grace, now);
        if (w.term.phase === 'kill' && !w.sigkillRecorded) {
          if (!this.quarantine) {
            await this.board.recordSigkill(w.runId, w.term.sigkillAt ?? now);
            // Committed at once: the rest of this loop scans /proc for every other worker, and the
            // board's write lock must not be held across that.
            await this.commitGroup();
          }
          // Only once it is on the board (a failed write is retried at the next tick).
          w.sigkillRecorded = true;
          this.log.warn({ event: 'sigkill_sent', task: w.taskId, run: w.runId, workerPid: w.identity.pid, reason: w.stopReason }, 'SIGKILL sent');
        }
        if (w.term.phase === 'gone') await this.confirmGone(w, now);
        continue;
      }
      const run = runs.get(w.runId);
      if (!run) continue;
      let reason: StopReason | null = this.stopping && !this.opts.detachOnExit && run.status !== 'ended' ? 'abandoned' : null;
      reason ??= reclaimReason(
        {
          startedAt: run.startedAt,
          heartbeatAt: run.heartbeatAt,
          maxRuntimeSeconds: effectiveLimit(run.taskMaxRuntimeSeconds, run.skillMaxRuntimeSeconds, this.cfg.maxRuntimeSeconds),
          heartbeatTimeoutSeconds: effectiveLimit(run.skillHeartbeatTimeoutSeconds, this.cfg.heartbeatTimeoutSeconds),
          maxRssMb: effectiveLimit(run.skillMaxRssMb, this.cfg.maxWorkerRssMb),
          rssBytes: w.rssBytes,
          taskCancelled: run.taskStatus === 'cancelled',
          endedAt: run.status === 'ended' ? run.endedAt : null,
        },
        now,
      );
      if (!reason) continue;
      // Close the run's fence first, then signal: a reclaimed worker can no longer write.
      if (!(await this.board.beginReclaim(w.runId, reason, now))) continue;
      await this.commitGroup(); // the fence is on the board before the signal goes
      w.stopReason = reason;
      w.term = this.reaper.terminate(w.identity, this.stopping?.hurry ? 0 : w.graceMs, now);
      this.log.warn(
        { event: 'sigterm_sent', task: w.taskId, run: w.runId, workerPid: w.identity.pid, reason, graceMs: w.graceMs },
        `reclaiming worker: ${REASON_TEXT[reason] ?? reason}`,
      );
    }
  }

  /** A reclaimed worker whose whole group is gone but whose exit Node has not reported (adopted). */
  private async confirmGone(w: Worker, now: number): Promise<void> {
    if (w.own && !w.leaderExit) return; // the exit event will come through reap with its status
    if (this.adoptedRemains(w)) return; // escapees: terminated with it on the next ticks
    const u = this.unreportedError(w, null);
    this.heldObs.push({ runId: w.runId, at: now, gone: true, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
    this.forget(w);
  }

  // ------------------------------------------------------------------ spool

  /**
   * Reports that workers left in the spool while the board could not take them: applied fenced by
   * their run token (so at most once), deleted only after the commit.
   */
  private async ingestSpool(): Promise<void> {
    // Every entry on its own: one that cannot be applied is set aside (logged once) and never
    // keeps the others from being read. Only a board-level error (busy, I/O, damage) stops the
    // pass, and the next tick reads the spool again.
    for (const item of readSpool(this.boardPath)) {
      if (this.spoolSetAside.has(item.path)) continue;
      if ('error' in item) {
        this.setSpoolAside(item.path, 'rejected', { event: 'spool_rejected', path: item.path, error: item.error }, 'unreadable spool file set aside');
        continue;
      }
      const e = item.entry;
      const cred = { taskId: e.taskId, runId: e.runId, token: e.token };
      const ctx = { task: e.taskId, run: e.runId, workerPid: e.pid, outcome: e.report.outcome };
      try {
        await this.board.report(cred, e.report, e.at);
        this.logCommitted(() => this.log.info({ event: 'spool_applied', ...ctx }, 'spooled result applied'));
      } catch (err) {
        if (!(err instanceof NotCurrentError)) {
          if (!(err instanceof BoardInputError) && classifyError(err) !== 'other') throw err;
          this.setSpoolAside(item.path, 'rejected', { event: 'spool_rejected', ...ctx, path: item.path, error: (err as Error).message }, 'invalid spooled report set aside');
          continue;
        }
        if (!(await this.board.reportApplied(cred, e.report.outcome))) {
          // The run was reclaimed meanwhile, or the damage destroyed it: never delete a result
          // that is not on the board. Keep it aside for the operator.
          this.setSpoolAside(item.path, 'unapplied', { event: 'spool_unapplied', ...ctx }, 'spooled result could not be applied (its run is not current); kept in spool/unapplied');
          continue;
        }
        // Applied by an earlier ingestion that died before deleting the file.
        this.log.info({ event: 'spool_already_applied', ...ctx }, 'spooled result was already on the board');
      }
      await this.commitGroup(); // on the board before the file goes
      removeSpoolEntry(item.path);
    }
  }

  /**
   * Move a spool entry into spool/<sub>/ (a real folder of ours, never a symlink a worker planted),
   * logging why once. If it cannot be moved, it is remembered and skipped from then on.
   */
  private setSpoolAside(path: string, sub: 'rejected' | 'unapplied', fields: Record<string, unknown>, msg: string): void {
    const dir = join(spoolDir(this.boardPath), sub);
    let keptAt: string | null = null;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = lstatSync(dir);
      if (!st.isDirectory() || (process.getuid && st.uid !== process.getuid())) throw new Error(`${dir} is not a folder owned by this user`);
      const to = join(dir, path.split('/').pop()!);
      renameSync(path, to);
      keptAt = to;
    } catch (err) {
      this.spoolSetAside.add(path);
      fields = { ...fields, moveError: (err as Error).message };
    }
    this.log.error({ ...fields, keptAt: keptAt ?? path }, msg);
  }

  // ------------------------------------------------------------------ 4. account

  private async account(now: number): Promise<void> {
    await this.writeHeld();
    const pending = await this.board.unaccountedRuns();
    if (pending.length === 0) return;
    const policy = {
      failureLimit: this.cfg.failureLimit,
      backoff: { baseSeconds: this.cfg.backoffBaseSeconds, factor: this.cfg.backoffFactor, maxSeconds: this.cfg.backoffMaxSeconds },
    };
    const decided = pending.map(({ run, task }) => ({
      run,
      task,
      decision: decideAccounting(
        {
          outcome: run.outcome ?? 'crashed',
          consecutiveFailures: task.consecutiveFailures,
          taskMaxRetries: task.maxRetries,
          taskStatus: task.currentRunId === run.id ? task.status : 'cancelled',
          error: run.error,
          deferUntil: run.deferUntil,
          now,
          random: Math.random(),
        },
        policy,
      ),
    }));
    // One transaction for every run ended since the last tick: counters and backoff commit together.
    await this.board.applyAccountingBatch(
      decided.map(({ run, decision }) => ({ runId: run.id, action: decision })),
      now,
    );
    // The storm breaker counts distinct failing tasks (a run counted again after a rolled-back tick
    // changes nothing); the log lines wait for the commit (at once outside a write group).
    for (const { run, task } of decided) {
      if (run.outcome && countsAsFailure(run.outcome) && this.cfg.stormDistinctTasks > 0) {
        const r = recordFailure(this.storm, task.id, now, { ...DEFAULT_STORM, distinctTasks: this.cfg.stormDistinctTasks });
        this.storm = r.state;
        if (r.tripped) {
          this.log.error({ event: 'storm_pause', until: this.storm.pausedUntil, trips: this.storm.trips }, 'many different tasks are failing: pausing dispatch');
          this.writeStatusFile(); // `status` shows the pause and its reason
        }
      } else if (run.outcome === 'completed') {
        this.storm = recordSuccess(this.storm);
      }
    }
    this.logCommitted(() => this.logAccounting(decided));
  }

  private logAccounting(decided: Array<{ run: Run; task: Task; decision: AccountingDecision }>): void {
    for (const { run, task, decision } of decided) {
      const ctx = { task: task.id, run: run.id, workerPid: run.pid, outcome: run.outcome };
      switch (decision.action) {
        case 'done':
          this.log.info({ event: 'task_done', ...ctx }, 'task done');
          break;
        case 'requeue':
          this.log.info({ event: 'task_requeued', ...ctx, consecutiveFailures: decision.consecutiveFailures, notBefore: decision.notBefore, counted: decision.counted, error: run.error }, 'task requeued');
          break;
        case 'block':
          this.log.warn({ event: 'task_blocked', ...ctx, reason: decision.reason }, 'task blocked');
          break;
        case 'leave':
          this.log.info({ event: 'run_accounted', ...ctx, taskStatus: task.status }, 'run ended');
          break;
      }
    }
  }

  // ------------------------------------------------------------------ 5. dispatch

  private async dispatch(now: number): Promise<void> {
    if (this.stopping || this.quarantine) return;
    if (dispatchPaused(this.storm, now)) return;
    if (now < this.spawnHeldUntil) return;
    if (!this.logDirReady()) return;
    const blocked = await this.board.blockUnknownSkillTasks(now);
    for (const b of blocked) this.logCommitted(() => this.log.warn({ event: 'task_blocked', task: b.taskId, run: null, workerPid: null, reason: b.reason }, 'task blocked'));
    const free = this.cfg.maxConcurrentWorkers - this.workers.size;
    if (free <= 0) return;
    // A worker could not open the board: hold the claims until it can (logged once by the probe).
    if (!this.probeAccess(now)) return;
    // One transaction claims as many tasks as there are free slots.
    const claims = await this.board.claimBatch(free, Date.now(), (runId) => join(this.logDir, `${runId}.log`));
    if (claims.length === 0) return;
    // The claims (with every other write of this tick) are on the board before any worker starts.
    await this.commitGroup();
    // The board writes for claims that could not start wait until every spawn of the batch is done:
    // the first of them takes the write lock, which must not be held while the others spawn.
    const unstarted: Array<() => Promise<void>> = [];
    const spawns = claims.map(async (claim) => {
      const { task, run, skill, token } = claim;
      const ctx = { task: task.id, run: run.id, skill: skill.name };
      const env = this.workerEnv(skill, { taskId: task.id, runId: run.id, token, graceSeconds: skill.reclaimGraceSeconds ?? this.cfg.reclaimGraceSeconds, heartbeatTimeoutSeconds: skill.heartbeatTimeoutSeconds ?? this.cfg.heartbeatTimeoutSeconds });
      const cwd = skill.cwd ?? undefined;
      if (!resolveExecutable(skill.argv[0]!, env.PATH ?? '', cwd)) {
        const reason = `skill ${JSON.stringify(skill.name)}: command ${JSON.stringify(skill.argv[0])} is not an executable file${skill.argv[0]!.includes('/') ? '' : ' on PATH'}`;
        unstarted.push(async () => {
          await this.board.endUnspawned(run.id, 'spawn_failed', reason, Date.now());
          await this.board.applyAccounting(run.id, { action: 'block', consecutiveFailures: task.consecutiveFailures, reason }, Date.now());
          this.logCommitted(() => this.log.warn({ event: 'task_blocked', ...ctx, workerPid: null, reason }, 'task blocked before spawning'));
        });
        return null;
      }
      const res = await this.reaper.spawn({ argv: skill.argv, cwd, env, logPath: run.logPath! });
      if (!res.ok) {
        const ours = res.fault === 'supervisor';
        const error = ours
          ? `the supervisor could not start the worker (not the task's fault, not counted): ${res.message}`
          : `spawn of skill ${skill.name} failed: ${res.message}`;
        // The supervisor's own fault (its log folder, descriptors, memory): the run ends abandoned
        // (not counted, the task ready again) and dispatch pauses a few seconds instead of looping.
        if (ours) this.spawnHeldUntil = Date.now() + SPAWN_FAULT_HOLD_MS;
        unstarted.push(async () => {
          await this.board.endUnspawned(run.id, ours ? 'abandoned' : 'spawn_failed', error, Date.now());
          this.logCommitted(() => this.log.warn({ event: 'spawn_failed', ...ctx, workerPid: null, code: res.code, fault: res.fault, error }, 'spawn failed'));
        });
        return null;
      }
      const id = res.identity;
      this.register(run.id, task.id, id, { own: true, graceSeconds: skill.reclaimGraceSeconds, stopReason: null, sigkillRecorded: false, logPath: run.logPath });
      return { claim, id, ctx };
    });
    const settled = await Promise.allSettled(spawns);
    const written = await Promise.allSettled(unstarted.map((write) => write()));
    const started = settled.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []));
    // The spawns (pid, pgid, start time, boot id) go into the next tick's transaction. Until then a
    // supervisor that dies finds these workers by their run id in /proc (detect).
    if (started.length) {
      this.pendingSpawns.push({
        at: Date.now(),
        items: started.map(({ claim, id }) => ({ runId: claim.run.id, info: { pid: id.pid, pgid: id.pgid, procStartTime: id.startTime, bootId: id.bootId } })),
      });
    }
    for (const { claim, id, ctx } of started) {
      this.log.info({ event: 'spawned', ...ctx, workerPid: id.pid, attempt: claim.task.consecutiveFailures + 1, log: claim.run.logPath }, 'worker spawned');
    }
    const failed = [...settled, ...written].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * The run logs' folder must be a real folder of ours before anything is claimed (a worker may have
   * removed it or put a file there): recreated when missing; otherwise dispatch waits, said once.
   */
  private logDirReady(): boolean {
    if (!existsSync(this.logDir)) {
      try {
        mkdirSync(this.logDir, { recursive: true, mode: 0o700 });
      } catch {
        /* judged below */
      }
    }
    const ok = isOwnDirectory(this.logDir);
    if (ok !== this.logDirOk) {
      this.logDirOk = ok;
      if (ok) this.log.info({ event: 'logs_usable', dir: this.logDir }, 'the run logs folder is usable again: dispatch resumes');
      else this.log.error({ event: 'logs_unusable', dir: this.logDir }, 'the run logs folder is not a folder of this user: dispatch waits');
    }
    return ok;
  }

  /**
   * A worker's environment, explicit: the base variables, `run --env-file` variables, the skill's
   * env, the names passed through from ours (`run --pass-env`, `skill add --pass-env`; values read
   * now, never stored), then the KANBAN_* variables.
   */
  private workerEnv(
    skill: { env: Record<string, string>; passEnv?: string[] },
    k: { taskId: string; runId: string; token: string; graceSeconds: number; heartbeatTimeoutSeconds: number },
  ): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of BASE_ENV) {
      const v = process.env[name];
      if (v !== undefined) env[name] = v;
    }
    env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
    Object.assign(env, this.opts.envFile ?? {}, skill.env);
    for (const name of [...(this.opts.passEnv ?? []), ...(skill.passEnv ?? [])]) {
      const v = process.env[name];
      if (v !== undefined) env[name] = v;
    }
    Object.assign(env, {
      KANBAN_DB: this.boardPath,
      KANBAN_TASK_ID: k.taskId,
      KANBAN_RUN_ID: k.runId,
      KANBAN_RUN_TOKEN: k.token,
      KANBAN_RECLAIM_GRACE_SECONDS: String(k.graceSeconds),
      KANBAN_HEARTBEAT_TIMEOUT_SECONDS: String(k.heartbeatTimeoutSeconds),
      KANBAN_CLI: CLI_PATH,
    });
    return env;
  }

  // ------------------------------------------------------------------ housekeeping

  private async housekeeping(now: number): Promise<void> {
    if (now - this.lastAccessProbeAt >= ACCESS_PROBE_INTERVAL_MS) this.probeAccess(now);
    if (now - this.lastCheckpointAt > 30_000) {
      this.lastCheckpointAt = now;
      this.writeStatusFile();
      await this.board.checkpoint('PASSIVE');
      await this.board.setOwner({ pid: process.pid, host: hostname(), startedAt: this.startedAt, state: this.stopping ? 'stopping' : 'running', detail: this.ownerDetail() });
    }
    if (now - this.lastPruneAt > 10 * 60_000) {
      this.lastPruneAt = now;
      this.pruneLogs();
    }
  }

  /**
   * Whether this user can still read and write the board by path, as every new worker must (our
   * own connection keeps working regardless, so spooled results are still applied). One error
   * event when that turns bad, one info event when it is back; the status file says which.
   */
  private probeAccess(now: number): boolean {
    this.lastAccessProbeAt = now;
    const problem = boardAccessProblem(this.boardPath);
    const ok = problem === null;
    if (ok === this.access.ok) {
      const moved = problem?.path !== this.access.problem?.path || problem?.code !== this.access.problem?.code;
      this.access.problem = problem;
      if (moved) this.writeStatusFile(); // still bad, for another reason: the status file says which
      return ok;
    }
    const was = this.access;
    this.access = { ok, since: now, problem };
    if (problem) {
      this.log.error(
        { event: 'board_inaccessible', board: this.boardPath, path: problem.path, code: problem.code, workers: this.workers.size },
        `workers cannot use the board: ${problem.error}; dispatch held, running workers still supervised and spooled results still applied`,
      );
    } else {
      this.log.info({ event: 'board_accessible', board: this.boardPath, since: was.since, path: was.problem?.path, code: was.problem?.code }, 'the board is readable and writable again: dispatch resumes');
    }
    this.writeStatusFile();
    return ok;
  }

  /**
   * Keep the newest 1,000 run logs; never a live worker's. Entries are looked at with lstat (a
   * symlink is removed as itself, never followed; one that vanished or dangles does not stop the
   * pruning), and a logs folder that is a symlink or not ours is not pruned at all.
   */
  private pruneLogs(): void {
    const liveLogs = new Set([...this.workers.values()].map((w) => w.logPath));
    if (!isOwnDirectory(this.logDir)) return;
    const files: Array<{ path: string; mtime: number }> = [];
    try {
      for (const f of readdirSync(this.logDir)) {
        if (!f.endsWith('.log')) continue;
        const path = join(this.logDir, f);
        try {
          const st = lstatSync(path);
          if (!st.isDirectory()) files.push({ path, mtime: st.mtimeMs });
        } catch {
          /* gone meanwhile */
        }
      }
    } catch {
      return;
    }
    files.sort((a, b) => b.mtime - a.mtime);
    for (const f of files.slice(1000)) {
      if (liveLogs.has(f.path)) continue;
      try {
        unlinkSync(f.path);
      } catch {
        /* already gone */
      }
    }
  }
}

/** The outcome of a reclaimed run whose worker did not report: the reclaim's reason. */
function stopOutcome(stopReason: string): RunOutcome {
  return (stopReason === 'hung_after_report' ? 'crashed' : stopReason) as RunOutcome;
}

const require = createRequire(import.meta.url);

/** Back the damaged board up from a separate process (it holds no connection to the file). */
/** The backup helper's own time limit: SIGTERM after 10 minutes, SIGKILL 2 s later. */
const BACKUP_HELPER_TIMEOUT_MS = 10 * 60_000;

async function runBackupHelper(boardPath: string): Promise<{ created?: boolean; dir?: string; fingerprint?: string; error?: string }> {
  let script: string;
  try {
    script = require.resolve('@kanban-supervisor/board/backup-main');
  } catch (e) {
    return { error: `backup helper not found: ${(e as Error).message}` };
  }
  // execa: argv only (no shell), the time limit, bounded output, an error naming the command line
  const r = await runHelper(process.execPath, [script, boardPath], { timeoutMs: BACKUP_HELPER_TIMEOUT_MS, maxBuffer: 1 << 20 });
  type Printed = { created?: boolean; dir?: string; fingerprint?: string; error?: unknown };
  let printed: Printed | null = null;
  try {
    const v: unknown = JSON.parse(r.stdout);
    if (v && typeof v === 'object' && !Array.isArray(v)) printed = v as Printed;
  } catch {
    printed = null;
  }
  // On a failure of its own it prints {"error": "..."} and exits 1.
  if (!r.ok) return { error: typeof printed?.error === 'string' ? `${printed.error} (${r.error})` : r.error };
  if (!printed) return { error: `backup helper ${script} printed ${JSON.stringify(r.stdout.slice(0, 200))}, not one JSON object` };
  return printed as { created?: boolean; dir?: string; fingerprint?: string; error?: string };
}
