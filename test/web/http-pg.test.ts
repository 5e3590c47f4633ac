/**
 * The HTTP server of a supervisor on a PostgreSQL board: keyset pages stable while tasks are added,
 * and the event stream in commit order with a Last-Event-ID resume, while another process writes
 * through its own connections (event ids are not in commit order there: the stream's cursor is the
 * transaction id and the event id, pg/pages.ts).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Cleanups, cli, exited, waitFor } from '../src/common.js';
import { sseClient, startHttpSup } from '../src/http-client.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_webpg'));
afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

describe('HTTP on a PostgreSQL board', () => {
  it('keyset pages and the event stream (commit order, Last-Event-ID resume) with concurrent writers', async () => {
    const u = new URL(await dbUrl());
    u.searchParams.set('schema', `web_${process.pid}`);
    const url = u.href;
    const dir = cleanups.tempDir('ks-webpg-');
    const env = { TICK_INTERVAL_MS: '100', KANBAN_HOST_ID: 'h1', KANBAN_STATE_DIR: join(dir, 'state'), MAX_CONCURRENT_WORKERS: '1' };
    expect((await cli(url, ['init'], env)).code).toBe(0);
    expect((await cli(url, ['skill', 'add', 'sleep', '--', '/bin/sleep', '30'], env)).code).toBe(0);
    const s = await startHttpSup(url, env, [], join(dir, 'state', 'http-token'));
    cleanups.push(async () => {
      s.child.kill('SIGTERM');
      await exited(s.child);
    });
    const a = sseClient(`${s.url}/api/events`);
    cleanups.push(a.close);
    await waitFor(() => a.events.find((e) => e.event === 'hello'));
    expect(a.events[0]!.id).toMatch(/^\d+\.\d+$/);
    // Writers in parallel: the API (the supervisor's operator connection) and CLI processes.
    const made = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) =>
        s.post('/api/tasks', { skill: 'sleep', title: `api ${i}` }).then((r) => {
          expect(r.status, r.body).toBe(201);
          return r.json.id as string;
        }),
      ),
      ...Array.from({ length: 4 }, (_, i) =>
        cli(url, ['--json', 'add', '--skill', 'sleep', '--title', `cli ${i}`], env).then((r) => {
          expect(r.code, r.stderr).toBe(0);
          return JSON.parse(r.stdout).id as string;
        }),
      ),
    ]);
    const created = () => a.events.filter((e) => e.event === 'transition' && e.data.kind === 'created').map((e) => e.data.task_id);
    await waitFor(() => created().length >= made.length).catch(async (e: Error) => {
      // What the feed held back, and why (the transactions the server had running), for a failure's report.
      const why = await admin(await dbUrl(), async (c) => ({
        events: (await c.query(`SELECT id, txid::text, kind, task_id FROM web_${process.pid}.events ORDER BY txid, id`)).rows,
        snapshot: (await c.query('SELECT pg_current_snapshot()::text AS s')).rows[0],
        running: (await c.query('SELECT pid, datname, backend_xid::text, state, xact_start, left(query, 120) AS query FROM pg_stat_activity WHERE backend_xid IS NOT NULL')).rows,
      })).catch((x: unknown) => String(x));
      const seen = a.events.map((x) => `${x.event} ${x.id} ${x.data?.kind ?? ''} ${x.data?.task_id ?? ''}`);
      throw new Error(`${e.message}: made ${made.join(' ')}; stream ${JSON.stringify(seen)}; board ${JSON.stringify(why)}; supervisor output: ${s.child.output().slice(-4000)}`);
    });
    expect(new Set(created())).toEqual(new Set(made));
    const ids = a.events.filter((e) => e.event === 'transition').map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    // Pages: newest first, joined up, while tasks are added.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r = await s.get(`/api/tasks?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...r.json.tasks.map((t: { id: string }) => t.id));
      cursor = r.json.nextCursor;
      await s.post('/api/tasks', { skill: 'sleep', title: 'later' });
    } while (cursor);
    expect(new Set(seen)).toEqual(new Set(made));
    expect(seen).toHaveLength(made.length);
    // Resume after the third event: the rest, in the same order, nothing twice.
    const got = a.events.filter((e) => e.event === 'transition');
    const mid = got[2]!;
    a.close();
    const b = sseClient(`${s.url}/api/events`, { 'last-event-id': mid.id });
    cleanups.push(b.close);
    const rest = got.slice(3).map((e) => e.id);
    await waitFor(() => b.events.filter((e) => e.event === 'transition').length >= rest.length);
    const resumed = b.events.filter((e) => e.event === 'transition').map((e) => e.id);
    expect(resumed.slice(0, rest.length)).toEqual(rest);
    expect(new Set(resumed).size).toBe(resumed.length);
  });
});
