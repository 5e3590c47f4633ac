/**
 * Group commit of the reports that come through the report channel (server.ts).
 *
 * Reports wait in one queue; everything queued is applied in ONE board transaction: the tick's own
 * (TickTx drains the queue when it begins and before each of its commits) when a tick is running,
 * else a small "report commit" of this module, started at once when nothing is in flight, or a
 * short window (BATCH_WINDOW_MS) after the commit in flight ended. At most one commit is in flight;
 * what arrives meanwhile goes into the next. Each report goes through the board's own fenced
 * worker operation, in a savepoint of its own (a fenced or invalid report undoes only itself and
 * is answered so); every answer is sent only once the transaction committed, so an answer is
 * durable. A transaction lost as a whole (WriteGroupLostError), or closed without its commit,
 * answers `unavailable` to each of its reports: their workers write them directly (same seq,
 * applied at most once). Heartbeats of one run queued together are applied once (the last one,
 * with the last progress given), and every one of them is answered.
 *
 * One exception to "answered once committed": a *bare* heartbeat (no progress: a liveness time, no
 * data of the worker's) of a run whose credentials a committed heartbeat already proved is answered
 * from memory when the supervisor says its worker is live and not being stopped and its ticks
 * commit (deps.memoryBeat). The times of such beats (and of the beats read in heartbeat slots) go on
 * the board all together, at most every MEMORY_BEAT_WRITE_MS (policies): with the first
 * transaction that begins once that long passed since they were last written (a tick's), else a
 * commit of their own then; fenced as any report, and a fenced one withdraws the proof (the run's
 * next beat goes through a transaction and is refused). Meanwhile the supervisor's own verdicts
 * use the latest beat it heard (heardAt: its stall verdicts, its status and page), so a tick
 * between two such writes has nothing of them to write (no commit, no fsync). What such an answer
 * promises is what the supervisor knows: the run is its current worker's. What a SIGKILL of the
 * supervisor can lose is liveness times of the last MEMORY_BEAT_WRITE_MS, never a worker's data (a
 * heartbeat with progress, an event, a result is always committed before it is answered; a
 * restarted supervisor judges a stall of a worker it adopts from the adoption at the earliest).
 *
 * The supervisor's loop holds the batch while it ticks (hold/release): the board connection has
 * one transaction at a time, and the tick's carries the reports then.
 */
import { BoardInputError, NotCurrentError, WriteGroupLostError, classifyError, type Board, type BoardTx, type Json } from '@kanban-supervisor/board';
import { MEMORY_BEAT_WRITE_MS } from '@kanban-supervisor/policies';
import { PARENTS_PAGE_BYTES, type Report, type WireAnswer } from '@kanban-supervisor/worker-runtime';
import type { Logger } from '../logger.js';
import type { ChannelOutcome, SupervisorMetrics } from '../metrics/registry.js';

/**
 * How long a report commit waits after the previous one, ms, to gather what arrived meanwhile
 * (REPORT_BATCH_WINDOW_MS overrides it; policies' config table has the same default). Chosen by the
 * bench part `channel`, whose heartbeat series runs the window at 0, 2 and 5 ms: 2 ms had the lowest
 * heartbeat p99 at the same supervisor CPU (--short, 16 workers at 1 Hz, 2-core VM under load
 * 11-17: p99 122 / 56 / 74 ms at 0 / 2 / 5 ms, CPU 3.7-3.8 % each; one run on a loaded machine,
 * to be confirmed by the full run, whose figures go in the README).
 */
export const BATCH_WINDOW_MS = 2;

/**
 * How long heartbeats alone wait for company before a report commit of their own starts, ms
 * (REPORT_HEARTBEAT_WINDOW_MS overrides it; policies' config table has the same default). A
 * heartbeat is not urgent (its worker only learns that it is still current), so many workers'
 * beats share one commit instead of paying one each; any other report starts the commit at once,
 * carrying the waiting beats. Bounded well under the heartbeat p99 target (20 ms).
 */
