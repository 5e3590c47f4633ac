/**
 * `runWorker`: the process-level runtime a skill written in TypeScript/JavaScript runs under.
 *
 * Lifecycle of a worker process:
 *   read KANBAN_* → load its run (fenced) → run the handler with automatic heartbeats → one final
 *   fenced report → (a board it opened: checkpoint, close) → exit.
 * Every report goes through the supervisor's report channel when KANBAN_SOCKET is set and answers,
 * else to the board directly (opened then: hardened open, short busy timeout), else (a final
 * report) to the spool (reporter.ts). A board that cannot be opened or read before the handler
 * runs (not the worker's fault) ends the run deferred, also through the spool.
 *
 * Exit statuses: 0 completed, 1 failed, 2 bad environment, 3 fenced out (nothing written),
 * 75 deferred, 143 SIGTERM, 130 SIGINT.
 *
 * On a SQLite board every operation is synchronous inside (one short transaction, never spanning an await);
 * the only awaits around them are the busy-retry backoffs between transactions.
 *
 * What the handler sees (its context, result, options, errors) is api.ts.
 */
import { BoardInputError, NotCurrentError, type Json, type Task, type WorkerReport } from '@kanban-supervisor/board/light';
import { FENCED_SIGNAL_WAIT_MS, SLOT_ACK_WAIT_MS, heartbeatIntervalMs, shutdownBudgetMs, slotBeatValue, slotTrusted } from '@kanban-supervisor/policies';
import { openSlot, readAck, writeBeat } from '@kanban-supervisor/reaper/beat-slot';
import { checkpointAndClose, closeRemote, isBoardFault, WORKER_BUSY_TIMEOUT_MS } from './board-io.js';
import { EXIT, readWorkerEnv, WorkerEnvError, type WorkerEnv } from './env.js';
import { DeferRequest, WorkerStoppedError, type RunWorkerOptions, type ShutdownHook, type StopReason, type WorkerContext, type WorkerHandler, type WorkerResult } from './api.js';
import { Reporter } from './reporter.js';

type Outcome = { ok: true; value: WorkerResult } | { ok: false; error: unknown };

/**
 * How long a fenced-out worker whose handler has settled waits for the supervisor's SIGTERM
 * before it exits 3 on its own (the fence closes just before the signal; a cancel is seen at the
 * supervisor's next tick). In policies: a takeover's requeue delay counts on it.
 */
export { FENCED_SIGNAL_WAIT_MS };

/**
 * A worker that cannot open the board, or read its run from it, because of the board (not readable
 * or writable by this user, damaged, failing with I/O errors, busy for too long) never ran its
 * handler: it spools a `deferred` report (not counted against the task), and the task is tried again
 * this many seconds later (the supervisor holds dispatch while it sees the board unreachable).
 */
export const BOARD_UNAVAILABLE_DEFER_SECONDS = 5;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

/** Write a line to stderr; never throws (the reader may be gone). */
export function say(line: string): void {
  try {
    process.stderr.write(line.endsWith('\n') ? line : line + '\n');
  } catch {
    /* stderr closed: nothing to do */
  }
}

/**
 * A worker must outlive its supervisor: a closed stdout/stderr pipe (EPIPE) must not kill it.
 * Node ignores SIGPIPE; this swallows the stream errors that follow.
 */
export function guardStdio(): void {
  for (const s of [process.stdout, process.stderr]) {
    if (!s.listeners('error').includes(ignore)) s.on('error', ignore);
  }
}
function ignore(): void {}

let started = false;

/**
 * Run `handler` as this process's worker. Never resolves: the process exits with the status
 * of the run (see the module comment). Call it once per process.
 */
export function runWorker(handler: WorkerHandler, options: RunWorkerOptions = {}): Promise<never> {
  if (started) return Promise.reject(new Error('runWorker was already called in this process'));
  started = true;
  return new WorkerProcess(handler, options).start();
}

