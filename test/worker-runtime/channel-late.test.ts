/**
 * A heartbeat the supervisor does not answer in time, on a connection still open (the supervisor
 * alive but busy): only that heartbeat fails (ChannelLateError), it is NOT written to the board
 * directly (another writer on the lock is what a busy supervisor needs least), and the channel
 * stays up for the next report; the heartbeat after it goes to the board directly, once (a stuck
 * supervisor cannot tell its worker that the run was fenced out; the board can). A late report of
 * any other kind takes the channel down and goes to the board directly, as before.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ChannelDownError, ChannelLateError, Reporter } from '@kanban-supervisor/worker-runtime';
import { Cleanups, ROOT } from '../src/common.js';
import { scriptedServer } from '../src/scripted-server.js';
import { boardSetup, claimRun } from '../fixtures/worker/harness.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const setup = boardSetup('ks-late-');

/** A supervisor stand-in that never answers the ops in `silent` (heartbeats), answers everything else ok. */
async function busyServer(path: string, silent: Set<string> = new Set(['heartbeat'])): Promise<() => string[]> {
  const { got } = await scriptedServer(path, cleanups, (r) => (silent.has(r.op) ? undefined : null));
  return () => got.map((r) => r.op);
}

describe('a late answer on the report channel', () => {
  it('a late heartbeat fails alone: not written directly, the channel stays up for the next report', async () => {
    const { dir, board } = await setup();
    const a = await claimRun(board);
    const sock = join(dir, 'busy.sock');
    const got = await busyServer(sock);
    const r = new Reporter({ dbPath: board.location, spoolDir: join(dir, 'spool'), cred: { taskId: a.taskId, runId: a.runId, token: a.token }, reclaimGraceSeconds: 5, heartbeatTimeoutSeconds: 0, socketPath: sock, heartbeatSlot: null }, { timeoutMs: 300 });
    cleanups.push(() => r.channel?.close());
    const t0 = Date.now();
    await expect(r.heartbeat(undefined)).rejects.toBeInstanceOf(ChannelLateError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect((await board.getRun(a.runId))!.heartbeatAt, 'not written to the board directly').toBeNull();
    expect(r.openedBoard, 'the board was not even opened').toBeNull();
    // The channel is still up: the next report goes through it, on the same connection.
    await r.event('note', { n: 1 });
    expect(got()).toEqual(['heartbeat', 'event']);
    expect(r.openedBoard).toBeNull();
    expect((await board.showTask(a.taskId))!.events.filter((e) => e.kind === 'note')).toEqual([]); // the stand-in applied nothing
    // The heartbeat after a late one goes to the board directly (a stuck supervisor cannot say "fenced"; the board can) ...
    await r.heartbeat(undefined);
    expect((await board.getRun(a.runId))!.heartbeatAt).not.toBeNull();
    expect(got()).toEqual(['heartbeat', 'event']);
    // ... once: the next tries the channel again.
    await expect(r.heartbeat(undefined)).rejects.toBeInstanceOf(ChannelLateError);
    expect(got()).toEqual(['heartbeat', 'event', 'heartbeat']);
    cleanups.push(() => r.openedBoard?.close());
  });

  it('a late heartbeat with progress (data of the worker) is not dropped: it goes to the board directly', async () => {
    const { dir, board } = await setup();
    const a = await claimRun(board);
    const sock = join(dir, 'busy3.sock');
    const got = await busyServer(sock);
    const r = new Reporter({ dbPath: board.location, spoolDir: join(dir, 'spool'), cred: { taskId: a.taskId, runId: a.runId, token: a.token }, reclaimGraceSeconds: 5, heartbeatTimeoutSeconds: 0, socketPath: sock, heartbeatSlot: null }, { timeoutMs: 300 });
    cleanups.push(async () => {
      r.channel?.close();
      await r.openedBoard?.close();
    });
    await r.heartbeat({ step: 7 });
    expect(got()).toEqual(['heartbeat']);
    expect(await board.getRun(a.runId)).toMatchObject({ progress: { step: 7 } });
  });

  it('a late event takes the channel down and goes to the board directly', async () => {
    const { dir, board } = await setup();
    const a = await claimRun(board);
    const sock = join(dir, 'busy2.sock');
    const got = await busyServer(sock, new Set(['event']));
    const r = new Reporter({ dbPath: board.location, spoolDir: join(dir, 'spool'), cred: { taskId: a.taskId, runId: a.runId, token: a.token }, reclaimGraceSeconds: 5, heartbeatTimeoutSeconds: 0, socketPath: sock, heartbeatSlot: null }, { timeoutMs: 300 });
    cleanups.push(async () => {
      r.channel?.close();
      await r.openedBoard?.close();
    });
    await r.event('note', { n: 2 });
    expect((await board.showTask(a.taskId))!.events.filter((e) => e.kind === 'note').map((e) => e.data)).toEqual([{ n: 2 }]);
    // Down: the next heartbeat goes directly too (not late: the channel is not tried).
    await r.heartbeat(undefined);
    expect((await board.getRun(a.runId))!.heartbeatAt).not.toBeNull();
    expect(got()).toEqual(['event']);
    await expect(r.channel!.request({ op: 'heartbeat' }, null)).rejects.toBeInstanceOf(ChannelDownError);
  });

  it('the Python runtime: the same (a late heartbeat dropped, the channel up; a late event goes directly)', async () => {
    const { dir, board } = await setup();
    const a = await claimRun(board);
    const b2 = await claimRun(board);
    const sock = join(dir, 'busy-py.sock');
    const got = await busyServer(sock);
    const sock2 = join(dir, 'busy-py2.sock');
    const got2 = await busyServer(sock2, new Set(['event']));
    const script = `
import json, sys, time
from kanban_worker._env import Credentials, WorkerEnv
from kanban_worker._reporter import Reporter
from kanban_worker._channel import ReportChannel
from kanban_worker._errors import ChannelLate
db, sock, sock2, t1, r1, k1, t2, r2, k2 = sys.argv[1:]
out = {}
rep = Reporter(WorkerEnv(db, db + '.spool', Credentials(t1, r1, k1), 5.0, 0.0, sock))
rep.channel = ReportChannel(sock, timeout=0.3)
t0 = time.monotonic()
try:
    rep.heartbeat()
    out['late'] = 'none'
except ChannelLate:
    out['late'] = 'ChannelLate'
out['waited'] = time.monotonic() - t0
out['opened'] = rep.board is not None
rep.event('note', {'n': 1})
out['opened_after_event'] = rep.board is not None
rep.heartbeat()
out['direct_after_late'] = rep.board is not None
rep3 = Reporter(WorkerEnv(db, db + '.spool', Credentials(t1, r1, k1), 5.0, 0.0, sock))
rep3.channel = ReportChannel(sock, timeout=0.3)
rep3.heartbeat({'step': 7}, True)
out['progress_direct'] = rep3.board is not None
rep2 = Reporter(WorkerEnv(db, db + '.spool', Credentials(t2, r2, k2), 5.0, 0.0, sock2))
rep2.channel = ReportChannel(sock2, timeout=0.3)
rep2.event('note', {'n': 2})
out['opened2'] = rep2.board is not None
print(json.dumps(out))
`;
    const res = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile('python3', ['-c', script, board.location, sock, sock2, a.taskId, a.runId, a.token, b2.taskId, b2.runId, b2.token], { env: { ...process.env, PYTHONPATH: join(ROOT, 'worker-runtime', 'python') } }, (e, stdout, stderr) =>
        resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { late: string; waited: number; opened: boolean; opened_after_event: boolean; direct_after_late: boolean; progress_direct: boolean; opened2: boolean };
    expect(out).toMatchObject({ late: 'ChannelLate', opened: false, opened_after_event: false, direct_after_late: true, progress_direct: true, opened2: true });
    expect(out.waited).toBeGreaterThanOrEqual(0.25);
    expect(got()).toEqual(['heartbeat', 'event', 'heartbeat']);
    expect(got2()).toEqual(['event']);
    expect((await board.getRun(a.runId))!.heartbeatAt, 'the heartbeat after the late one, directly').not.toBeNull();
    expect((await board.showTask(b2.taskId))!.events.filter((e) => e.kind === 'note').map((e) => e.data)).toEqual([{ n: 2 }]);
  });
});
