/**
 * The PostgreSQL supervisor's configuration and start (issue 14), with real processes, signals and
 * the test PostgreSQL server:
 * - KANBAN_HOST_ID, SUPERVISOR_LEASE_SECONDS and KANBAN_STATE_DIR are part of the one validated
 *   config, with `run --host-id/--lease-seconds/--state-dir`: a bad value (variable or flag) exits 2
 *   naming it; a lease shorter than 3 ticks is refused naming both; the flags win over the variables.
 * - A server that cannot be reached at start is waited for (one `board_unreachable` warning, the URL
 *   masked) and the supervisor runs once it answers; SIGTERM while waiting exits 0 at once (during a
 *   backoff, and during an attempt the server never answers); a wrong password, an unknown database
 *   or a bad URL exit 2 at once, naming the masked URL.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { CLI, Cleanups, EXAMPLES, cli, exited, logEvents, run, sleep, waitFor } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';
import { freePort } from '../src/pg-server.js';

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', LOG_FORMAT: 'json' };
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_pgcfg'));
afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

let boards = 0;
/** A new board (its own schema) on the test server, and a temp folder. */
async function setup(): Promise<{ url: string; password: string; dir: string; schema: string }> {
  const u = new URL(await dbUrl());
  const schema = `cfg_${process.pid}_${++boards}`;
  u.searchParams.set('schema', schema);
  return { url: u.href, password: decodeURIComponent(u.password), dir: cleanups.tempDir('ks-pgcfg-'), schema };
}

