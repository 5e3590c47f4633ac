import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES, sleep, waitFor } from '../src/common.js';
import { SKILL, boardSetup, claimRun, events, integrity, spawnWorker } from '../fixtures/worker/harness.js';

const setup = boardSetup('ks-worker-');
const node = (script: string) => [process.execPath, script];
function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

describe('runWorker: outcomes and exit codes', () => {
  it('completed → exit 0, task done with the result (echo example)', async () => {
    const { board } = await setup();
    await board.putSkill({ name: 'echo', argv: node(join(EXAMPLES, 'echo.js')) });
    const task = await board.createTask({ skill: 'echo', payload: { hello: ['world', 1] } });
    const claim = (await board.claimBatch(1, Date.now(), () => '/dev/null'))[0]!;
    const run = { taskId: task.id, runId: claim.run.id, token: claim.token, env: { KANBAN_DB: board.location, KANBAN_TASK_ID: task.id, KANBAN_RUN_ID: claim.run.id, KANBAN_RUN_TOKEN: claim.token } };
    const w = await spawnWorker(board, run, node(join(EXAMPLES, 'echo.js')));
    expect((await w.done).code, w.output()).toBe(0);
    const t = (await board.getTask(task.id))!;
    expect(t.status).toBe('done');
    expect(t.result).toEqual({ hello: ['world', 1] });
    const detail = (await board.showTask(task.id))!;
    expect(detail.runs[0]!.outcome).toBe('completed');
    expect(events(board, run.runId).map((e) => e.kind)).toEqual(['claimed', 'spawned', 'echo', 'reported']);
  });

  it('a board truncated to an empty file under a worker (no channel): not the worker\'s fault, its run ends deferred through the spool (exit 75), the file is left empty', async () => {
    const { dir, board } = await setup();
    await board.putSkill({ name: 'echo', argv: node(join(EXAMPLES, 'echo.js')) });
    const run = await claimRun(board, { hello: 1 });
    const empty = join(dir, 'truncated.db');
    writeFileSync(empty, '');
    const spool = join(dir, 'spool');
    const w = await spawnWorker(null, { ...run, env: { ...run.env, KANBAN_DB: empty, KANBAN_SPOOL_DIR: spool } }, node(join(EXAMPLES, 'echo.js')));
    expect((await w.done).code, w.output()).toBe(75);
    expect(w.output()).toContain('is an empty file, not a board');
    expect(readFileSync(empty, 'utf8')).toBe('');
    const spooled = readdirSync(spool).filter((f) => f.endsWith('.json'));
    expect(spooled).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(spool, spooled[0]!), 'utf8')).report).toMatchObject({ outcome: 'deferred' });
  });

  it('a throwing handler → exit 1, run failed with the message, task left for accounting', async () => {
    const { board } = await setup();
    const run = await claimRun(board, { why: 'no luck' });
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'throw' });
    expect((await w.done).code, w.output()).toBe(1);
    const detail = (await board.showTask(run.taskId))!;
    expect(detail.runs[0]!.status).toBe('ended');
    expect(detail.runs[0]!.outcome).toBe('failed');
    expect(detail.runs[0]!.error).toBe('boom: no luck');
    expect(detail.task.status).toBe('running'); // the supervisor accounts it
    expect(w.output()).toContain('boom: no luck');
  });

  it('ctx.defer → exit 75, run deferred until now + seconds with the reason', async () => {
    const { board } = await setup();
    const run = await claimRun(board, { seconds: 30, reason: 'rate limited' });
    const before = Date.now();
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'defer' });
    expect((await w.done).code, w.output()).toBe(75);
    const r = (await board.showTask(run.taskId))!.runs[0]!;
    expect(r.outcome).toBe('deferred');
    expect(r.error).toBe('rate limited');
    expect(r.deferUntil!).toBeGreaterThanOrEqual(before + 30_000);
    expect(r.deferUntil!).toBeLessThan(Date.now() + 30_000 + 1000);
  });

  it('a result that is not JSON-serialisable fails the run, saying why', async () => {
    const { board } = await setup();
    const run = await claimRun(board, null);
    const w = await spawnWorker(board, run, [process.execPath, '--input-type=module', '-e',
      `import { runWorker } from '@kanban-supervisor/worker-runtime'; runWorker(async () => ({ big: 10n }));`]);
    expect((await w.done).code, w.output()).toBe(1);
    const r = (await board.showTask(run.taskId))!.runs[0]!;
    expect(r.outcome).toBe('failed');
    expect(r.error).toMatch(/result was refused.*not serialisable/);
  });

  it('a handler whose promise can never settle fails the run instead of exiting silently', async () => {
    const { board } = await setup();
    const run = await claimRun(board, null);
    const w = await spawnWorker(board, run, [process.execPath, '--input-type=module', '-e',
      `import { runWorker } from '@kanban-supervisor/worker-runtime'; runWorker(() => new Promise(() => {}));`]);
    expect((await w.done).code, w.output()).toBe(1);
    expect((await board.showTask(run.taskId))!.runs[0]!.error).toMatch(/never finished/);
  });

  it.each(['KANBAN_DB', 'KANBAN_TASK_ID', 'KANBAN_RUN_ID', 'KANBAN_RUN_TOKEN'])('missing %s → exit 2 naming it', async (name) => {
    const { board } = await setup();
    const run = await claimRun(board, null);
    delete run.env[name];
    const w = await spawnWorker(null, run, node(SKILL), { MODE: 'return' });
    expect((await w.done).code).toBe(2);
    expect(w.output()).toContain(`${name} is not set`);
    expect((await board.getTask(run.taskId))!.status).toBe('running');
  });

  it('an invalid KANBAN_RECLAIM_GRACE_SECONDS → exit 2 naming it and the value', async () => {
    const { board } = await setup();
    const run = await claimRun(board, null, { KANBAN_RECLAIM_GRACE_SECONDS: 'soon' });
    const w = await spawnWorker(null, run, node(SKILL), { MODE: 'return' });
    expect((await w.done).code).toBe(2);
    expect(w.output()).toContain('KANBAN_RECLAIM_GRACE_SECONDS must be a number');
    expect(w.output()).toContain('"soon"');
  });

  it('a wrong token is fenced out at load: exit 3, nothing written', async () => {
    const { board } = await setup();
    const run = await claimRun(board, null);
    run.env.KANBAN_RUN_TOKEN = 'f'.repeat(32);
    const w = await spawnWorker(null, run, node(SKILL), { MODE: 'return' });
    expect((await w.done).code).toBe(3);
    expect(w.output()).toContain(`run ${run.runId} is no longer current for task ${run.taskId}`);
  });

  it('automatic heartbeats run on the interval derived from KANBAN_HEARTBEAT_TIMEOUT_SECONDS', async () => {
    const { dir, board } = await setup();
    const run = await claimRun(board, null, { KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '0.3' });
    const ready = join(dir, 'ready');
    const go = join(dir, 'go');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'wait-go', READY: ready, GO: go });
    await waitFor(() => existsSync(ready));
    const first = await waitFor(async () => (await board.showTask(run.taskId))!.runs[0]!.heartbeatAt);
    const later = await waitFor(async () => {
      const hb = (await board.showTask(run.taskId))!.runs[0]!.heartbeatAt!;
      return hb > first ? hb : null;
    }, 3000);
    expect(later - first).toBeLessThan(1000);
    writeFileSync(go, '');
    expect((await w.done).code, w.output()).toBe(0);
    expect((await board.getTask(run.taskId))!.result).toEqual({ late: true });
  });
});