export const HEARTBEAT_WINDOW_MS = 5;


/** Whether a report is a bare heartbeat (no progress: a liveness time, no data of the worker's). */
function bareBeat(r: Report): boolean {
  return r.op === 'heartbeat' && r.progress === undefined;
}

type Body<T> = T extends unknown ? Omit<T, 'id'> : never;
/** An answer without its request id (the connection adds it). */
export type AnswerBody = Body<WireAnswer>;
export type Reply = (a: AnswerBody) => void;

interface Item {
  report: Report;
  /** When the supervisor received it (the time recorded on the board). */
  at: number;
  replies: Reply[];
}

/** Reports applied in a transaction, answered once it committed (or lost). */
export class Applied {
  private settled = false;
  constructor(
    private readonly results: Array<[Item, AnswerBody]>,
    private readonly answer: (it: Item, a: AnswerBody) => void,
  ) {}

  /** Queued reports applied (coalesced heartbeats count once). */
  get size(): number {
    return this.results.length;
  }

  /** Reports answered by it (every heartbeat of a coalesced one). */
  get reports(): number {
    let n = 0;
    for (const [it] of this.results) n += it.replies.length;
    return n;
  }

  /** The transaction committed (`lost` null) or not: answer each report. Idempotent. */
  settle(lost: unknown): void {
    if (this.settled) return;
    this.settled = true;
    const down = lost === null ? null : unavailable(lost);
    for (const [it, a] of this.results) this.answer(it, down ?? a);
  }
}

function unavailable(e: unknown): AnswerBody {
  return { ok: false, code: 'unavailable', error: e instanceof Error ? e.message : String(e) };
}

export interface BatchStats {
  /** Reports answered, by their answer (applied and duplicates only once their transaction committed). */
  applied: number;
  duplicates: number;
  fenced: number;
  invalid: number;
  unavailable: number;
  /** Transactions committed with reports in them (report commits and ticks). */
  commits: number;
}

/** The wire op of a report (the metrics' `op` label). */
export function wireOp(r: Report): string {
  if (r.op !== 'end') return r.op;
  return r.report.outcome === 'completed' ? 'complete' : r.report.outcome === 'failed' ? 'fail' : 'defer';
}

function outcomeOf(a: AnswerBody): ChannelOutcome {
  if (a.ok) return a.duplicate ? 'duplicate' : 'applied';
  return a.code;
}

export class ReportBatch {
  private queue: Item[] = [];
  /** Heartbeats in the queue, by run id (coalesced). */
  private readonly beats = new Map<string, Item>();
  /** Runs whose credentials a committed heartbeat proved current, by run id: token and task. */
  private readonly proven = new Map<string, { token: string; taskId: string }>();
  /** Bare heartbeats answered from memory (or read in slots), by run id (the latest), for the next write of them. */
  private readonly remembered = new Map<string, Item>();
  /** The latest bare heartbeat heard of each vouched-for run (answered from memory or read in its slot), wall ms. */
  private readonly heard = new Map<string, number>();
  /** When the beats answered from memory were last taken into a transaction, monotonic ms. */
  private memoryWrittenAt = -Infinity;
  private inFlight: Promise<void> | null = null;
  private held = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The timer is the heartbeats' wait (cut short by any other report). */
  private beatWait = false;
  private immediate: NodeJS.Immediate | null = null;
  /** The timer that writes beats answered from memory when they are due and no transaction came for them (MEMORY_BEAT_WRITE_MS). */
  private flushTimer: NodeJS.Timeout | null = null;
  readonly stats: BatchStats = { applied: 0, duplicates: 0, fenced: 0, invalid: 0, unavailable: 0, commits: 0 };
  private readonly answerItem = (it: Item, a: AnswerBody): void => this.answer(it, a);

