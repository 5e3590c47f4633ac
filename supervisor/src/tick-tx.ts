/**
 * The tick's transaction: the one place that begins, commits and restores the supervisor's writes.
 *
 * A tick's writes (exits, crash verdicts, accounting, claims, fences) go into one `BoardTx`: one
 * commit, one fsync. Steps commit it themselves before acting outside the board:
 * - the fence (beginReclaim) before the SIGTERM (steps/reclaim.ts);
 * - the claims (with every earlier write of the tick, the failure counters among them) before a
 *   spawn (steps/dispatch.ts), so the counter is on the board before the next claim;
 * and the tick commits what is left at its end (supervisor.ts). Spooled reports are not written
 * here: they are worker reports, each applied through the board's own fenced operation before the
 * tick's transaction begins (steps/spool.ts). Reports that came through the report channel are:
 * the transaction takes the queue (channel/batch.ts) when the tick begins it and before each of its
 * commits, and answers them once that commit returned (unavailable if it did not land).
 *
 * What the transaction carries from memory (exit observations and spawn records held for the
 * board) is remembered until it commits: a lost transaction (WriteGroupLostError), or one closed
 * without its commit, puts them back in line for the next one. Log lines of state changes wait
 * for the commit, and are dropped with what they describe when it does not land.
 */
import { leaseRenewalOf, type Board, type BoardTx, type ExitObservation, type LeaseRenewal, type SupervisorOps, type TakenOverSupervisor } from '@kanban-supervisor/board';
import type { Applied } from './channel/batch.js';
import type { SpawnBatch, SupervisorState } from './state.js';

export class TickTx implements BoardTx {
  private readonly tx: BoardTx;
  /** Held records written in this transaction since its last commit. */
  private carried: { obs: ExitObservation[]; spawns: SpawnBatch[] } = { obs: [], spawns: [] };
  /** Log lines of state changes written since the last commit: emitted once it commits. */
  private afterCommit: Array<() => void> = [];
  /** Channel reports applied in this transaction since its last commit: answered once it commits. */
  private reports: Applied[] = [];

  /** Begin the transaction on the state's board (writes on the board itself are refused until close()). */
  constructor(private readonly state: SupervisorState) {
    const board: Board | null = state.board;
    if (!board) throw new Error('the board is not open');
    this.tx = board.begin();
  }

  /** Commit the writes so far; what they carried from memory is then on the board, and their logs are emitted. */
  async commit(): Promise<void> {
    await this.drainReports();
    const reports = this.reports;
    this.reports = [];
    try {
      await this.tx.commit();
    } catch (e) {
      for (const a of reports) this.state.reports?.lost(a, e);
      throw e;
    }
    for (const a of reports) this.state.reports?.committed(a);
    this.state.committedOnce = true;
    this.state.tickCommittedAt = performance.now(); // monotonic: see policies heartbeatFromMemory
    this.carried = { obs: [], spawns: [] };
    const logs = this.afterCommit;
    this.afterCommit = [];
    for (const emit of logs) emit();
  }

  /**
   * Apply the reports queued on the report channel in this transaction (answered at its commit).
   * Nothing while quarantined (the queue waits, and is answered unavailable by the batch).
   */
  async drainReports(): Promise<void> {
    const b = this.state.reports;
    if (!b || b.size === 0 || this.state.quarantine) return;
    this.reports.push(await b.applyQueued(this.tx));
  }

  /** Reports of this transaction that will not commit: answered unavailable (their workers write them directly). */
  private dropReports(why: unknown): void {
    const reports = this.reports;
    this.reports = [];
    for (const a of reports) this.state.reports?.lost(a, why);
  }

  /** Log a state change once it is committed (dropped if it never is). */
  logCommitted(emit: () => void): void {
    this.afterCommit.push(emit);
  }

  /**
   * Write what the supervisor holds for the board: spawns first (so that an exit in the same
   * transaction finds its pid), then exits and crash verdicts. Held back while quarantined; put
   * back in line if the write fails, and carried until the commit.
   */
  async writeHeld(): Promise<void> {
    const s = this.state;
    if (s.quarantine) return;
    if (s.pendingSpawns.length) {
      const batches = s.pendingSpawns;
      s.pendingSpawns = [];
      try {
        for (const b of batches) await this.tx.recordSpawns(b.items, b.at);
      } catch (e) {
        s.pendingSpawns = batches.concat(s.pendingSpawns);
        throw e;
      }
      this.carried.spawns.push(...batches);
    }
    if (s.heldObs.length) {
      const batch = s.heldObs;
      s.heldObs = [];
      try {
        await this.tx.recordExits(batch);
      } catch (e) {
        s.heldObs = batch.concat(s.heldObs);
        throw e;
      }
      this.carried.obs.push(...batch);
    }
  }

