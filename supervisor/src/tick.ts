/**
 * One supervisor tick (the loop that runs it is supervisor.ts): its steps in order, each guarded,
 * and the tick's transaction (tick-tx.ts). Each step is a module of its own (steps/).
 *
 * A tick runs, in order, each step guarded so that one step's failure never skips the others:
 *   reap → spool → lease (PostgreSQL: renewed in a short transaction of its own, with the takeover
 *   of other hosts' supervisors whose lease expired, only with our lease renewed) → detect (+ the stray sweep, once) → sample → reclaim → account (only if the spool step
 *   succeeded) → host (is this host's ownership held?) → dispatch (only if it is and the lease was
 *   renewed) → commit, then housekeeping, retention and the next due time; a lease found lost (taken over) → register again.
 * On PostgreSQL a failed step is retried at the next tick: a connection error is never damage.
 * Quarantined, a tick runs reap, reclaim and the quarantine probe (nothing touches the board).
 * Nothing in a tick sleeps: reclaim is a state machine across ticks (SIGTERM now, SIGKILL at the
 * deadline, the run ends only once the whole process group is confirmed gone).
 */
import { WriteGroupLostError, classifyError, type LiveRun } from '@kanban-supervisor/board';
import { keepHost, reRegister } from './host-owner.js';
import { probeQuarantine, suspectDamage } from './quarantine.js';
import { housekeeping } from './services/housekeeping.js';
import type { LogBound } from './services/log-bound.js';
import { retention } from './services/retention.js';
import { sweepStrays } from './services/orphan-scan.js';
import { sample } from './services/sampling.js';
import type { TickContext } from './state.js';
import { account } from './steps/account.js';
import { detect } from './steps/detect.js';
import { dispatch } from './steps/dispatch.js';
import { reap } from './steps/reap.js';
import { reclaim } from './steps/reclaim.js';
import { spool } from './steps/spool.js';
import { takeover } from './steps/takeover.js';
import { TickTx } from './tick-tx.js';

/**
 * A tick holding the board's write lock longer than this is logged (`write_lock_held`). The tick
 * takes the lock at its first write and no /proc or file work is done while it holds it (a few ms
 * per tick; measured under churn with 64 workers: under 250 ms even with the CPU saturated).
 */
const WRITE_LOCK_WARN_MS = 1000;

export class Tick {
  /** The transaction open now (a tick's, or the last accounting's), if any: the guards restore it when lost. */
  private tx: TickTx | null = null;
  /** The longest write-lock hold of the last tick's transaction, ms (metrics). */
  holdMs = 0;

  constructor(
    private readonly ctx: TickContext,
    private readonly logs: LogBound,
  ) {}

  private get log() {
    return this.ctx.log;
  }

