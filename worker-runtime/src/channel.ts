/**
 * The worker's side of the report channel (protocol.ts): one connection to the supervisor's socket
 * (KANBAN_SOCKET), opened at the first report, requests pipelined on it, each answered once the
 * supervisor committed what it wrote.
 *
 * The channel never decides a report's fate on its own: a request it could not get answered (the
 * socket is missing or refuses, the connection breaks, the answer is late, or the supervisor says
 * `unavailable`) rejects with ChannelDownError, and the caller writes the report directly to the
 * board with the same seq (applied at most once: see protocol.ts). A `fenced` answer rejects with
 * the board's NotCurrentError, an `invalid` one with BoardInputError, as a direct write would.
 *
 * A request that got no usable answer takes the channel down: it stays down for CHANNEL_RETRY_MS
 * (the reports go directly meanwhile), then a report tries to connect again (a supervisor that
 * restarted listens again). An `unavailable` answer does not: the connection answered, only that
 * report's transaction failed, and the next report tries the channel again. The socket keeps the
 * process alive only while a request waits for its answer.
 */
import { createConnection, type Socket } from 'node:net';
import { BoardInputError, NotCurrentError, type RunCredentials } from '@kanban-supervisor/board/light';
import { REPORT_ANSWER_TIMEOUT_MS } from '@kanban-supervisor/policies';
import { MAX_ANSWER_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION, type WireAnswer, type WireRequest } from './protocol.js';

/** How long a request waits for its answer before the report goes directly to the board, ms. */
export const CHANNEL_TIMEOUT_MS = REPORT_ANSWER_TIMEOUT_MS;
/** How long a channel that went down is left alone before a report tries it again, ms. */
export const CHANNEL_RETRY_MS = 5000;

/** The channel could not deliver this request (or the supervisor could not apply it): write it directly. */
export class ChannelDownError extends Error {
  override name = 'ChannelDownError';
}

/**
 * A bare heartbeat (no progress) not answered in time on a connection that is still open: the supervisor is alive but
 * busy (a fleet starting, a long tick) or stuck. Only that heartbeat fails and the channel stays up:
 * writing every late beat directly would add a writer on the board's lock exactly when the
 * supervisor cannot keep up, so the caller drops it, and sends the NEXT heartbeat to the board
 * directly (reporter.ts): a supervisor that is stuck cannot tell its worker that the run was fenced
 * out, the board can (policies takeoverRequeueDelayMs counts on it). Any other late report takes
 * the channel down and goes directly, as before.
 */
export class ChannelLateError extends ChannelDownError {
  override name = 'ChannelLateError';
}

type Ok = Extract<WireAnswer, { ok: true }>;

interface Waiter {
  resolve(a: Ok): void;
  reject(e: unknown): void;
  cred: RunCredentials | null;
  timer: NodeJS.Timeout;
}

export class ReportChannel {
  private sock: Socket | null = null;
  private connecting: Promise<Socket> | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();
  /** The answer line being received, in pieces (an answer may be up to MAX_ANSWER_BYTES). */
  private parts: Buffer[] = [];
  private partBytes = 0;
  private downUntil = 0;
  /** Why the channel went down last (for messages). */
  lastError: string | null = null;

  constructor(
    readonly path: string,
    private readonly opts: { timeoutMs?: number; retryMs?: number } = {},
  ) {}

  /** Requests sent and not answered yet. */
  get pending(): number {
    return this.waiting.size;
  }

  /**
   * Send a request and wait for its answer. `cred`: the run it is about (fenced answers name it).
   * Rejects with ChannelDownError (write it directly), NotCurrentError or BoardInputError.
   */
  async request(fields: Omit<WireRequest, 'v' | 'id'>, cred: RunCredentials | null): Promise<Ok> {
    if (Date.now() < this.downUntil) throw new ChannelDownError(`the report channel ${this.path} is down: ${this.lastError ?? 'unknown'}`);
    const sock = await this.connect();
    const id = this.nextId++;
    const line = JSON.stringify({ v: PROTOCOL_VERSION, id, ...fields, ...(cred ? { task: cred.taskId, run: cred.runId, token: cred.token } : {}) });
    // Larger than a frame (the board takes JSON values up to 4 MiB): this one report goes directly
    // to the board (the channel stays up for the others).
    if (Buffer.byteLength(line) > MAX_FRAME_BYTES) throw new ChannelDownError(`the report is larger than the report channel's ${MAX_FRAME_BYTES} bytes: written directly`);
    return new Promise<Ok>((resolve, reject) => {
      const ms = this.opts.timeoutMs ?? CHANNEL_TIMEOUT_MS;
      const timer = setTimeout(() => {
        // Only a bare heartbeat (a liveness time, no data) may be dropped; one with progress is data.
        if (fields.op !== 'heartbeat' || 'progress' in fields) return this.down(`no answer within ${ms} ms`);
        // A late heartbeat fails alone (its answer, if it comes, finds no waiter and is ignored).
        this.waiting.delete(id);
        if (this.waiting.size === 0) this.sock?.unref();
        reject(new ChannelLateError(`the supervisor did not answer the heartbeat within ${ms} ms (busy): not recorded; the next one goes through the channel`));
      }, ms);
      this.waiting.set(id, { resolve, reject, cred, timer });
      sock.ref();
      sock.write(line + '\n');
    });
  }

