// `kanban-supervisor logs` (issue 12 §3): a task's or a run's output; -f follows the task across
// its attempts and ends by itself; logs in a folder workers write are read safely; a log cut by
// LOG_MAX_BYTES says so in one line.
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, FIXTURES, cli, exited, sleep, startProcess, waitFor } from '../src/common.js';

const OPS = join(FIXTURES, 'ops');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const setup = () => cleanups.boardDir('ks-logs-');

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', BACKOFF_BASE_SECONDS: '0.3', LOG_LEVEL: 'info' };

/**
 * Whether a bounded log of numbered.sh lines (33 bytes each) lost output its marker does not count
 * (an append that raced the truncation, see boundLogFd): a gap in `logs -f` is the reader's fault
 * only when the file itself lost nothing.
 */
function fileLoss(text: string): string {
  const ls = text.split('\n');
  const at = ls.findIndex((l) => l.startsWith('[kanban-supervisor: log truncated: '));
  if (at < 1) return 'the log has no marker line';
  const missing = (Number(ls[at + 1]!.slice(2, 8)) - Number(ls[at - 1]!.slice(2, 8)) - 1) * 33;
  const counted = Number(/truncated: (\d+) bytes/.exec(ls[at]!)![1]);
  return missing === counted ? 'the log file lost nothing: a reader fault' : `the log file itself lost ${missing - counted} bytes its marker does not count`;
}

/** stdout and stderr of a started process, apart. */
function split(p: ReturnType<typeof startProcess>) {
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += String(d)));
  p.stderr!.on('data', (d) => (err += String(d)));
  return { out: () => out, err: () => err };
}