  /** Run one tick step; a failure is logged and the tick goes on. Returns whether the step succeeded. */
  async guard(step: string, fn: () => Promise<void> | void): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (e) {
      if (e instanceof WriteGroupLostError) this.tx?.restore();
      const cls = classifyError(e);
      const level = cls === 'busy' ? 'warn' : 'error';
      if (!this.ctx.state.quarantine) this.log[level]({ event: 'tick_step_failed', step, errorClass: cls, err: e }, `tick step ${step} failed`);
      // A PostgreSQL error (a lost connection among them) is transient, never damage: retried next tick.
      if ((cls === 'damaged' || cls === 'io') && this.ctx.kind === 'sqlite') await suspectDamage(this.ctx, e);
      return false;
    }
  }

  /** One guarded step in a transaction of its own, closed after it (what it did not commit is rolled back). */
  async inTx(step: string, fn: (tx: TickTx) => Promise<void>): Promise<boolean> {
    const tx = (this.tx = new TickTx(this.ctx.state));
    try {
      return await this.guard(step, () => fn(tx));
    } finally {
      tx.close();
      this.tx = null;
    }
  }

  /** One tick. Returns 'displaced' when another supervisor of this host took its ownership (the caller stops). */
  async run(): Promise<'displaced' | void> {
    const ctx = this.ctx;
    const s = this.ctx.state;
    const now = Date.now();
    const monoNow = performance.now(); // the lease's renewal time for memory heartbeats (monotonic)
    if (s.quarantine) {
      // Workers are still supervised from memory and /proc; nothing touches the board.
      await this.guard('reap', () => reap(ctx, now));
      await this.guard('reclaim', () => reclaim(ctx, null, [], now));
      await this.guard('probe', () => probeQuarantine(ctx, now));
      if (s.quarantine) return;
    }
    const board = s.board!;
    // Reap before reading the spool: a worker renames its spool file before it exits, so every
    // exit collected here has its spooled report already in place (never judged unreported).
    await this.guard('reap', () => reap(ctx, now));
    // Spooled reports go through the board's fenced worker operation, each committed on its own,
    // before the tick's transaction begins.
    const spoolRead = await this.guard('spool', () => spool(ctx, board));
    // A shared board: this supervisor's lease, renewed in a short transaction of its own (a row
    // lock held for milliseconds, never across the tick's /proc work), with the takeover of other
    // hosts' supervisors whose lease expired. A lease not renewed holds dispatch (and a claim
    // re-checks it: a supervisor taken over claims nothing); one found lost (taken over while we
    // were away) is registered anew after this tick.
    let leased = true;
    let leaseLost = false;
    if (this.ctx.kind === 'postgres') {
      leased = false;
      await this.inTx('lease', async (ltx) => {
        const renewed = await ltx.renewLease(now);
        if (renewed === false) leaseLost = true;
        else await takeover(ctx, ltx, now);
        await ltx.commit();
        leased = renewed !== false;
        if (leased) s.leaseRenewedAt = monoNow;
      });
    }
    // Every other write of the tick goes into one transaction (one commit, one fsync): exits, crash
    // verdicts, accounting and claims. It is committed before anything acts on it outside the
    // board: before a SIGTERM (the fence), before a spawn (the claim).
    let live: LiveRun[] = [];
    const tx = (this.tx = new TickTx(s));
    try {
      // The heartbeat slots as they are now (services/beat-slots.ts), then the channel's reports (a run
      // that reported before it exited is not judged unreported): the stall verdicts below see every
      // beat a worker made before this tick, not one up to a slot read period old.
      await this.guard('slots', () => s.slots?.read(Date.now()));
      await this.guard('reports', () => tx.drainReports());
      await this.guard('detect', async () => {
        live = await tx.liveRuns();
        detect(ctx, tx, live, now);
        sweepStrays(ctx, live);
      });
      await this.guard('sample', () => sample(ctx, this.logs, now));
      await this.guard('reclaim', () => reclaim(ctx, tx, live, now));
      // Exits and crash verdicts wait while a spooled report may still be unread: written first, an
      // unreported-exit verdict would book a run crashed whose result sits in the spool.
      if (spoolRead) await this.guard('account', () => account(ctx, tx, now));
      // Dispatch only while this host's ownership is held and the lease renewed (a shared board;
      // always on SQLite).
      let owned = false;
      await this.guard('host', async () => {
        owned = await keepHost(ctx);
      });
      if (owned && leased) await this.guard('dispatch', () => dispatch(ctx, tx, now));
      if (!s.quarantine && s.board === board) await this.guard('commit', () => tx.commit());
    } finally {
      tx.close();
      this.tx = null;
    }
    // The logs of the workers it spawned are bounded from now on, not from the next tick.
    await this.guard('logs', () => this.logs.track());
    if (leaseLost) await this.guard('register', () => reRegister(ctx));
    // Another supervisor of this host owns the board now: leave its workers to it (exit 4).
    if (s.host?.taken) return 'displaced';
    // Every worker's write waits while the tick holds the write lock (a heartbeat longer than its
    // busy timeout): a long hold is a defect to find, so it is logged.
    const heldMs = tx.longestHoldMs;
    this.holdMs = heldMs;
    if (heldMs > WRITE_LOCK_WARN_MS) {
      this.log.warn({ event: 'write_lock_held', ms: Math.round(heldMs), workers: s.workers.size }, `the tick held the board's write lock for ${Math.round(heldMs)} ms`);
    }
    await this.guard('housekeeping', () => housekeeping(ctx, now));
    // Retention (RETENTION_DAYS): one small batch at most, its own transaction, after the tick's.
    await this.guard('retention', () => retention(ctx, s.retention, Date.now()));
    // The next scheduled task's time (one index seek): the loop wakes for it, not at the next tick.
    await this.guard('due', async () => {
      s.nextDueAt = s.stopping ? null : await board.nextDueAt(Date.now());
    });
  }
}
