/**
 * The supervisor's side of the HTTP server (web/): the SupervisorView it hands to the server, and
 * the server's start and stop.
 *
 * What the view touches, so that the server never slows or steers a tick:
 * - reads: a connection of their own, opened at the first request (SQLite: a second, read-only
 *   better-sqlite3 connection with a 50 ms busy timeout; PostgreSQL: its own pool of 2);
 * - operator writes (add, cancel, retry, block, unblock): queued, run by the supervisor's loop
 *   between two ticks (never inside a tick's transaction) on a connection of their own, with the
 *   same board operations as the CLI; refused (503) while this supervisor does not own the board;
 * - health and readiness: from the loop's state (last tick, standby, quarantine, storm, stopping);
 * - onCommit: fired after each tick, each operator write, and each change the board's change feed
 *   shows (another process committed).
 *
 * Start (before the owner lock is taken, so /readyz answers 503 "standby" meanwhile): the token is
 * KANBAN_HTTP_TOKEN, else the token file next to the board (made at the first start). The default
 * address taken is a warning (`http_unavailable`) and the supervisor runs on without HTTP; an
 * address given explicitly that cannot be bound is a configuration error naming it (exit 2).
 */
import { ensureStateDir, openBoard, type Board, type BoardReads, type OperatorOps } from '@kanban-supervisor/board';
import { ConfigError, isLoopbackHost } from '@kanban-supervisor/policies';
import { HttpError, loadOrCreateToken, startHttpServer, tokenFilePath, type HttpServerHandle, type SupervisorView } from '@kanban-supervisor/web';
import { history, renderMetrics } from './metrics/index.js';
import { openSupervisorBoard, type TickContext } from './state.js';
import { statusReport, UsageSampler } from './status.js';

/** How long an operator write may wait for the loop before the request fails (503). */
const OPERATOR_WAIT_MS = 30_000;

interface QueuedOp {
  fn: (ops: OperatorOps) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

/** The board methods a read handle forwards (BoardReads), each opening the read connection on first use. */
const READ_METHODS = ['getSkill', 'listSkills', 'getTask', 'listTasks', 'listTasksPage', 'eventsAfter', 'showTask', 'getRun', 'listRuns', 'counts', 'taskCountsBySkill', 'idle', 'getOwner'] as const satisfies ReadonlyArray<keyof BoardReads>;
/** The read handle's type: only what it forwards (a method missing from READ_METHODS is a compile error where it is used, not a TypeError at a scrape). */
type HttpReads = Pick<BoardReads, (typeof READ_METHODS)[number]>;

export class HttpSide {
  private server: HttpServerHandle | null = null;
  private readBoard: Promise<Board> | null = null;
  private opBoard: Promise<Board> | null = null;
  private readonly queue: QueuedOp[] = [];
  private readonly listeners = new Set<() => void>();
  private readonly sampler = new UsageSampler();
  /** The loop runs (the board is ours): operator writes are taken. */
  private owning = false;
  private stopped = false;
  lastTickAt = 0;

  constructor(
    private readonly ctx: TickContext,
    /** Wake the loop (an operator write is waiting). */
    private readonly wake: () => void,
    /** An event stream opened: the board's changes are to be followed from now on (see `watched`). */
    private readonly onWatch: () => void = () => undefined,
  ) {}

  /** Whether anything follows the board's changes (an open event stream): only then is the feed polled for it. */
  get watched(): boolean {
    return this.server !== null && this.listeners.size > 0;
  }

  /** Start the server (config permitting). Throws ConfigError for an explicit address that cannot be bound. */
  async start(): Promise<void> {
    const cfg = this.ctx.cfg;
    const log = this.ctx.log;
    if (!cfg.http) return;
    const where = `${cfg.http.host.includes(':') ? `[${cfg.http.host}]` : cfg.http.host}:${cfg.http.port}`;
    let token = cfg.httpToken;
    if (token === null) {
      ensureStateDir(this.ctx.files, this.ctx.boardLabel);
      const made = loadOrCreateToken(tokenFilePath(this.ctx.files, this.ctx.boardPath));
      token = made.token;
      if (made.created) log.info({ event: 'http_token_created', file: tokenFilePath(this.ctx.files, this.ctx.boardPath) }, 'HTTP token made (kanban-supervisor status prints the page URL with it)');
    }
    try {
      this.server = await startHttpServer({
        host: cfg.http.host,
        port: cfg.http.port,
        view: this.view(),
        token,
        readsNeedToken: !isLoopbackHost(cfg.http.host),
        onError: (e, route) => log.error({ event: 'http_error', route, err: e }, `HTTP ${route} failed`),
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      const why = `${code ? `${code}: ` : ''}${(e as Error).message}`;
      if (cfg.httpExplicit) throw new ConfigError(`KANBAN_HTTP / --http (${where}) cannot be listened on: ${why}`, { cause: e });
      log.warn({ event: 'http_unavailable', address: where, error: why }, `HTTP server not started on ${where} (${code || 'error'}); running on without it`);
      return;
    }
    this.ctx.state.httpUrl = this.server.url;
    log.info({ event: 'http_started', url: this.server.url }, `HTTP server at ${this.server.url}`);
  }

  /**
   * The board is ours: the loop runs and takes operator writes. A standby that found the default
   * address taken (by the owner it was waiting for) tries it again now.
   */
  async owned(): Promise<void> {
    this.owning = true;
    if (this.ctx.opts.standby && !this.server && !this.stopped && this.ctx.cfg.http && !this.ctx.cfg.httpExplicit) await this.start().catch(() => undefined);
  }

  /** After each tick (from the loop): the operator writes waiting, then the listeners. */
  async afterTick(now: number): Promise<void> {
    this.lastTickAt = now;
    if (this.queue.length) await this.runQueued();
    this.fire();
  }

  /** The board's change feed moved (another process committed). */
  changed(): void {
    this.fire();
  }

  private fire(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        /* a listener's fault is its own */
      }
    }
  }

