/**
 * The supervisor daemon: owns one board and the lifecycle of its workers.
 *
 * A tick runs the five steps in order, each guarded so that one step's failure never skips
 * the others: reap, detect crashes, reclaim, account, dispatch. Nothing in a tick sleeps:
 * reclaim is a state machine across ticks (SIGTERM now, SIGKILL at the deadline, the run ends
 * only once the whole process group is confirmed gone).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, statSync, truncateSync, unlinkSync, appendFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BoardDamagedError,
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
  type RunOutcome,
  type StormState,
  type SupervisorConfig,
} from '@kanban-supervisor/policies';
import { Reaper, alive, bootId, childPids, findByEnv, groupEmpty, isGone, processTable, resolveExecutable, type ExitRecord, type ProcessIdentity, type TerminationState } from '@kanban-supervisor/reaper';
import { readSpool, removeSpoolEntry, spoolDir } from '@kanban-supervisor/worker-runtime';
import type { Logger } from './logger.js';

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
 * The supervisor's connection: a short busy timeout (its event loop must not block long), then
 * retries on later turns of the event loop (3 times), then the tick step fails and the next tick
 * tries again. (Polling the lock every 0.2 ms instead was measured: the supervisor then wins the
 * lock ahead of workers sleeping in their busy handler, and throughput fell.)
 */
const SUPERVISOR_CONNECTION = { busyTimeoutMs: 50, busyRetries: 3 } as const;

/** The spawns of one dispatch, as they go on the board (recordSpawns). */
type SpawnBatch = { at: number; items: Array<{ runId: string; info: SpawnInfo }> };