class WorkerProcess {
  private env: WorkerEnv | null = null;
  private reporter: Reporter | null = null;
  private readonly controller = new AbortController();
  private readonly hooks: ShutdownHook[] = [];
  private hooksDone: Promise<void> | null = null;
  private fenced: NotCurrentError | null = null;
  private deferReq: DeferRequest | null = null;
  private signal: 'SIGTERM' | 'SIGINT' | null = null;
  private skip: () => void = () => {};
  private readonly skipped = new Promise<void>((r) => (this.skip = r));
  private exiting = false;
  private onSignalled: () => void = () => {};
  private readonly signalled = new Promise<void>((r) => (this.onSignalled = r));
  private hbTimer: NodeJS.Timeout | null = null;
  /** The run's heartbeat slot (policies beat-slot.ts): its descriptor, the beats written, the last value. */
  private slot: { fd: number; count: number; last: bigint | null } | null = null;
  /** The check that the last beat put in the slot only was acknowledged (SLOT_ACK_WAIT_MS after it). */
  private slotCheck: NodeJS.Timeout | null = null;
  private hbInFlight = false;
  private lastBeatAt = 0;
  private hbWarned = false;
  /** The last explicit heartbeat could not be written (said once per streak). */
  private hbFailing = false;
  private handlerPending = false;
  private failHandler: (e: unknown) => void = () => {};

  constructor(
    private readonly handler: WorkerHandler,
    private readonly opts: RunWorkerOptions,
  ) {}

