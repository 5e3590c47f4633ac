/**
 * The test PostgreSQL server (global-setup.ts) as a test file sees it: wait until it answers, and a
 * fresh database per test file (so files running in parallel never share a schema or a backend).
 */
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The server's URL once it answers (the embedded server starts in the background): up to 60 s. */
export async function pgServer(): Promise<string> {
  const url = inject('pgUrl');
  if (!url) throw new Error('no PostgreSQL server for this run (see test/board/pg/global-setup.ts)');
  const deadline = Date.now() + 60_000;
  for (;;) {
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      return url;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`the test PostgreSQL server did not answer within 60 s: ${(e as Error).message}`);
      await sleep(100);
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}

/** `url` with another database name (and query parameters kept). */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.href;
}

/** A new, empty database on the test server; its URL. */
export async function freshDatabase(prefix = 'ks_test'): Promise<string> {
  const url = await pgServer();
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await admin(url, (c) => c.query(`CREATE DATABASE ${name}`));
  return withDatabase(url, name);
}

/** Run `fn` with a short-lived client on `url`. */
export async function admin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}