  constructor(
    private readonly deps: {
      /** The board to commit on; null when it cannot be written (not open, quarantined): reports are answered unavailable. */
      board: () => Board | null;
      log: Logger;
      /** REPORT_BATCH_WINDOW_MS (default BATCH_WINDOW_MS). */
      windowMs?: number;
      /** REPORT_HEARTBEAT_WINDOW_MS (default HEARTBEAT_WINDOW_MS). */
      heartbeatWindowMs?: number;
      /** The supervisor's metrics: reports answered, batch sizes, report commit durations. */
      metrics?: SupervisorMetrics;
      /**
       * Whether a bare heartbeat of this (proven) run may be answered from memory now: its worker
       * is live and not being stopped, and the supervisor's ticks commit (its own clock: see policies
       * heartbeatFromMemory). Absent: never.
       */
      memoryBeat?: (runId: string) => boolean;
      /** A heartbeat of this run and token was refused as fenced (the heartbeat slots stop acknowledging it). */
      fenced?: (runId: string, token: string) => void;
    },
  ) {}

  /** Every answer goes through here: counted (stats, metrics), then sent to each reply of the report. */
  private answer(it: Item, a: AnswerBody): void {
    const outcome = outcomeOf(a);
    const r = it.report;
    if (r.op === 'heartbeat') {
      // A committed heartbeat proves the run's credentials (kept only for a run the supervisor
      // vouches for now: its own live workers, forgotten with them); a fenced one withdraws the proof.
      if (outcome === 'applied' && this.deps.memoryBeat?.(r.cred.runId)) this.proven.set(r.cred.runId, { token: r.cred.token, taskId: r.cred.taskId });
      else if (outcome === 'fenced') {
        if (this.proven.get(r.cred.runId)?.token === r.cred.token) this.proven.delete(r.cred.runId);
        this.deps.fenced?.(r.cred.runId, r.cred.token);
      }
    } else if (r.op === 'end' && (outcome === 'applied' || outcome === 'duplicate')) {
      // The run has ended by its own report: a later beat of it is no longer current, and must hear
      // so from the board (fenced, exit 3 in the worker CLI), not be answered from memory while its
      // process is still alive.
      this.proven.delete(r.cred.runId);
      this.remembered.delete(r.cred.runId);
    }
    const n = it.replies.length;
    if (outcome === 'duplicate') this.stats.duplicates += n;
    else this.stats[outcome] += n;
    this.deps.metrics?.channelAnswered(wireOp(it.report), outcome, n);
    for (const r of it.replies) r(a);
  }

  /** Reports waiting to be applied now (heartbeats answered from memory among them once they are due). */
  get size(): number {
    return this.queue.length + (this.memoryDue() ? this.remembered.size : 0);
  }

  /** Reports waiting, with every beat answered from memory not written yet (due or not). */
  get waiting(): number {
    return this.queue.length + this.remembered.size;
  }

  /** Whether the beats answered from memory are to be written by the next transaction (MEMORY_BEAT_WRITE_MS since the last time). */
  private memoryDue(now = performance.now()): boolean {
    return now - this.memoryWrittenAt >= MEMORY_BEAT_WRITE_MS;
  }

  /**
   * The latest bare heartbeat of a run the supervisor heard and vouched for (answered from memory,
   * or read in its slot), wall ms; its board time may be up to MEMORY_BEAT_WRITE_MS older. Null:
   * none (since the run was last forgotten).
   */
  heardAt(runId: string): number | null {
    return this.heard.get(runId) ?? null;
  }

  /** A run is no longer supervised: its heartbeats are not answered from memory again. */
  forget(runId: string): void {
    this.proven.delete(runId);
    this.heard.delete(runId);
  }

  /** The latest beat heard: the last one (beats come in time order; a wall clock stepped back must not leave a time in the future here). */
  private hear(runId: string, at: number): void {
    this.heard.set(runId, at);
  }

  /**
   * The beats answered from memory go with the next transaction, due or not: the supervisor stops
   * (its last commit takes them; only a SIGKILL loses them).
   */
  writeMemoryBeatsNow(): void {
    this.memoryWrittenAt = -Infinity;
  }

