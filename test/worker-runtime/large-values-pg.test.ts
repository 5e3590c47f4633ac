/**
 * A worker gets its whole payload and all its parents' results whatever their sizes within the
 * board's limits (issue 19): a 3.5 MiB payload and three parents with 3 MiB results each, read by
 * the Node and the Python runtime under a real supervisor, on a SQLite and on a PostgreSQL board
 * (where the Python runtime has no direct path: the channel is its only way to the board). The
 * report channel serves them in bounded answers (`payload` without the results, `parents` in
 * pages): no connection is dropped, and the run completes with what it read. The worker CLI
 * (`worker payload`, `worker parents`) reads the same through the channel.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { CLI, Cleanups, FIXTURES, cli, exited, logEvents, run, waitFor } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';
import { RUNTIMES } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_large'));
afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

const MiB = 1024 * 1024;
const PARENT_BYTES = 3 * MiB;
const PAYLOAD_BYTES = 3.5 * MiB;
const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', KANBAN_HTTP: 'off' };
const NODE = RUNTIMES.find((r) => r.name === 'node')!;

let schemas = 0;
async function board(kind: 'sqlite' | 'pg'): Promise<{ db: string; env: Record<string, string> }> {
  const dir = cleanups.tempDir('ks-large-');
  if (kind === 'sqlite') return { db: join(dir, 'board', 'kanban.db'), env: FAST };
  const u = new URL(await dbUrl());
  u.searchParams.set('schema', `large_${process.pid}_${++schemas}`);
  return { db: u.href, env: { ...FAST, KANBAN_HOST_ID: 'h1', KANBAN_STATE_DIR: join(dir, 'state') } };
}

describe.each(RUNTIMES)('the $name runtime', (rt) => {
  it.each(['sqlite', 'pg'] as const)('reads a 3.5 MiB payload and 3 parents × 3 MiB results through the channel (%s board)', async (kind) => {
    const { db, env } = await board(kind);
    const ok = async (args: string[]) => {
      const r = await cli(db, args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout.trim();
    };
    await ok(['init']);
    const envFlags = (e: Record<string, string>) => Object.entries(e).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
    // The parents' big results are written by the Node runtime (directly: larger than a request frame).
    await ok(['skill', 'add', 'maker', ...envFlags({ MODE: 'big' }), '--', ...NODE.argv]);
    await ok(['skill', 'add', 'reader', ...envFlags({ ...rt.env, MODE: 'digest' }), '--', ...rt.argv]);
    await ok(['skill', 'add', 'count', '--', join(FIXTURES, 'runtimes', 'count.sh')]);
    const parents: string[] = [];
    for (let i = 0; i < 3; i++) parents.push(await ok(['add', '--skill', 'maker', '--payload', JSON.stringify({ i, size: PARENT_BYTES })]));
    const line = JSON.stringify({ skill: 'reader', payload: { fill: 'y'.repeat(PAYLOAD_BYTES) }, after: parents }) + '\n';
    const added = await run(process.execPath, [CLI, '--db', db, 'add', '--from', '-'], { env: { ...process.env, ...env }, input: line });
    expect(added.code, added.stderr).toBe(0);
    const child = added.stdout.trim();
    // The worker CLI too (once per board kind: it is the same whichever runtime the reader is).
    const counter = rt.name === 'node' ? await ok(['add', '--skill', 'count', ...parents.flatMap((p) => ['--after', p])]) : null;

    const sup = cleanups.startCli(db, ['run'], env);
    const shown = async () => JSON.parse((await cli(db, ['--json', 'show', child], env)).stdout) as { status: string; result: unknown; runs: Array<{ outcome: string; error: string | null }> };
    await waitFor(async () => (await shown()).status === 'done', 90_000, 1000).catch(async (e: unknown) => {
      throw new Error(`${String(e)}: the child is ${(await shown()).status}\n${sup.output()}`);
    });
    const t = await shown();
    expect(t.result).toEqual({ payload: PAYLOAD_BYTES, parents: Object.fromEntries(parents.map((p) => [p, PARENT_BYTES])) });
    if (counter) {
      await waitFor(async () => JSON.parse((await cli(db, ['--json', 'show', counter], env)).stdout).status === 'done', 60_000, 1000);
      const c = JSON.parse((await cli(db, ['--json', 'show', counter], env)).stdout) as { result: { payload: number; parents: number } };
      // `worker payload` prints null (a task without payload); `worker parents` all three results.
      expect(c.result.payload).toBe(5);
      expect(c.result.parents).toBeGreaterThan(3 * PARENT_BYTES);
      expect(c.result.parents).toBeLessThan(3 * PARENT_BYTES + 1000);
    }
    // A run before may have been deferred (not counted) when the loaded machine let a request go unanswered for 5 s.
    expect(t.runs.map((r) => r.outcome).filter((o) => o !== 'deferred'), JSON.stringify(t.runs)).toEqual(['completed']);
    sup.kill('SIGTERM');
    expect((await exited(sup)).code, sup.output()).toBe(0);
    // No connection dropped (the answers are within their bound), and the child's run read its
    // payload and its parents' results through the channel (payload + one page per 3 MiB parent).
    expect(logEvents(sup.output(), 'channel_client_dropped')).toEqual([]);
  }, 180_000);
});
