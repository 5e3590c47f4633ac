/**
 * The supervisor daemon: owns one board and the lifecycle of its workers. This class keeps
 * ownership (the owner lock of a SQLite board; on a PostgreSQL board, this host's ownership:
 * host-owner.ts), start and stop, and the loop and its wake-ups; one tick, its steps in order and
 * their guards, is tick.ts. Each tick step is a module of its own (steps/), each periodic service
 * too (services/); the tick's transaction is tick-tx.ts; where the board's local files live is
 * boardFiles (board/src/board-files.ts).
 */
import { mkdirSync } from 'node:fs';
import { OwnerLock, changeFeedOf, isPgLocation, localConnectionOf, resolveBoardPath, supervisorRegistryOf } from '@kanban-supervisor/board';
import { EXIT, heartbeatFromMemory, pollPeriodMs, type SupervisorConfig } from '@kanban-supervisor/policies';
import { Reaper, SystemdNotifier } from '@kanban-supervisor/reaper';
import { ReportBatch } from './channel/batch.js';
import { ReportServer } from './channel/server.js';
import { settleExitReports } from './exit-skills.js';
import { acquireSharedBoard } from './host-owner.js';
import { HttpSide } from './http.js';
import type { Logger } from './logger.js';
import { acquireOwnerLock } from './owner.js';
import { BeatSlots } from './services/beat-slots.js';
import { LogBound } from './services/log-bound.js';
import { openAtStart } from './startup.js';
import { createContext, type SupervisorOptions, type TickContext } from './state.js';
import { ownerRow, statusLine, writeStatusFile } from './status-file.js';
import { account } from './steps/account.js';
import { Tick } from './tick.js';
import { TickTx } from './tick-tx.js';

export type { SupervisorOptions } from './state.js';

export class Supervisor {
  readonly boardPath: string;
  private readonly ctx: TickContext;
  private lock: OwnerLock | null = null;
  private wake: (() => void) | null = null;
  /** A wake-up asked for while a tick was running: the next wait is skipped. */
  private wakeRequested = false;
  private pollTimer: NodeJS.Timeout | null = null;
  /** The running poll timer's period (null: none). */
  private pollTimerMs: number | null = null;
  /** One tick: its steps, guards and transaction (tick.ts). */
  private readonly ticker: Tick;
  /** sd_notify (NOTIFY_SOCKET): READY, WATCHDOG and STATUS from the loop, STOPPING on the way out. */
  private readonly notifier: SystemdNotifier;
  /** The HTTP server (health, metrics, API, page) and its view of this supervisor. */
  private readonly http: HttpSide;
  /** The board's change version the HTTP view saw last (its listeners fire when it moves). */
  private httpSeenVersion = -1;
  /** The report channel (REPORT_CHANNEL=on): workers' reports, group-committed (channel/). */
  private readonly channel: ReportServer | null;
  private resolveDone!: (code: number) => void;
  readonly done: Promise<number>;

  constructor(
    private readonly cfg: SupervisorConfig,
    private readonly log: Logger,
    private readonly opts: SupervisorOptions = {},
  ) {
    this.boardPath = isPgLocation(cfg.db) ? cfg.db : resolveBoardPath(cfg.db);
    // A child's exit wakes the loop at once (the next tick reaps it and refills the slot).
    const reaper = new Reaper({ logger: log, onExit: () => this.requestWake() });
    this.ctx = createContext({ cfg, log, opts, reaper, boardPath: this.boardPath });
    this.ticker = new Tick(this.ctx, new LogBound(this.ctx));
    this.done = new Promise((r) => (this.resolveDone = r));
    this.notifier = SystemdNotifier.fromEnv(process.env, { logger: log });
    this.http = new HttpSide(this.ctx, () => this.requestWake(), () => this.armPoll());
    this.channel = cfg.reportChannel
      ? new ReportServer(
          this.ctx,
          new ReportBatch({
            board: () => (this.state.quarantine ? null : this.state.board),
            log,
            windowMs: cfg.reportBatchWindowMs,
            heartbeatWindowMs: cfg.reportHeartbeatWindowMs,
            metrics: this.ctx.metrics,
            memoryBeat: (runId) => this.vouches(runId),
            fenced: (runId, token) => this.state.slots?.fenced(runId, token),
          }),
        )
      : null;
  }