  private async runQueued(): Promise<void> {
    const s = this.ctx.state;
    while (this.queue.length) {
      const op = this.queue.shift()!;
      clearTimeout(op.timer);
      if (s.quarantine) {
        op.reject(new HttpError(503, 'quarantined', 'the board is quarantined: no writes until it is repaired'));
        continue;
      }
      try {
        this.opBoard ??= openSupervisorBoard(this.ctx.boardPath);
        const b = await this.opBoard;
        op.resolve(await op.fn(b));
      } catch (e) {
        op.reject(e);
      }
    }
  }

  private view(): SupervisorView {
    const ctx = this.ctx;
    const s = ctx.state;
    const readBoard = () => (this.readBoard ??= openBoard(ctx.boardPath, { readonly: true, busyTimeoutMs: 50, pgPoolMax: 2 }).catch((e: unknown) => {
      this.readBoard = null;
      throw e;
    }));
    const reads = Object.fromEntries(READ_METHODS.map((m) => [m, async (...args: unknown[]) => ((await readBoard())[m] as (...a: unknown[]) => unknown)(...args)])) as unknown as HttpReads;
    return {
      boardLabel: ctx.boardLabel,
      health: () => {
        const now = Date.now();
        if (s.stopped) return { ok: false, reason: 'stopped', lastTickAgoMs: this.lastTickAt ? now - this.lastTickAt : -1 };
        if (!this.owning) return { ok: true, reason: 'standby', lastTickAgoMs: -1 };
        const ago = this.lastTickAt ? now - this.lastTickAt : now - ctx.startedAt;
        const limit = 3 * ctx.cfg.tickIntervalMs;
        return ago <= limit ? { ok: true, lastTickAgoMs: ago } : { ok: false, reason: `no tick for ${ago} ms (more than 3 tick intervals, ${limit} ms)`, lastTickAgoMs: ago };
      },
      readiness: () => {
        if (s.stopping || s.stopped) return { ok: false, reason: 'stopping' };
        if (!this.owning) return { ok: false, reason: 'standby' };
        if (s.quarantine) return { ok: false, reason: 'quarantined' };
        if (s.host && (s.host.hold.lost || s.host.taken)) return { ok: false, reason: 'not owner' };
        if (s.storm.pausedUntil > Date.now()) return { ok: false, reason: 'storm-paused' };
        if (!s.committedOnce) return { ok: false, reason: 'starting' };
        return { ok: true };
      },
      // The page shows attempt / limit: the failure limit a task without its own takes.
      // Through the read connection, with the workers as this supervisor samples them (every 5 s):
      // no connection opened and no /proc scan per request (the page polls it every 2 s).
      status: async () => {
        const board = await readBoard();
        const workerOf = (runId: string) => {
          const w = s.workers.get(runId);
          return w && w.leaderExit === null ? { pid: w.identity.pid, cpuPercent: w.cpuPercent, rssBytes: w.rssBytes, heardAt: s.reports?.heardAt(runId) ?? null } : null;
        };
        return { ...(await statusReport(ctx.boardPath, this.sampler, { board, workerOf })), failureLimit: ctx.cfg.failureLimit };
      },
      reads,
      operator: <T>(fn: (ops: OperatorOps) => Promise<T>) =>
        new Promise<T>((resolve, reject) => {
          if (this.stopped || s.stopping) return reject(new HttpError(503, 'stopping', 'the supervisor is stopping'));
          if (!this.owning) return reject(new HttpError(503, 'standby', 'this supervisor does not own the board (standby): use the owner, or the CLI'));
          const op: QueuedOp = {
            fn: fn as QueuedOp['fn'],
            resolve: resolve as QueuedOp['resolve'],
            reject,
            timer: setTimeout(() => {
              const i = this.queue.indexOf(op);
              if (i >= 0) this.queue.splice(i, 1);
              reject(new HttpError(503, 'timeout', `the supervisor's loop did not take the write within ${OPERATOR_WAIT_MS / 1000} s`));
            }, OPERATOR_WAIT_MS),
          };
          this.queue.push(op);
          this.wake();
        }),
      logPathOf: async (runId) => (await reads.getRun(runId))?.logPath ?? null,
      metrics: () => renderMetrics(ctx, reads),
      history: () => history(ctx),
      onCommit: (l) => {
        this.listeners.add(l);
        this.onWatch();
        return () => this.listeners.delete(l);
      },
    };
  }

  /** Stop the server and close its connections; operator writes still queued fail (503). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const op of this.queue.splice(0)) {
      clearTimeout(op.timer);
      op.reject(new HttpError(503, 'stopping', 'the supervisor is stopping'));
    }
    const server = this.server;
    this.server = null;
    this.ctx.state.httpUrl = null;
    await server?.close().catch(() => undefined);
    for (const p of [this.readBoard, this.opBoard]) {
      if (!p) continue;
      const b = await p.catch(() => null);
      await b?.close().catch(() => undefined);
    }
    this.readBoard = this.opBoard = null;
  }
}