describe('runWorker: signals', () => {
  it('SIGTERM mid-loop of writes: exit 143 within the grace, hooks ran, board intact, stop recorded', async () => {
    const { dir, board } = await setup();
    const grace = 2;
    const run = await claimRun(board, null, { KANBAN_RECLAIM_GRACE_SECONDS: String(grace), KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '0.3' });
    const ledger = join(dir, 'ledger');
    const hookFile = join(dir, 'hook');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'write-loop', LEDGER: ledger, HOOK_FILE: hookFile, HOOK_MS: '300' });
    await waitFor(() => lines(ledger).length >= 20);
    // As the supervisor does: close the fence, then signal.
    expect(await board.beginReclaim(run.runId, 'timed_out', Date.now())).toBe(true);
    const t0 = Date.now();
    w.kill('SIGTERM');
    const exit = await w.done;
    expect(exit.code, w.output()).toBe(143);
    expect(exit.at - t0).toBeLessThan(grace * 1000);
    // The worker may notice the closed fence (NotCurrentError) before the signal arrives: either way
    // the hooks run once and the stop is recorded.
    expect(lines(hookFile)).toHaveLength(1);
    expect(lines(hookFile)[0]).toMatch(/^hook (WorkerStoppedError|NotCurrentError)$/);
    expect(integrity(board.location)).toBe('ok');
    const detail = (await board.showTask(run.taskId))!;
    expect(detail.runs[0]!.stoppedOnRequest).toBe(true);
    expect(detail.events.filter((e) => e.kind === 'stopped_on_request').map((e) => e.data)).toEqual([{ signal: 'SIGTERM' }]);
    // Every acknowledged write is there; the task keeps its state for the supervisor.
    const seqs = events(board, run.runId).filter((e) => e.kind === 'seq').map((e) => (e.data as { n: number }).n);
    expect(seqs.length).toBeGreaterThanOrEqual(lines(ledger).length);
    expect(detail.task.status).toBe('running');
    // The connection was closed cleanly: the WAL holds nothing left to checkpoint from it.
    expect(existsSync(board.location + '-wal')).toBe(true);
  });

  it('SIGINT without a reclaim: exit 130, hooks ran, stop recorded with SIGINT', async () => {
    const { dir, board } = await setup();
    const run = await claimRun(board, null, { KANBAN_RECLAIM_GRACE_SECONDS: '2' });
    const ledger = join(dir, 'ledger');
    const hookFile = join(dir, 'hook');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'write-loop', LEDGER: ledger, HOOK_FILE: hookFile, ITER_MS: '5' });
    await waitFor(() => lines(ledger).length >= 5);
    w.kill('SIGINT');
    expect((await w.done).code, w.output()).toBe(130);
    expect(lines(hookFile)).toEqual(['hook WorkerStoppedError']);
    const detail = (await board.showTask(run.taskId))!;
    expect(detail.events.filter((e) => e.kind === 'stopped_on_request').map((e) => e.data)).toEqual([{ signal: 'SIGINT' }]);
    expect(integrity(board.location)).toBe('ok');
  });

  it('hooks that overrun the budget are cut off: the worker still exits within the grace', async () => {
    const { dir, board } = await setup();
    // A 4 s grace: the budget is 3 s (a 1 s margin, which a loaded CI machine needs to exit in).
    const run = await claimRun(board, null, { KANBAN_RECLAIM_GRACE_SECONDS: '4' });
    const ready = join(dir, 'ready');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'wait-go', READY: ready, GO: join(dir, 'never'), HOOK_FILE: join(dir, 'hook'), HOOK_HANG: '1' });
    await waitFor(() => existsSync(ready));
    await board.beginReclaim(run.runId, 'stalled', Date.now());
    const t0 = Date.now();
    w.kill('SIGTERM');
    const exit = await w.done;
    expect(exit.code, w.output()).toBe(143);
    expect(exit.at - t0).toBeGreaterThanOrEqual(2900); // the budget: 4 s less a 1 s margin
    expect(exit.at - t0).toBeLessThan(4000);
    expect((await board.showTask(run.taskId))!.runs[0]!.stoppedOnRequest).toBe(true);
  });

  it('a second signal skips the hooks but still records the stop and closes the board', async () => {
    const { dir, board } = await setup();
    const run = await claimRun(board, null, { KANBAN_RECLAIM_GRACE_SECONDS: '30' });
    const ready = join(dir, 'ready');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'wait-go', READY: ready, GO: join(dir, 'never'), HOOK_FILE: join(dir, 'hook'), HOOK_HANG: '1' });
    await waitFor(() => existsSync(ready));
    w.kill('SIGTERM');
    await sleep(300);
    const t0 = Date.now();
    w.kill('SIGTERM');
    const exit = await w.done;
    expect(exit.code, w.output()).toBe(143);
    expect(exit.at - t0).toBeLessThan(1000);
    expect(existsSync(join(dir, 'hook'))).toBe(false);
    expect((await board.showTask(run.taskId))!.runs[0]!.stoppedOnRequest).toBe(true);
    expect(integrity(board.location)).toBe('ok');
  });
});

