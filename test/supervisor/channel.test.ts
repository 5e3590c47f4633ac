/**
 * The report channel (issue 17): workers report through the supervisor's Unix socket, the
 * supervisor applies their reports fenced, group-committed, and answers once committed. Real
 * supervisors, real workers, real sockets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { CLI, Cleanups, FIXTURES, cli, exited, fdTargets, logEvents, run, waitFor } from '../src/common.js';
import { RawClient, pidIn, runCred, socketOf } from '../src/channel-client.js';

const SKILL = join(FIXTURES, 'worker', 'skill.mjs');
const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', KANBAN_HTTP: 'off' };
const supervise = (db: string, args: string[] = [], env: Record<string, string> = {}) => cleanups.startCli(db, ['run', ...args], { ...FAST, ...env });

/** A board with a skill `sleeper` (writes its pid to `pids`, sleeps 30 s) and one task of it, its worker started. */
async function sleeping(): Promise<{ dir: string; db: string; id: string; sup: ReturnType<typeof supervise>; cred: { task: string; run: string; token: string } }> {
  const { dir, db } = cleanups.boardDir('ks-chan-');
  const pids = join(dir, 'pids.txt');
  cleanups.killPidsAtEnd(pids);
  expect((await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '30'])).code).toBe(0);
  const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
  const sup = supervise(db);
  await waitFor(() => existsSync(pids) && logEvents(sup.output(), 'spawned').length > 0);
  const cred = await waitFor(() => runCred(db, id));
  return { dir, db, id, sup, cred };
}

/** The worker CLI as a worker of `cred` runs it, with KANBAN_DB pointing nowhere: only the channel can take its reports. */
function workerCli(db: string, cred: { task: string; run: string; token: string }, args: string[]) {
  return run(process.execPath, [CLI, 'worker', ...args], {
    env: {
      ...process.env,
      KANBAN_DB: join(db, '..', 'no-such-folder', 'kanban.db'),
      KANBAN_SOCKET: socketOf(db),
      KANBAN_TASK_ID: cred.task,
      KANBAN_RUN_ID: cred.run,
      KANBAN_RUN_TOKEN: cred.token,
    },
  });
}