/** A TCP server on 127.0.0.1:`port`: each connection forwarded to `target` (host:port), or held unanswered (`target` null). Closed at the end of the test. */
async function tcpServer(port: number, target: { host: string; port: number } | null): Promise<{ server: Server; connections: () => number }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createServer((client) => {
    count++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (!target) return; // a server that never answers
    const upstream = connect(target.port, target.host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { server, connections: () => count };
}

/** `url` with another port on 127.0.0.1 (the password and the schema kept). */
function onPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.href;
}

describe('PostgreSQL supervisor config: KANBAN_HOST_ID, SUPERVISOR_LEASE_SECONDS, KANBAN_STATE_DIR and their run flags', () => {
  it('a bad value exits 2 naming the variable or the flag, before any connection; a lease shorter than 3 ticks names both', async () => {
    const { url, password, dir } = await setup();
    const afile = join(dir, 'a-file');
    writeFileSync(afile, 'x');
    const base = { ...process.env, ...FAST, KANBAN_HOST_ID: 'h1', KANBAN_STATE_DIR: join(dir, 'state') };
    const cases: Array<[Record<string, string>, string[], string]> = [
      [{ KANBAN_HOST_ID: 'two words' }, [], 'KANBAN_HOST_ID must be 1-128 letters, digits or . _ : -, got "two words"'],
      [{}, ['--host-id', 'a/b'], '--host-id must be 1-128 letters, digits or . _ : -, got "a/b"'],
      [{}, ['--host-id', ''], '--host-id must be 1-128 letters'],
      [{ KANBAN_HOST_ID: 'x'.repeat(129) }, [], 'KANBAN_HOST_ID must be 1-128 letters'],
      [{ SUPERVISOR_LEASE_SECONDS: 'abc' }, [], 'SUPERVISOR_LEASE_SECONDS must be a number from 1 to 86400, got "abc"'],
      [{ SUPERVISOR_LEASE_SECONDS: '0' }, [], 'SUPERVISOR_LEASE_SECONDS must be a number from 1 to 86400, got "0"'],
      [{}, ['--lease-seconds', '-5'], '--lease-seconds must be a number from 1 to 86400, got "-5"'],
      [{}, ['--lease-seconds', '90000'], '--lease-seconds must be a number from 1 to 86400, got "90000"'],
      [{}, ['--state-dir', ''], '--state-dir must not be empty'],
      // The lease against the tick interval: each from the variable or the flag, named as given.
      [{ SUPERVISOR_LEASE_SECONDS: '2', TICK_INTERVAL_MS: '1000' }, [], 'SUPERVISOR_LEASE_SECONDS (2 s) must be at least 3 times TICK_INTERVAL_MS (1000 ms), that is 3 s'],
      [{ TICK_INTERVAL_MS: '20000' }, [], 'SUPERVISOR_LEASE_SECONDS (30 s, the default) must be at least 3 times TICK_INTERVAL_MS (20000 ms), that is 60 s'],
      [{ SUPERVISOR_LEASE_SECONDS: '60' }, ['--lease-seconds', '1', '--tick-interval-ms', '500'], '--lease-seconds (1 s) must be at least 3 times --tick-interval-ms (500 ms), that is 1.5 s'],
      // A state folder that cannot be one: refused naming it.
      [{}, ['--state-dir', afile], `cannot create its local state folder ${afile}`],
    ];
    for (const [env, flags, message] of cases) {
      const r = await run(process.execPath, [CLI, '--db', url, 'run', '--until-idle', ...flags], { cwd: dir, env: { ...base, ...env }, timeoutMs: 20_000 });
      expect(r.code, `${JSON.stringify(env)} ${flags.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout + r.stderr).not.toContain(password);
    }
    // The lease check is the PostgreSQL board's: a SQLite board with a long tick is not refused.
    const sqlite = await run(process.execPath, [CLI, '--db', join(dir, 'k.db'), 'init'], { env: { ...base, TICK_INTERVAL_MS: '20000' } });
    expect(sqlite.code, sqlite.stderr).toBe(0);
    const idle = await run(process.execPath, [CLI, '--db', join(dir, 'k.db'), 'run', '--until-idle'], { env: { ...base, TICK_INTERVAL_MS: '20000' } });
    expect(idle.code, idle.stderr).toBe(0);
  });

  it('--host-id, --lease-seconds and --state-dir win over KANBAN_HOST_ID, SUPERVISOR_LEASE_SECONDS and KANBAN_STATE_DIR', async () => {
    const { url, password, dir, schema } = await setup();
    const fromEnv = join(dir, 'state-env');
    const fromFlag = join(dir, 'state-flag');
    const env = { ...FAST, KANBAN_HOST_ID: 'env-host', SUPERVISOR_LEASE_SECONDS: '30', KANBAN_STATE_DIR: fromEnv };
    expect((await cli(url, ['init'], env)).code).toBe(0);
    const p = cleanups.startCli(url, ['run', '--host-id', 'flag-host', '--lease-seconds', '45', '--state-dir', fromFlag], env);
    await waitFor(() => logEvents(p.output(), 'started').length > 0, 30_000);
    expect(logEvents(p.output(), 'started')).toEqual([expect.objectContaining({ hostId: 'flag-host' })]);
    // The state folder of the flag: the status file (with the host id) is there, nothing under the variable's.
    expect(existsSync(fromEnv)).toBe(false);
    expect(JSON.parse(readFileSync(join(fromFlag, 'supervisor.json'), 'utf8'))).toMatchObject({ hostId: 'flag-host', pid: p.pid });
    const status = await cli(url, ['--json', 'status'], { ...env, KANBAN_STATE_DIR: fromFlag });
    expect(status.code, status.stderr).toBe(0);
    const st = JSON.parse(status.stdout);
    expect(st.owner).toMatchObject({ pid: p.pid, live: true });
    expect(st.supervisors).toEqual([expect.objectContaining({ hostId: 'flag-host', pid: p.pid, leaseOk: true })]);
    // The row: the flag's host id, a lease of 45 s, renewed every tick (30 s would be the variable's).
    const plain = new URL(url);
    plain.searchParams.delete('schema');
    const rows = await admin(plain.href, async (c) =>
      (await c.query(`SELECT host_id, pid, lease_expires_at - (extract(epoch from clock_timestamp()) * 1000)::bigint AS left_ms FROM ${schema}.supervisors`)).rows as Array<{ host_id: string; pid: number; left_ms: number }>,
    );
    expect(rows.map((r) => [r.host_id, r.pid])).toEqual([['flag-host', p.pid]]);
    expect(Number(rows[0]!.left_ms)).toBeGreaterThan(40_000);
    expect(Number(rows[0]!.left_ms)).toBeLessThanOrEqual(45_000);
    p.kill('SIGTERM');
    expect((await exited(p)).code, p.output()).toBe(0);
    expect(p.output()).not.toContain(password);
  });
});

describe('PostgreSQL server unreachable at start', () => {
  it('waits with backoff (one board_unreachable warning, the URL masked), then runs once the server answers', async () => {
    const { url, password, dir } = await setup();
    const env = { ...FAST, KANBAN_HOST_ID: 'h1', KANBAN_STATE_DIR: join(dir, 'state') };
    expect((await cli(url, ['skill', 'add', 'echo', '--', process.execPath, join(EXAMPLES, 'echo.js')], env)).code).toBe(0);
    const id = (await cli(url, ['add', '--skill', 'echo', '--payload', '{"hello":1}'], env)).stdout.trim();
    const port = await freePort();
    const proxied = onPort(url, port);
    // Nothing listens on `port` yet: every attempt is refused.
    const p = cleanups.startCli(proxied, ['run', '--until-idle'], env);
    await waitFor(() => logEvents(p.output(), 'board_unreachable').length > 0, 20_000);
    await sleep(2500); // attempts 0.5 and 1.5 s after the first: still one warning
    expect(p.exitCode).toBeNull();
    const warned = logEvents(p.output(), 'board_unreachable');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, board: onPort(url, port).replace(`:${encodeURIComponent(password)}@`, ':***@'), code: 'ECONNREFUSED', errorClass: 'io', attempts: 1 });
    // The server comes: a proxy on that port to the test server.
    const target = new URL(url);
    const proxy = await tcpServer(port, { host: target.hostname, port: Number(target.port) });
    const { code } = await exited(p);
    expect(code, p.output()).toBe(0);
    expect(proxy.connections()).toBeGreaterThan(0);
    const reached = logEvents(p.output(), 'board_reachable');
    expect(reached).toEqual([expect.objectContaining({ board: warned[0]!.board })]);
    expect(reached[0]!.attempts as number).toBeGreaterThanOrEqual(3);
    expect(logEvents(p.output(), 'board_unreachable')).toHaveLength(1);
    expect(logEvents(p.output(), 'started')).toHaveLength(1);
    const s = JSON.parse((await cli(url, ['--json', 'show', id], env)).stdout);
    expect([s.status, s.result]).toEqual(['done', { hello: 1 }]);
    expect(p.output()).not.toContain(password);
  });

  it('SIGTERM while waiting exits 0 at once: during a backoff, and during an attempt the server never answers', async () => {
    const { url, dir } = await setup();
    const env = { ...FAST, KANBAN_HOST_ID: 'h1', KANBAN_STATE_DIR: join(dir, 'state') };
    // Refused: the supervisor sleeps between attempts.
    const refused = cleanups.startCli(onPort(url, await freePort()), ['run'], env);
    await waitFor(() => logEvents(refused.output(), 'board_unreachable').length > 0, 20_000);
    await sleep(700);
    let t = Date.now();
    refused.kill('SIGTERM');
    expect((await exited(refused)).code, refused.output()).toBe(0);
    expect(Date.now() - t).toBeLessThan(2000);
    // A server that accepts and never answers: the first attempt waits for its connect timeout (10 s).
    const port = await freePort();
    const silent = await tcpServer(port, null);
    const hung = cleanups.startCli(onPort(url, port), ['run'], env);
    await waitFor(() => silent.connections() > 0, 20_000);
    await sleep(500);
    expect(hung.exitCode).toBeNull();
    t = Date.now();
    hung.kill('SIGTERM');
    expect((await exited(hung)).code, hung.output()).toBe(0);
    expect(Date.now() - t).toBeLessThan(2000);
    expect(logEvents(hung.output(), 'started')).toHaveLength(0);
  });

  it('a wrong password, an unknown database or a bad URL exits 2 at once naming the masked URL (not retried)', async () => {
    const { url, password, dir } = await setup();
    const env = { ...process.env, ...FAST, KANBAN_HOST_ID: 'h1', KANBAN_STATE_DIR: join(dir, 'state') };
    const wrong = new URL(url);
    wrong.password = 'not-the-password-xyz';
    const unknownDb = new URL(url);
    unknownDb.pathname = '/no_such_database_ks';
    const cases: Array<[string, string, string]> = [
      [wrong.href, '(28P01)', 'not-the-password-xyz'],
      [unknownDb.href, '(3D000)', password],
      ['postgres://kanban:pw-secret-1@[bad/x?schema=k', 'is not a valid PostgreSQL URL', 'pw-secret-1'],
    ];
    for (const [bad, message, secret] of cases) {
      const t = Date.now();
      const r = await run(process.execPath, [CLI, '--db', bad, 'run', '--until-idle'], { cwd: dir, env, timeoutMs: 20_000 });
      const took = Date.now() - t;
      expect(r.code, `${message}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(message);
      const label = bad.includes('[bad') ? 'postgres://kanban:***@[bad/x?schema=k' : new URL(bad).href.replace(`:${encodeURIComponent(new URL(bad).password)}@`, ':***@');
      expect(r.stderr).toContain(`board ${label}`);
      expect(r.stdout + r.stderr).not.toContain(secret);
      expect(logEvents(r.stdout + r.stderr, 'board_unreachable')).toHaveLength(0);
      expect(took).toBeLessThan(10_000);
    }
  });
});