  /**
   * Queue a report; `reply` gets its answer once it is committed (or refused, or not applied), or
   * at once for a bare heartbeat answered from memory (see the module's comment).
   */
  push(report: Report, reply: Reply, at = Date.now()): void {
    if (bareBeat(report) && this.fromMemory(report)) {
      const prev = this.remembered.get(report.cred.runId);
      if (prev) {
        prev.report = report;
        prev.at = at;
      } else this.remembered.set(report.cred.runId, { report, at, replies: [] });
      this.hear(report.cred.runId, at);
      this.flushSoon();
      this.stats.applied++;
      this.deps.metrics?.channelAnswered('heartbeat', 'applied', 1);
      reply({ ok: true });
      return;
    }
    if (report.op === 'heartbeat') {
      const prev = this.beats.get(report.cred.runId);
      if (prev && prev.report.op === 'heartbeat' && prev.report.cred.token === report.cred.token && prev.report.cred.taskId === report.cred.taskId) {
        // One write for both: the later time, and the last progress given (a heartbeat without one keeps it).
        const progress: Json | undefined = report.progress !== undefined ? report.progress : prev.report.progress;
        prev.report = { ...report, progress };
        prev.at = at;
        prev.replies.push(reply);
        return;
      }
    }
    const it: Item = { report, at, replies: [reply] };
    this.queue.push(it);
    if (report.op === 'heartbeat') this.beats.set(report.cred.runId, it);
    this.kick(false);
  }

  /**
   * A bare heartbeat the supervisor read in its worker's heartbeat slot (services/beat-slots.ts),
   * already vouched for: written with the beats answered from memory (within MEMORY_BEAT_WRITE_MS).
   */
  slotBeat(cred: { runId: string; taskId: string; token: string }, at: number): void {
    const report: Report = { op: 'heartbeat', cred, progress: undefined };
    const prev = this.remembered.get(cred.runId);
    if (prev) {
      prev.report = report;
      prev.at = Math.max(prev.at, at);
    } else this.remembered.set(cred.runId, { report, at, replies: [] });
    this.hear(cred.runId, at);
    this.flushSoon();
  }

  /**
   * The loop ticks: wait for a report commit in flight, and start none until release(). The tick's
   * transaction applies the queue meanwhile (TickTx).
   */
  async hold(): Promise<void> {
    this.held++;
    this.cancelTimers();
    while (this.inFlight) await this.inFlight;
  }

  release(): void {
    this.held = Math.max(0, this.held - 1);
    this.kick(true);
  }

  /** Answer every queued report `unavailable` (the supervisor stops; quarantine); beats answered from memory are dropped. */
  failAll(why: string): void {
    for (const it of this.take(true)) this.answer(it, { ok: false, code: 'unavailable', error: why });
  }

