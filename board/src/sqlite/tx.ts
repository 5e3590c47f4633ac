/**
 * Transactions of a SQLite board connection: how every operation's statements run.
 *
 * - On its own (`direct`), a write is one BEGIN IMMEDIATE transaction, retried on SQLITE_BUSY with
 *   jittered backoff; a read is retried on SQLITE_BUSY too. No transaction ever spans an await.
 * - In a BoardTx (`open()`), the transaction begins at its first write and lasts until `commit()`;
 *   each write is its own SAVEPOINT, so a failed write undoes only itself. While a BoardTx is open,
 *   writes on their own are refused: nothing changes meaning because a transaction is open.
 *
 * Operation modules take a `Writer` and never know which of the two they run in.
 */
import { WriteGroupLostError, isBusy } from '../errors.js';
import type { Conn } from './connection.js';

/** How an operation's statements run: each write its own transaction, or a savepoint of a BoardTx. */
export interface Writer {
  read<T>(fn: () => T): Promise<T>;
  write<T>(fn: () => T): Promise<T>;
}

/** The state of one BoardTx: its transaction (if begun), the error that broke it, if any. */
export interface TxState {
  begun: boolean;
  /** A relaxed transaction (TxOptions.relaxed): the connection is at synchronous = NORMAL while it is begun. */
  relaxed: boolean;
  broken: unknown;
  begunAt: number;
  closed: boolean;
  longestHoldMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Transactions {
  /** Writes and reads on their own (what the board's methods use). */
  readonly direct: Writer = { read: (fn) => this.read(fn), write: (fn) => this.write(fn) };
  /** The open BoardTx of this connection, if any (at most one). */
  private openTx: TxState | null = null;
  constructor(
    private readonly c: Conn,
    /** How many times a write is retried on SQLITE_BUSY after the busy timeout ran out. */
    private readonly busyRetries: number,
  ) {}

  /**
   * A write on its own: one BEGIN IMMEDIATE transaction, retried on SQLITE_BUSY with jittered
   * backoff (asynchronous: the event loop runs meanwhile). Refused while a BoardTx is open on this
   * connection: its writes go through it, so no write changes meaning because a transaction is open.
   */
  private async write<T>(fn: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (this.openTx) throw new Error(`a transaction is open on board ${this.c.path}: write through it`);
      try {
        return this.txImmediate(fn);
      } catch (e) {
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(this.busyDelayMs(attempt));
          continue;
        }
        throw this.c.wrap(e);
      }
    }
  }

  private async read<T>(fn: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return fn();
      } catch (e) {
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(5 * (0.5 + Math.random()));
          continue;
        }
        throw this.c.wrap(e);
      }
    }
  }

  private busyDelayMs(attempt: number): number {
    return Math.min(200, 5 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random());
  }

  /** One BEGIN IMMEDIATE transaction; if ROLLBACK fails, the original error still surfaces. */
  private txImmediate<T>(fn: () => T): T {
    this.c.stmt('BEGIN IMMEDIATE').run();
    try {
      const out = fn();
      this.c.stmt('COMMIT').run();
      return out;
    } catch (e) {
      this.c.rollbackQuietly();
      throw e;
    }
  }

  // ---------------------------------------------------------------- BoardTx

  /** Open a BoardTx: its state and the Writer its operations run through. One at a time. */
  open(relaxed = false): { g: TxState; w: Writer } {
    if (this.openTx) throw new Error(`a transaction is already open on board ${this.c.path}`);
    const g = newTxState(relaxed);
    this.openTx = g;
    return { g, w: { read: (fn) => this.txRead(g, fn), write: (fn) => this.txWrite(g, fn) } };
  }

  private usable(g: TxState): void {
    if (g.closed) throw new Error(`the transaction on board ${this.c.path} is closed`);
  }

  private async txRead<T>(g: TxState, fn: () => T): Promise<T> {
    this.usable(g);
    return this.read(fn);
  }

  private noteHold(g: TxState): void {
    g.longestHoldMs = Math.max(g.longestHoldMs, performance.now() - g.begunAt);
  }

  /** Commit what was written since the last commit; WriteGroupLostError if SQLite rolled it back. */
  async commit(g: TxState): Promise<void> {
    this.usable(g);
    if (g.broken !== null) {
      const e = g.broken;
      g.broken = null;
      g.begun = false;
      this.durable(g);
      throw new WriteGroupLostError(this.c.path, e);
    }
    if (!g.begun) return;
    g.begun = false;
    try {
      this.c.stmt('COMMIT').run();
    } catch (e) {
      this.c.rollbackQuietly();
      throw new WriteGroupLostError(this.c.path, this.c.wrap(e));
    } finally {
      this.durable(g);
      this.noteHold(g);
    }
  }

  /** End the BoardTx, rolling back what was not committed. Idempotent. */
  close(g: TxState): void {
    if (g.closed) return;
    g.closed = true;
    if (this.openTx === g) this.openTx = null;
    // What was not committed (its owner failed before commit) is rolled back, never half-kept.
    if (g.begun) {
      g.begun = false;
      this.c.rollbackQuietly();
      this.durable(g);
      this.noteHold(g);
    }
  }

  /**
   * Back to synchronous = FULL after a relaxed transaction ended (the pragma cannot change inside a
   * transaction: it is set before BEGIN and reset after COMMIT or ROLLBACK). Every other
   * transaction of this connection commits durably.
   */
  private durable(g: TxState): void {
    if (g.relaxed && !this.c.db.inTransaction) this.c.stmt('PRAGMA synchronous = FULL').run();
  }

  /**
   * A write inside a transaction: its BEGIN IMMEDIATE is taken at its first write (retried on BUSY
   * like any write); each write is its own SAVEPOINT, so a failed write undoes only itself. If
   * SQLite had to roll the whole transaction back (I/O error, full disk), the transaction is broken:
   * this write and the commit throw WriteGroupLostError, so the caller knows its earlier writes did
   * not land.
   */
  private async txWrite<T>(g: TxState, fn: () => T): Promise<T> {
    this.usable(g);
    if (g.broken !== null) throw new WriteGroupLostError(this.c.path, g.broken);
    // While this write sleeps on a busy lock, another write of the transaction may begin it:
    // re-check before every attempt.
    for (let attempt = 0; !g.begun; attempt++) {
      try {
        if (g.relaxed) this.c.stmt('PRAGMA synchronous = NORMAL').run();
        this.c.stmt('BEGIN IMMEDIATE').run();
        g.begun = true;
        g.begunAt = performance.now();
      } catch (e) {
        this.durable(g);
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(this.busyDelayMs(attempt));
          if (g.closed) throw new Error('the transaction was closed while a write waited for the lock');
          if (g.broken !== null) throw new WriteGroupLostError(this.c.path, g.broken);
          continue;
        }
        throw this.c.wrap(e);
      }
    }
    this.c.stmt('SAVEPOINT w').run();
    try {
      const out = fn();
      this.c.stmt('RELEASE w').run();
      return out;
    } catch (e) {
      if (!this.c.db.inTransaction) {
        g.broken = this.c.wrap(e);
        this.durable(g);
        throw new WriteGroupLostError(this.c.path, g.broken);
      }
      try {
        this.c.stmt('ROLLBACK TO w').run();
        this.c.stmt('RELEASE w').run();
      } catch {
        /* keep the original error */
      }
      throw this.c.wrap(e);
    }
  }
}

function newTxState(relaxed: boolean): TxState {
  return { begun: false, relaxed, broken: null, begunAt: 0, closed: false, longestHoldMs: 0 };
}