  /** Resolves once every request sent has its answer (or failed); never rejects. */
  async settled(): Promise<void> {
    while (this.waiting.size > 0) {
      await new Promise<void>((r) => setTimeout(r, 2));
    }
  }

  /** Close the connection (answers not received yet fail with ChannelDownError). */
  close(): void {
    this.down('closed by the worker', 0);
  }

  private connect(): Promise<Socket> {
    if (this.sock) return Promise.resolve(this.sock);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ path: this.path });
      const fail = (e: Error) => {
        this.connecting = null;
        s.destroy();
        this.lastError = e.message;
        this.downUntil = Date.now() + (this.opts.retryMs ?? CHANNEL_RETRY_MS);
        reject(new ChannelDownError(`the report channel ${this.path} is unreachable: ${e.message}`));
      };
      const t = setTimeout(() => fail(new Error('connect timed out')), this.opts.timeoutMs ?? CHANNEL_TIMEOUT_MS);
      s.once('error', (e) => {
        clearTimeout(t);
        fail(e);
      });
      s.once('connect', () => {
        clearTimeout(t);
        s.removeAllListeners('error');
        s.on('data', (d: Buffer) => this.onData(d));
        s.on('error', (e) => this.down(e.message));
        s.on('close', () => this.down('the supervisor closed the connection'));
        s.unref();
        this.sock = s;
        this.connecting = null;
        resolve(s);
      });
    });
    return this.connecting;
  }

  /** Answer lines out of the stream; only the new chunk is searched for the newline (answers may be MiBs). */
  private onData(d: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = d.indexOf(10, start);
      if (nl < 0) break;
      const piece = d.subarray(start, nl);
      start = nl + 1;
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.partBytes = 0;
      this.onAnswer(line.toString('utf8'));
      if (!this.sock) return; // went down on this answer
    }
    if (start >= d.length) return;
    const rest = d.subarray(start);
    this.parts.push(rest);
    this.partBytes += rest.length;
    if (this.partBytes > MAX_ANSWER_BYTES) this.down(`an answer longer than the ${MAX_ANSWER_BYTES} bytes an answer may have`);
  }

  private onAnswer(line: string): void {
    let a: WireAnswer;
    try {
      a = JSON.parse(line) as WireAnswer;
    } catch {
      return this.down('an answer that is not JSON');
    }
    const w = this.waiting.get(a?.id);
    if (!w) return;
    this.waiting.delete(a.id);
    clearTimeout(w.timer);
    if (this.waiting.size === 0) this.sock?.unref();
    if (a.ok) return w.resolve(a);
    if (a.code === 'fenced' && w.cred) return w.reject(new NotCurrentError(w.cred.runId, w.cred.taskId));
    if (a.code === 'invalid') return w.reject(new BoardInputError(a.error));
    w.reject(new ChannelDownError(`the supervisor could not apply the report: ${a.error}`));
  }

  /** The connection is unusable: every waiting request fails (written directly by its caller). */
  private down(why: string, retryMs = this.opts.retryMs ?? CHANNEL_RETRY_MS): void {
    const s = this.sock;
    this.sock = null;
    this.parts = [];
    this.partBytes = 0;
    if (s) {
      s.removeAllListeners('close');
      s.destroy();
    }
    if (this.waiting.size === 0 && !s) return;
    this.lastError = why;
    this.downUntil = Date.now() + retryMs;
    const err = new ChannelDownError(`the report channel ${this.path} failed: ${why}`);
    const ws = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of ws) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }
}