export interface SupervisorOptions {
  standby?: boolean;
  untilIdle?: boolean;
  detachOnExit?: boolean;
  passEnv?: string[];
  /** Milliseconds between cheap change polls (data_version, child exits). */
  pollMs?: number;
}

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
  private tickErrors = 0;
  private quarantine: Quarantine | null = null;
  /** Exit observations made while the board could not take them; written once it is healthy. */
  private heldObs: ExitObservation[] = [];
  /** Spawns not yet on the board: written with the next tick's group (one commit per tick). */
  private pendingSpawns: SpawnBatch[] = [];
  /** What the open write group holds that lives only in memory: restored if the group is lost. */
  private uncommitted: { obs: ExitObservation[]; spawns: SpawnBatch[] } = { obs: [], spawns: [] };
  private pollTimer: NodeJS.Timeout | null = null;
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
        const owner = await SqliteBoard.readOwner(this.boardPath);
        const who = owner
          ? `supervisor pid ${owner.pid} on host ${owner.host} since ${new Date(owner.startedAt).toISOString()}`
          : 'another supervisor';
        process.stderr.write(`kanban-supervisor: board ${this.boardPath} is owned by ${who}; not starting (use --standby to wait)\n`);
        return false;
      }
      if (this.stopping) return false;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async start(): Promise<number> {
    if (this.opts.standby) this.log.info({ event: 'standby', board: this.boardPath }, 'waiting for the board owner to go away');
    if (!(await this.acquire())) return this.stopping ? 0 : EXIT_BOARD_OWNED;
    try {
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
      updatedAt: Date.now(),
      state: state ?? (q ? 'quarantined' : this.stopping ? 'stopping' : 'running'),
      maxConcurrentWorkers: this.cfg.maxConcurrentWorkers,
      liveWorkers: this.workers.size,
      quarantine: q ? { since: q.since, reason: q.reason, fingerprint: q.fingerprint, backup: q.backup, nextProbeAt: q.nextProbeAt } : null,
    };
    try {
      const tmp = `${this.boardPath}.supervisor.json.tmp`;
      writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
      renameSync(tmp, `${this.boardPath}.supervisor.json`);
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

  private requestWake(): void {
    if (this.wake) this.wake();
    else this.wakeRequested = true;
  }

  /** Until the next tick: the tick interval, or sooner when a SIGKILL deadline falls due. */
  private nextWaitMs(): number {
    let wait = this.cfg.tickIntervalMs;
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
    if (this.stopping && this.workers.size === 0) {
      if (!this.quarantine) await this.guard('account', () => this.account(Date.now()));
      await this.shutdown(0, 'all workers gone');
      return true;
    }
    if (this.opts.untilIdle && !this.stopping && !this.quarantine && this.workers.size === 0) {
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

  private async guard(step: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.tickErrors++;
      if (e instanceof WriteGroupLostError) this.restoreUncommitted();
      const cls = classifyError(e);
      const level = cls === 'busy' ? 'warn' : 'error';
      if (!this.quarantine) this.log[level]({ event: 'tick_step_failed', step, errorClass: cls, err: e }, `tick step ${step} failed`);
      if (cls === 'damaged' || cls === 'io') await this.suspectDamage(e);
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
    try {
      await this.guard('spool', () => this.ingestSpool());
      await this.guard('reap', () => this.reap(now));
      await this.guard('detect', async () => {
        live = await this.board.liveRuns();
        await this.detect(live, now);
      });
      await this.guard('sample', async () => this.sample(now));
      await this.guard('reclaim', () => this.reclaim(live, now));
      await this.guard('account', () => this.account(now));
      await this.guard('dispatch', () => this.dispatch(now));
      if (!this.quarantine && this.board === board) await this.guard('commit', () => this.commitGroup());
    } finally {
      board.endGroup();
    }
    await this.guard('housekeeping', async () => this.housekeeping(now));
  }

  /** Commit the tick's writes so far; what they carried from memory is then on the board. */
  private async commitGroup(): Promise<void> {
    await this.board.commitGroup();
    this.uncommitted = { obs: [], spawns: [] };
  }

  /** The tick's transaction was rolled back: put what it carried from memory back in line. */
  private restoreUncommitted(): void {
    this.heldObs = this.uncommitted.obs.concat(this.heldObs);
    this.pendingSpawns = this.uncommitted.spawns.concat(this.pendingSpawns);
    this.uncommitted = { obs: [], spawns: [] };
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
        outcome: (w.stopReason === 'hung_after_report' ? 'crashed' : w.stopReason) as RunOutcome,
        error: `reclaimed (${REASON_TEXT[w.stopReason] ?? w.stopReason}); worker ${how}`,
      };
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
      this.log.info({ event: 'worker_exited', task: w.taskId, run: w.runId, pid: ex.pid, exitCode: ex.exitCode, signal: ex.signal }, 'worker exited');
    }
    for (const w of this.workers.values()) {
      if (obs.some((o) => o.runId === w.runId)) continue;
      if (w.leaderExit) {
        // The leader is gone; whatever it left in its group is being terminated.
        w.cleanup = this.reaper.cleanupAfterExit(w.identity);
        if (w.cleanup.phase === 'gone' || isGone(w.identity)) {
          obs.push({ runId: w.runId, at: now, gone: true });
          gone.push(w);
        }
      } else if (!w.own && !alive(w.identity) && isGone(w.identity)) {
        // Adopted worker: no exit status to collect; its outcome comes from its own report.
        const u = this.unreportedError(w, null);
        obs.push({ runId: w.runId, at: now, gone: true, outcomeIfUnreported: u.outcome, errorIfUnreported: u.error });
        gone.push(w);
        this.log.info({ event: 'worker_exited', task: w.taskId, run: w.runId, pid: w.identity.pid, adopted: true }, 'adopted worker gone');
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
    const obs: ExitObservation[] = [];
    // Runs whose end is observed but not on the board yet (written at the accounting, or waiting
    // for a retry after a failed write): not crashes to detect.
    const observed = new Set(this.heldObs.map((o) => o.runId));
    for (const run of live) {
      if (this.workers.has(run.id) || observed.has(run.id)) continue;
      let id = this.identityOf(run);
      if (!id && run.status === 'starting') {
        // Spawned, but its supervisor died before recording the pid: find it by its run id.
        const found = findByEnv('KANBAN_RUN_ID', run.id)[0];
        if (found) {
          id = found;
          await this.board.recordSpawn(run.id, { pid: found.pid, pgid: found.pgid, procStartTime: found.startTime, bootId: found.bootId }, now);
        }
      }
      if (id && id.bootId === this.boot && alive(id)) {
        this.adopt(run, id);
        continue;
      }
      if (id && id.bootId === this.boot && !isGone(id)) {
        // Leader gone but part of its group lives on: adopt it so that cleanup finishes the job.
        const w = this.adopt(run, id);
        w.leaderExit = { pid: id.pid, exitCode: null, signal: null, at: now };
        continue;
      }
      if (id && id.bootId !== this.boot) {
        obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: 'abandoned', errorIfUnreported: 'the machine rebooted under the run' });
        continue;
      }
      if (!pastCrashGrace(run.startedAt, now, this.cfg.crashGraceSeconds)) continue;
      const error = id
        ? `worker pid ${id.pid} is gone (or a zombie, or its pid was reused) without reporting an outcome`
        : 'no worker process was recorded for this run (the supervisor stopped while starting it)';
      obs.push({ runId: run.id, at: now, gone: true, outcomeIfUnreported: run.stopReason === 'abandoned' ? 'abandoned' : 'crashed', errorIfUnreported: error });
      this.log.warn({ event: 'crash_detected', task: run.taskId, run: run.id, pid: run.pid, error }, 'run crashed');
    }
    this.heldObs.push(...obs);
  }

  private identityOf(run: Run): ProcessIdentity | null {
    if (run.pid === null || run.procStartTime === null || run.bootId === null) return null;
    return { pid: run.pid, pgid: run.pgid ?? run.pid, startTime: run.procStartTime, bootId: run.bootId };
  }

  private adopt(run: LiveRun, id: ProcessIdentity): Worker {
    this.reaper.track(id);
    const w = this.register(run.id, run.taskId, id, {
      own: false,
      graceSeconds: run.skillReclaimGraceSeconds,
      stopReason: run.stopReason,
      sigkillRecorded: run.sigkillAt !== null,
      logPath: run.logPath,
    });
    this.log.info({ event: 'adopted', task: run.taskId, run: run.id, pid: id.pid }, 'adopted a live worker');
    return w;
  }

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
      if (w.logPath) this.boundLog(w);
    }
  }

  /** Keep each run's log under LOG_MAX_BYTES: when over, truncate it and say so in the log. */
  private boundLog(w: Worker): void {
    try {
      const size = statSync(w.logPath!).size;
      if (size > this.cfg.logMaxBytes) {
        truncateSync(w.logPath!, 0);
        appendFileSync(w.logPath!, `[kanban-supervisor: log truncated at ${size} bytes (LOG_MAX_BYTES=${this.cfg.logMaxBytes})]\n`);
        this.log.warn({ event: 'log_truncated', task: w.taskId, run: w.runId, pid: w.identity.pid, bytes: size }, 'worker log truncated');
      }
    } catch {
      /* log gone: nothing to bound */
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
          w.sigkillRecorded = true;
          if (!this.quarantine) await this.board.recordSigkill(w.runId, w.term.sigkillAt ?? now);
          this.log.warn({ event: 'sigkill_sent', task: w.taskId, run: w.runId, pid: w.identity.pid, reason: w.stopReason }, 'SIGKILL sent');
        }
        if (w.term.phase === 'gone') await this.confirmGone(w, now);
        continue;
      }
      const run = runs.get(w.runId);
      if (!run) continue;
      let reason: string | null = this.stopping && !this.opts.detachOnExit && run.status !== 'ended' ? 'abandoned' : null;
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
        { event: 'sigterm_sent', task: w.taskId, run: w.runId, pid: w.identity.pid, reason, graceMs: w.graceMs },
        `reclaiming worker: ${REASON_TEXT[reason] ?? reason}`,
      );
    }
  }

  /** A reclaimed worker whose whole group is gone but whose exit Node has not reported (adopted). */
  private async confirmGone(w: Worker, now: number): Promise<void> {
    if (w.own && !w.leaderExit) return; // the exit event will come through reap with its status
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
    for (const item of readSpool(this.boardPath)) {
      if ('error' in item) {
        const rejected = join(spoolDir(this.boardPath), 'rejected');
        mkdirSync(rejected, { recursive: true, mode: 0o700 });
        renameSync(item.path, join(rejected, item.path.split('/').pop()!));
        this.log.error({ event: 'spool_rejected', path: item.path, error: item.error }, 'unreadable spool file set aside');
        continue;
      }
      const e = item.entry;
      const cred = { taskId: e.taskId, runId: e.runId, token: e.token };
      const ctx = { task: e.taskId, run: e.runId, pid: e.pid, outcome: e.report.outcome };
      try {
        await this.board.report(cred, e.report, e.at);
        this.log.info({ event: 'spool_applied', ...ctx }, 'spooled result applied');
      } catch (err) {
        if (!(err instanceof NotCurrentError)) throw err;
        if (!(await this.board.reportApplied(cred, e.report.outcome))) {
          // The run was reclaimed meanwhile, or the damage destroyed it: never delete a result
          // that is not on the board. Keep it aside for the operator.
          const kept = join(spoolDir(this.boardPath), 'unapplied');
          mkdirSync(kept, { recursive: true, mode: 0o700 });
          renameSync(item.path, join(kept, item.path.split('/').pop()!));
          this.log.error({ event: 'spool_unapplied', ...ctx, keptAt: kept }, 'spooled result could not be applied (its run is not current); kept in spool/unapplied');
          continue;
        }
        // Applied by an earlier ingestion that died before deleting the file.
        this.log.info({ event: 'spool_already_applied', ...ctx }, 'spooled result was already on the board');
      }
      await this.commitGroup(); // on the board before the file goes
      removeSpoolEntry(item.path);
    }
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
      decided.map(({ run, decision }) => ({ runId: run.id, action: decision.action === 'done' ? { action: 'done' as const } : decision })),
      now,
    );
    for (const { run, task, decision } of decided) {
      const ctx = { task: task.id, run: run.id, pid: run.pid, outcome: run.outcome };
      if (run.outcome && countsAsFailure(run.outcome) && this.cfg.stormDistinctTasks > 0) {
        const r = recordFailure(this.storm, task.id, now, { ...DEFAULT_STORM, distinctTasks: this.cfg.stormDistinctTasks });
        this.storm = r.state;
        if (r.tripped) {
          this.log.error({ event: 'storm_pause', until: this.storm.pausedUntil, trips: this.storm.trips }, 'many different tasks are failing: pausing dispatch');
        }
      } else if (run.outcome === 'completed') {
        this.storm = recordSuccess(this.storm);
      }
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
    const blocked = await this.board.blockUnknownSkillTasks(now);
    for (const b of blocked) this.log.warn({ event: 'task_blocked', task: b.taskId, reason: b.reason }, 'task blocked');
    const free = this.cfg.maxConcurrentWorkers - this.workers.size;
    if (free <= 0) return;
    // One transaction claims as many tasks as there are free slots.
    const claims = await this.board.claimBatch(free, Date.now(), (runId) => join(this.logDir, `${runId}.log`));
    if (claims.length === 0) return;
    // The claims (with every other write of this tick) are on the board before any worker starts.
    await this.commitGroup();
    const spawns = claims.map(async (claim) => {
      const { task, run, skill, token } = claim;
      const ctx = { task: task.id, run: run.id, skill: skill.name };
      const env = this.workerEnv(skill.env, { taskId: task.id, runId: run.id, token, graceSeconds: skill.reclaimGraceSeconds ?? this.cfg.reclaimGraceSeconds, heartbeatTimeoutSeconds: skill.heartbeatTimeoutSeconds ?? this.cfg.heartbeatTimeoutSeconds });
      const cwd = skill.cwd ?? undefined;
      if (!resolveExecutable(skill.argv[0]!, env.PATH ?? '', cwd)) {
        const reason = `skill ${JSON.stringify(skill.name)}: command ${JSON.stringify(skill.argv[0])} is not an executable file${skill.argv[0]!.includes('/') ? '' : ' on PATH'}`;
        await this.board.endUnspawned(run.id, 'spawn_failed', reason, Date.now());
        await this.board.applyAccounting(run.id, { action: 'block', consecutiveFailures: task.consecutiveFailures, reason }, Date.now());
        this.log.warn({ event: 'task_blocked', ...ctx, reason }, 'task blocked before spawning');
        return null;
      }
      const res = await this.reaper.spawn({ argv: skill.argv, cwd, env, logPath: run.logPath! });
      if (!res.ok) {
        const error = `spawn of skill ${skill.name} failed: ${res.message}`;
        await this.board.endUnspawned(run.id, 'spawn_failed', error, Date.now());
        this.log.warn({ event: 'spawn_failed', ...ctx, code: res.code, error }, 'spawn failed');
        return null;
      }
      const id = res.identity;
      this.register(run.id, task.id, id, { own: true, graceSeconds: skill.reclaimGraceSeconds, stopReason: null, sigkillRecorded: false, logPath: run.logPath });
      return { claim, id, ctx };
    });
    const settled = await Promise.allSettled(spawns);
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
      this.log.info({ event: 'spawned', ...ctx, pid: id.pid, attempt: claim.task.consecutiveFailures + 1, log: claim.run.logPath }, 'worker spawned');
    }
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private workerEnv(
    skillEnv: Record<string, string>,
    k: { taskId: string; runId: string; token: string; graceSeconds: number; heartbeatTimeoutSeconds: number },
  ): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of BASE_ENV) {
      const v = process.env[name];
      if (v !== undefined) env[name] = v;
    }
    env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
    Object.assign(env, skillEnv);
    for (const name of this.opts.passEnv ?? []) {
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

  /** Keep the newest 1,000 run logs; never a live worker's. */
  private pruneLogs(): void {
    const liveLogs = new Set([...this.workers.values()].map((w) => w.logPath));
    let files: Array<{ path: string; mtime: number }>;
    try {
      files = readdirSync(this.logDir)
        .filter((f) => f.endsWith('.log'))
        .map((f) => {
          const path = join(this.logDir, f);
          return { path, mtime: statSync(path).mtimeMs };
        });
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

const require = createRequire(import.meta.url);

/** Back the damaged board up from a separate process (it holds no connection to the file). */
function runBackupHelper(boardPath: string): Promise<{ created?: boolean; dir?: string; fingerprint?: string; error?: string }> {
  let script: string;
  try {
    script = require.resolve('@kanban-supervisor/board/backup-main');
  } catch (e) {
    return Promise.resolve({ error: `backup helper not found: ${(e as Error).message}` });
  }
  return new Promise((resolve) => {
    execFile(process.execPath, [script, boardPath], { timeout: 10 * 60_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return resolve({ error: `${err.message}${stderr ? `: ${String(stderr).trim()}` : ''}` });
      try {
        resolve(JSON.parse(String(stdout)) as { created: boolean; dir: string; fingerprint: string });
      } catch {
        resolve({ error: `backup helper printed ${JSON.stringify(String(stdout).slice(0, 200))}` });
      }
    });
  });
}
