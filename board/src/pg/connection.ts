/**
 * The connections of a PostgreSQL board: one `pg` Pool per board object (the driver's pooling, not
 * ours), the board's schema on every connection's search_path (so the SQL names tables bare, as on
 * SQLite), bigint read as a number, and `Q`, the small query surface every operation module uses.
 *
 * Errors: a driver error keeps its SQLSTATE `code` (errors.ts classifies it: connection trouble is
 * transient, never damage) and loses any trace of the password (`PgConn.wrap`).
 */
import pg from 'pg';
import type { Json } from '../types.js';
import { scrub, type PgTarget } from './location.js';
import type { Row } from './rows.js';

/** int8 (bigint: ms timestamps, counts, identities) as a JS number: every value is far below 2^53. */
const INT8_OID = 20;
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

export interface PgPoolOptions {
  /** Most connections this board object opens (default 4; a worker needs 1). */
  poolMax?: number;
  /** How long a statement may wait for a row lock, ms, before failing as busy (default 10,000). */
  lockTimeoutMs?: number;
  /** How long to wait for a connection, ms (default 10,000). */
  connectTimeoutMs?: number;
}

export class PgConn {
  readonly pool: pg.Pool;
  /** The pool's connection settings (a LISTEN connection is opened with the same). */
  private readonly config: pg.ClientConfig;
  readonly location: string;
  readonly schema: string;
  private readonly secret: string | null;
  /**
   * A registered supervisor's transactions end on the server when their session sits idle in them
   * longer than this (its lease): a supervisor stopped mid-transaction (SIGSTOP, a partition) must
   * not keep row locks that its workers and the supervisor taking it over wait for.
   */
  idleInTransactionTimeoutMs: number | null = null;

  constructor(target: PgTarget, opts: PgPoolOptions = {}) {
    this.location = target.location;
    this.schema = target.schema;
    this.secret = target.secret;
    const lockTimeout = Math.max(0, Math.floor(opts.lockTimeoutMs ?? 10_000));
    this.config = {
      connectionString: target.connectionString,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      // With our pid: an operator (and a test) can tell whose connections these are in pg_stat_activity.
      application_name: `kanban-supervisor ${process.pid}`,
      types: TYPES,
      // Startup options: no extra round trip per connection. The schema name is a checked identifier.
      // A session idle inside a transaction longer than others would wait for its row locks (a
      // worker or CLI SIGSTOPped between two statements) is ended by the server: its locks cannot
      // stall a supervisor's tick or a takeover. A registered supervisor sets its lease instead.
      options: `-c search_path=${target.schema} -c lock_timeout=${lockTimeout} -c idle_in_transaction_session_timeout=${Math.max(1000, lockTimeout)}`,
    };
    this.pool = new pg.Pool({ ...this.config, max: opts.poolMax ?? 4, idleTimeoutMillis: 30_000 });
    // An idle connection that breaks (server restart, network) is the pool's to drop; without these
    // listeners the driver's 'error' event would end the process.
    this.pool.on('error', () => undefined);
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  /** The statement that begins a transaction (with its idle-in-transaction timeout, if set). */
  beginSql(): string {
    const ms = this.idleInTransactionTimeoutMs;
    return ms === null ? 'BEGIN' : `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.floor(ms))}`;
  }

  /** A pooled connection (wrapped errors); release it with `release(client, broken)`. */
  async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (e) {
      throw this.wrap(e);
    }
  }

  /** A connection of its own, outside the pool (LISTEN holds its session). Its 'error' is handled. */
  newClient(): pg.Client {
    const client = new pg.Client(this.config);
    client.on('error', () => undefined);
    return client;
  }

  /** The error as it may be shown: the password scrubbed from its message; the error itself (and its code) kept. */
  wrap(e: unknown): unknown {
    if (e instanceof Error && this.secret) {
      e.message = scrub(e.message, this.secret);
      if (e.stack) e.stack = scrub(e.stack, this.secret);
    }
    return e;
  }

  /** The notification channel of this board (one per schema, shared by every host). */
  get channel(): string {
    return `kanban_${this.schema}`;
  }

  async end(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}

/** What an operation runs its statements through: one connection (a transaction's, or a read's). */
export class Q {
  constructor(
    private readonly db: pg.ClientBase,
    readonly conn: PgConn,
  ) {}

  /** The board's location (masked), for messages. */
  get path(): string {
    return this.conn.location;
  }

  async all(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.db.query<Row>(sql, params)).rows;
  }

  async get(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, params))[0];
  }

  /** The number of rows the statement changed. */
  async run(sql: string, params: unknown[] = []): Promise<number> {
    return (await this.db.query(sql, params)).rowCount ?? 0;
  }

  /** Rows as arrays, in the statement's column order (HOT_SQL.liveRuns). */
  async arrays(sql: string, params: unknown[] = []): Promise<unknown[][]> {
    return (await this.db.query<unknown[]>({ text: sql, values: params, rowMode: 'array' })).rows;
  }

  /** Append an event to a task's history (inside the caller's transaction). */
  async event(taskId: string, runId: string | null, kind: string, data: Json | null, at: number, seq: string | null = null): Promise<void> {
    await this.run('INSERT INTO events (task_id, run_id, kind, data, at, seq) VALUES ($1, $2, $3, $4, $5, $6)', [
      taskId,
      runId,
      kind,
      data === null ? null : JSON.stringify(data),
      at,
      seq,
    ]);
  }

  /**
   * Tell every listening supervisor (any host) that there may be work: a task was added, became
   * ready again or was cancelled. Delivered at commit, once per transaction (PostgreSQL folds
   * identical notifications), never if the transaction rolls back.
   */
  async notify(): Promise<void> {
    await this.db.query('SELECT pg_notify($1, $2)', [this.conn.channel, 'tasks']);
  }
}