describe('kanban-supervisor logs', () => {
  it('-f follows a task across a retry (one header per attempt) and exits 0 by itself when it is done', async () => {
    const { dir, db } = setup();
    await cli(db, ['skill', 'add', 'flaky', '--', join(OPS, 'flaky.sh'), join(dir, 'failed-once'), '0.2']);
    const id = (await cli(db, ['add', '--skill', 'flaky'])).stdout.trim();
    // Started before the task has any run, and before any supervisor: it waits for the first run.
    const f = cleanups.startCli(db, ['logs', id, '-f']);
    const io = split(f);
    const sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    const { code } = await exited(f);
    expect(code, io.out() + io.err()).toBe(0);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('done');
    expect(show.runs.map((r: { outcome: string }) => r.outcome)).toEqual(['crashed', 'completed']);
    const [r1, r2] = show.runs.map((r: { id: string }) => r.id);
    const lines = io.out().trim().split('\n');
    // Exactly: header 1, its 5 lines, header 2, its 4 lines (the complete call prints nothing).
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^==> task ${id} attempt 1: run ${r1}, started \\d{4}-\\d\\d-\\d\\dT.*Z <==$`)),
      `start ${r1}`,
      `line 1 of ${r1}`,
      `line 2 of ${r1}`,
      `line 3 of ${r1}`,
      'failing on purpose',
      expect.stringMatching(new RegExp(`^==> task ${id} attempt 2: run ${r2}, `)),
      `start ${r2}`,
      `line 1 of ${r2}`,
      `line 2 of ${r2}`,
      `line 3 of ${r2}`,
    ]);
    expect(io.err()).toContain(`task ${id} is done`);
  });

  it('shows the latest run by default, a chosen one by --attempt, --run or a run id, and the last lines by --tail, with no supervisor', async () => {
    const { dir, db } = setup();
    await cli(db, ['skill', 'add', 'flaky', '--', join(OPS, 'flaky.sh'), join(dir, 'failed-once'), '0']);
    const id = (await cli(db, ['add', '--skill', 'flaky'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const [r1, r2] = JSON.parse((await cli(db, ['--json', 'show', id])).stdout).runs.map((r: { id: string }) => r.id);
    const latest = await cli(db, ['logs', id]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(latest.stdout).toBe(`start ${r2}\nline 1 of ${r2}\nline 2 of ${r2}\nline 3 of ${r2}\n`);
    expect((await cli(db, ['logs', id, '--attempt', '1'])).stdout).toContain(`line 3 of ${r1}\nfailing on purpose\n`);
    expect((await cli(db, ['logs', id, '--run', r1])).stdout).toContain(`start ${r1}\n`);
    expect((await cli(db, ['logs', r1])).stdout).toContain(`start ${r1}\n`);
    expect((await cli(db, ['logs', r1, '--tail', '2'])).stdout).toBe(`line 3 of ${r1}\nfailing on purpose\n`);
    // -f on a task that is already done prints its last run and ends at once.
    const f = await cli(db, ['logs', id, '-f', '--tail', '1']);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toMatch(new RegExp(`^==> task ${id} attempt 2: run ${r2}, .*<==\\nline 3 of ${r2}\\n$`));
    // Bad input names what is at fault.
    const noAttempt = await cli(db, ['logs', id, '--attempt', '3']);
    expect(noAttempt.code).toBe(1);
    expect(noAttempt.stderr).toContain(`task ${id} has 2 run(s); there is no attempt 3`);
    const both = await cli(db, ['logs', id, '--attempt', '1', '--run', r1]);
    expect(both.code).toBe(2);
    expect((await cli(db, ['logs', 'tnothere'])).stderr).toContain('no task "tnothere" (nor a run of that id)');
    expect((await cli(db, ['logs', id, '--bogus'])).stderr).toContain('logs: unknown option --bogus');
  });

  it('refuses a log replaced by a FIFO or a symlink, at once and naming the file (never blocks, never follows)', async () => {
    const { dir, db } = setup();
    await cli(db, ['skill', 'add', 'flaky', '--', join(OPS, 'flaky.sh'), join(dir, 'failed-once'), '0']);
    writeFileSync(join(dir, 'failed-once'), '');
    const id = (await cli(db, ['add', '--skill', 'flaky'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const log = JSON.parse((await cli(db, ['--json', 'show', id])).stdout).runs[0].log_path as string;
    expect(existsSync(log)).toBe(true);
    rmSync(log);
    execFileSync('mkfifo', [log]);
    const t0 = Date.now();
    const fifo = await cli(db, ['logs', id]);
    expect(fifo.code).toBe(1);
    expect(fifo.stderr).toContain(`${log} is not a regular file`);
    const fifoF = await cli(db, ['logs', id, '-f']);
    expect(fifoF.code).toBe(1);
    expect(fifoF.stderr).toContain(`${log} is not a regular file`);
    expect(Date.now() - t0).toBeLessThan(20_000);
    rmSync(log);
    const secret = join(dir, 'secret.txt');
    writeFileSync(secret, 'SECRET CONTENT\n');
    symlinkSync(secret, log);
    const link = await cli(db, ['logs', id]);
    expect(link.code).toBe(1);
    expect(link.stderr).toContain(`${log} is a symbolic link`);
    expect(link.stdout).not.toContain('SECRET');
  });

  it('a log bounded by LOG_MAX_BYTES says so in one line: --tail prints the marker, -f goes on after each cut without repeating a line', async () => {
    const { db } = setup();
    await cli(db, ['skill', 'add', 'numbered', '--', join(OPS, 'numbered.sh'), '150', '0.01']);
    const id = (await cli(db, ['add', '--skill', 'numbered'])).stdout.trim();
    const f = cleanups.startCli(db, ['logs', id, '-f']);
    const io = split(f);
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, LOG_MAX_BYTES: '1024' });
    // A reader that falls behind (stopped once it has shown a line, until the bound has dropped
    // lines it had not shown yet) says so with the marker line; a reader that keeps up does not
    // need to, so this does not depend on how fast either runs.
    await waitFor(() => /^n 000001 /m.test(io.out()));
    f.kill('SIGSTOP');
    await sleep(300); // what it wrote before it stopped reaches us
    const shown = Math.max(...[...io.out().matchAll(/^n (\d{6}) /gm)].map((m) => Number(m[1])));
    const logPath: string = JSON.parse((await cli(db, ['--json', 'show', id])).stdout).runs[0].log_path;
    await waitFor(() => {
      const m = /\n\[kanban-supervisor: log truncated: \d+ bytes dropped here[^\n]*\]\nn (\d{6}) /.exec(readFileSync(logPath, 'latin1'));
      return m && Number(m[1]) > shown + 1;
    }, 60_000);
    f.kill('SIGCONT');
    expect((await exited(f)).code, io.out() + io.err()).toBe(0);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    expect(sup.output()).toContain('"event":"log_truncated"');
    const lines = io.out().trim().split('\n').slice(1); // after the header
    const markers = lines.filter((l) => l.startsWith('[kanban-supervisor: log truncated: '));
    expect(markers.length).toBeGreaterThan(0);
    expect(markers[0]).toMatch(/^\[kanban-supervisor: log truncated: \d+ bytes dropped here to stay under LOG_MAX_BYTES=1024\]$/);
    const numbers = lines.filter((l) => l.startsWith('n ')).map((l) => Number(l.slice(2, 8)));
    // In order, never twice, the first and the last ones there; every gap preceded by a marker line.
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBeGreaterThan(numbers[i - 1]!);
    expect(numbers[0]).toBe(1);
    expect(numbers[numbers.length - 1]).toBe(150);
    for (let i = 1; i < lines.length; i++) {
      const a = Number(lines[i - 1]!.slice(2, 8));
      const b = Number(lines[i]!.slice(2, 8));
      if (lines[i - 1]!.startsWith('n ') && lines[i]!.startsWith('n ') && b !== a + 1) {
        throw new Error(`gap ${a} → ${b} without a marker line (${fileLoss(readFileSync(logPath, 'latin1'))}):\n${lines.join('\n')}`);
      }
    }
    // --tail 3 of the bounded log: its marker line first (it lies before the tail), then 3 lines.
    const tail = await cli(db, ['logs', id, '--tail', '3']);
    const tl = tail.stdout.trim().split('\n');
    expect(tl[0]).toMatch(/^\[kanban-supervisor: log truncated: \d+ bytes dropped here/);
    expect(tl.slice(1).map((l) => l.slice(0, 8))).toEqual(['n 000148', 'n 000149', 'n 000150']);
    // The whole log: head, one marker line, tail.
    const whole = (await cli(db, ['logs', id])).stdout;
    expect(whole.split('\n').filter((l) => l.startsWith('[kanban-supervisor: log truncated')).length).toBe(1);
    expect(readFileSync(JSON.parse((await cli(db, ['--json', 'show', id])).stdout).runs[0].log_path, 'utf8')).toBe(whole);
  });

  it('-f of a running task keeps following while the worker writes, with or without a supervisor, and Ctrl-C exits 0', async () => {
    const { db } = setup();
    await cli(db, ['skill', 'add', 'numbered', '--', join(OPS, 'numbered.sh'), '1000', '0.05']);
    const id = (await cli(db, ['add', '--skill', 'numbered'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run'], FAST);
    await waitFor(() => sup.output().includes('"event":"spawned"'));
    sup.kill('SIGKILL'); // the worker lives on; nothing accounts for it now
    await exited(sup);
    const f = cleanups.startCli(db, ['logs', id, '-f']);
    const io = split(f);
    await waitFor(() => /n 0000(1\d|[2-9]\d)/.test(io.out()), 20_000);
    const seen = io.out().length;
    await waitFor(() => io.out().length > seen + 200, 20_000);
    expect(f.exitCode).toBeNull();
    f.kill('SIGINT');
    expect((await exited(f)).code).toBe(0);
    // Stop the orphaned worker: cancel, and a supervisor reclaims it.
    await cli(db, ['cancel', id]);
    const sup2 = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, RECLAIM_GRACE_SECONDS: '1' });
    expect((await exited(sup2)).code, sup2.output()).toBe(0);
  });
});
