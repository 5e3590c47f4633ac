/**
 * The HTTP side against hostile input: what a worker writes (events, results of up to 4 MiB of
 * JSON each) and what a client sends (a Last-Event-ID ahead of the feed, an absolute-form request
 * target naming another host). Nothing of it may wedge the supervisor, drop a reading client, or
 * slip past the Host check.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Cleanups, cli, exited, ROOT, waitFor } from '../src/common.js';
import { sseClient, startHttpSup, supervisedHttpSup, type HttpSup } from '../src/http-client.js';

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1' };
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

function sup(db: string, env: NodeJS.ProcessEnv = {}): Promise<HttpSup> {
  return supervisedHttpSup(cleanups, db, FAST, env);
}

/** A raw HTTP/1.1 exchange (any request target), the status line back. */
function rawStatus(url: string, request: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(request));
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('close', () => resolve(out.split('\r\n')[0]!));
    s.on('error', reject);
  });
}

describe('HTTP side, hostile input', () => {
  it("a worker's huge events and result: the feed and the lists carry them bounded, a reading client is never dropped, the detail stays small", async () => {
    const { dir, db } = cleanups.boardDir('ks-web-hostile-');
    const script = join(dir, 'big.mjs');
    writeFileSync(
      script,
      `import { runWorker } from ${JSON.stringify(join(ROOT, 'worker-runtime/dist/index.js'))};
runWorker(async (ctx) => {
  const s = 'x'.repeat(1024 * 1024);
  for (let i = 0; i < 24; i++) await ctx.event('note', { i, s });
  return { big: 'y'.repeat(2 * 1024 * 1024) };
});
`,
    );
    expect((await cli(db, ['init'])).code).toBe(0);
    expect((await cli(db, ['skill', 'add', 'big', '--', process.execPath, script])).code).toBe(0);
    const s = await sup(db);
    const live = sseClient(`${s.url}/api/events`);
    cleanups.push(live.close);
    const hello = await waitFor(() => live.events.find((e) => e.event === 'hello'));
    const t = (await s.post('/api/tasks', { skill: 'big', payload: { p: 'z'.repeat(900 * 1024) } })).json;
    expect(t.id).toEqual(expect.any(String));
    const notes = (events: typeof live.events) => events.filter((e) => e.event === 'transition' && e.data.kind === 'note');
    const done = (events: typeof live.events) => events.some((e) => e.event === 'transition' && e.data.task_id === t.id && e.data.task?.status === 'done');
    await waitFor(() => notes(live.events).length === 24 && done(live.events), 60_000);
    for (const e of notes(live.events)) expect(e.data.data).toEqual({ truncated: true, chars: expect.any(Number) });
    const last = live.events.filter((e) => e.event === 'transition').at(-1)!;
    expect(last.data.task.payload).toEqual({ truncated: true, chars: expect.any(Number) });
    // A page that resumes from before them all gets them all again (not dropped, not stuck).
    const again = sseClient(`${s.url}/api/events`, { 'last-event-id': hello.id });
    cleanups.push(again.close);
    await waitFor(() => notes(again.events).length === 24 && done(again.events), 30_000);
    // The lists carry the payload and the result bounded; the detail has them whole, its events bounded.
    const list = await s.get('/api/tasks?status=done');
    expect(list.json.tasks[0]).toMatchObject({ id: t.id, payload: { truncated: true }, result: { truncated: true } });
    const detail = await s.get(`/api/tasks/${t.id}`);
    expect(detail.status).toBe(200);
    expect(detail.json.payload).toEqual({ p: 'z'.repeat(900 * 1024) });
    // Payload and result whole (twice: the detail and its task), the 24 MiB of events not.
    expect(detail.body.length).toBeLessThan(8 * 1024 * 1024);
    expect(detail.json.events.filter((e: { kind: string }) => e.kind === 'note')).toHaveLength(24);
    expect((await s.get('/healthz')).status).toBe(200);
  }, 120_000);

  it('an absolute-form request target naming another host is refused (421) like a wrong Host; a Last-Event-ID ahead of the feed is 400', async () => {
    const { db } = cleanups.boardDir('ks-web-hostile-');
    expect((await cli(db, ['init'])).code).toBe(0);
    expect((await cli(db, ['skill', 'add', 'sleep', '--', '/bin/sleep', '30'])).code).toBe(0);
    const s = await sup(db);
    const host = new URL(s.url).host;
    const req = (target: string) => rawStatus(s.url, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    expect(await req('/api/status')).toMatch(/ 200 /);
    expect(await req(`http://${host}/api/status`)).toMatch(/ 200 /);
    for (const t of ['http://evil.example/api/status', `http://evil.example:${new URL(s.url).port}/api/status`, `http://user@${host}/api/status`, '*']) {
      expect(await req(t), t).toMatch(/ 421 /);
    }
    // A cursor ahead of the feed's end (another board's, a board restored from a backup) is refused:
    // resumed from, it would hide every event until the ids caught up. The page starts over on 400.
    await s.post('/api/tasks', { skill: 'sleep' });
    const ahead = await s.get('/api/events', { 'last-event-id': '999999' });
    expect(ahead.status).toBe(400);
    expect(ahead.json.error.code).toBe('bad_cursor');
    const live = sseClient(`${s.url}/api/events`, { 'last-event-id': '1' });
    cleanups.push(live.close);
    expect(await live.status).toBe(200);
  });

  it('80 event streams opened at once: at most 64 are served (the cap counts streams still being opened), the rest get 503', async () => {
    const { dir } = cleanups.boardDir('ks-web-cap-');
    const db = join(dir, 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    const s = await sup(db);
    const streams = Array.from({ length: 80 }, () => sseClient(`${s.url}/api/events`));
    for (const c of streams) cleanups.push(c.close);
    const codes = await Promise.all(streams.map((c) => c.status));
    expect(codes.filter((c) => c === 200).length).toBeLessThanOrEqual(64);
    expect(codes.filter((c) => c === 200).length).toBeGreaterThan(0);
    expect(codes.filter((c) => c !== 200).every((c) => c === 503)).toBe(true);
  });
});