describe('runWorker: fencing', () => {
  it("a reclaimed worker's late complete is refused: exit 3 with the message, task untouched", async () => {
    const { dir, board } = await setup();
    const run = await claimRun(board, null);
    const ready = join(dir, 'ready');
    const go = join(dir, 'go');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'wait-go', READY: ready, GO: go, AUTO_HB: '0' });
    await waitFor(() => existsSync(ready));
    expect(await board.beginReclaim(run.runId, 'timed_out', Date.now())).toBe(true);
    const before = (await board.showTask(run.taskId))!;
    writeFileSync(go, ''); // the worker finishes late, as if it had ignored the SIGTERM
    const exit = await w.done;
    expect(exit.code, w.output()).toBe(3);
    expect(w.output()).toContain(`run ${run.runId} is no longer current for task ${run.taskId}`);
    const after = (await board.showTask(run.taskId))!;
    expect(after.task).toEqual(before.task);
    expect(after.task.status).toBe('running');
    expect(after.task.result).toBeNull();
    expect(after.runs[0]!.status).not.toBe('ended');
    expect(after.runs[0]!.outcome).toBeNull();
    expect(after.events.map((e) => e.kind)).not.toContain('reported');
  });

  it('a fence closed under a running worker aborts ctx.signal with NotCurrentError; hooks run; exit 3', async () => {
    const { dir, board } = await setup();
    const run = await claimRun(board, null, { KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '0.3' });
    const ready = join(dir, 'ready');
    const reason = join(dir, 'reason');
    const hook = join(dir, 'hook');
    const w = await spawnWorker(board, run, node(SKILL), { MODE: 'watch', READY: ready, REASON: reason, HOOK_FILE: hook });
    await waitFor(() => existsSync(ready));
    await board.cancelTask(run.taskId); // the operator cancels: the fence closes
    const exit = await w.done;
    expect(exit.code, w.output()).toBe(3);
    expect(readFileSync(reason, 'utf8')).toBe('NotCurrentError');
    expect(lines(hook)).toEqual(['hook NotCurrentError']);
    expect(w.output()).toContain(`run ${run.runId} is no longer current for task ${run.taskId}`);
    const after = (await board.showTask(run.taskId))!;
    expect(after.task.status).toBe('cancelled');
    expect(after.runs[0]!.outcome).toBeNull();
  });
});