  /**
   * Write the beats answered from memory once they are due (MEMORY_BEAT_WRITE_MS since they were
   * last written) if no transaction takes them first: a report commit of their own once the batch
   * is neither held (a tick, which takes them) nor committing.
   */
  private flushSoon(ms = Math.max(0, this.memoryWrittenAt + MEMORY_BEAT_WRITE_MS - performance.now())): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      if (this.remembered.size === 0) return;
      if (!this.memoryDue()) return this.flushSoon(); // a transaction took them meanwhile: the next round
      if (this.held > 0 || this.inFlight) return this.flushSoon(50);
      this.inFlight = this.commitOwn().finally(() => {
        this.inFlight = null;
        this.kick(true);
      });
    }, ms);
    this.flushTimer.unref();
  }

  /** Whether a bare heartbeat can be answered from memory (see the module's comment). */
  private fromMemory(r: Report): boolean {
    const p = this.proven.get(r.cred.runId);
    return p !== undefined && p.token === r.cred.token && p.taskId === r.cred.taskId && (this.deps.memoryBeat?.(r.cred.runId) ?? false);
  }

  /** What the next transaction applies: the queue, and the beats answered from memory when they are due (`all`: whatever their time). */
  private take(all = false): Item[] {
    const items = this.queue;
    const now = performance.now();
    const due = all || this.memoryDue(now);
    // Beats answered from memory go on the board with this transaction when due (already answered:
    // their outcome only updates the proof). A run with a beat queued too is written once, by that
    // one, with the later time, due or not.
    let taken = false;
    for (const [runId, it] of this.remembered) {
      const queued = this.beats.get(runId);
      if (queued) queued.at = Math.max(queued.at, it.at);
      else if (!due) continue;
      else {
        items.push(it);
        taken = true;
      }
      this.remembered.delete(runId);
    }
    // The round starts with a write (the first beats after a quiet spell go with the next transaction).
    if (taken) this.memoryWrittenAt = now;
    if (this.remembered.size === 0) {
      if (this.flushTimer) clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    this.queue = [];
    this.beats.clear();
    return items;
  }

  private cancelTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    this.beatWait = false;
  }

  /**
   * Start a report commit: at once when nothing was in flight, after the window when one just
   * ended; heartbeats alone wait the heartbeat window, which any other report cuts short.
   */
  private kick(afterCommit: boolean): void {
    if (this.held > 0 || this.inFlight || this.queue.length === 0) return;
    // Every queued report is a heartbeat (each run's beats are one item, kept in `beats`).
    const beatsOnly = this.beats.size === this.queue.length;
    if (this.timer || this.immediate) {
      if (!this.beatWait || beatsOnly) return;
      this.cancelTimers();
    }
    const run = () => {
      this.timer = null;
      this.immediate = null;
      this.beatWait = false;
      if (this.held > 0 || this.inFlight || this.queue.length === 0) return;
      this.inFlight = this.commitOwn().finally(() => {
        this.inFlight = null;
        this.kick(true);
      });
    };
    const windowMs = afterCommit ? (this.deps.windowMs ?? BATCH_WINDOW_MS) : 0;
    const beatMs = this.deps.heartbeatWindowMs ?? HEARTBEAT_WINDOW_MS;
    if (beatsOnly && beatMs > windowMs) {
      this.beatWait = true;
      this.timer = setTimeout(run, beatMs);
    } else if (windowMs > 0) this.timer = setTimeout(run, windowMs);
    else this.immediate = setImmediate(run);
  }

  /** A report commit of its own (no tick running). */
  private async commitOwn(): Promise<void> {
    const board = this.deps.board();
    if (!board) return this.failAll('the supervisor cannot write the board now');
    const begun = performance.now();
    let tx: BoardTx;
    try {
      // Bare heartbeats alone: a commit that does not wait for the disk (TxOptions.relaxed: a lost
      // liveness time at a power failure harms nothing; the board is never damaged by it).
      tx = board.begin({ relaxed: this.queue.every((it) => bareBeat(it.report)) });
    } catch (e) {
      return this.failAll((e as Error).message);
    }
    try {
      const applied = await this.applyQueued(tx);
      try {
        await tx.commit();
        this.committed(applied, performance.now() - begun);
      } catch (e) {
        this.lost(applied, e);
      }
    } catch (e) {
      // Lost while applying: applyQueued answered its reports.
      this.deps.log.warn({ event: 'report_commit_failed', errorClass: classifyError(e), err: e }, 'a report commit was lost; its workers write their reports directly');
    } finally {
      tx.close();
    }
  }

  /**
   * A transaction with reports committed: answer them. `commitMs`: a report commit's duration
   * (begin → commit returned); null for a tick's transaction (its duration is the tick's).
   */
  committed(applied: Applied, commitMs: number | null = null): void {
    if (applied.size === 0) return;
    this.stats.commits++;
    this.deps.metrics?.channelCommitted(applied.reports, commitMs);
    applied.settle(null);
  }

  /** A transaction with reports did not commit: each is answered unavailable. */
  lost(applied: Applied, e: unknown): void {
    if (applied.size === 0) return;
    applied.settle(e);
  }

  /**
   * Apply everything queued in `tx`, each report in a savepoint of its own. Returns the reports'
   * answers, to settle once `tx` committed (or not). A lost transaction (WriteGroupLostError)
   * answers every report of it unavailable and is thrown on.
   */
  async applyQueued(tx: BoardTx): Promise<Applied> {
    const items = this.take();
    const results: Array<[Item, AnswerBody]> = [];
    // Bare heartbeats of runs with nothing else in this batch first, all in one fenced write
    // (BoardTx.beats: a statement per run, no savepoint each): a beat carries no data, and its run
    // has no other report here, so writing it first changes neither what is written nor any
    // answer. A run with another report (an end, an event) keeps its beat in its place in the
    // queue: a beat queued after its run's end is refused there, as it must be.
    const others = new Set<string>();
    for (const it of items) if (!bareBeat(it.report)) others.add(it.report.cred.runId);
    const bare = items.filter((it) => bareBeat(it.report) && !others.has(it.report.cred.runId));
    const inBulk = new Set(bare);
    if (bare.length) {
      try {
        const refused = new Set(await tx.beats(bare.map((it) => ({ cred: it.report.cred, at: it.at }))));
        bare.forEach((it, i) => {
          const { runId, taskId } = it.report.cred;
          results.push([it, refused.has(i) ? { ok: false, code: 'fenced', error: new NotCurrentError(runId, taskId).message } : { ok: true }]);
        });
      } catch (e) {
        if (e instanceof WriteGroupLostError) {
          new Applied(items.map((x) => [x, unavailable(e)]), this.answerItem).settle(e);
          throw e;
        }
        // Busy, I/O: none written; their workers write them directly.
        for (const it of bare) results.push([it, unavailable(e)]);
      }
    }
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (inBulk.has(it)) continue;
      try {
        results.push([it, await applyOne(tx, it)]);
      } catch (e) {
        if (e instanceof WriteGroupLostError) {
          new Applied(items.map((x) => [x, unavailable(e)]), this.answerItem).settle(e);
          throw e;
        }
        if (e instanceof NotCurrentError) results.push([it, { ok: false, code: 'fenced', error: e.message }]);
        else if (e instanceof BoardInputError) results.push([it, { ok: false, code: 'invalid', error: e.message }]);
        // Busy, I/O: not applied; its worker writes it directly.
        else results.push([it, unavailable(e)]);
      }
    }
    return new Applied(results, this.answerItem);
  }
}

