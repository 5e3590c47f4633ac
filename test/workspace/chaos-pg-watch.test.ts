/**
 * The chaos scripts' own checks must be able to fail. The PostgreSQL scenario's "two live workers
 * for one task" watch (test/src/chaos/pg-watch.ts) sees two live processes of this run carrying one
 * KANBAN_TASK_ID as an incident, not a zombie, nor a process of another run (another mark); and
 * `--pg` is a flag of the scripts (a wrong flag still exits 2 naming it).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, run, sleep, waitFor, zombieChildren } from '../src/common.js';
import { parseFlags } from '../src/flags.js';
import { MARK_VAR } from '../src/harness.js';
import { WorkerWatch } from '../src/chaos/pg-watch.js';

const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function worker(mark: string, task: string, run: string): ChildProcess {
  const c = spawn('sleep', ['30'], { env: { PATH: process.env.PATH, [MARK_VAR]: mark, KANBAN_TASK_ID: task, KANBAN_RUN_ID: run }, stdio: 'ignore' });
  started.push(c);
  return c;
}

describe('chaos --pg: the two-live-workers watch', () => {
  it('counts two live processes with one task id as an incident; a zombie or another run does not count', async () => {
    const mark = `test-${process.pid}-${Date.now()}`;
    const watch = new WorkerWatch(mark, 10);
    watch.start();
    worker(mark, 'task-a', 'run-1');
    worker('another-run', 'task-a', 'run-9'); // not ours
    // A zombie of task-b: its parent (a shell that became `sleep 30`, with no task id) never waits for it.
    const parent = spawn('sh', ['-c', 'KANBAN_TASK_ID=task-b KANBAN_RUN_ID=run-3 sleep 0 & exec sleep 30'], { env: { PATH: process.env.PATH, [MARK_VAR]: mark }, stdio: 'ignore' });
    started.push(parent);
    // task-b's second process only once the first is a zombie: while `sleep 0` still runs, two live
    // processes of task-b would rightly be an incident.
    await waitFor(() => zombieChildren(parent.pid!).length === 1, 10_000);
    const b = worker(mark, 'task-b', 'run-4');
    await sleep(400);
    expect(watch.incidents.size).toBe(0);
    expect(watch.live.map((w) => w.run).sort()).toEqual(['run-1', 'run-4']);
    expect(zombieChildren(parent.pid!)).toHaveLength(1);

    worker(mark, 'task-a', 'run-2');
    await sleep(400);
    await watch.stop();
    const inc = [...watch.incidents.values()];
    expect(inc).toHaveLength(1);
    expect(inc[0]).toMatchObject({ task: 'task-a' });
    expect([...inc[0]!.runs].sort()).toEqual(['run-1', 'run-2']);
    expect(watch.maxPerTask).toBe(2);
    b.kill('SIGKILL');
  });

  it('sees a worker whose environment changed at exec after it was first looked at', async () => {
    const mark = `test-${process.pid}-${Date.now()}-exec`;
    const watch = new WorkerWatch(mark, 10);
    watch.start();
    // Starts without a task id, then execs into a process that has one (like fork → exec).
    const c = spawn('sh', ['-c', `sleep 0.3; exec env KANBAN_TASK_ID=task-x KANBAN_RUN_ID=run-x ${MARK_VAR}=${mark} sleep 30`], { env: { PATH: process.env.PATH }, stdio: 'ignore' });
    started.push(c);
    await sleep(1000);
    await watch.stop();
    expect(watch.live.map((w) => w.task)).toEqual(['task-x']);
  });
});

describe('chaos and bench flags', () => {
  it('--pg is a flag; a wrong one exits 2 naming it, before anything starts', async () => {
    expect(parseFlags(['--short', '--pg'])).toEqual({ short: true, pg: true, keep: false, only: null });
    expect(parseFlags([])).toMatchObject({ pg: false });
    const r = await run(process.execPath, [join(ROOT, 'test', 'dist', 'chaos.js'), '--pg', '--postgres'], { cwd: ROOT, timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown option --postgres');
    const help = await run(process.execPath, [join(ROOT, 'test', 'dist', 'chaos.js'), '--help'], { cwd: ROOT, timeoutMs: 30_000 });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--pg');
  });
});
