import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { readSpool } from '@kanban-supervisor/worker-runtime';
import { Cleanups, EXAMPLES, ROOT, cleanEnv, run } from '../src/common.js';
import { WORKER_CLI, boardSetup, claimRun, spawnWorker, type ClaimedRun } from '../fixtures/worker/harness.js';

const setup = boardSetup('ks-worker-cli-');
/** Temp dirs of tests that make their own (damaged) board, and boards to close before them. */
const cleanups = new Cleanups();
afterEach(() => cleanups.run());
/** `kanban-supervisor worker ARGS` as a skill would run it (through the stand-alone entry). */
function worker(r: ClaimedRun | Record<string, string>, args: string[]) {
  const env = 'env' in r ? (r.env as Record<string, string>) : r;
  return run(process.execPath, [WORKER_CLI, 'worker', ...args], { env: cleanEnv(env) });
}

describe('worker CLI', () => {
  it('heartbeat, event and payload go to the board, fenced by the run', async () => {
    const { board } = await setup();
    const r = await claimRun(board, { greeting: 'hi', nested: { list: [10, 20] } });
    expect(await worker(r, ['heartbeat', '--progress', '{"step":2}'])).toMatchObject({ code: 0, stderr: '' });
    expect(await worker(r, ['heartbeat'])).toMatchObject({ code: 0 });
    expect(await worker(r, ['event', 'note', '--data={"x":[1]}'])).toMatchObject({ code: 0 });
    expect(await worker(r, ['event', 'plain'])).toMatchObject({ code: 0 });
    expect((await worker(r, ['payload'])).stdout).toBe('{"greeting":"hi","nested":{"list":[10,20]}}\n');
    expect((await worker(r, ['payload', '--get', 'greeting'])).stdout).toBe('hi\n');
    expect((await worker(r, ['payload', '--get', 'nested.list.1'])).stdout).toBe('20\n');
    expect(await worker(r, ['payload', '--get', 'missing'])).toMatchObject({ code: 0, stdout: '' });
    for (const bad of ['', 'nested..list', '.greeting', 'greeting.']) {
      const res = await worker(r, ['payload', '--get', bad]);
      expect(res, bad).toMatchObject({ code: 2, stdout: '' });
      expect(res.stderr).toContain(`--get ${JSON.stringify(bad)} has an empty field name`);
    }
    const d = (await board.showTask(r.taskId))!;
    expect(d.runs[0]!.progress).toEqual({ step: 2 });
    expect(d.runs[0]!.heartbeatAt).not.toBeNull();
    expect(d.events.filter((e) => e.kind === 'note' || e.kind === 'plain').map((e) => [e.kind, e.data])).toEqual([
      ['note', { x: [1] }],
      ['plain', null],
    ]);
  });

  it('complete, fail and defer end the run', async () => {
    const { board } = await setup();
    const a = await claimRun(board, null);
    expect(await worker(a, ['complete', '--result', '{"ok":true}'])).toMatchObject({ code: 0 });
    expect((await board.getTask(a.taskId))!).toMatchObject({ status: 'done', result: { ok: true } });
    const b = await claimRun(board, null);
    expect(await worker(b, ['fail', '--error', 'it broke'])).toMatchObject({ code: 0 });
    expect((await board.showTask(b.taskId))!.runs[0]).toMatchObject({ status: 'ended', outcome: 'failed', error: 'it broke' });
    const c = await claimRun(board, null);
    const t0 = Date.now();
    expect(await worker(c, ['defer', '--seconds', '2.5', '--reason', 'later'])).toMatchObject({ code: 0 });
    const rc = (await board.showTask(c.taskId))!.runs[0]!;
    expect(rc).toMatchObject({ outcome: 'deferred', error: 'later' });
    expect(rc.deferUntil! - t0).toBeGreaterThanOrEqual(2500);
    const d = await claimRun(board, null);
    expect(await worker(d, ['complete'])).toMatchObject({ code: 0 });
    expect((await board.getTask(d.taskId))!).toMatchObject({ status: 'done', result: null });
  });

  it("a reclaimed run's late complete is refused: exit 3 with the exact message, task keeps its state", async () => {
    const { board } = await setup();
    const r = await claimRun(board, null);
    await board.recordSpawns([{ runId: r.runId, info: { pid: process.pid, pgid: process.pid, procStartTime: 0, bootId: 'test' } }], Date.now());
    expect(await board.beginReclaim(r.runId, 'timed_out', Date.now())).toBe(true);
    const before = (await board.showTask(r.taskId))!;
    const res = await worker(r, ['complete', '--result', '{"late":true}']);
    expect(res.code).toBe(3);
    expect(res.stderr).toBe(`run ${r.runId} is no longer current for task ${r.taskId}\n`);
    for (const args of [['heartbeat'], ['event', 'x'], ['payload'], ['fail', '--error', 'e'], ['defer', '--seconds', '1']]) {
      const x = await worker(r, args);
      expect(x.code, args.join(' ')).toBe(3);
      expect(x.stderr).toBe(`run ${r.runId} is no longer current for task ${r.taskId}\n`);
      expect(x.stdout).toBe('');
    }
    const after = (await board.showTask(r.taskId))!;
    expect(after.task).toEqual(before.task);
    expect(after.runs).toEqual(before.runs);
    expect(after.events).toEqual(before.events);
  });

  it('a cancelled task fences its run out', async () => {
    const { board } = await setup();
    const r = await claimRun(board, null);
    await board.cancelTask(r.taskId);
    const res = await worker(r, ['complete']);
    expect(res.code).toBe(3);
    expect((await board.getTask(r.taskId))!.status).toBe('cancelled');
  });

  it.each([
    [['heartbeat', '--progress', '{bad'], ['--progress', '"{bad"', 'not valid JSON']],
    [['event', 'k', '--data', '[1,'], ['--data', '"[1,"', 'not valid JSON']],
    [['complete', '--result', 'nope'], ['--result', '"nope"', 'not valid JSON']],
    [['defer'], ['--seconds is required']],
    [['defer', '--seconds', 'soon'], ['--seconds', '"soon"']],
    [['defer', '--seconds', '-1'], ['--seconds', '"-1"']],
    [['event'], ['expects KIND']],
    [['event', 'bad kind!'], ['event kind', 'invalid']],
    [['heartbeat', '--bogus', '1'], ['unknown option --bogus']],
    [['heartbeat', '--progress'], ['--progress needs a value']],
    [['explode'], ['unknown worker command "explode"']],
  ])('bad arguments %j → exit 2 naming the flag and value', async (args, needles) => {
    const { board } = await setup();
    const r = await claimRun(board, null);
    const res = await worker(r, args);
    expect(res.code, res.stderr).toBe(2);
    for (const n of needles) expect(res.stderr).toContain(n);
    expect((await board.showTask(r.taskId))!.runs[0]!.heartbeatAt).toBeNull();
  });

  it('a missing KANBAN_* variable → exit 2 naming it', async () => {
    const { board } = await setup();
    const r = await claimRun(board, null);
    const env = { ...r.env };
    delete (env as Record<string, string>).KANBAN_TASK_ID;
    const res = await worker(env, ['heartbeat']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('KANBAN_TASK_ID is not set');
  });

  it('messages are terminal-safe: a task id with an escape sequence and a newline is printed escaped (exit 3)', async () => {
    const { board } = await setup();
    const r = await claimRun(board, null);
    const res = await worker({ ...r.env, KANBAN_TASK_ID: 't\u001b[31mred\nforged line' }, ['payload']);
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    expect(res.stderr).toBe(`run ${r.runId} is no longer current for task t\\x1b[31mred\\nforged line\n`);
  });

  it('--help prints the usage and exits 0', async () => {
    const res = await run(process.execPath, [WORKER_CLI, '--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('defer --seconds N');
  });

  it('a damaged board: the final report is spooled next to it (0600), exit 0', async () => {
    const dir = cleanups.tempDir('ks-worker-cli-');
    const db = join(dir, 'kanban.db');
    writeFileSync(db, 'this is not a database, just some text that is long enough to be a header...........');
    const cred = { KANBAN_DB: db, KANBAN_TASK_ID: 'tabc', KANBAN_RUN_ID: 'rdef', KANBAN_RUN_TOKEN: 'secret' };
    const res = await worker(cred, ['complete', '--result', '{"n":1}']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain('spooled to');
    const spooled = readSpool(db);
    expect(spooled).toHaveLength(1);
    const s = spooled[0]!;
    expect('entry' in s && s.entry).toMatchObject({ taskId: 'tabc', runId: 'rdef', token: 'secret', report: { outcome: 'completed', result: { n: 1 } } });
    expect(statSync(s.path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'spool')).mode & 0o777).toBe(0o700);
    // Non-final commands have nothing to spool: they fail.
    expect((await worker(cred, ['heartbeat'])).code).toBe(1);
  });
});

describe('flaky.sh (bash + worker CLI)', () => {
  const FLAKY = join(ROOT, 'examples', 'src', 'flaky.sh');
  const KANBAN_CLI = `${process.execPath} ${WORKER_CLI}`;

  it('is executable', () => {
    expect(statSync(FLAKY).mode & 0o111).toBe(0o111);
  });

  it.each([
    ['succeed', 0, null],
    ['fail', 1, null],
    ['crash', null, 'SIGKILL'],
  ] as const)('outcome %s', async (outcome, code, signal) => {
    const { board } = await setup();
    const r = await claimRun(board, { outcome, sleepSeconds: 0 });
    const w = await spawnWorker(board, r, [FLAKY], { KANBAN_CLI });
    const exit = await w.done;
    expect(exit.code, w.output()).toBe(code);
    expect(exit.signal).toBe(signal);
    const d = (await board.showTask(r.taskId))!;
    const rolled = d.events.find((e) => e.kind === 'flaky.rolled');
    expect(rolled?.data).toMatchObject({ outcome });
    expect(d.runs[0]!.progress).toMatchObject({ outcome });
    if (outcome === 'succeed') expect(d.task).toMatchObject({ status: 'done', result: { outcome: 'succeed' } });
    if (outcome === 'fail') expect(d.runs[0]).toMatchObject({ outcome: 'failed' });
    if (outcome === 'crash') expect(d.runs[0]).toMatchObject({ status: 'running', outcome: null });
  });

  it('exits 3 when fenced out, and 143 on SIGTERM', async () => {
    const { board } = await setup();
    const r = await claimRun(board, { outcome: 'succeed', sleepSeconds: 0 });
    await board.cancelTask(r.taskId);
    const w = await spawnWorker(board, r, [FLAKY], { KANBAN_CLI });
    expect((await w.done).code).toBe(3);
    const r2 = await claimRun(board, { outcome: 'succeed', sleepSeconds: 30 });
    const w2 = await spawnWorker(board, r2, [FLAKY], { KANBAN_CLI });
    for (let i = 0; i < 200 && !(await board.showTask(r2.taskId))!.events.some((e) => e.kind === 'flaky.rolled'); i++) {
      await new Promise((res) => setTimeout(res, 25));
    }
    w2.kill('SIGTERM');
    expect((await w2.done).code).toBe(143);
  });
});

describe('seed script', () => {
  it('registers the examples and enqueues tasks on first run only', async () => {
    const dir = cleanups.tempDir('ks-seed-');
    const db = join(dir, 'k', 'kanban.db');
    const first = await run(process.execPath, [join(EXAMPLES, 'seed.js'), '--db', db]);
    expect(first.code, first.stderr).toBe(0);
    const b = await openBoard(db);
    cleanups.push(() => b.close()); // undone first: close before the dir goes
    const skills = await b.listSkills();
    expect(skills.map((s) => s.name)).toEqual(['echo', 'flaky', 'slow-call']);
    for (const s of skills) for (const a of s.argv) if (a.startsWith('/')) expect(existsSync(a), a).toBe(true);
    const n = (await b.listTasks()).length;
    expect(n).toBeGreaterThan(5);
    const second = await run(process.execPath, [join(EXAMPLES, 'seed.js')], { env: { ...process.env, KANBAN_DB: db } });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('already has');
    expect((await b.listTasks()).length).toBe(n);
    expect(readFileSync(join(ROOT, 'examples', 'src', 'flaky.sh'), 'utf8').startsWith('#!/usr/bin/env bash')).toBe(true);
  });
});