  /**
   * Whether this supervisor vouches for a run's worker now: a bare heartbeat of it may be answered
   * from memory, and one read in its heartbeat slot acknowledged (policies heartbeatFromMemory).
   * Freshness on a monotonic clock: a wall clock stepped back must not keep an old tick commit or
   * lease renewal recent.
   */
  private vouches(runId: string): boolean {
    const cfg = this.cfg;
    const s = this.state;
    const w = s.workers.get(runId);
    return heartbeatFromMemory({
      now: performance.now(),
      workerLive: w !== undefined && w.stopReason === null && w.term === null && w.leaderExit === null && w.cleanup === null,
      stopping: s.stopping !== null || s.stopped,
      quarantined: s.quarantine !== null || s.board === null,
      tickIntervalMs: cfg.tickIntervalMs,
      tickCommittedAt: s.tickCommittedAt,
      lease: this.ctx.kind === 'postgres' ? { ms: cfg.leaseSeconds * 1000, renewedAt: s.leaseRenewedAt } : null,
    });
  }

  private get state() {
    return this.ctx.state;
  }

  /** The tick context (its metrics, its state): for the HTTP view and in-process tests; read it, never write it. */
  get context(): TickContext {
    return this.ctx;
  }

  // ------------------------------------------------------------------ ownership, start, stop

  /**
   * Take the board's owner lock (SQLite), or this host's ownership of a shared board (PostgreSQL:
   * the board is opened first, in its local state folder's name). Returns false (after printing
   * why) if another supervisor owns it.
   */
  async acquire(): Promise<boolean> {
    const stopping = () => this.state.stopping !== null;
    if (this.ctx.kind === 'postgres') return acquireSharedBoard(this.ctx, stopping);
    this.lock = await acquireOwnerLock(this.ctx, stopping);
    return this.lock !== null;
  }

  async start(): Promise<number> {
    const s = this.state;
    if (this.opts.standby) this.log.info({ event: 'standby', board: this.ctx.boardLabel }, 'waiting for the board owner to go away');
    if (this.opts.standby) this.notifier.status('standby: waiting for the board owner to go away');
    // Before the owner lock: /readyz answers 503 "standby" while we wait for it.
    await this.http.start();
    let acquired = false;
    try {
      acquired = await this.acquire();
    } finally {
      if (!acquired) await this.http.stop();
    }
    if (!acquired) return s.stopping ? EXIT.ok : EXIT.boardOwned;
    // Our identity, at once: a refused `run` or `status` names us, not the previous (dead) owner.
    writeStatusFile(this.ctx, 'starting');
    try {
      await openAtStart(this.ctx);
    } catch (e) {
      await this.http.stop();
      this.lock?.release();
      await s.host?.hold.release();
      await s.board?.close().catch(() => undefined);
      throw e;
    }
    mkdirSync(this.ctx.logDir, { recursive: true, mode: 0o700 });
    // The report channel, before the first worker is spawned (workers get its path).
    if (this.channel) {
      s.socketPath = await this.channel.start();
      if (s.socketPath) {
        const batch = (s.reports = this.channel.batch);
        s.slots = new BeatSlots({ dir: this.ctx.files.beatDir, log: this.log, vouch: (runId) => this.vouches(runId), beat: (cred, at) => {
            batch.slotBeat(cred, at);
            this.ctx.metrics.slotBeats.inc();
          },
        });
      }
    }
    writeStatusFile(this.ctx);
    if (!s.quarantine) await s.board!.setOwner(ownerRow(this.ctx));
    this.log.info(
      {
        event: 'started',
        board: this.ctx.boardLabel,
        ...(this.ctx.hostId !== null ? { hostId: this.ctx.hostId, supervisorId: s.supervisorId } : {}),
        maxConcurrentWorkers: this.cfg.maxConcurrentWorkers,
        reclaimGraceSeconds: this.cfg.reclaimGraceSeconds,
        subreaper: this.ctx.reaper.subreaperActive,
        procBackend: this.ctx.reaper.procBackend,
      },
      'supervisor started',
    );
    if (!s.quarantine) s.lastDataVersion = changeFeedOf(s.board!)?.changeVersion() ?? -1;
    // A board told of changes (PostgreSQL's LISTEN/NOTIFY) wakes the loop at once, not at the next poll.
    if (s.board) changeFeedOf(s.board)?.onChange?.(() => this.poll());
    this.armPoll();
    await this.http.owned();
    void this.loop();
    return this.done;
  }

  /** SIGTERM/SIGINT: stop claiming, reclaim every worker (abandoned), exit once all are gone. A second call hurries. */
  requestStop(signal: string): void {
    const s = this.state;
    if (s.stopping) {
      s.stopping.hurry = true;
      this.log.warn({ event: 'stop_hurried', signal }, 'second signal: SIGKILL what is left');
    } else {
      s.stopping = { since: Date.now(), hurry: false };
      this.notifier.stopping(this.notifyStatusText());
      this.log.info({ event: 'stopping', signal, workers: s.workers.size, detach: !!this.opts.detachOnExit }, 'stopping');
    }
    this.requestWake();
  }

