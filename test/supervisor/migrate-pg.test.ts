/**
 * `kanban-supervisor migrate --from PATH.db --to postgres://…` (issue 14, "Moving a board"), with
 * real processes on the test PostgreSQL server (a fresh schema per test). The board copied is made
 * by a real workload: a SQLite supervisor `run --until-idle` over a few hundred tasks that end done,
 * failed (blocked at the limit), crashed (blocked), deferred then done, cancelled, blocked for an
 * unknown skill or by an operator; a few left ready.
 *
 * - the copy has the same rows (ids, tokens, timestamps, statuses, current runs, runs.seq = the
 *   SQLite rowid, event ids), `list --json`, `runs --json` and `show --json` of a sample are the same
 *   on both sides, the SQLite files are not modified, and a supervisor on the PostgreSQL board then
 *   runs the ready tasks with new runs and events numbered after the copied ones;
 * - --dry-run writes nothing (not even the schema);
 * - a supervisor on either side is refused (exit 4, named): the SQLite board's owner, a worker a
 *   killed SQLite supervisor left running, a PostgreSQL supervisor's live lease, a stopped
 *   PostgreSQL supervisor that still holds its host lock (SIGSTOP, lease expired);
 * - a non-empty target is refused (exit 2, its counts named);
 * - a row PostgreSQL refuses in the last batch rolls the whole copy back: the target stays empty;
 * - bad --from / --to: exit 2 naming the thing; the password is never printed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { CLI, Cleanups, FIXTURES, cli, run, exited, killQuietly, pidsIn, tempDir, waitFor, type CmdResult } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', STORM_DISTINCT_TASKS: '0', BACKOFF_BASE_SECONDS: '0.05', BACKOFF_FACTOR: '1', MAX_CONCURRENT_WORKERS: '8' };
const TABLES = ['skills', 'tasks', 'links', 'runs', 'events'] as const;
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_migrate'));
const shared = tempDir('ks-migrate-');
afterAll(async () => {
  shared.cleanup();
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

let schemas = 0;
/** A target URL with a schema of its own, and its password. */
async function target(): Promise<{ url: string; schema: string; password: string }> {
  const u = new URL(await dbUrl());
  const schema = `mig_${process.pid}_${++schemas}`;
  u.searchParams.set('schema', schema);
  return { url: u.href, schema, password: decodeURIComponent(u.password) };
}

/** Run SQL on the test database (outside any board schema unless the text names it). */
async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const u = new URL(url);
  u.searchParams.delete('schema');
  return admin(u.href, async (c) => (await c.query(text, params)).rows as T[]);
}