  async start(): Promise<never> {
    guardStdio();
    process.on('SIGTERM', () => this.onSignal('SIGTERM'));
    process.on('SIGINT', () => this.onSignal('SIGINT'));
    // A worker's life is bound to its run on the board, not to a terminal or to its parent.
    process.on('SIGHUP', ignore);
    process.on('uncaughtException', (e) => this.onCrash(e));
    process.on('unhandledRejection', (e) => this.onCrash(e));
    process.on('beforeExit', () => this.onBeforeExit());
    try {
      await this.main();
    } catch (e) {
      say(`kanban worker: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      this.exit(EXIT.failed);
    }
    // The exit happens in main() or in the signal path.
    return new Promise<never>(() => {});
  }

  private async main(): Promise<void> {
    let env: WorkerEnv;
    try {
      env = readWorkerEnv(this.opts.env ?? process.env);
    } catch (e) {
      say(`kanban worker: ${messageOf(e)}`);
      return this.exit(e instanceof WorkerEnvError ? e.exitCode : EXIT.usage);
    }
    this.env = env;
    const reporter = (this.reporter = new Reporter(env));
    let task: Pick<Task, 'id' | 'title' | 'skill' | 'payload'>;
    let parents: Record<string, Json | null>;
    try {
      ({ task, parents } = await reporter.loadTaskAndParents());
    } catch (e) {
      if (this.signal) return;
      if (e instanceof NotCurrentError) {
        say(e.message);
        return this.exit(EXIT.notCurrent);
      }
      if (!reporter.openedBoard) {
        say(`kanban worker: cannot open board ${env.dbPath}: ${messageOf(e)}`);
        return this.deferUnavailable(e, `the board ${env.dbPath} could not be opened`);
      }
      say(`kanban worker: cannot load run ${env.cred.runId} of task ${env.cred.taskId}: ${messageOf(e)}`);
      return this.deferUnavailable(e, `run ${env.cred.runId} could not be read from the board ${env.dbPath}`);
    }
    if (this.signal) return;

    const ctx = this.context(task, parents, env, reporter);
    this.startHeartbeats(env);
    let outcome: Outcome;
    try {
      outcome = { ok: true, value: await this.runHandler(ctx) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    this.stopHeartbeats();
    if (this.signal || this.exiting) return; // the signal path owns the exit

    if (this.fenced) {
      // The run was taken away (reclaimed, cancelled). The supervisor closes the fence *before* it
      // sends SIGTERM, so the signal usually follows: run the hooks, then give it a moment to arrive
      // so that the stop is recorded and the exit status says "stopped on request".
      await Promise.race([this.runHooks(), sleep(shutdownBudgetMs(env.reclaimGraceSeconds)), this.signalled]);
      await Promise.race([sleep(FENCED_SIGNAL_WAIT_MS), this.signalled]);
      if (this.signal) return;
      say(this.fenced.message);
      return this.exit(EXIT.notCurrent);
    }

    let report = this.reportFor(outcome);
    for (;;) {
      try {
        const d = await reporter.deliver(report);
        if (d.via === 'spool') {
          say(`kanban worker: the board could not take the final report (${d.cause}); it was spooled to ${d.path}`);
        }
        break;
      } catch (e) {
        if (this.signal) return;
        if (e instanceof NotCurrentError) {
          say(e.message);
          return this.exit(EXIT.notCurrent);
        }
        if (e instanceof BoardInputError && report.outcome === 'completed') {
          // The result itself was refused (not JSON, too large): the run fails, saying why.
          report = { outcome: 'failed', error: `the handler's result was refused: ${e.message}` };
          say(`kanban worker: ${report.error}`);
          continue;
        }
        say(`kanban worker: cannot record the ${report.outcome} outcome: ${messageOf(e)}`);
        return this.exit(EXIT.failed);
      }
    }
    if (this.signal) return;
    this.exit(report.outcome === 'completed' ? EXIT.ok : report.outcome === 'deferred' ? EXIT.tempFail : EXIT.failed);
  }

  /**
   * The board could not be opened or read before the handler ran. A fault of the board (see
   * isBoardFault) ends the run `deferred` through the board or the spool, so that it does not count
   * against the task; anything else (a board too new for this runtime, …) fails as before.
   */
  private async deferUnavailable(cause: unknown, what: string): Promise<void> {
    if (!isBoardFault(cause)) return this.exit(EXIT.failed);
    const report: WorkerReport = { outcome: 'deferred', seconds: BOARD_UNAVAILABLE_DEFER_SECONDS, reason: `${what}: ${messageOf(cause)}` };
    try {
      const d = await this.reporter!.deliver(report, this.reporter!.openedBoard ? {} : { openError: cause });
      if (this.signal) return;
      say(
        `kanban worker: the handler did not run; the run ends deferred for ${BOARD_UNAVAILABLE_DEFER_SECONDS} s` +
          (d.via === 'spool' ? ` (spooled to ${d.path})` : ''),
      );
      return this.exit(EXIT.tempFail);
    } catch (e) {
      if (this.signal) return;
      if (e instanceof NotCurrentError) {
        say(e.message);
        return this.exit(EXIT.notCurrent);
      }
      say(`kanban worker: cannot record the deferral either: ${messageOf(e)}`);
      return this.exit(EXIT.failed);
    }
  }

  private context(task: Pick<Task, 'id' | 'title' | 'skill' | 'payload'>, parents: Record<string, Json | null>, env: WorkerEnv, reporter: Reporter): WorkerContext {
    const cred = env.cred;
    return {
      task: { id: task.id, title: task.title, skill: task.skill, payload: task.payload },
      parents: Object.freeze(parents),
      runId: cred.runId,
      signal: this.controller.signal,
      heartbeat: (progress?: Json) =>
        this.fencedCall(async () => {
          try {
            await reporter.heartbeat(progress);
          } catch (e) {
            if (e instanceof NotCurrentError || e instanceof BoardInputError) throw e;
            // Not the handler's failure (the board is unwritable, busy, failing): say so once per
            // streak; the automatic heartbeat (or the next call) tries again.
            if (!this.hbFailing) say(`kanban worker: heartbeat not recorded (will keep trying): ${messageOf(e)}`);
            this.hbFailing = true;
            return;
          }
          this.hbFailing = false;
          this.lastBeatAt = Date.now();
        }),
      event: (kind: string, data?: Json) => this.fencedCall(() => reporter.event(kind, data === undefined ? null : data)),
      onShutdown: (fn: ShutdownHook) => {
        if (typeof fn !== 'function') throw new TypeError('onShutdown needs a function');
        this.hooks.push(fn);
      },
      defer: (seconds: number, reason?: string): never => {
        if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) {
          throw new RangeError(`ctx.defer needs a non-negative number of seconds, got ${String(seconds)}`);
        }
        this.deferReq ??= new DeferRequest(seconds, reason);
        throw this.deferReq;
      },
    };
  }

  private async fencedCall(fn: () => Promise<void>): Promise<void> {
    if (this.fenced) throw this.fenced;
    try {
      await fn();
    } catch (e) {
      if (e instanceof NotCurrentError) this.fence(e);
      throw e;
    }
  }

  private fence(e: NotCurrentError): void {
    if (this.fenced) return;
    this.fenced = e;
    this.stopHeartbeats();
    this.controller.abort(e);
  }

  private runHandler(ctx: WorkerContext): Promise<WorkerResult> {
    this.handlerPending = true;
    return new Promise<WorkerResult>((resolve, reject) => {
      this.failHandler = reject;
      Promise.resolve()
        .then(() => this.handler(ctx))
        .then(resolve, reject);
    }).finally(() => {
      this.handlerPending = false;
    });
  }

  /** An uncaught exception or unhandled rejection while the handler runs fails the run (instead of a bare crash). */
  private onCrash(e: unknown): void {
    if (this.handlerPending) {
      this.failHandler(e);
      return;
    }
    say(`kanban worker: uncaught error: ${e instanceof Error ? (e.stack ?? e.message) : messageOf(e)}`);
  }

  /** The event loop ran dry while the handler's promise is pending: it can never settle. */
  private onBeforeExit(): void {
    if (this.exiting || this.signal) return;
    if (this.handlerPending) {
      this.failHandler(new Error('the handler never finished: its promise is pending with nothing left to wait for'));
    }
  }

  private reportFor(outcome: Outcome): WorkerReport {
    if (this.deferReq) {
      return this.deferReq.reason === undefined
        ? { outcome: 'deferred', seconds: this.deferReq.seconds }
        : { outcome: 'deferred', seconds: this.deferReq.seconds, reason: this.deferReq.reason };
    }
    if (outcome.ok) return { outcome: 'completed', result: outcome.value === undefined ? null : (outcome.value as Json) };
    const err = outcome.error;
    say(`kanban worker: the handler failed: ${err instanceof Error ? (err.stack ?? err.message) : messageOf(err)}`);
    return { outcome: 'failed', error: messageOf(err) };
  }

  // ------------------------------------------------------------------ heartbeats

  private startHeartbeats(env: WorkerEnv): void {
    if (this.opts.autoHeartbeat === false) return;
    if (env.heartbeatSlot !== null) {
      // Not a slot (missing, a symlink, a FIFO, not ours, the wrong size): every beat is reported.
      const r = openSlot(env.heartbeatSlot);
      if (r.fd !== null) this.slot = { fd: r.fd, count: 0, last: null };
      else say(`kanban worker: heartbeat slot not used (${r.why}): heartbeats go to the supervisor as reports`);
    }
    const ms = this.opts.heartbeatIntervalMs ?? heartbeatIntervalMs(env.heartbeatTimeoutSeconds || null);
    this.hbTimer = setInterval(() => void this.autoBeat(env, ms), ms);
    // The heartbeat alone must not keep the process alive.
    this.hbTimer.unref();
  }

  private stopHeartbeats(): void {
    if (this.hbTimer) clearInterval(this.hbTimer);
    this.hbTimer = null;
    if (this.slotCheck) clearTimeout(this.slotCheck);
    this.slotCheck = null;
  }

  private async autoBeat(env: WorkerEnv, ms: number): Promise<void> {
    if (this.hbInFlight || this.fenced || this.signal || this.exiting || !this.reporter) return;
    if (Date.now() - this.lastBeatAt < ms / 2) return; // an explicit heartbeat just happened
    if (this.slotCheck) clearTimeout(this.slotCheck);
    this.slotCheck = null;
    // The slot first: this beat goes there only while the supervisor acknowledged the previous one
    // (it is alive, vouches for this run and reads the slot); otherwise it is reported as well.
    // One that went there only must be acknowledged itself within SLOT_ACK_WAIT_MS, else it is
    // reported then: the previous beat's acknowledgement is an interval old. (Beats at most that
    // far apart need no timer: the next beat's own check comes first.)
    if (this.slot && this.slotBeat()) {
      const at = (this.lastBeatAt = Date.now());
      const v = this.slot.last;
      if (ms > SLOT_ACK_WAIT_MS) {
        this.slotCheck = setTimeout(() => this.slotAcked(v, at), SLOT_ACK_WAIT_MS);
        this.slotCheck.unref();
      }
      return;
    }
    await this.reportBeat();
  }

  /** A beat put in the slot only: reported unless the supervisor acknowledged it (or a newer heartbeat went since). */
  private slotAcked(v: bigint | null, at: number): void {
    this.slotCheck = null;
    const slot = this.slot;
    if (!slot || slot.last !== v || this.lastBeatAt > at) return;
    let ack: bigint | null;
    try {
      ack = readAck(slot.fd);
    } catch {
      ack = null;
    }
    if (ack !== null && ack === v) return;
    void this.reportBeat();
  }

  /** An automatic heartbeat as a report (the channel, else the board): its answer tells whether the run is still current. */
  private async reportBeat(): Promise<void> {
    if (this.hbInFlight || this.fenced || this.signal || this.exiting || !this.reporter) return;
    this.hbInFlight = true;
    try {
      await this.reporter.heartbeat(undefined);
      this.lastBeatAt = Date.now();
    } catch (e) {
      if (e instanceof NotCurrentError) this.fence(e);
      else if (!this.hbWarned && !this.exiting) {
        this.hbWarned = true;
        say(`kanban worker: automatic heartbeat failed (will keep trying): ${messageOf(e)}`);
      }
    } finally {
      this.hbInFlight = false;
    }
  }

  /** Write a beat in the slot; whether the previous one was acknowledged (this one needs no report). */
  private slotBeat(): boolean {
    const slot = this.slot!;
    try {
      const ack = readAck(slot.fd);
      const trusted = ack !== null && slot.last !== null && slotTrusted(ack, [slot.last]);
      const v = slotBeatValue(process.pid, ++slot.count);
      writeBeat(slot.fd, v);
      slot.last = v;
      return trusted;
    } catch (e) {
      say(`kanban worker: heartbeat slot failed (${messageOf(e)}): heartbeats go to the supervisor as reports`);
      this.slot = null;
      return false;
    }
  }

  // ------------------------------------------------------------------ shutdown

  private runHooks(): Promise<void> {
    this.hooksDone ??= (async () => {
      const reason = this.controller.signal.reason as StopReason;
      const hooks = this.hooks.splice(0);
      await Promise.all(
        hooks.map(async (h) => {
          try {
            await h(reason);
          } catch (e) {
            say(`kanban worker: a shutdown hook failed: ${messageOf(e)}`);
          }
        }),
      );
    })();
    return this.hooksDone;
  }

  private onSignal(sig: 'SIGTERM' | 'SIGINT'): void {
    if (this.exiting) return;
    if (this.signal) {
      // Second signal: skip the hooks (and any wait), still record what we can and close the board.
      this.skip();
      return;
    }
    this.signal = sig;
    this.onSignalled();
    void this.shutdown(sig).catch((e: unknown) => {
      say(`kanban worker: shutdown error: ${messageOf(e)}`);
      this.exit(sig === 'SIGINT' ? EXIT.sigint : EXIT.sigterm);
    });
  }

  private async shutdown(sig: 'SIGTERM' | 'SIGINT'): Promise<void> {
    const code = sig === 'SIGINT' ? EXIT.sigint : EXIT.sigterm;
    const t0 = Date.now();
    this.stopHeartbeats();
    this.controller.abort(new WorkerStoppedError(sig));
    const env = this.env;
    const reporter = this.reporter;
    if (!env || !reporter) return this.exit(code);
    const graceMs = env.reclaimGraceSeconds * 1000;
    const budget = shutdownBudgetMs(env.reclaimGraceSeconds);
    await Promise.race([this.runHooks(), sleep(budget), this.skipped]);
    // Record the stop within what is left of the grace (keep ~100 ms to close a board it opened),
    // after the reports still on their way (reporter.stop waits for them).
    const left = Math.max(50, graceMs - (Date.now() - t0) - 100);
    reporter.setBusyTimeout(Math.min(WORKER_BUSY_TIMEOUT_MS, left));
    const stop = reporter.stop(sig).catch((e: unknown) => {
      if (!(e instanceof NotCurrentError)) say(`kanban worker: could not record the stop: ${messageOf(e)}`);
    });
    await Promise.race([stop, sleep(left), this.skipped]);
    // A PostgreSQL board's connection is ended here, within the grace (a SQLite one in exit()).
    await Promise.race([closeRemote(reporter.openedBoard, Math.max(50, graceMs - (Date.now() - t0) - 50)), this.skipped]);
    this.exit(code);
  }

  /** Checkpoint what is free, close the board, exit. Idempotent. */
  private exit(code: number): void {
    if (this.exiting) return;
    this.exiting = true;
    this.stopHeartbeats();
    this.reporter?.channel?.close();
    checkpointAndClose(this.reporter?.openedBoard ?? null);
    process.exit(code);
  }
}
