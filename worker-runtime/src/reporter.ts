/**
 * How a worker's reports reach the board, in order (the runtime and the worker CLI both use it):
 *
 * 1. The supervisor's report channel (KANBAN_SOCKET), when it is set and answers: the supervisor
 *    applies the report fenced, in a transaction shared with other reports, and answers once it
 *    committed. The worker never opens the board.
 * 2. The board directly (opened at the first report that needs it, then kept), with the same
 *    fencing and the same seq: a report whose channel answer was lost is applied at most once.
 * 3. For a final report the board cannot take either: the spool (with its seq too).
 *
 * A fenced answer is the board's NotCurrentError, whichever way it came.
 */
import { localConnectionOf, type Board, type Json, type Task, type WorkerReport } from '@kanban-supervisor/board/light';
import { deliverReport, openWorkerBoard, setBusyTimeout, type Delivery } from './board-io.js';
import { ChannelDownError, ChannelLateError, ReportChannel } from './channel.js';
import type { WorkerEnv } from './env.js';
import { nextSeq, reportFields } from './protocol.js';

export class Reporter {
  readonly channel: ReportChannel | null;
  private board: Board | null = null;
  /** The last heartbeat through the channel was late: the next one goes to the board directly. */
  private beatLate = false;
  private opening: Promise<Board> | null = null;
  /** Reports on their way (heartbeats, events), until answered or given up on every path. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly env: WorkerEnv,
    opts: { timeoutMs?: number } = {},
  ) {
    this.channel = env.socketPath ? new ReportChannel(env.socketPath, opts) : null;
  }

  /** The board, if a report had to open it (fallback); null while every report went through the channel. */
  get openedBoard(): Board | null {
    return this.board;
  }

  /** The board, opened now if it is not yet (throws what opening it throws). */
  openBoard(): Promise<Board> {
    if (this.board) return Promise.resolve(this.board);
    this.opening ??= openWorkerBoard(this.env.dbPath).then(
      (b) => (this.board = b),
      (e: unknown) => {
        this.opening = null;
        throw e;
      },
    );
    return this.opening;
  }

  /** Through the channel if it answers, else `direct` on the board. */
  private async via<T>(request: () => Promise<T> | null, direct: (b: Board) => Promise<T>): Promise<T> {
    const viaChannel = request();
    if (viaChannel) {
      try {
        return await viaChannel;
      } catch (e) {
        // A late heartbeat is dropped, not written directly (channel.ts ChannelLateError).
        if (!(e instanceof ChannelDownError) || e instanceof ChannelLateError) throw e;
      }
    }
    return direct(await this.openBoard());
  }

  private ask(fields: Parameters<ReportChannel['request']>[0]) {
    return this.channel ? this.channel.request(fields, this.env.cred) : null;
  }

  /** The run's task (fenced: a run no longer current throws NotCurrentError). */
  async loadTask(): Promise<Pick<Task, 'id' | 'title' | 'skill' | 'payload'>> {
    return (await this.loadTaskAndParents()).task;
  }

  /**
   * The task and its parents' results (task graph; {} without parents). Over the channel: `payload`
   * (the task and its parents' ids), then the parents' results page by page (`parents`).
   */
  async loadTaskAndParents(): Promise<{ task: Pick<Task, 'id' | 'title' | 'skill' | 'payload'>; parents: Record<string, Json | null> }> {
    return this.via(
      () =>
        this.ask({ op: 'payload' })?.then(async (a) => ({ task: a.task!, parents: a.parentIds && a.parentIds.length > 0 ? await this.parentPages() : {} })) ?? null,
      async (b) => ({ task: (await b.loadRun(this.env.cred)).task, parents: await b.parentResults(this.env.cred) }),
    );
  }

  /** The results of the task's parents (task graph), by task id. */
  async loadParents(): Promise<Record<string, Json | null>> {
    return this.via(
      () => (this.channel ? this.parentPages() : null),
      (b) => b.parentResults(this.env.cred),
    );
  }