describe('examples', () => {
  it('slow-call saves its partial work on SIGTERM and resumes from it on the next run', async () => {
    const { dir, board } = await setup();
    const script = join(EXAMPLES, 'slow-call.js');
    await board.putSkill({ name: 'slow-call', argv: node(script) });
    const task = await board.createTask({ skill: 'slow-call', payload: { steps: 12, stepMs: 60 } });
    const start = async () => {
      const c = (await board.claimBatch(1, Date.now(), () => '/dev/null'))[0]!;
      const run = { taskId: task.id, runId: c.run.id, token: c.token, env: { KANBAN_DB: board.location, KANBAN_TASK_ID: task.id, KANBAN_RUN_ID: c.run.id, KANBAN_RUN_TOKEN: c.token, KANBAN_RECLAIM_GRACE_SECONDS: '3' } };
      return { run, w: await spawnWorker(board, run, node(script)) };
    };
    const first = await start();
    const progress = await waitFor(async () => {
      const p = (await board.showTask(task.id))!.runs[0]!.progress as { step: number } | null;
      return p && p.step >= 3 ? p : null;
    });
    expect(progress.step).toBeGreaterThanOrEqual(3);
    await board.beginReclaim(first.run.runId, 'timed_out', Date.now());
    first.w.kill('SIGTERM');
    expect((await first.w.done).code, first.w.output()).toBe(143);
    const saved = JSON.parse(readFileSync(join(dir, 'slow-call', `${task.id}.json`), 'utf8')) as { done: number };
    expect(saved.done).toBeGreaterThanOrEqual(3);
    // The supervisor's part: the process is gone, the run ends, the task is ready again.
    await board.recordExits([{ runId: first.run.runId, at: Date.now(), exitCode: 143, gone: true, outcomeIfUnreported: 'timed_out' }]);
    await board.applyAccountingBatch([{ runId: first.run.runId, action: { action: 'requeue', consecutiveFailures: 1, notBefore: 0, counted: true } }], Date.now());
    const second = await start();
    expect((await second.w.done).code, second.w.output()).toBe(0);
    const t = (await board.getTask(task.id))!;
    expect(t.status).toBe('done');
    const result = t.result as { steps: number; resumedFrom: number; text: string };
    expect(result.resumedFrom).toBe(saved.done);
    expect(result.text.split(' ')).toEqual(Array.from({ length: 12 }, (_, i) => `chunk-${i}`));
    expect(existsSync(join(dir, 'slow-call', `${task.id}.json`))).toBe(false);
  });
});