  private async finishedStopping(): Promise<boolean> {
    const s = this.state;
    if (s.stopping && this.opts.detachOnExit) {
      await this.shutdown(0, 'detached: workers left running for the next supervisor');
      return true;
    }
    // Orphans being terminated (their grace running) are waited for too: nothing is left behind.
    const nothingLeft = s.workers.size === 0 && s.strays.size === 0 && this.ctx.reaper.orphansPending() === 0;
    if (s.stopping && nothingLeft) {
      // The last runs' accounting, in a transaction of its own.
      if (!s.quarantine) await this.ticker.inTx('account', async (tx) => {
        await account(this.ctx, tx, Date.now());
        await tx.commit();
      });
      await this.shutdown(0, 'all workers gone');
      return true;
    }
    // Quarantined (the board is damaged: check and recover are an operator's) with nothing left to
    // supervise, --until-idle can never become idle: it gives up (exit 1) rather than wait forever.
    if (this.opts.untilIdle && !s.stopping && s.quarantine && nothingLeft) {
      this.log.error({ event: 'until_idle_gave_up', board: this.ctx.boardPath, reason: s.quarantine.reason }, 'the board is damaged (quarantined): --until-idle gives up; run `kanban-supervisor check` and `kanban-supervisor recover`');
      await this.shutdown(EXIT.failed, 'the board is quarantined: --until-idle gave up');
      return true;
    }
    if (this.opts.untilIdle && !s.stopping && !s.quarantine && nothingLeft) {
      let idle = false;
      await this.ticker.guard('idle', async () => {
        idle = await s.board!.idle();
      });
      if (idle) {
        await this.shutdown(0, 'idle');
        return true;
      }
    }
    return false;
  }

  private async shutdown(code: number, why: string): Promise<void> {
    const s = this.state;
    // Ownership taken by another supervisor of this host: the owner row and status file are its own.
    const displaced = s.host?.taken === true;
    s.stopped = true;
    this.notifier.stopping(`stopping: ${why}`);
    this.armPoll();
    await this.http.stop();
    if (!s.quarantine) {
      const board = s.board!;
      try {
        // What is still held for the board, in a transaction of its own; then the owner row.
        // The reports still queued on the channel go with it (its commit takes them).
        const tx = new TickTx(s);
        s.reports?.writeMemoryBeatsNow();
        try {
          settleExitReports(this.ctx);
          await tx.writeHeld();
          await tx.commit();
        } finally {
          tx.close();
        }
        if (!displaced) await board.setOwner(ownerRow(this.ctx, 'stopped'));
        await supervisorRegistryOf(board)?.markSupervisorStopped(Date.now());
      } catch {
        /* best effort */
      }
      // A local connection's close never throws (an unfinished checkpoint leaves a valid WAL, and
      // SQLite recovers from a connection that could not be closed cleanly); a networked board's
      // close can fail, and is logged.
      const local = localConnectionOf(board);
      if (local) local.closeNow('PASSIVE');
      else {
        try {
          await board.close();
        } catch (e) {
          this.log.error({ event: 'close_failed', err: e }, 'closing the board failed');
        }
      }
    }
    // The channel closes once nothing more can be committed (what is left is answered unavailable).
    await this.channel?.stop();
    s.slots?.stop();
    s.slots = null;
    s.reports = null;
    s.socketPath = null;
    if (!displaced) writeStatusFile(this.ctx, 'stopped');
    this.lock?.release();
    await s.host?.hold.release();
    // The report channel's totals since the start (answers by outcome, commits that carried reports).
    this.log.info({ event: 'stopped', reason: why, ...(this.channel ? { reports: this.channel.batch.stats } : {}) }, 'supervisor stopped');
    this.resolveDone(code);
  }

  // ------------------------------------------------------------------ loop and wake-ups

  /**
   * The poll's period now (policies pollPeriodMs): quick with a free slot (another process's
   * commit may be a task to dispatch at once) or while stopping (exits to collect), slower with only
   * an open event stream (every commit to follow), none for a full pool with nothing watching (its
   * workers' exits wake the loop by themselves: SIGCHLD, onExit).
   */
  private pollPeriod(): number | null {
    const s = this.state;
    return pollPeriodMs({ stopped: s.stopped, stopping: !!s.stopping, freeSlot: s.workers.size < this.cfg.maxConcurrentWorkers, watched: this.http.watched }, this.opts.pollMs);
  }

  /** Run the poll timer at the period wanted now (checked after every tick, when a stream opens, and by the poll itself). */
  private armPoll(): void {
    const period = this.pollPeriod();
    if (period === this.pollTimerMs) return;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = period === null ? null : setInterval(() => this.poll(), period);
    this.pollTimerMs = period;
  }

