/**
 * The test PostgreSQL server (global-setup.ts) as a test file sees it: wait until it answers, and a
 * fresh database per test file (so files running in parallel never share a schema or a backend).
 * The database and client helpers are test/src/pg-server.ts's, which the scripts use too.
 */
import { inject } from 'vitest';
import { freshDatabase as createDatabase, waitReady } from '../../src/pg-server.js';

/** `url` with another database name (and query parameters kept); a short-lived client for `fn`. */
export { withDatabase, withClient as admin } from '../../src/pg-server.js';

/** The server's URL once it answers (the embedded server starts in the background): up to 60 s. */
export async function pgServer(): Promise<string> {
  const url = inject('pgUrl');
  if (!url) throw new Error('no PostgreSQL server for this run (see test/board/pg/global-setup.ts)');
  await waitReady(url, 60_000, 'the test PostgreSQL server');
  return url;
}

/** A new, empty database on the test server; its URL. */
export async function freshDatabase(prefix = 'ks_test'): Promise<string> {
  return (await createDatabase(await pgServer(), prefix)).url;
}
