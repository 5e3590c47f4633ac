/**
 * The report paths' order on the worker's side (issue 17): a KANBAN_SOCKET nobody listens on (a
 * supervisor restarting) sends every report to the board directly, with its seq; a final report
 * whose channel answer was lost and that is retried directly is applied once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Cleanups, cleanEnv, run } from '../src/common.js';
import { SKILL, WORKER_CLI, boardSetup, claimRun, spawnWorker } from '../fixtures/worker/harness.js';

const setup = boardSetup('ks-chanfb-');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('worker report paths', () => {
  it('an unreachable KANBAN_SOCKET: the runtime and the worker CLI write the board directly', async () => {
    const { dir, board } = await setup();
    const socket = join(dir, 'sockets', 'nobody.sock');
    const a = await claimRun(board, { result: { n: 1 } });
    const w = await spawnWorker(board, a, [process.execPath, SKILL], { MODE: 'return', KANBAN_SOCKET: socket });
    expect((await w.done).code, w.output()).toBe(0);
    expect((await board.getTask(a.taskId))!).toMatchObject({ status: 'done', result: { n: 1 } });

    const b = await claimRun(board, null);
    const env = cleanEnv({ ...b.env, KANBAN_SOCKET: socket });
    expect(await run(process.execPath, [WORKER_CLI, 'worker', 'event', 'note'], { env })).toMatchObject({ code: 0, stderr: '' });
    expect(await run(process.execPath, [WORKER_CLI, 'worker', 'complete', '--result', '2'], { env })).toMatchObject({ code: 0, stderr: '' });
    const d = (await board.showTask(b.taskId))!;
    expect(d.task).toMatchObject({ status: 'done', result: 2 });
    const note = d.events.find((e) => e.kind === 'note');
    expect(note).toBeDefined();
    const bad = await run(process.execPath, [WORKER_CLI, 'worker', 'event', 'x'], { env: cleanEnv({ ...b.env, KANBAN_SOCKET: 'relative.sock' }) });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('KANBAN_SOCKET must be an absolute path');
  });
});
