/**
 * What each runtime (Node, Python) says on the report channel (issue 19): against a scripted server
 * on a Unix socket, every line a runtime sends passes the supervisor's parseRequest and carries what
 * docs/worker-protocol.md says (v, id, the run, a seq on events and final reports); a `fenced` answer
 * stops the worker (exit 3, nothing more sent); an `unavailable` answer sends that report to the board
 * directly with the same seq, and the channel stays up for the next one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parseRequest, readSpool } from '@kanban-supervisor/worker-runtime';
import { Cleanups } from '../src/common.js';
import { scriptedServer, type ScriptedRequest } from '../src/scripted-server.js';
import { boardSetup, claimRun, spawnWorker } from '../fixtures/worker/harness.js';
import { RUNTIMES } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const setup = boardSetup('ks-wire-');

type Req = ScriptedRequest;

/** A server that answers each request with `answer(req)` (null: ok) and records what it got; every request must pass parseRequest. */
function scripted(path: string, answer: (r: Req) => Record<string, unknown> | null | Promise<Record<string, unknown> | null>): Promise<{ got: Req[] }> {
  // A bad request throws (and fails the test through the worker's exit).
  return scriptedServer(path, cleanups, answer, (r) => void parseRequest(r));
}

describe('the Python runtime on a PostgreSQL board', () => {
  it('has no direct path (no driver in the standard library): a final report the channel cannot take is spooled, with the seq the channel saw', async () => {
    const { dir, board } = await setup();
    const py = RUNTIMES.find((r) => r.name === 'python')!;
    const g = await claimRun(board, { result: 6 });
    const task = { id: g.taskId, title: 'test', skill: 'test', payload: { result: 6 } };
    const s6 = await scripted(join(dir, 'six.sock'), (r) => (r.op === 'payload' ? { ok: true, task, parentIds: [] } : r.op === 'complete' ? { ok: false, code: 'unavailable', error: 'the supervisor is stopping' } : null));
    const spool = join(dir, 'spool-pg');
    // Nothing listens at this URL: the runtime must never try it (it has no driver).
    const w = await spawnWorker(null, g, py.argv, { ...py.env, MODE: 'return', KANBAN_DB: 'postgres://kanban@127.0.0.1:1/kanban', KANBAN_SPOOL_DIR: spool, KANBAN_SOCKET: join(dir, 'six.sock') });
    expect((await w.done).code, w.output()).toBe(0);
    expect(w.output()).toContain('reaches a PostgreSQL board through the report channel only');
    const complete = s6.got.find((r) => r.op === 'complete')!;
    const entries = readSpool(board.location, spool);
    expect(entries).toHaveLength(1);
    expect('entry' in entries[0]! && entries[0].entry).toMatchObject({ taskId: g.taskId, runId: g.runId, report: { outcome: 'completed', result: 6 }, seq: complete.seq });
  });
});