  /** The transaction was lost (rolled back): put what it carried from memory back in line. */
  restore(): void {
    const s = this.state;
    s.heldObs = this.carried.obs.concat(s.heldObs);
    s.pendingSpawns = this.carried.spawns.concat(s.pendingSpawns);
    this.carried = { obs: [], spawns: [] };
    this.afterCommit = [];
    this.dropReports(new Error('the transaction was lost'));
  }

  /** Roll back what was not committed (and restore what it carried); the board takes writes again. */
  close(): void {
    this.tx.close();
    if (this.carried.obs.length || this.carried.spawns.length) this.restore();
    this.afterCommit = []; // what was not committed was rolled back: nothing of it happened
    this.dropReports(new Error('the transaction was rolled back'));
  }

  /**
   * Renew this supervisor's lease with the tick's writes (a board shared by several supervisors);
   * null on a board without leases (SQLite), false when the supervisor's row is gone or stopped.
   */
  async renewLease(now: number): Promise<boolean | null> {
    const r = leaseRenewalOf(this.tx);
    return r ? r.renewLease(now) : null;
  }

  /** Take over the runs of other hosts' supervisors whose lease expired (steps/takeover.ts); null on a board without leases. */
  takeOverExpired(...args: Parameters<LeaseRenewal['takeOverExpired']>): Promise<TakenOverSupervisor[]> | null {
    const r = leaseRenewalOf(this.tx);
    return r ? r.takeOverExpired(...args) : null;
  }

  get longestHoldMs(): number {
    return this.tx.longestHoldMs;
  }

  // The supervisor's operations, in this transaction.
  liveRuns: SupervisorOps['liveRuns'] = () => this.tx.liveRuns();
  unaccountedRuns: SupervisorOps['unaccountedRuns'] = () => this.tx.unaccountedRuns();
  claimBatch: SupervisorOps['claimBatch'] = (max, now, logPathFor) => this.tx.claimBatch(max, now, logPathFor);
  blockUnknownSkillTasks: SupervisorOps['blockUnknownSkillTasks'] = (now) => this.tx.blockUnknownSkillTasks(now);
  recordSpawns: SupervisorOps['recordSpawns'] = (items, now) => this.tx.recordSpawns(items, now);
  endUnspawned: SupervisorOps['endUnspawned'] = (runId, outcome, error, now) => this.tx.endUnspawned(runId, outcome, error, now);
  recordExits: SupervisorOps['recordExits'] = (observations) => this.tx.recordExits(observations);
  beginReclaim: SupervisorOps['beginReclaim'] = (runId, reason, now) => this.tx.beginReclaim(runId, reason, now);
  recordSigkill: SupervisorOps['recordSigkill'] = (runId, now) => this.tx.recordSigkill(runId, now);
  applyAccountingBatch: SupervisorOps['applyAccountingBatch'] = (items, now) => this.tx.applyAccountingBatch(items, now);
  appendEvent: SupervisorOps['appendEvent'] = (taskId, runId, kind, data, now) => this.tx.appendEvent(taskId, runId, kind, data, now);
  setOwner: SupervisorOps['setOwner'] = (info) => this.tx.setOwner(info);

  // Worker writes, in this transaction (the report channel's: channel/batch.ts applies them).
  heartbeat: BoardTx['heartbeat'] = (cred, progress, now) => this.tx.heartbeat(cred, progress, now);
  beats: BoardTx['beats'] = (items) => this.tx.beats(items);
  workerEvent: BoardTx['workerEvent'] = (cred, kind, data, now, seq) => this.tx.workerEvent(cred, kind, data, now, seq);
  report: BoardTx['report'] = (cred, report, now, seq) => this.tx.report(cred, report, now, seq);
  recordStop: BoardTx['recordStop'] = (cred, signal, now, seq) => this.tx.recordStop(cred, signal, now, seq);
  loadRun: BoardTx['loadRun'] = (cred) => this.tx.loadRun(cred);
  parentResults: BoardTx['parentResults'] = (cred) => this.tx.parentResults(cred);
  parentIds: BoardTx['parentIds'] = (cred) => this.tx.parentIds(cred);
  parentPage: BoardTx['parentPage'] = (cred, after, maxBytes) => this.tx.parentPage(cred, after, maxBytes);
}
