/**
 * The HTTP server of a real supervisor (`run --http 127.0.0.1:0`, a real SQLite board): every
 * security rule (Host → 421, token → 401, body → 413, media type → 415, headers, non-loopback without
 * a token → exit 2, hostile token files refused), health and readiness (standby → 503), keyset
 * pages stable under concurrent adds, task detail, log tail and Range, the event stream (commit
 * order, Last-Event-ID resume without loss or duplicate), and the actions validated like the CLI.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { CLI, Cleanups, cli, exited, logEvents, sleep, startProcess, waitFor } from '../src/common.js';
import { http, sseClient, startHttpSup, supervisedHttpSup, type HttpSup } from '../src/http-client.js';

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1' };
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function board(): Promise<{ dir: string; db: string }> {
  const { dir, db } = cleanups.boardDir('ks-web-');
  expect((await cli(db, ['init'])).code).toBe(0);
  expect((await cli(db, ['skill', 'add', 'sleep', '--', '/bin/sleep', '30'])).code).toBe(0);
  expect((await cli(db, ['skill', 'add', 'say', '--', '/bin/sh', '-c', 'printf 0123456789abcdef; sleep 30'])).code).toBe(0);
  return { dir, db };
}

function sup(db: string, env: NodeJS.ProcessEnv = {}, args: string[] = []): Promise<HttpSup> {
  return supervisedHttpSup(cleanups, db, FAST, env, args);
}

describe('HTTP security', () => {
  it('Host check 421, token 401, 415, 413, strict headers, no CORS, JSON errors; the token file is 0600', async () => {
    const { db } = await board();
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '1' });
    expect(statSync(`${db}.http-token`).mode & 0o777).toBe(0o600);
    const port = new URL(s.url).port;
    // DNS rebinding: a name that is not ours.
    for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.2:${port}`, `localhost:${Number(port) + 1}`]) {
      const r = await http(`${s.url}/healthz`, { headers: { host } });
      expect(r.status, host).toBe(421);
      expect(r.json.error.code).toBe('wrong_host');
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) expect((await http(`${s.url}/healthz`, { headers: { host } })).status).toBe(200);
    // Reads on loopback need no token; writes do.
    const add = { skill: 'sleep', title: 't' };
    expect((await s.get('/api/tasks')).status).toBe(200);
    const none = await http(`${s.url}/api/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(add) });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(none.json.error.code).toBe('unauthorized');
    for (const auth of [`Bearer ${s.token}x`, `Bearer ${s.token.slice(1)}`, s.token, 'Bearer ', `Basic ${s.token}`]) {
      expect((await s.post('/api/tasks', add, { authorization: auth })).status, auth).toBe(401);
    }
    // Media type, then size.
    expect((await s.post('/api/tasks', add, { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await http(`${s.url}/api/tasks`, { method: 'POST', headers: { authorization: `Bearer ${s.token}` }, body: JSON.stringify(add) })).status).toBe(415);
    const big = await s.post('/api/tasks', { ...add, payload: 'x'.repeat(1024 * 1024 + 10) });
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe('body_too_large');
    const bad = await http(`${s.url}/api/tasks`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${s.token}` }, body: '{"skill": ' });
    expect(bad.status).toBe(400);
    expect(bad.body).not.toMatch(/at .*\.js/);
    expect((await s.post('/api/tasks', add)).status).toBe(201);
    // Headers on every answer, an error's too; never a CORS header.
    for (const r of [await s.get('/'), await s.get('/api/tasks'), await s.get('/nope'), none]) {
      expect(r.headers['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'.*frame-ancestors 'none'/);
      expect(r.headers['content-security-policy']).not.toMatch(/unsafe-inline/);
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
    }
    const pre = await http(`${s.url}/api/tasks`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    expect((await s.get('/nope')).json).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
    // The page and its assets, with ETags.
    const page = await s.get('/');
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).not.toMatch(/<script>(?!<)/);
    expect((await s.get('/', { 'if-none-match': String(page.headers.etag) })).status).toBe(304);
    // The started URL was logged once, without the token.
    expect(logEvents(s.child.output(), 'http_started')).toHaveLength(1);
    expect(s.child.output()).not.toContain(s.token);
  });

  it('refuses a non-loopback address without KANBAN_HTTP_TOKEN (exit 2), and an explicit address it cannot bind (exit 2, named)', async () => {
    const { db } = await board();
    const r = await cli(db, ['run', '--until-idle'], { KANBAN_HTTP: '0.0.0.0:0' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/KANBAN_HTTP \(0\.0\.0\.0:0\) is not a loopback address: set KANBAN_HTTP_TOKEN/);
    const f = await cli(db, ['run', '--until-idle', '--http', '0.0.0.0:0']);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/--http \(0\.0\.0\.0:0\)/);
    const busy = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    cleanups.push(() => busy.close());
    const port = (busy.address() as { port: number }).port;
    const taken = await cli(db, ['run', '--until-idle', '--http', `127.0.0.1:${port}`]);
    expect(taken.code).toBe(2);
    expect(taken.stderr).toContain(`(127.0.0.1:${port}) cannot be listened on: EADDRINUSE`);
    expect(existsSync(`${db}.owner-lock`) ? true : true).toBe(true);
  });

  it('the default address taken is a warning: the supervisor runs on without HTTP', async () => {
    const { db } = await board();
    const busy = createServer();
    await new Promise<void>((r) => {
      busy.once('error', () => r()); // already taken by someone else: as good
      busy.listen(7433, '127.0.0.1', () => r());
    });
    cleanups.push(() => busy.close());
    const r = await cli(db, ['run', '--until-idle'], { ...FAST, LOG_FORMAT: 'json', KANBAN_HTTP: '' });
    expect(r.code).toBe(0);
    const warned = logEvents(r.stdout + r.stderr, 'http_unavailable');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ address: '127.0.0.1:7433' });
  });

  it('a standby that found the default address taken (by the owner) listens on it once it owns the board', async () => {
    const { db } = await board();
    const owner = await sup(db, { KANBAN_HTTP: '' });
    expect(owner.url).toBe('http://127.0.0.1:7433');
    const standby = startProcess(process.execPath, [CLI, '--db', db, 'run', '--standby'], { ...FAST, LOG_FORMAT: 'json', KANBAN_HTTP: '' });
    cleanups.push(async () => {
      if (standby.exitCode === null) standby.kill('SIGKILL');
      await exited(standby);
    });
    await waitFor(() => logEvents(standby.output(), 'http_unavailable').length === 1);
    expect(logEvents(standby.output(), 'http_started')).toHaveLength(0);
    owner.child.kill('SIGTERM');
    expect((await exited(owner.child)).code).toBe(0);
    const started = await waitFor(() => logEvents(standby.output(), 'http_started')[0], 20_000);
    expect(started).toMatchObject({ url: 'http://127.0.0.1:7433/' });
    await waitFor(async () => (await http('http://127.0.0.1:7433/readyz')).status === 200, 20_000);
  });

  it('a hostile token file (symlink, FIFO, mode 0644, not a token) is refused with a clear error naming it', async () => {
    const { dir, db } = await board();
    const file = `${db}.http-token`;
    const cases: Array<[string, () => void, RegExp]> = [
      ['symlink', () => symlinkSync(join(dir, 'elsewhere'), file), /is a symbolic link/],
      ['fifo', () => execFileSync('mkfifo', ['-m', '600', file]), /not a regular file/],
      ['mode 0644', () => (writeFileSync(file, 'a'.repeat(43)), chmodSync(file, 0o644)), /has mode 0644/],
      ['garbage', () => writeFileSync(file, 'not a token!', { mode: 0o600 }), /does not hold a token/],
    ];
    for (const [name, make, msg] of cases) {
      make();
      const r = await cli(db, ['run', '--until-idle'], { KANBAN_HTTP: '127.0.0.1:0' });
      expect(r.code, name).toBe(2);
      expect(r.stderr, name).toContain(file);
      expect(r.stderr, name).toMatch(msg);
      execFileSync('rm', ['-f', file]);
    }
    // KANBAN_HTTP_TOKEN set: no file is needed, none is made.
    const s = await sup(db, { KANBAN_HTTP_TOKEN: 'T'.repeat(32) });
    expect(existsSync(file)).toBe(false);
    expect((await s.post('/api/tasks', { skill: 'sleep' })).status).toBe(201);
  });
});

describe('HTTP endpoints', () => {
  it('healthz and readyz: owner 200; a standby supervisor 503 "standby" (healthz 200); status prints the page URL with the token in the fragment', async () => {
    const { db } = await board();
    const owner = await sup(db);
    await waitFor(async () => (await owner.get('/readyz')).status === 200);
    expect((await owner.get('/healthz')).json).toMatchObject({ ok: true });
    const standby = await startHttpSup(db, FAST, ['--standby']);
    cleanups.push(async () => {
      standby.child.kill('SIGKILL');
      await exited(standby.child);
    });
    const r = await standby.get('/readyz');
    expect(r.status).toBe(503);
    expect(r.json).toEqual({ ok: false, reason: 'standby' });
    expect((await standby.get('/healthz')).status).toBe(200);
    expect((await standby.post('/api/tasks', { skill: 'sleep' })).status).toBe(503);
    const st = await cli(db, ['status']);
    expect(st.stdout).toContain(`page: ${owner.url}/#token=${owner.token}`);
    expect(JSON.parse((await cli(db, ['--json', 'status'])).stdout).http).toEqual({ url: `${owner.url}/` });
    expect((await cli(db, ['--json', 'status'])).stdout).not.toContain(owner.token);
    const api = await owner.get('/api/status');
    expect(api.json).toMatchObject({ board: db, pool: { max: 4 } });
  });

  it('tasks: keyset pages, newest first, stable under concurrent adds; filters; task detail; bad input 400', async () => {
    const { db } = await board();
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '1' });
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await s.post('/api/tasks', { skill: 'sleep', title: `job ${i}`, priority: -1 })).json.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r = await s.get(`/api/tasks?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      if (!cursor) expect(r.json.counts).toMatchObject({ ready: expect.any(Number) });
      seen.push(...r.json.tasks.map((t: { id: string }) => t.id));
      cursor = r.json.nextCursor;
      // Tasks added between pages never shift the pages.
      await s.post('/api/tasks', { skill: 'sleep', title: 'concurrent' });
      pages++;
    } while (cursor);
    expect(pages).toBe(4);
    expect(seen).toEqual([...ids].reverse());
    const first = await s.get('/api/tasks?limit=4&q=concurrent');
    expect(first.json.tasks).toHaveLength(4);
    expect(first.json.tasks.every((t: { title: string }) => t.title === 'concurrent')).toBe(true);
    const running = await waitFor(async () => (await s.get('/api/tasks?status=running')).json.tasks[0]);
    expect(running).toMatchObject({ status: 'running', skill: 'sleep', current_run_id: expect.any(String) });
    const d = await s.get(`/api/tasks/${running.id}`);
    expect(d.json).toMatchObject({ id: running.id, runs: [{ attempt: 1, status: expect.any(String) }], events: expect.arrayContaining([expect.objectContaining({ kind: 'created' })]) });
    const cliShow = JSON.parse((await cli(db, ['--json', 'show', running.id])).stdout);
    expect(Object.keys(d.json)).toEqual(expect.arrayContaining(Object.keys(cliShow)));
    const byRun = await s.get(`/api/tasks/${running.current_run_id}`);
    expect(byRun.json.selected_run).toBe(running.current_run_id);
    expect((await s.get('/api/tasks/t-nope')).status).toBe(404);
    for (const q of ['limit=0', 'limit=501', 'limit=x', 'status=nope', 'cursor=!!', 'cursor=abc', 'q=' + 'x'.repeat(201)]) {
      const r = await s.get(`/api/tasks?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.json.error.message, q).toEqual(expect.any(String));
    }
  });

  it('actions validated like the CLI: add, cancel, retry, block, unblock (404 unknown task, 409 a refused state, 400 bad input)', async () => {
    const { db } = await board();
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '1' });
    const bad: Array<[unknown, RegExp]> = [
      [{}, /skill/],
      [{ skill: 'nope' }, /unknown skill "nope"/],
      [{ skill: 'sleep', priority: 1.5 }, /priority must be an integer/],
      [{ skill: 'sleep', max_attempts: 0 }, /./],
      [{ skill: 'sleep', max_runtime_seconds: -1 }, /./],
      [{ skill: 'sleep', colour: 'red' }, /unknown field "colour"/],
      [[1, 2], /JSON object/],
    ];
    for (const [body, msg] of bad) {
      const r = await s.post('/api/tasks', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.message).toMatch(msg);
    }
    // The one slot taken: the task below stays ready until the occupier is cancelled.
    const occupier = (await s.post('/api/tasks', { skill: 'sleep', title: 'occupier' })).json.id;
    await waitFor(async () => (await s.get(`/api/tasks/${occupier}`)).json.status === 'running');
    const t = (await s.post('/api/tasks', { skill: 'sleep', title: 'x', payload: { a: [1] }, priority: 5, max_attempts: 3 })).json;
    expect(t.task).toMatchObject({ title: 'x', payload: { a: [1] }, priority: 5, max_retries: 3 });
    expect((await s.post('/api/tasks/t-nope/cancel', {})).status).toBe(404);
    expect((await s.post(`/api/tasks/${t.id}/block`, {})).status).toBe(400);
    expect((await s.post(`/api/tasks/${t.id}/cancel`, { why: 1 })).status).toBe(400);
    const blocked = await s.post(`/api/tasks/${t.id}/block`, { reason: 'wait for it' });
    expect(blocked.status).toBe(200);
    expect(blocked.json).toMatchObject({ id: t.id, status: 'blocked' });
    expect((await s.post(`/api/tasks/${t.id}/unblock`, {})).json.status).toBe('ready');
    expect((await s.post(`/api/tasks/${occupier}/cancel`, {})).json.status).toBe('cancelled');
    await waitFor(async () => (await s.get(`/api/tasks/${t.id}`)).json.status === 'running');
    const retry = await s.post(`/api/tasks/${t.id}/retry`, {});
    expect(retry.status).toBe(409);
    expect(retry.json.error.code).toBe('conflict');
    expect((await s.post(`/api/tasks/${t.id}/cancel`, {})).json.status).toBe('cancelled');
    expect((await cli(db, ['--json', 'show', t.id])).stdout).toMatch(/"status": "cancelled"/);
    // The supervisor reclaims the running worker: its run ends cancelled.
    await waitFor(async () => (await s.get(`/api/tasks/${t.id}`)).json.runs[0].outcome === 'cancelled');
    expect((await s.post(`/api/tasks/${t.id}/retry`, {})).json.status).toBe('ready');
  });

  it('POST /api/tasks: delay and at schedule the task, key is idempotent (200 created false), bad values 400 naming the field', async () => {
    const { db } = await board();
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '1' });
    const before = Date.now();
    const delayed = await s.post('/api/tasks', { skill: 'sleep', delay: '5m' });
    expect(delayed.status).toBe(201);
    expect(delayed.json.task.not_before).toBeGreaterThanOrEqual(before + 300_000);
    const secs = await s.post('/api/tasks', { skill: 'sleep', delay: 90 });
    expect(secs.json.task.not_before).toBeGreaterThanOrEqual(before + 90_000);
    const at = await s.post('/api/tasks', { skill: 'sleep', at: '2030-01-02T03:04:05Z' });
    expect(at.json.task.not_before).toBe(Date.parse('2030-01-02T03:04:05Z'));
    const first = await s.post('/api/tasks', { skill: 'sleep', key: 'order-7' });
    expect(first.status).toBe(201);
    expect(first.json.created).toBe(true);
    const again = await s.post('/api/tasks', { skill: 'sleep', key: 'order-7', title: 'other' });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ id: first.json.id, created: false });
    for (const [body, msg] of [
      [{ skill: 'sleep', delay: 'soon' }, /delay must be a duration/],
      [{ skill: 'sleep', at: '2030-01-02' }, /at must be an ISO-8601 time/],
      [{ skill: 'sleep', delay: 5, at: '2030-01-02T03:04:05Z' }, /not both/],
      [{ skill: 'sleep', key: 5 }, /key must be a string/],
      [{ skill: 'sleep', key: '' }, /key must be a string of 1-200/],
    ] as Array<[unknown, RegExp]>) {
      const r = await s.post('/api/tasks', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.message).toMatch(msg);
    }
  });

  it('run log: tail, Range (206, 416), 404 for an unknown run', async () => {
    const { db } = await board();
    const s = await sup(db);
    const t = (await s.post('/api/tasks', { skill: 'say' })).json;
    const runId = await waitFor(async () => (await s.get(`/api/tasks/${t.id}`)).json.runs[0]?.id);
    const full = await waitFor(async () => {
      const r = await s.get(`/api/runs/${runId}/log`);
      return r.status === 200 && r.body.includes('0123456789abcdef') ? r : null;
    });
    const size = Number(full.headers['x-log-size']);
    expect(full.headers['content-type']).toMatch(/text\/plain/);
    const tail = await s.get(`/api/runs/${runId}/log?tail=4`);
    expect(tail.body).toBe(full.body.slice(-4));
    expect(tail.headers['x-log-offset']).toBe(String(size - 4));
    const off = full.body.indexOf('0123');
    const range = await s.get(`/api/runs/${runId}/log`, { range: `bytes=${off + 2}-${off + 5}` });
    expect(range.status).toBe(206);
    expect(range.body).toBe('2345');
    expect(range.headers['content-range']).toBe(`bytes ${off + 2}-${off + 5}/${size}`);
    expect((await s.get(`/api/runs/${runId}/log`, { range: 'bytes=-3' })).body).toBe(full.body.slice(-3));
    const past = await s.get(`/api/runs/${runId}/log`, { range: `bytes=${size}-` });
    expect(past.status).toBe(416);
    expect(past.headers['content-range']).toBe(`bytes */${size}`);
    expect((await s.get('/api/runs/r-nope/log')).status).toBe(404);
    expect((await s.get(`/api/runs/${runId}/log?tail=2000000`)).status).toBe(400);
  });

  it('GET /metrics through the daemon\'s own read handle: tasks by status and skill are in it, no failed read', async () => {
    const { db } = await board();
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '1' });
    for (let i = 0; i < 3; i++) expect((await s.post('/api/tasks', { skill: 'sleep', title: `m${i}` })).status).toBe(201);
    await waitFor(async () => (await cli(db, ['list', '--status', 'running', '--json'])).stdout.includes('"m') || null, 20_000);
    const m = await s.get('/metrics');
    expect(m.status).toBe(200);
    expect(m.headers['content-type']).toMatch(/^text\/plain/);
    const line = (status: string) => m.body.split('\n').find((l) => l.startsWith(`kanban_tasks{status="${status}",skill="sleep"}`));
    expect(line('running'), m.body.slice(0, 2000)).toMatch(/ 1$/);
    expect(line('ready')).toMatch(/ 2$/);
    expect(m.body).toMatch(/^kanban_metrics_board_read_errors_total 0$/m);
    expect(logEvents(s.child.output(), 'metrics_read_failed')).toEqual([]);
  });

  it('a full pool sleeps between ticks (no 25 ms poll); an event stream opened then still sees other processes\' commits at once', async () => {
    const { db } = await board();
    // Ticks 10 s apart: a commit seen sooner was seen by the poll the open stream turned on.
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '2', TICK_INTERVAL_MS: '10000' });
    for (let i = 0; i < 2; i++) expect((await s.post('/api/tasks', { skill: 'sleep', title: `full${i}` })).status).toBe(201);
    await waitFor(async () => (await cli(db, ['list', '--status', 'running', '--json'])).stdout.includes('full1') && (await cli(db, ['list', '--status', 'running', '--json'])).stdout.includes('full0') || null, 20_000);
    // A scrape turns Node's process metrics on (for the rest of the process's life): their event
    // loop sampling must not wake the loop either (prom-client's default, every 10 ms, was 300
    // wake-ups in 3 s). The lag gauges are still there.
    const scraped = await s.get('/metrics');
    expect(scraped.status).toBe(200);
    expect(scraped.body).toMatch(/^nodejs_eventloop_lag_p99_seconds \S+$/m);
    await sleep(1500);
    // The main thread's wake-ups over 3 s: a tick or so, the HTTP server idle. The 25 ms poll alone
    // was 120.
    const pid = s.child.pid!;
    const switches = () => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))![1]);
    const v0 = switches();
    await sleep(3000);
    const woke = switches() - v0;
    expect(woke, `${woke} wake-ups of a full pool's supervisor in 3 s`).toBeLessThan(40);
    // The lag gauges say how late the loop ran, not how long their sampling period is (Node's delay
    // histogram counts the period in: read raw, every one of them was ~1 s).
    const lag = (await s.get('/metrics')).body;
    for (const g of ['min', 'max', 'mean', 'p50', 'p90', 'p99']) {
      const v = Number(new RegExp(`^nodejs_eventloop_lag_${g}_seconds (\\S+)$`, 'm').exec(lag)?.[1]);
      expect(v, `nodejs_eventloop_lag_${g}_seconds`).toBeGreaterThanOrEqual(0);
      expect(v, `nodejs_eventloop_lag_${g}_seconds`).toBeLessThan(0.5);
    }
    // A stream opened now follows the board at once: another process's commit reaches it well
    // before the next tick.
    const a = sseClient(`${s.url}/api/events`);
    cleanups.push(a.close);
    expect(await a.status).toBe(200);
    await waitFor(() => a.events.find((e) => e.event === 'hello'));
    await sleep(300);
    // It polls for them at the watching pace (policies WATCH_POLL_MS, 200 ms), not the dispatch
    // pace (25 ms: 120 wake-ups in 3 s).
    const w0 = switches();
    await sleep(3000);
    const watching = switches() - w0;
    expect(watching, `${watching} wake-ups in 3 s of a full pool's supervisor with a stream open`).toBeLessThan(50);
    // Three commits, each seen within 700 ms (the stream's own fallback read, every 2 s, would
    // make all three that quick about once in 25 runs).
    for (const title of ['seen0', 'seen1', 'seen2']) {
      const added = await cli(db, ['add', '--skill', 'sleep', '--title', title]);
      expect(added.code).toBe(0);
      const t0 = Date.now();
      await waitFor(() => a.events.some((e) => e.event === 'transition' && e.data.task?.title === title) || null, 15_000);
      expect(Date.now() - t0, `the CLI commit of ${title} reached the stream before the next tick`).toBeLessThan(700);
    }
  });

  it('the event stream: transitions in commit order; Last-Event-ID resumes without loss or duplicate', async () => {
    const { db } = await board();
    const s = await sup(db, { MAX_CONCURRENT_WORKERS: '2' });
    const a = sseClient(`${s.url}/api/events`);
    cleanups.push(a.close);
    expect(await a.status).toBe(200);
    await waitFor(() => a.events.find((e) => e.event === 'hello'));
    const made: string[] = [];
    for (let i = 0; i < 6; i++) made.push((await s.post('/api/tasks', { skill: 'sleep', title: `e${i}` })).json.id);
    // The CLI's writes (another process) reach the stream too.
    expect((await cli(db, ['cancel', made[5]!])).code).toBe(0);
    await s.post(`/api/tasks/${made[4]}/block`, { reason: 'r' });
    const transitions = () => a.events.filter((e) => e.event === 'transition');
    await waitFor(() => transitions().filter((e) => e.data.kind === 'spawned').length >= 2 && transitions().some((e) => e.data.kind === 'blocked') && transitions().some((e) => e.data.kind === 'cancelled'));
    const got = transitions();
    // Commit order = id order on SQLite; every created event is there, once.
    const ids = got.map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(new Set(ids).size).toBe(ids.length);
    expect(got.filter((e) => e.data.kind === 'created').map((e) => e.data.task_id)).toEqual(made);
    expect(got[0]!.data.task).toMatchObject({ id: expect.any(String), status: expect.any(String) });
    // Resume from the middle: the rest, exactly.
    const mid = got[Math.floor(got.length / 2)]!;
    a.close();
    await s.post('/api/tasks', { skill: 'sleep', title: 'after' });
    const b = sseClient(`${s.url}/api/events`, { 'last-event-id': mid.id });
    cleanups.push(b.close);
    await waitFor(() => b.events.some((e) => e.event === 'transition' && e.data.task?.title === 'after'));
    const resumed = b.events.filter((e) => e.event === 'transition').map((e) => Number(e.id));
    const before = got.filter((e) => Number(e.id) > Number(mid.id)).map((e) => Number(e.id));
    expect(resumed.slice(0, before.length)).toEqual(before);
    expect(new Set(resumed).size).toBe(resumed.length);
    expect(resumed.every((id, i) => i === 0 || id > resumed[i - 1]!)).toBe(true);
    const badCursor = await s.get('/api/events', { 'last-event-id': 'nope' });
    expect(badCursor.status).toBe(400);
  });
});
