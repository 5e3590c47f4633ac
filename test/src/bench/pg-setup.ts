/**
 * What the PostgreSQL figures (`bench --pg`) share: the server (pg-server.ts: KANBAN_BENCH_PG_URL or
 * KANBAN_TEST_PG_URL, else an embedded PostgreSQL started for the run) and one fresh database on
 * it, made at the first use and dropped, the server stopped, by the Harness's cleanup (also on a
 * signal or the deadline); a board per schema; supervisors as simulated hosts (their own
 * KANBAN_HOST_ID and KANBAN_STATE_DIR each); the CLI as another host's user runs it; whether psql
 * exists (the cheap worker's report).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Sup, sleep } from '../lib.js';
import { boardUrl, freshDatabase, postmasterPid, startPgServer, withClient, type PgServer } from '../pg-server.js';
import { h } from './setup.js';

/**
 * The psql binary for the cheap worker's report, or null. Debian's /usr/bin/psql is a Perl wrapper
 * (pg_wrapper: ~100 ms of CPU per call, more than the rest of a tiny task); the binary behind it,
 * /usr/lib/postgresql/<version>/bin/psql, is taken when present (the newest version).
 */
function findPsql(): string | null {
  let versions: string[] = [];
  try {
    versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    /* not Debian's layout */
  }
  for (const cmd of [...versions.map((v) => `/usr/lib/postgresql/${v}/bin/psql`), 'psql']) {
    if (spawnSync(cmd, ['--version'], { encoding: 'utf8' }).status === 0) return cmd;
  }
  return null;
}
export const PSQL = findPsql();
export const HAVE_PSQL = PSQL !== null;

export interface PgBench {
  server: PgServer;
  /** The run's database (a URL without a schema). */
  db: string;
  /** The postmaster's pid when the server runs on this machine (its CPU can be read), else null. */
  postmaster: number | null;
}

let started: Promise<PgBench> | null = null;

/** The server and the run's database, started at the first call. */
export function pgBench(): Promise<PgBench> {
  return (started ??= (async () => {
    const t0 = Date.now();
    const server = await startPgServer({ keep: h.opts.keep, trackCommitTimestamp: true });
    let drop: (() => Promise<void>) | null = null;
    h.atCleanup(async () => {
      await drop?.().catch((e: unknown) => process.stderr.write(`could not drop the bench database: ${(e as Error).message}\n`));
      await server.stop();
    });
    const fresh = await freshDatabase(server.url, 'ks_bench');
    drop = fresh.drop;
    const postmaster = await postmasterPid(fresh.url).catch(() => null);
    process.stdout.write(`  (PostgreSQL: ${server.label}; ready in ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    return { server, db: fresh.url, postmaster };
  })());
}

/**
 * Before a CPU measurement of the server: a CHECKPOINT (the dirty pages of earlier parts written
 * now, not by the checkpointer during the measurement; skipped without the privilege) and no
 * autovacuum worker running (up to 60 s), so that the server's CPU in the window is the work measured.
 */
export async function quiesce(): Promise<void> {
  const { db } = await pgBench();
  await withClient(db, async (c) => {
    await c.query('CHECKPOINT').catch(() => undefined);
    for (const end = Date.now() + 60_000; Date.now() < end; await sleep(500)) {
      const n = Number((await c.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`)).rows[0].n);
      if (n === 0) return;
    }
  });
}

/** Drop the schemas (boards) of a part that is done with them: less for autovacuum and the disk. */
export async function dropSchemas(schemas: string[]): Promise<void> {
  const { db } = await pgBench();
  await withClient(db, async (c) => {
    for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  });
}

/** The server's label, if it was started (for the table's notes). */
export async function pgLabel(): Promise<string | null> {
  if (!started) return null;
  return (await started.catch(() => null))?.server.label ?? null;
}

/** A board URL in the run's database (schema `schema`). */
export async function pgBoard(schema: string): Promise<string> {
  return boardUrl((await pgBench()).db, schema);
}

/** A supervisor of simulated host `hostId` on board `url`: its own host id and state folder. */
export function hostSup(url: string, dir: string, hostId: string, opts: { env?: Record<string, string>; direct?: boolean } = {}): Sup {
  return new Sup(h, url, {
    env: { KANBAN_HOST_ID: hostId, KANBAN_STATE_DIR: join(dir, `state-${hostId}`), ...opts.env },
    logFile: join(dir, `supervisor-${hostId}.log`),
    direct: opts.direct,
  });
}

/** For a supervisor started with `direct` (this process reads none of its lines): wait for its `started` event in its log file. */
export async function waitStartedInFile(sup: Sup, logFile: string, timeoutMs = 30_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && sup.running) {
    let text = '';
    try {
      text = readFileSync(logFile, 'utf8');
    } catch {
      /* not yet */
    }
    if (text.includes('"event":"started"')) return true;
    await sleep(100);
  }
  return false;
}

/** The last lines of a log file (for an error message). */
export function fileTail(file: string, n = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

/** `kanban-supervisor --db URL ARGS` as a user of another host runs it; its exit code and output. */
export function cliAs(url: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = h.spawn(process.execPath, [CLI, '--db', url, ...args], { env, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += String(d)));
  child.stderr?.on('data', (d: Buffer) => (stderr += String(d)));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}