/** One report, through the board's fenced worker operation in `tx`. */
async function applyOne(tx: BoardTx, it: Item): Promise<AnswerBody> {
  const r = it.report;
  const dup = (w: 'applied' | 'duplicate'): AnswerBody => (w === 'duplicate' ? { ok: true, duplicate: true } : { ok: true });
  switch (r.op) {
    case 'heartbeat':
      await tx.heartbeat(r.cred, r.progress, it.at);
      return { ok: true };
    case 'event':
      return dup(await tx.workerEvent(r.cred, r.kind, r.data, it.at, r.seq));
    case 'end':
      return dup(await tx.report(r.cred, r.report, it.at, r.seq));
    case 'stop':
      return dup(await tx.recordStop(r.cred, r.signal, it.at, r.seq));
    case 'payload': {
      const { task } = await tx.loadRun(r.cred);
      // The parents' ids only: their results come page by page (`parents`), each answer bounded.
      const parentIds = await tx.parentIds(r.cred);
      return { ok: true, task: { id: task.id, title: task.title, skill: task.skill, payload: task.payload }, parentIds };
    }
    case 'parents': {
      const page = await tx.parentPage(r.cred, r.after, PARENTS_PAGE_BYTES);
      return { ok: true, parents: page.results, next: page.next };
    }
  }
}