describe('the report channel', () => {
  it('reports after the run\'s own complete are refused (exit 3), a bare heartbeat too, though its worker is still alive', async () => {
    const { dir, db } = cleanups.boardDir('ks-chan-');
    const out = join(dir, 'after.txt');
    expect((await cli(db, ['skill', 'add', 'w', '--', join(FIXTURES, 'ops', 'after-end.sh'), out])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'w'])).stdout.trim();
    const sup = supervise(db, ['--until-idle']);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('heartbeat 3\nheartbeat 3\nevent 3\n');
    const t = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(t).toMatchObject({ status: 'done', result: { ok: 1 } });
    expect(t.runs).toHaveLength(1);
  });

  it('a Node worker loads its task, reports and completes through the channel and never opens the board', async () => {
    const { dir, db } = cleanups.boardDir('ks-chan-');
    const ready = join(dir, 'ready');
    const go = join(dir, 'go');
    expect((await cli(db, ['skill', 'add', 'w', '--env', `MODE=wait-go`, '--env', `READY=${ready}`, '--env', `GO=${go}`, '--', process.execPath, SKILL])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'w', '--payload', '{"x":1}'])).stdout.trim();
    const sup = supervise(db, ['--until-idle']);
    const pid = await waitFor(() => pidIn(ready));
    // A failed check below must not leave the worker waiting for its go file (its supervisor is SIGKILLed at cleanup).
    cleanups.push(() => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    await waitFor(() => logEvents(sup.output(), 'channel_listening').length > 0);
    const socket = socketOf(db);
    expect(lstatSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(join(socket, '..')).mode & 0o777).toBe(0o700);
    // The worker holds no file of the board: no connection, no WAL, no shared memory.
    const fds = fdTargets(pid);
    expect(fds.some((t) => t.startsWith('socket:')), fds.join(' ')).toBe(true);
    expect(fds.filter((t) => /kanban\.db(-wal|-shm|-journal)?$/.test(t)), fds.join(' ')).toEqual([]);
    writeFileSync(go, '');
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const b = await openBoard(db);
    try {
      const t = (await b.showTask(id))!;
      expect(t.task).toMatchObject({ status: 'done', result: { late: true } });
      expect(t.runs[0]!.outcome).toBe('completed');
    } finally {
      await b.close();
    }
    expect(existsSync(socket)).toBe(false); // removed at the stop
  });

  it('worker CLI heartbeat, event, payload and complete through the channel; a fenced answer exits 3 with the message', async () => {
    const { db, id, sup, cred } = await sleeping();
    expect((await cli(db, ['status'])).stdout).toContain(`report channel: ${socketOf(db)}\n`);
    const hb = await workerCli(db, cred, ['heartbeat', '--progress', '{"step":3}']);
    expect(hb.code, hb.stderr).toBe(0);
    const ev = await workerCli(db, cred, ['event', 'note', '--data', '{"a":1}']);
    expect(ev.code, ev.stderr).toBe(0);
    const pl = await workerCli(db, cred, ['payload']);
    expect(pl.code, pl.stderr).toBe(0);
    expect(pl.stdout.trim()).toBe('null');
    const wrong = await workerCli(db, { ...cred, token: 'f'.repeat(32) }, ['event', 'note']);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr.trim()).toBe(`run ${cred.run} is no longer current for task ${id}`);
    const done = await workerCli(db, cred, ['complete', '--result', '{"ok":true}']);
    expect(done.code, done.stderr).toBe(0);
    const late = await workerCli(db, cred, ['complete']);
    expect(late.code).toBe(3);
    expect(late.stderr.trim()).toBe(`run ${cred.run} is no longer current for task ${id}`);
    const b = await openBoard(db);
    try {
      const t = (await b.showTask(id))!;
      expect(t.task).toMatchObject({ status: 'done', result: { ok: true } });
      expect(t.runs[0]!.progress).toEqual({ step: 3 });
      expect(t.events.filter((e) => e.kind === 'note').map((e) => e.data)).toEqual([{ a: 1 }]);
    } finally {
      await b.close();
    }
    expect(sup.exitCode).toBe(null);
  });

  it('one batch: a fenced report is refused alone, the others commit; the same seq again is answered duplicate', async () => {
    const { db, id, cred } = await sleeping();
    const c = await RawClient.connect(socketOf(db));
    cleanups.push(() => c.close());
    const base = { v: 1, op: 'event', kind: 'step', task: cred.task, run: cred.run, token: cred.token };
    // One write: the three requests arrive together and are applied in one transaction.
    c.sock.write(
      [
        { ...base, id: 1, seq: '101', data: { i: 1 } },
        { ...base, id: 2, seq: '102', token: '0'.repeat(32), data: { i: 2 } },
        { ...base, id: 3, seq: '103', data: { i: 3 } },
        { ...base, id: 4, seq: '104', kind: 'not a kind!' },
      ]
        .map((r) => JSON.stringify(r) + '\n')
        .join(''),
    );
    expect(await c.answer(1)).toEqual({ id: 1, ok: true });
    expect(await c.answer(2)).toEqual({ id: 2, ok: false, code: 'fenced', error: `run ${cred.run} is no longer current for task ${id}` });
    expect(await c.answer(3)).toEqual({ id: 3, ok: true });
    expect(await c.answer(4)).toMatchObject({ id: 4, ok: false, code: 'invalid' });
    c.send({ ...base, id: 5, seq: '101', data: { i: 1 } });
    expect(await c.answer(5)).toEqual({ id: 5, ok: true, duplicate: true });
    c.send({ v: 1, id: 6, op: 'hello' });
    expect(await c.answer(6)).toEqual({ id: 6, ok: true, versions: [1] });
    const b = await openBoard(db);
    try {
      const steps = (await b.showTask(id))!.events.filter((e) => e.kind === 'step');
      expect(steps.map((e) => e.data)).toEqual([{ i: 1 }, { i: 3 }]);
      // Written directly with the same seq (its channel answer lost): a duplicate too.
      expect(await b.workerEvent({ taskId: cred.task, runId: cred.run, token: cred.token }, 'step', { i: 3 }, Date.now(), '103')).toBe('duplicate');
    } finally {
      await b.close();
    }
  });

  it('a malformed frame, an oversized frame and a client that never reads: each closes its connection, logged once; the supervisor goes on', async () => {
    const { db, sup, cred } = await sleeping();
    const socket = socketOf(db);
    const bad = await RawClient.connect(socket);
    bad.sock.write('this is not json\n');
    await bad.waitClosed();
    const big = await RawClient.connect(socket);
    big.sock.write('{"v":1,"id":1,"op":"hello","pad":"' + 'x'.repeat(1024 * 1024 + 10));
    await big.waitClosed();
    // Never reads: its answers pile up past MAX_ANSWER_BYTES + MAX_UNREAD_BYTES (17 MiB).
    const deaf = await RawClient.connect(socket);
    deaf.sock.pause();
    const hellos = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ v: 1, id: i, op: 'hello' }) + '\n').join('');
    for (let k = 0; k < 600 && !deaf.closed; k++) {
      deaf.sock.write(hellos);
      await new Promise((r) => setTimeout(r, 10));
    }
    await deaf.waitClosed();
    await waitFor(() => logEvents(sup.output(), 'channel_client_dropped').length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    const dropped = logEvents(sup.output(), 'channel_client_dropped').map((e) => String(e.reason));
    expect(dropped).toHaveLength(3);
    expect(dropped[0]).toMatch(/not JSON/);
    expect(dropped[1]).toMatch(/longer than 1048576 bytes/);
    expect(dropped[2]).toMatch(/does not read its answers/);
    // Still serving.
    const ok = await RawClient.connect(socket);
    cleanups.push(() => ok.close());
    ok.send({ v: 1, id: 1, op: 'heartbeat', task: cred.task, run: cred.run, token: cred.token });
    expect(await ok.answer(1)).toEqual({ id: 1, ok: true });
    expect(sup.exitCode).toBe(null);
  });

  it.skipIf(process.getuid?.() !== 0)('a connection from another user is refused (the folder keeps it out; SO_PEERCRED when the folder is opened)', async () => {
    const { dir, db, sup } = await sleeping();
    const socket = socketOf(db);
    const client = `const s=require('net').createConnection(process.argv[1]);let got='';s.on('connect',()=>s.write('{"v":1,"id":1,"op":"hello"}\\n'));s.on('data',d=>got+=d);s.on('error',e=>{console.log('error '+e.code);process.exit(0)});s.on('close',()=>{console.log(got?'answered':'closed');process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(0)},5000)`;
    const asNobody = () => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', client, socket]);
    const first = await asNobody();
    expect(first.stdout.trim(), first.stderr).toBe('error EACCES');
    // Opened up by hand (a careless operator): the peer check still refuses.
    for (const d of [dir, join(dir, 'board'), join(socket, '..')]) (await import('node:fs')).chmodSync(d, 0o755);
    (await import('node:fs')).chmodSync(socket, 0o666);
    const second = await asNobody();
    // Closed unanswered (the write may meet the close: EPIPE, ECONNRESET).
    expect(second.stdout.trim(), second.stderr).toMatch(/^(closed|error EPIPE|error ECONNRESET)$/);
    await waitFor(() => logEvents(sup.output(), 'channel_peer_refused').length > 0);
    expect(logEvents(sup.output(), 'channel_peer_refused')[0]).toMatchObject({ uid: 65534 });
  });
});