describe.each(RUNTIMES)('the $name runtime on the wire', (rt) => {
  it('speaks the documented requests; fenced stops it; unavailable goes to the board with the same seq', async () => {
    const { dir, board } = await setup();
    // 1. Every request as documented.
    const a = await claimRun(board, { result: { n: 1 } });
    const task = { id: a.taskId, title: 'test', skill: 'test', payload: { result: { n: 1 } } };
    const s1 = await scripted(join(dir, 'one.sock'), (r) => (r.op === 'payload' ? { ok: true, task, parentIds: [] } : null));
    const w1 = await spawnWorker(board, a, rt.argv, { ...rt.env, MODE: 'return', KANBAN_SOCKET: join(dir, 'one.sock') });
    expect((await w1.done).code, w1.output()).toBe(0);
    expect(s1.got.map((r) => r.op)).toEqual(['payload', 'heartbeat', 'event', 'complete']);
    for (const r of s1.got) {
      expect(r).toMatchObject({ v: 1, id: expect.any(Number), task: a.taskId, run: a.runId, token: a.token });
      if (r.op === 'event' || r.op === 'complete') expect(r.seq).toMatch(/^\d{1,20}$/);
    }
    expect(s1.got[1]).toMatchObject({ progress: { step: 1 } });
    expect(s1.got[2]).toMatchObject({ kind: 'note', data: { n: 1 } });
    expect(s1.got[3]).toMatchObject({ result: { n: 1 } });
    expect(BigInt(s1.got[3]!.seq as string)).toBeGreaterThan(BigInt(s1.got[2]!.seq as string));
    expect(new Set(s1.got.map((r) => r.id)).size).toBe(4);
    // The channel answered: nothing on the board.
    expect((await board.getTask(a.taskId))!.status).toBe('running');

    // 2. Fenced on the event: exit 3, no final report sent.
    const b = await claimRun(board, { result: 2 });
    const s2 = await scripted(join(dir, 'two.sock'), (r) =>
      r.op === 'payload' ? { ok: true, task: { ...task, id: b.taskId }, parentIds: [] } : r.op === 'event' ? { ok: false, code: 'fenced', error: `run ${b.runId} is no longer current for task ${b.taskId}` } : null,
    );
    const w2 = await spawnWorker(board, b, rt.argv, { ...rt.env, MODE: 'return', KANBAN_SOCKET: join(dir, 'two.sock'), HOOK_FILE: join(dir, 'hooks2') });
    expect((await w2.done).code, w2.output()).toBe(3);
    expect(s2.got.map((r) => r.op)).toEqual(['payload', 'heartbeat', 'event']);

    // 3. Unavailable on the final report: written to the board directly, with the seq the channel saw.
    const c = await claimRun(board, { result: 3 });
    const s3 = await scripted(join(dir, 'three.sock'), (r) =>
      r.op === 'payload' ? { ok: true, task: { ...task, id: c.taskId, payload: { result: 3 } }, parentIds: [] } : r.op === 'complete' ? { ok: false, code: 'unavailable', error: 'SQLITE_BUSY: database is locked' } : null,
    );
    const w3 = await spawnWorker(board, c, rt.argv, { ...rt.env, MODE: 'return', KANBAN_SOCKET: join(dir, 'three.sock') });
    expect((await w3.done).code, w3.output()).toBe(0);
    const complete = s3.got.find((r) => r.op === 'complete')!;
    const d = (await board.showTask(c.taskId))!;
    expect(d.task).toMatchObject({ status: 'done', result: 3 });
    const db = new Database(board.location, { readonly: true });
    try {
      expect(db.prepare('SELECT report_seq FROM runs WHERE id = ?').get(c.runId)).toEqual({ report_seq: complete.seq });
      expect(db.prepare(`SELECT seq FROM events WHERE run_id = ? AND kind = 'reported'`).get(c.runId)).toEqual({ seq: complete.seq });
    } finally {
      db.close();
    }

    // 4. Unavailable on an event: that event goes to the board directly (same seq); the channel stays
    // up (docs/worker-protocol.md §2-3): the final report after it goes over the channel again.
    const e = await claimRun(board, { result: 4 });
    const s4 = await scripted(join(dir, 'four.sock'), (r) =>
      r.op === 'payload' ? { ok: true, task: { ...task, id: e.taskId, payload: { result: 4 } }, parentIds: [] } : r.op === 'event' ? { ok: false, code: 'unavailable', error: 'SQLITE_BUSY: database is locked' } : null,
    );
    const w4 = await spawnWorker(board, e, rt.argv, { ...rt.env, MODE: 'return', KANBAN_SOCKET: join(dir, 'four.sock') });
    expect((await w4.done).code, w4.output()).toBe(0);
    expect(s4.got.map((r) => r.op)).toEqual(['payload', 'heartbeat', 'event', 'complete']);
    const d4 = (await board.showTask(e.taskId))!;
    expect(d4.task.status, 'the complete went to the (scripted) channel, not the board').toBe('running');
    expect(d4.events.find((x) => x.kind === 'note')).toMatchObject({ data: { n: 1 } });
    const db4 = new Database(board.location, { readonly: true });
    try {
      expect(db4.prepare(`SELECT seq FROM events WHERE run_id = ? AND kind = 'note'`).get(e.runId)).toEqual({ seq: s4.got[2]!.seq });
    } finally {
      db4.close();
    }
  });

  it('sends the final report only once every report before it was answered or given up (here: written directly)', async () => {
    const { dir, board } = await setup();
    const task = { title: 'test', skill: 'test' };
    const f = await claimRun(board, { result: 5 });
    const onBoard = () => board.showTask(f.taskId).then((d) => d!.events.some((x) => x.kind === 'fired'));
    let firedAtComplete: boolean | null = null;
    // The event is answered late (400 ms), unavailable: the runtime writes it to the board directly.
    const s5 = await scripted(join(dir, 'five.sock'), async (r) => {
      if (r.op === 'payload') return { ok: true, task: { ...task, id: f.taskId, payload: { result: 5 } }, parentIds: [] };
      if (r.op === 'event') {
        await new Promise((res) => setTimeout(res, 400));
        return { ok: false, code: 'unavailable', error: 'SQLITE_BUSY: database is locked' };
      }
      if (r.op === 'complete') firedAtComplete = await onBoard();
      return null;
    });
    const w = await spawnWorker(board, f, rt.argv, { ...rt.env, MODE: 'fire', AUTO_HB: '0', KANBAN_SOCKET: join(dir, 'five.sock') });
    expect((await w.done).code, w.output()).toBe(0);
    expect(s5.got.map((r) => r.op)).toEqual(['payload', 'event', 'complete']);
    expect(firedAtComplete, 'the event was on the board when the complete was sent').toBe(true);
    expect(BigInt(s5.got[2]!.seq as string)).toBeGreaterThan(BigInt(s5.got[1]!.seq as string));
  });
});
