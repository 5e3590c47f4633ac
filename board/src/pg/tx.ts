/**
 * Transactions of a PostgreSQL board: how every operation's statements run.
 *
 * - On its own (`direct`), a write is one transaction on a pooled connection (BEGIN … COMMIT),
 *   retried a few times on serialization failures and deadlocks (SQLSTATE 40001, 40P01); a read is
 *   one pooled connection. Row locks (FOR UPDATE in the operations) stand in for SQLite's single
 *   writer where an operation reads, decides, then writes.
 * - In a BoardTx (`open()`), a dedicated pooled connection is held: BEGIN at the first write,
 *   SAVEPOINT per write (a failed write undoes only itself), COMMIT at `commit()`. Its operations
 *   run one at a time (a queue): a write is several statements on one connection. When the
 *   connection or the transaction is lost mid-way (server restart, network, a terminated backend),
 *   the write and the next commit throw WriteGroupLostError: nothing of it landed.
 * - While a BoardTx is open, writes on their own are refused, as on SQLite. A closed BoardTx rolls
 *   back asynchronously; later writes wait for that, so its row locks never skew a claim.
 *
 * Operation modules take a `Writer` and never know which of the two they run in.
 */
import type pg from 'pg';
import { WriteGroupLostError, classifyError, isBusy } from '../errors.js';
import { Q, type PgConn } from './connection.js';

/** How an operation's statements run: each write its own transaction, or a savepoint of a BoardTx. */
export interface Writer {
  read<T>(fn: (q: Q) => Promise<T>): Promise<T>;
  write<T>(fn: (q: Q) => Promise<T>): Promise<T>;
}

/** The state of one BoardTx. */
export interface TxState {
  client: pg.PoolClient | null;
  begun: boolean;
  broken: unknown;
  begunAt: number;
  closed: boolean;
  longestHoldMs: number;
  /** The tail of its queue of operations. */
  queue: Promise<unknown>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The connection itself failed (not the statement): the session and its transaction are gone. */
function connectionLost(e: unknown): boolean {
  return classifyError(e) === 'io';
}

export class Transactions {
  readonly direct: Writer = { read: (fn) => this.read(fn), write: (fn) => this.write(fn) };
  private openTx: TxState | null = null;
  /** Rollbacks of closed transactions still under way (their locks are not released yet). */
  private settling = new Set<Promise<void>>();

  constructor(
    private readonly c: PgConn,
    private readonly busyRetries: number,
  ) {}

  private async settled(): Promise<void> {
    while (this.settling.size) await Promise.all([...this.settling]);
  }

  private refuseWhileOpen(): void {
    if (this.openTx) throw new Error(`a transaction is open on board ${this.c.location}: write through it`);
  }

  private async write<T>(fn: (q: Q) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.refuseWhileOpen();
      await this.settled();
      const client = await this.c.connect();
      let lost = false;
      try {
        await client.query(this.c.beginSql());
        const out = await fn(new Q(client, this.c));
        await client.query('COMMIT');
        return out;
      } catch (e) {
        lost = connectionLost(e);
        if (!lost) await client.query('ROLLBACK').catch(() => (lost = true));
        if (isBusy(e) && attempt < this.busyRetries) {
          await sleep(Math.min(200, 5 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random()));
          continue;
        }
        throw this.c.wrap(e);
      } finally {
        client.release(lost);
      }
    }
  }

  private async read<T>(fn: (q: Q) => Promise<T>): Promise<T> {
    const client = await this.c.connect();
    let lost = false;
    try {
      return await fn(new Q(client, this.c));
    } catch (e) {
      lost = connectionLost(e);
      throw this.c.wrap(e);
    } finally {
      client.release(lost);
    }
  }

  // ---------------------------------------------------------------- BoardTx

  open(): { g: TxState; w: Writer } {
    if (this.openTx) throw new Error(`a transaction is already open on board ${this.c.location}`);
    const g: TxState = { client: null, begun: false, broken: null, begunAt: 0, closed: false, longestHoldMs: 0, queue: Promise.resolve() };
    this.openTx = g;
    return { g, w: { read: (fn) => this.serial(g, () => this.txRead(g, fn)), write: (fn) => this.serial(g, () => this.txWrite(g, fn)) } };
  }

  /** Run the BoardTx's operations one after another on its connection. */
  private serial<T>(g: TxState, fn: () => Promise<T>): Promise<T> {
    const p = g.queue.then(fn);
    g.queue = p.catch(() => undefined);
    return p;
  }