const outputs: string[] = [];
/** `kanban-supervisor ARGS` (no --db), its output kept for the password check. */
async function ks(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CmdResult> {
  const r = await cli(join(shared.dir, 'unused.db'), args, env);
  outputs.push(r.stdout, r.stderr);
  return r;
}
const migrate = (from: string, to: string, ...more: string[]) => ks(['migrate', '--from', from, '--to', to, ...more]);

const COLS: Record<(typeof TABLES)[number], string> = {
  skills: 'name, argv, cwd, env, pass_env, max_runtime_seconds, heartbeat_timeout_seconds, reclaim_grace_seconds, max_rss_mb, report, result_from, created_at, updated_at',
  tasks: 'id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures, max_retries, max_runtime_seconds, last_error, result, current_run_id',
  links: 'child, parent, created_at',
  runs: 'id, task_id, token, status, outcome, pid, pgid, proc_start_time, boot_id, started_at, heartbeat_at, progress, ended_at, exit_code, signal, error, log_path, stop_reason, sigterm_at, sigkill_at, exited_at, accounted_at, defer_until, stopped_on_request',
  events: 'task_id, run_id, kind, data, at',
};
const norm = (rows: Array<Record<string, unknown>>) => rows.map((r) => Object.values(r).map((v) => (v === null || v === undefined ? null : String(v))));

/** Every row of the SQLite board in rowid order (runs and events: the rowid first, as seq and id). */
function sqliteRows(db: string): Record<string, unknown[][]> {
  const d = new Database(db, { readonly: true });
  try {
    const out: Record<string, unknown[][]> = {};
    for (const t of TABLES) {
      const key = t === 'runs' || t === 'events' ? 'rowid, ' : '';
      out[t] = norm(d.prepare(`SELECT ${key}${COLS[t]} FROM ${t} ORDER BY rowid`).all() as Array<Record<string, unknown>>);
    }
    return out;
  } finally {
    d.close();
  }
}

/** The same rows of the PostgreSQL board, in the order that matches (seq, id; tasks and skills as inserted). */
async function pgRows(url: string, schema: string): Promise<Record<string, unknown[][]>> {
  const order = { skills: 'ctid', tasks: 'ctid', links: 'ctid', runs: 'seq', events: 'id' };
  const out: Record<string, unknown[][]> = {};
  for (const t of TABLES) {
    const key = t === 'runs' ? 'seq, ' : t === 'events' ? 'id, ' : '';
    out[t] = norm(await sql(url, `SELECT ${key}${COLS[t]} FROM ${schema}.${t} ORDER BY ${order[t]}`));
  }
  return out;
}

async function pgCounts(url: string, schema: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of TABLES) out[t] = (await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${schema}.${t}`))[0]!.n;
  return out;
}

const schemaExists = async (url: string, schema: string) => (await sql(url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).length === 1;

const fileHash = (p: string) => (existsSync(p) ? createHash('sha256').update(readFileSync(p)).digest('hex') : null);

/** Copy a SQLite board (its file and -wal; no connection is open on it). */
function copyBoard(from: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const to = join(dir, 'kanban.db');
  copyFileSync(from, to);
  if (existsSync(`${from}-wal`)) copyFileSync(`${from}-wal`, `${to}-wal`);
  return to;
}

/**
 * The workload: skills whose workers complete, fail, crash, defer once then complete; tasks of a
 * skill removed before the run (blocked as unknown), tasks cancelled or blocked by an operator, a
 * supervisor `run --until-idle` over all of it, then a few tasks added ready (one for later).
 */
async function buildWorkload(dir: string): Promise<{ db: string; ready: string[] }> {
  const db = join(dir, 'board', 'kanban.db');
  const marks = join(dir, 'marks');
  mkdirSync(marks, { recursive: true });
  const b = await openBoard(db);
  const ready: string[] = [];
  try {
    await b.putSkill({ name: 'done', argv: ['sh', '-c', 'exec "$KANBAN_CLI" worker complete --result "{\\"task\\":\\"$KANBAN_TASK_ID\\"}"'], env: { A: '1' }, maxRuntimeSeconds: 60.5 });
    await b.putSkill({ name: 'fail', argv: ['sh', '-c', 'exec "$KANBAN_CLI" worker fail --error "boom: $KANBAN_TASK_ID"'], passEnv: ['HOME'] });
    await b.putSkill({ name: 'crash', argv: ['false'], reclaimGraceSeconds: 2 });
    await b.putSkill({ name: 'defer', argv: ['sh', '-c', 'if [ -e "$0/$KANBAN_TASK_ID" ]; then exec "$KANBAN_CLI" worker complete; fi; : > "$0/$KANBAN_TASK_ID"; exit 75', marks] });
    await b.putSkill({ name: 'gone', argv: ['true'] });
    const add = async (skill: string, n: number, extra: (i: number) => Record<string, unknown> = () => ({})) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push((await b.createTask({ skill, title: `${skill} ${i} ✓ "q" \\ tab\t`, payload: { i, s: skill, u: 'ü€😀', n: null }, ...extra(i) })).id);
      return ids;
    };
    // Each worker that reports is a Node process (~1 s of CPU on a busy machine): most tasks end without one.
    await add('done', 24, (i) => ({ priority: i % 5 }));
    await add('fail', 8, () => ({ maxRetries: 2 }));
    await add('crash', 70);
    await add('defer', 8);
    for (const id of await add('done', 60)) await b.cancelTask(id);
    for (const id of await add('done', 40)) await b.blockTask(id, `held by an operator: ${id}`);
    await add('gone', 40);
    await b.removeSkill('gone');
  } finally {
    await b.close();
  }
  const r = await run(process.execPath, [CLI, '--db', db, 'run', '--until-idle', '--log-format', 'json'], { env: { ...process.env, ...FAST }, timeoutMs: 360_000 });
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  expect(r.signal).toBeNull();
  const b2 = await openBoard(db);
  try {
    for (let i = 0; i < 4; i++) ready.push((await b2.createTask({ skill: 'done', title: `left ready ${i}`, priority: 10 - i })).id);
    const later = (await b2.createTask({ skill: 'done', title: 'later', notBefore: Date.now() + 1500 })).id;
    ready.push(later);
    // The task graph: a task waiting for two others (its links are copied too).
    await b2.createTask({ skill: 'done', title: 'after later', after: [later, ready[0]!] });
  } finally {
    await b2.close();
  }
  return { db, ready };
}

let workload: Promise<{ db: string; ready: string[] }> | null = null;
const board = () => (workload ??= buildWorkload(join(shared.dir, 'workload')));

describe('migrate a SQLite board to PostgreSQL', () => {
  beforeAll(() => void board().catch(() => undefined));

  it('a board made by a real workload copies with the same rows; list, runs and show --json are the same on both sides; the SQLite files are untouched; a PostgreSQL supervisor goes on from there', async () => {
    const { db: original, ready } = await board();
    const db = copyBoard(original, join(cleanups.tempDir('ks-migrate-'), 'board'));
    const { url, schema, password } = await target();
    const before = sqliteRows(db);
    // The workload has what it should: every task status but running, and many outcomes.
    const d = new Database(db, { readonly: true });
    const statuses = (d.prepare('SELECT status, count(*) AS n FROM tasks GROUP BY status').all() as Array<{ status: string; n: number }>).map((r) => r.status).sort();
    const outcomes = (d.prepare('SELECT DISTINCT outcome FROM runs').all() as Array<{ outcome: string }>).map((r) => r.outcome).sort();
    d.close();
    expect(statuses).toEqual(['blocked', 'cancelled', 'done', 'ready', 'waiting']);
    expect(outcomes).toEqual(['completed', 'crashed', 'deferred', 'failed']);
    expect(before.tasks!.length).toBe(256);
    expect(before.links!.length).toBe(2);
    expect(before.events!.length).toBeGreaterThan(1000); // more than one batch
    const hashes = [db, `${db}-wal`].map(fileHash);

    const r = await migrate(db, url);
    expect(r.code, r.stderr).toBe(0);
    const counts = `skills ${before.skills!.length}, tasks ${before.tasks!.length}, links ${before.links!.length}, runs ${before.runs!.length}, events ${before.events!.length}`;
    expect(r.stdout).toContain(`copied ${counts} from ${db} to `);
    expect(r.stdout).toContain(`schema=${schema}`);
    expect([db, `${db}-wal`].map(fileHash)).toEqual(hashes);

    // Row for row: ids, tokens, timestamps, statuses, current runs; runs.seq is the SQLite rowid, events keep their ids.
    expect(await pgRows(url, schema)).toEqual(before);
    // What the CLI shows is the same on both sides.
    const both = async (args: string[]) => {
      const [a, b] = await Promise.all([cli(db, ['--json', ...args]), cli(url, ['--json', ...args])]);
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(JSON.parse(b.stdout), args.join(' ')).toEqual(JSON.parse(a.stdout));
      return JSON.parse(a.stdout);
    };
    const list = (await both(['list'])) as Array<{ id: string; status: string }>;
    expect(list.length).toBe(before.tasks!.length);
    await both(['runs', '--limit', '1000000']);
    await both(['skill', 'list']);
    // A sample of tasks: some of every status (failed, crashed, deferred, cancelled, blocked, ready ones included).
    const sample = new Set<string>();
    for (const status of ['done', 'blocked', 'cancelled', 'ready']) for (const t of list.filter((x) => x.status === status).slice(0, 3)) sample.add(t.id);
    for (let i = 0; i < list.length; i += 50) sample.add(list[i]!.id);
    for (const id of sample) await both(['show', id]);

    // A supervisor of the PostgreSQL board runs the tasks left ready: its runs and events come after the copied ones.
    const state = join(cleanups.tempDir('ks-migrate-state-'), 'state');
    const sup = await run(process.execPath, [CLI, '--db', url, 'run', '--until-idle', '--log-format', 'json'], {
      env: { ...process.env, ...FAST, KANBAN_HOST_ID: 'after-migrate', KANBAN_STATE_DIR: state },
      timeoutMs: 120_000,
    });
    expect(sup.code, sup.stderr.slice(-2000)).toBe(0);
    expect(sup.signal).toBeNull();
    outputs.push(sup.stdout, sup.stderr);
    const maxEvent = Math.max(...before.events!.map((e) => Number(e[0])));
    const maxSeq = Math.max(...before.runs!.map((e) => Number(e[0])));
    for (const id of ready) {
      const shown = JSON.parse((await cli(url, ['--json', 'show', id])).stdout);
      expect(shown.status, id).toBe('done');
      expect(shown.result, id).toEqual({ task: id });
    }
    const fresh = await sql<{ seq: number; id: number }>(url, `SELECT r.seq::int AS seq, (SELECT min(e.id)::int FROM ${schema}.events e WHERE e.run_id = r.id) AS id FROM ${schema}.runs r WHERE r.task_id = ANY($1)`, [ready]);
    expect(fresh.length).toBe(ready.length);
    for (const f of fresh) {
      expect(f.seq).toBeGreaterThan(maxSeq);
      expect(f.id).toBeGreaterThan(maxEvent);
    }
    for (const o of outputs) expect(o).not.toContain(password);
  }, 600_000);

  it('--dry-run prints the counts and writes nothing: no schema on a new target, no row on an empty one', async () => {
    const { db } = await board();
    const { url, schema } = await target();
    const r = await migrate(db, url, '--dry-run');
    expect(r.code, r.stderr).toBe(0);
    const c = sqliteRows(db);
    expect(r.stdout).toContain(`dry run: would copy skills ${c.skills!.length}, tasks ${c.tasks!.length}, links ${c.links!.length}, runs ${c.runs!.length}, events ${c.events!.length}`);
    expect(r.stdout).toContain('a board created there');
    expect(await schemaExists(url, schema)).toBe(false);
    expect((await cli(url, ['init'])).code).toBe(0);
    const j = await ks(['--json', 'migrate', '--dry-run', '--from', db, '--to', url]);
    expect(j.code, j.stderr).toBe(0);
    const out = JSON.parse(j.stdout);
    expect(out).toMatchObject({ from: db, schema, dry_run: true, target_existed: true, counts: { skills: c.skills!.length, tasks: c.tasks!.length, links: c.links!.length, runs: c.runs!.length, events: c.events!.length } });
    expect(out.to).not.toContain(new URL(url).password);
    expect(await pgCounts(url, schema)).toEqual({ skills: 0, tasks: 0, links: 0, runs: 0, events: 0 });
  });

  it('refuses (exit 4, naming it) while a supervisor owns the SQLite board, or a worker a killed supervisor left is alive; copies once they are gone', async () => {
    const dir = cleanups.tempDir('ks-migrate-');
    const db = join(dir, 'board', 'kanban.db');
    const pids = join(dir, 'pids.txt');
    cleanups.killPidsAtEnd(pids);
    expect((await cli(db, ['skill', 'add', 'sleep', '--', join(FIXTURES, 'sup', 'sleeper.sh'), pids, '300'])).code).toBe(0);
    expect((await cli(db, ['add', '--skill', 'sleep'])).code).toBe(0);
    const { url, schema } = await target();
    const sup = cleanups.startCli(db, ['run', '--log-format', 'json'], FAST);
    await waitFor(() => pidsIn(pids).length === 1, 20_000);
    const owned = await migrate(db, url);
    expect(owned.code, owned.stderr).toBe(4);
    expect(owned.stderr).toContain(`board ${db} is owned by supervisor pid ${sup.pid} on host`);
    expect(await schemaExists(url, schema)).toBe(false);
    // The supervisor dies; its worker lives on (a restart would adopt it). Copying now would lose what it reports.
    sup.kill('SIGKILL');
    await exited(sup);
    const worker = pidsIn(pids)[0]!;
    const live = await migrate(db, url);
    expect(live.code, live.stderr).toBe(4);
    expect(live.stderr).toContain(`pid ${worker}), still alive`);
    expect(await schemaExists(url, schema)).toBe(false);
    // The whole group: the worker's `sleep` child carries the run's id too (and is refused as its worker).
    killQuietly(-worker);
    await waitFor(async () => (await migrate(db, url, '--dry-run')).code === 0, 20_000);
    const ok = await migrate(db, url);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('copied skills 1, tasks 1, links 0, runs 1,');
  });

  it('refuses (exit 4, naming it) a PostgreSQL board with a live supervisor: its lease, then its host lock once stopped (SIGSTOP) past its lease; copies after it exits', async () => {
    const { db } = await board();
    const { url, schema } = await target();
    expect((await cli(url, ['init'])).code).toBe(0);
    const env = { ...FAST, KANBAN_HOST_ID: 'pg-owner', KANBAN_STATE_DIR: join(cleanups.tempDir('ks-migrate-state-'), 'state'), SUPERVISOR_LEASE_SECONDS: '1' };
    const sup = cleanups.startCli(url, ['run', '--log-format', 'json'], env);
    await waitFor(async () => (await sql(url, `SELECT 1 FROM ${schema}.supervisors WHERE pid = $1 AND stopped_at IS NULL`, [sup.pid])).length === 1, 20_000);
    const leased = await migrate(db, url);
    expect(leased.code, leased.stderr).toBe(4);
    expect(leased.stderr).toContain(`is owned by supervisor pid ${sup.pid} on host`);
    expect(leased.stderr).toContain('(host id pg-owner)');
    expect(leased.stderr).toContain('its lease runs until');
    // Stopped, it renews nothing: its lease runs out, but its connection still holds the host lock.
    sup.kill('SIGSTOP');
    cleanups.push(() => sup.kill('SIGCONT'));
    await new Promise((r) => setTimeout(r, 1500));
    const locked = await migrate(db, url);
    expect(locked.code, locked.stderr).toBe(4);
    expect(locked.stderr).toContain(`is owned by supervisor pid ${sup.pid} on host`);
    expect(locked.stderr).toContain("(it holds its host's lock)");
    expect(await pgCounts(url, schema)).toEqual({ skills: 0, tasks: 0, links: 0, runs: 0, events: 0 });
    sup.kill('SIGCONT');
    sup.kill('SIGTERM');
    expect((await exited(sup)).code).toBe(0);
    const ok = await migrate(db, url);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await pgCounts(url, schema)).tasks).toBe(sqliteRows(db).tasks!.length);
  });

  it('refuses a target that holds anything (exit 2, its counts named) and leaves it as it was', async () => {
    const { db } = await board();
    const { url, schema } = await target();
    expect((await cli(url, ['skill', 'add', 'mine', '--', 'true'])).code).toBe(0);
    expect((await cli(url, ['add', '--skill', 'mine'])).code).toBe(0);
    const r = await migrate(db, url);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`schema=${schema} is not empty (skills 1, tasks 1, links 0, runs 0, events 1)`);
    expect(r.stderr).toContain('never merges boards');
    expect(await pgCounts(url, schema)).toEqual({ skills: 1, tasks: 1, links: 0, runs: 0, events: 1 });
  });

  it('a row PostgreSQL refuses in the last batch rolls the whole copy back: the target stays empty; fixed, the copy goes through', async () => {
    const { db: original } = await board();
    const db = copyBoard(original, join(cleanups.tempDir('ks-migrate-'), 'board'));
    // SQLite keeps a NUL character in TEXT; PostgreSQL's text refuses it. The board's last event gets one.
    const w = new Database(db);
    const last = (w.prepare('SELECT max(id) AS id FROM events').get() as { id: number }).id;
    w.prepare("UPDATE events SET kind = 'bad' || char(0) || 'kind' WHERE id = ?").run(last);
    w.close();
    const { url, schema } = await target();
    const r = await migrate(db, url);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/the copy was rolled back, nothing of it is on the board: copying events rows \d+-\d+ of \d+: .*0x00/);
    // The board exists (created as init does) and holds nothing; the identity sequences were not moved.
    expect(await pgCounts(url, schema)).toEqual({ skills: 0, tasks: 0, links: 0, runs: 0, events: 0 });
    const seqs = await sql<{ name: string; last: string | null }>(url, 'SELECT sequencename AS name, last_value::text AS last FROM pg_sequences WHERE schemaname = $1 ORDER BY 1', [schema]);
    expect(seqs.length).toBeGreaterThanOrEqual(2);
    for (const s of seqs) expect(s.last, s.name).toBeNull();
    const fix = new Database(db);
    fix.prepare("UPDATE events SET kind = 'bad-kind' WHERE id = ?").run(last);
    fix.close();
    const ok = await migrate(db, url);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await pgCounts(url, schema)).events).toBe(sqliteRows(db).events!.length);
  });

  it('bad --from and --to: exit 2 naming the thing at fault; the password is never printed', async () => {
    const { db } = await board();
    const { url, password } = await target();
    const dir = cleanups.tempDir('ks-migrate-');
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello, not a board\n');
    const empty = join(dir, 'empty.db');
    new Database(empty).close();
    const cases: Array<[string[], string]> = [
      [['--from', url, '--to', url], 'is a PostgreSQL URL: --from names the SQLite board file'],
      [['--from', db, '--to', join(dir, 'other.db')], `board ${join(dir, 'other.db')} is not a PostgreSQL URL`],
      [['--from', db, '--to', url.replace('postgres://', 'mysql://')], 'is not a PostgreSQL URL'],
      [['--from', join(dir, 'missing.db'), '--to', url], `board ${join(dir, 'missing.db')} does not exist`],
      [['--from', dir, '--to', url], `board ${dir} is a directory`],
      [['--from', text, '--to', url], `board ${text} is not a SQLite board`],
      [['--from', empty, '--to', url], `board ${empty} is an empty file, not a board`],
      [['--from', db, '--to', url.replace(/schema=[^&]+/, 'schema=Bad')], 'names schema "Bad"'],
      [['--from', db], '--to URL'],
      [['--to', url], '--from PATH'],
    ];
    for (const [args, message] of cases) {
      const r = await ks(['migrate', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(message);
    }
    // A server that refuses the password: a failure (exit 1), the URL masked.
    const wrong = new URL(url);
    wrong.password = 'not-the-password-42';
    const r = await ks(['migrate', '--from', db, '--to', wrong.href]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('password authentication failed');
    expect(r.stderr).not.toContain('not-the-password-42');
    expect(existsSync(`${text}.owner-lock`)).toBe(false);
    for (const o of outputs) expect(o).not.toContain(password);
  });
});