  private poll(): void {
    const s = this.state;
    if (this.pollPeriod() !== this.pollTimerMs) {
      this.armPoll();
      if (this.pollTimerMs === null) return;
    }
    // The HTTP view's event streams follow every commit of other processes (workers, the CLI);
    // with no stream open, nothing is read for them (a full pool's poll then costs nothing).
    if (this.http.watched && s.board && !s.quarantine) {
      try {
        const v = changeFeedOf(s.board)?.changeVersion();
        if (v !== undefined && v !== this.httpSeenVersion) {
          this.httpSeenVersion = v;
          this.http.changed();
        }
      } catch {
        /* the tick reports board errors */
      }
    }
    // A full pool has nothing to dispatch, and exits wake the loop by themselves (onExit).
    if (s.workers.size >= this.cfg.maxConcurrentWorkers && !s.stopping) return;
    const exits = this.ctx.reaper.drainExits();
    if (exits.length) {
      s.pendingExits.push(...exits);
      this.requestWake();
      return;
    }
    if (!s.board || s.quarantine) return;
    try {
      const v = changeFeedOf(s.board)?.changeVersion();
      if (v !== undefined && v !== s.lastDataVersion) {
        s.lastDataVersion = v;
        // Another process committed. Only a free slot makes that urgent (a new task to dispatch);
        // everything else is picked up by the periodic tick.
        if (s.workers.size < this.cfg.maxConcurrentWorkers && !s.stopping) this.requestWake();
      }
    } catch {
      /* the tick reports board errors */
    }
  }

  private async loop(): Promise<void> {
    while (!this.state.stopped) {
      // While it ticks, the tick's transaction carries the channel's reports (no report commit of their own).
      const reports = this.state.reports;
      await reports?.hold();
      try {
        if (await this.iteration()) break;
      } finally {
        reports?.release();
      }
      this.armPoll(); // a pool that filled or freed a slot in this tick
      // A wake-up asked for meanwhile, or a dispatch that claimed a slice of the free slots only.
      if (this.wakeRequested || this.state.dispatchMore) {
        this.wakeRequested = false;
        this.state.dispatchMore = false;
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

  /** One tick and what follows it; true when the supervisor is done. */
  private async iteration(): Promise<boolean> {
    const begun = performance.now();
    this.ticker.holdMs = 0;
    // Another supervisor of this host owns the board now: leave its workers to it (exit 4).
    if ((await this.ticker.run()) === 'displaced') await this.shutdown(EXIT.boardOwned, "another supervisor took this host's ownership: workers left running for it");
    this.ctx.metrics.tickDone(performance.now() - begun, this.ticker.holdMs, this.state.workers.size, this.cfg.maxConcurrentWorkers);
    this.notifyTick();
    // Between two ticks: the HTTP view's operator writes (each its own transaction, on a
    // connection of its own), then its listeners (event streams).
    if (!this.state.stopped) await this.http.afterTick(Date.now());
    if (this.state.stopped) return true;
    return this.finishedStopping();
  }

  private requestWake(): void {
    if (this.wake) this.wake();
    else this.wakeRequested = true;
  }

  /** Until the next tick: the tick interval, or sooner when a SIGKILL deadline falls due. */
  private nextWaitMs(): number {
    const s = this.state;
    let wait = Math.min(this.cfg.tickIntervalMs, this.notifier.msUntilWatchdog());
    const now = Date.now();
    // A scheduled task falls due: wake then (a free slot claims it at once).
    if (s.nextDueAt !== null && s.workers.size < this.cfg.maxConcurrentWorkers) wait = Math.min(wait, Math.max(0, s.nextDueAt - now + 1));
    for (const w of s.workers.values()) {
      if (w.term && w.term.phase === 'term') {
        const grace = s.stopping?.hurry ? 0 : w.graceMs;
        wait = Math.min(wait, Math.max(0, w.term.sigtermAt + grace - now + 1));
      }
    }
    return wait;
  }

  /**
   * sd_notify, from the tick loop itself (never a timer: a loop stuck in a tick stops the pings and
   * systemd's watchdog restarts us). READY=1 once the owner lock is held and a tick committed (or
   * the board is quarantined: the workers are supervised all the same).
   */
  private notifyTick(): void {
    if (!this.notifier.enabled) return;
    const now = Date.now();
    if (!this.notifier.ready && (this.state.committedOnce || this.state.quarantine)) this.notifier.notifyReady(this.notifyStatusText(), now);
    this.notifier.watchdog(now);
    this.notifier.status(this.notifyStatusText(), now);
  }

  /** STATUS= for `systemctl status` (status-file.ts). */
  private notifyStatusText(): string {
    return statusLine(this.ctx);
  }
}