  private usable(g: TxState): void {
    if (g.closed) throw new Error(`the transaction on board ${this.c.location} is closed`);
  }

  private async clientOf(g: TxState): Promise<pg.PoolClient> {
    if (!g.client) {
      await this.settled();
      g.client = await this.c.connect();
    }
    return g.client;
  }

  /** Drop the BoardTx's connection (destroyed when it failed, else back to the pool). */
  private dropClient(g: TxState, lost: boolean): void {
    g.client?.release(lost);
    g.client = null;
  }

  private async txRead<T>(g: TxState, fn: (q: Q) => Promise<T>): Promise<T> {
    this.usable(g);
    const client = await this.clientOf(g);
    try {
      return await fn(new Q(client, this.c));
    } catch (e) {
      if (connectionLost(e)) this.lose(g, e);
      throw this.c.wrap(e);
    }
  }

  /** The connection died: what was begun is gone (reported at the next write and commit). */
  private lose(g: TxState, e: unknown): void {
    if (g.begun) g.broken = this.c.wrap(e);
    g.begun = false;
    this.dropClient(g, true);
  }

  private async txWrite<T>(g: TxState, fn: (q: Q) => Promise<T>): Promise<T> {
    this.usable(g);
    if (g.broken !== null) throw new WriteGroupLostError(this.c.location, g.broken);
    const client = await this.clientOf(g);
    const q = new Q(client, this.c);
    try {
      if (!g.begun) {
        // TxOptions.relaxed is not taken here: PostgreSQL's synchronous_commit=off can lose a commit
        // already answered when the server crashes (any backend SIGKILLed restarts it), not only at
        // a power failure. The server's own group commit shares the flush among concurrent commits.
        await client.query(this.c.beginSql());
        g.begun = true;
        g.begunAt = performance.now();
      }
      await client.query('SAVEPOINT w');
    } catch (e) {
      const wasBegun = g.begun;
      if (connectionLost(e) || wasBegun) this.lose(g, e);
      if (wasBegun) throw new WriteGroupLostError(this.c.location, g.broken ?? e);
      throw this.c.wrap(e);
    }
    try {
      const out = await fn(q);
      await client.query('RELEASE SAVEPOINT w');
      return out;
    } catch (e) {
      if (connectionLost(e)) {
        this.lose(g, e);
        throw new WriteGroupLostError(this.c.location, g.broken);
      }
      try {
        await client.query('ROLLBACK TO SAVEPOINT w');
        await client.query('RELEASE SAVEPOINT w');
      } catch (e2) {
        // The transaction cannot go on: what it carried is lost, and said so.
        this.lose(g, e2);
        throw new WriteGroupLostError(this.c.location, g.broken);
      }
      throw this.c.wrap(e);
    }
  }

  /** Commit what was written since the last commit; WriteGroupLostError when none of it landed. */
  commit(g: TxState): Promise<void> {
    return this.serial(g, async () => {
      this.usable(g);
      if (g.broken !== null) {
        const e = g.broken;
        g.broken = null;
        throw new WriteGroupLostError(this.c.location, e);
      }
      if (!g.begun || !g.client) return;
      g.begun = false;
      try {
        // COMMIT of a transaction PostgreSQL has aborted answers ROLLBACK, without an error.
        const r = await g.client.query('COMMIT');
        if (r.command === 'ROLLBACK') throw new Error('the transaction had been aborted; COMMIT rolled it back');
      } catch (e) {
        this.dropClient(g, true);
        throw new WriteGroupLostError(this.c.location, this.c.wrap(e));
      } finally {
        g.longestHoldMs = Math.max(g.longestHoldMs, performance.now() - g.begunAt);
      }
    });
  }

  /**
   * End the BoardTx, rolling back what was not committed (asynchronously: `close` is synchronous;
   * every later write and transaction of this board waits for the rollback). Idempotent.
   */
  close(g: TxState): void {
    if (g.closed) return;
    g.closed = true;
    if (this.openTx === g) this.openTx = null;
    const done: Promise<void> = g.queue.then(async () => {
      const client = g.client;
      g.client = null;
      if (!client) return;
      let lost = false;
      if (g.begun) {
        g.begun = false;
        g.longestHoldMs = Math.max(g.longestHoldMs, performance.now() - g.begunAt);
        await client.query('ROLLBACK').catch(() => (lost = true));
      }
      client.release(lost);
    });
    this.settling.add(done);
    void done.finally(() => this.settling.delete(done));
  }

  /** Wait for rollbacks under way (closing the board). */
  async drain(): Promise<void> {
    await this.settled();
  }
}