  /** Every page of the parents' results over the channel (rejects as a request does: ChannelDownError → read directly). */
  private async parentPages(): Promise<Record<string, Json | null>> {
    const out: Record<string, Json | null> = {};
    let after: string | null = null;
    for (let page = 0; ; page++) {
      // At most one page per parent (a task has at most 100).
      if (page > 1000) throw new ChannelDownError('the parents op did not reach its last page');
      const a = await this.channel!.request(after === null ? { op: 'parents' } : { op: 'parents', after }, this.env.cred);
      Object.assign(out, a.parents ?? {});
      const next = a.next ?? null;
      if (next === null) return out;
      if (next === after) throw new ChannelDownError(`the parents op answered the same cursor again (${next})`);
      after = next;
    }
  }

  /**
   * Resolves once every report sent before (heartbeats, events) was answered or given up on every
   * path (a direct write after the channel failed included); never rejects. A final report and the
   * stop record are sent only after it (docs/worker-protocol.md §3, Order).
   */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    const done: Promise<void> = p.then(
      () => void this.inFlight.delete(done),
      () => void this.inFlight.delete(done),
    );
    this.inFlight.add(done);
    return p;
  }

  async heartbeat(progress: Json | undefined): Promise<void> {
    return this.track(this.sendHeartbeat(progress));
  }

  /**
   * Through the channel; a late one (ChannelLateError) is dropped, and the next goes to the board
   * directly, once: only the board can tell a worker whose supervisor is stuck that its run was
   * fenced out (then the channel again).
   */
  private async sendHeartbeat(progress: Json | undefined): Promise<void> {
    const cred = this.env.cred;
    const afterLate = this.beatLate;
    this.beatLate = false;
    try {
      await this.via(
        () => (afterLate ? null : (this.ask(progress === undefined ? { op: 'heartbeat' } : { op: 'heartbeat', progress })?.then(() => undefined) ?? null)),
        (b) => b.heartbeat(cred, progress, Date.now()),
      );
    } catch (e) {
      if (e instanceof ChannelLateError) this.beatLate = true;
      throw e;
    }
  }

  async event(kind: string, data: Json | null): Promise<void> {
    return this.track(this.sendEvent(kind, data));
  }

  private async sendEvent(kind: string, data: Json | null): Promise<void> {
    const seq = nextSeq();
    await this.via<unknown>(
      () => this.ask({ op: 'event', kind, data, seq }) ?? null,
      (b) => b.workerEvent(this.env.cred, kind, data, Date.now(), seq),
    );
  }

  /** Record that the worker stopped on a signal (after the reports on their way: settled()). */
  async stop(signal: string): Promise<void> {
    await this.settled();
    const seq = nextSeq();
    await this.via<unknown>(
      () => this.ask({ op: 'stop', signal, seq }) ?? null,
      (b) => b.recordStop(this.env.cred, signal, Date.now(), seq),
    );
  }

  /**
   * The final report: the channel, else the board, else the spool (deliverReport). `openError`:
   * why the board could not be opened or read before (a deferral of a worker that never ran).
   */
  async deliver(report: WorkerReport, opts: { openError?: unknown } = {}): Promise<Delivery> {
    // Never ahead of a report sent before it: one still waiting could otherwise be applied after
    // the run ended (fenced, lost), or the run end before it on another path.
    await this.settled();
    const seq = nextSeq();
    const viaChannel = this.ask({ ...reportFields(report), seq });
    if (viaChannel) {
      try {
        await viaChannel;
        return { via: 'channel' };
      } catch (e) {
        if (!(e instanceof ChannelDownError)) throw e;
      }
    }
    let board: Board | null = this.board;
    let openError: unknown = opts.openError;
    if (!board && openError === undefined) {
      try {
        board = await this.openBoard();
      } catch (e) {
        openError = e;
      }
    }
    return deliverReport(board, this.env.dbPath, this.env.cred, report, { spoolDir: this.env.spoolDir, seq, ...(openError !== undefined ? { openError } : {}) });
  }

  /** Keep the last writes of a shutdown inside the grace (a board opened in fallback). */
  setBusyTimeout(ms: number): void {
    if (this.board) setBusyTimeout(this.board, ms);
  }

  /** Whether a board was opened and its connection is in this process (SQLite: closed synchronously). */
  get hasLocalBoard(): boolean {
    return this.board !== null && localConnectionOf(this.board) !== null;
  }
}
