/**
 * Exit-code skills (issue 17): `skill add NAME --report exit [--result stdout-json] -- CMD …`.
 * Real supervisors and real worker processes (test/fixtures/sup/exit-worker.sh, a plain shell
 * script that knows nothing of the board): the supervisor ends each run from the exit status it
 * reaped, in the accounting step; the worker never gets the board's path or a run token.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, FIXTURES, cleanEnv, cli, exited, killQuietly, logEvents, pidAlive, pidsIn, show, sleep, waitFor } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const WORKER = join(FIXTURES, 'sup', 'exit-worker.sh');

/** The supervisor's environment for these tests: fast ticks, short backoff, JSON logs. */
const supEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv =>
  cleanEnv({ TICK_INTERVAL_MS: '100', BACKOFF_BASE_SECONDS: '0.2', CRASH_GRACE_SECONDS: '0', LOG_FORMAT: 'json', ...extra });

interface Setup {
  dir: string;
  db: string;
  out: string;
}

function setup(prefix: string): Setup {
  const { dir, db } = cleanups.boardDir(prefix);
  return { dir, db, out: dir };
}

async function exitSkill(s: Setup, name: string, mode: string, opts: { result?: boolean; arg?: string; extra?: string[] } = {}): Promise<void> {
  const args = ['skill', 'add', name, '--report', 'exit', ...(opts.result ? ['--result', 'stdout-json'] : []), ...(opts.extra ?? []), '--', WORKER, mode, s.out];
  if (opts.arg !== undefined) args.push(opts.arg);
  const r = await cli(s.db, args);
  expect(r.code, r.stderr).toBe(0);
}

async function addTask(s: Setup, skill: string, extra: string[] = []): Promise<string> {
  const r = await cli(s.db, ['add', '--skill', skill, ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** `run --until-idle` to its end (exit 0 expected); its output. */
async function runUntilIdle(s: Setup, env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<string> {
  const p = cleanups.startCli(s.db, ['run', '--until-idle'], supEnv(env));
  const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  const r = await exited(p);
  clearTimeout(t);
  expect(r.code, p.output()).toBe(0);
  return p.output();
}

const outcomes = (t: { runs: Array<{ outcome: string }> }) => t.runs.map((r) => r.outcome);

describe('exit-code skills', () => {
  it('exit 0 completes the task (result null); --result stdout-json takes the last non-empty line as JSON; a bad line fails it, saying why', async () => {
    const s = setup('ks-exit-ok-');
    await exitSkill(s, 'ok', 'ok');
    await exitSkill(s, 'json', 'json', { result: true });
    await exitSkill(s, 'bad', 'badjson', { result: true });
    const ok = await addTask(s, 'ok');
    const js = await addTask(s, 'json', ['--payload', '{"n": [1, 2]}']);
    const bad = await addTask(s, 'bad', ['--max-attempts', '1']);
    const out = await runUntilIdle(s);
    const tOk = await show(s.db, ok);
    expect(tOk).toMatchObject({ status: 'done', result: null, consecutive_failures: 0 });
    expect(outcomes(tOk)).toEqual(['completed']);
    expect(tOk.runs[0].exit_code).toBe(0);
    const tJs = await show(s.db, js);
    expect(tJs).toMatchObject({ status: 'done', result: { payload: { n: [1, 2] }, run: tJs.runs[0].id } });
    const tBad = await show(s.db, bad);
    expect(tBad.status).toBe('blocked');
    expect(outcomes(tBad)).toEqual(['failed']);
    expect(tBad.runs[0].error).toMatch(/^exit-code skill: the worker exited with code 0 but the last line of its log is not JSON \(.+\): "\{\\"almost\\": json" \(--result stdout-json\)$/);
    expect(tBad.last_error).toContain('is not JSON');
    // One pino event per state change, as for any run: the completions are accounted, the failure blocked.
    expect(logEvents(out, 'run_accounted').map((e) => e.task).sort()).toEqual([ok, js].sort());
    expect(logEvents(out, 'task_blocked').map((e) => e.task)).toEqual([bad]);
  });

  it('a graph of exit-code skills runs to the end: each child runs after its parents exited 0 (ok -> json -> json)', async () => {
    const s = setup('ks-exit-graph-');
    await exitSkill(s, 'ok', 'ok');
    await exitSkill(s, 'json', 'json', { result: true });
    const a = await addTask(s, 'ok');
    const b = await addTask(s, 'json', ['--after', a, '--payload', '{"n": 1}']);
    const c = await addTask(s, 'json', ['--after', a, '--after', b, '--payload', '{"n": 2}']);
    await runUntilIdle(s, {}, 30_000);
    const [ta, tb, tc] = [await show(s.db, a), await show(s.db, b), await show(s.db, c)];
    for (const t of [ta, tb, tc]) expect(t.status, JSON.stringify(t.events.map((e: { kind: string }) => e.kind))).toBe('done');
    expect(tb.runs[0].started_at).toBeGreaterThanOrEqual(ta.runs[0].ended_at);
    expect(tc.runs[0].started_at).toBeGreaterThanOrEqual(tb.runs[0].ended_at);
  });

  it('exit 75 is deferred, not counted, and retried after a backoff step', async () => {
    const s = setup('ks-exit-75-');
    await exitSkill(s, 'later', 'defer-once');
    const id = await addTask(s, 'later', ['--max-attempts', '1']);
    await runUntilIdle(s);
    const t = await show(s.db, id);
    expect(t).toMatchObject({ status: 'done', consecutive_failures: 0 });
    expect(outcomes(t)).toEqual(['deferred', 'completed']);
    expect(t.runs[0].error).toContain('EX_TEMPFAIL');
    expect(t.runs[1].started_at - t.runs[0].ended_at).toBeGreaterThanOrEqual(150);
  });

  it('another exit code fails the run (counted): blocked at the failure limit with the code and the last lines of the log', async () => {
    const s = setup('ks-exit-3-');
    await exitSkill(s, 'three', 'fail', { arg: '3' });
    const id = await addTask(s, 'three', ['--max-attempts', '2']);
    const out = await runUntilIdle(s);
    const t = await show(s.db, id);
    expect(t.status).toBe('blocked');
    expect(t.consecutive_failures).toBe(2);
    expect(outcomes(t)).toEqual(['failed', 'failed']);
    const lines = Array.from({ length: 20 }, (_, i) => `line ${i + 11} of the failure`).join('\n');
    expect(t.runs[0].error).toBe(`exit-code skill: the worker exited with code 3; last lines of its log:\n${lines}`);
    expect(t.runs[0].exit_code).toBe(3);
    expect(t.last_error).toBe(`failed 2 times in a row (limit 2): exit-code skill: the worker exited with code 3; last lines of its log:\n${lines}`);
    expect(logEvents(out, 'task_requeued')).toHaveLength(1);
    expect(logEvents(out, 'task_blocked')).toHaveLength(1);
  });

  it('a worker SIGKILLed from outside is crashed (counted)', async () => {
    const s = setup('ks-exit-kill-');
    await exitSkill(s, 'sleepy', 'sleep', { arg: '30' });
    const id = await addTask(s, 'sleepy', ['--max-attempts', '1']);
    const p = cleanups.startCli(s.db, ['run', '--until-idle'], supEnv());
    const runs = join(s.out, 'runs.txt');
    await waitFor(() => existsSync(runs));
    const runId = readFileSync(runs, 'utf8').trim();
    const pid = await waitFor(() => pidsIn(join(s.out, `pid-${runId}`))[0]);
    process.kill(pid, 'SIGKILL');
    expect((await exited(p)).code, p.output()).toBe(0);
    const t = await show(s.db, id);
    expect(t.status).toBe('blocked');
    expect(outcomes(t)).toEqual(['crashed']);
    expect(t.runs[0]).toMatchObject({ signal: 'SIGKILL', error: 'exit-code skill: the worker was killed by signal SIGKILL' });
  });

  it('the worker gets no KANBAN_DB and no token: task id, run id and the payload (KANBAN_PAYLOAD, or a 0600 KANBAN_PAYLOAD_FILE over 64 KiB, removed after)', async () => {
    const s = setup('ks-exit-env-');
    await exitSkill(s, 'ok', 'ok');
    await exitSkill(s, 'big', 'payload-file');
    const small = await addTask(s, 'ok', ['--payload', '{"small": "é"}']);
    const bigPayload = { blob: 'x'.repeat(70 * 1024) };
    const big = await addTask(s, 'big', ['--payload', JSON.stringify(bigPayload)]);
    await runUntilIdle(s);
    const envOf = async (id: string) => {
      const runId = (await show(s.db, id)).runs[0].id as string;
      const vars = new Map(readFileSync(join(s.out, `env-${runId}.txt`), 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
      return { runId, vars };
    };
    const a = await envOf(small);
    expect([...a.vars.keys()].filter((k) => k.startsWith('KANBAN_')).sort()).toEqual(['KANBAN_PAYLOAD', 'KANBAN_RECLAIM_GRACE_SECONDS', 'KANBAN_RUN_ID', 'KANBAN_TASK_ID']);
    expect(a.vars.get('KANBAN_TASK_ID')).toBe(small);
    expect(a.vars.get('KANBAN_RUN_ID')).toBe(a.runId);
    expect(JSON.parse(a.vars.get('KANBAN_PAYLOAD')!)).toEqual({ small: 'é' });
    const b = await envOf(big);
    expect(b.vars.has('KANBAN_DB')).toBe(false);
    expect(b.vars.has('KANBAN_RUN_TOKEN')).toBe(false);
    expect(b.vars.has('KANBAN_PAYLOAD')).toBe(false);
    const file = b.vars.get('KANBAN_PAYLOAD_FILE')!;
    expect(file).toBe(join(s.dir, 'board', 'logs', `${b.runId}.payload.json`));
    expect(readFileSync(join(s.out, 'payload-mode'), 'utf8').trim()).toBe('600');
    expect(JSON.parse(readFileSync(join(s.out, 'payload-copy'), 'utf8'))).toEqual(bigPayload);
    expect(existsSync(file)).toBe(false);
    expect((await show(s.db, big)).status).toBe('done');
  });

  it('a hostile log (replaced by a FIFO, or by a symlink to /etc/passwd) neither blocks nor steers the tick: the run fails, saying why', async () => {
    const s = setup('ks-exit-hostile-');
    await exitSkill(s, 'fifo', 'fifo', { result: true });
    await exitSkill(s, 'link', 'symlink', { result: true });
    await exitSkill(s, 'link3', 'symlink', { arg: '3' });
    await exitSkill(s, 'ok', 'ok');
    const fifo = await addTask(s, 'fifo', ['--max-attempts', '1']);
    const link = await addTask(s, 'link', ['--max-attempts', '1']);
    const link3 = await addTask(s, 'link3', ['--max-attempts', '1']);
    const ok = await addTask(s, 'ok');
    // A tick that blocked on the FIFO would never reach idle: runUntilIdle's SIGKILL would fail the test.
    await runUntilIdle(s, {}, 90_000);
    const tFifo = await show(s.db, fifo);
    expect(tFifo.status).toBe('blocked');
    expect(tFifo.runs[0].error).toMatch(/^exit-code skill: the worker exited with code 0 but its log could not be read: the log .*\.log is not a regular file.* \(--result stdout-json\)$/);
    const tLink = await show(s.db, link);
    expect(tLink.status).toBe('blocked');
    expect(tLink.runs[0].error).toMatch(/^exit-code skill: the worker exited with code 0 but its log could not be read: the log .*\.log is a symbolic link \(not followed\) \(--result stdout-json\)$/);
    expect(tLink.result).toBeNull();
    const tLink3 = await show(s.db, link3);
    expect(tLink3.runs[0].error).toMatch(/^exit-code skill: the worker exited with code 3; its log could not be read: the log .*\.log is a symbolic link \(not followed\)$/);
    expect(tLink3.runs[0].error).not.toContain('root:');
    expect((await show(s.db, ok)).status).toBe('done');
  });

  it('heartbeats are off for an exit-code skill (a global HEARTBEAT_TIMEOUT_SECONDS does not stall it); a skill\'s own timeout and --max-runtime apply', async () => {
    const s = setup('ks-exit-hb-');
    await exitSkill(s, 'slow', 'sleep', { arg: '1.5' });
    await exitSkill(s, 'own', 'sleep', { arg: '30', extra: ['--heartbeat-timeout', '0.5', '--reclaim-grace', '1'] });
    await exitSkill(s, 'long', 'sleep', { arg: '30', extra: ['--max-runtime', '0.5', '--reclaim-grace', '1'] });
    const slow = await addTask(s, 'slow');
    const own = await addTask(s, 'own', ['--max-attempts', '1']);
    const long = await addTask(s, 'long', ['--max-attempts', '1']);
    await runUntilIdle(s, { HEARTBEAT_TIMEOUT_SECONDS: '0.5' });
    expect(await show(s.db, slow)).toMatchObject({ status: 'done' });
    expect(outcomes(await show(s.db, own))).toEqual(['stalled']);
    expect(outcomes(await show(s.db, long))).toEqual(['timed_out']);
  });

  it('a supervisor SIGKILLed while such workers run: the restarted one finds the ended one and adopts the live one; their exit status is unknowable, so each run is abandoned (not counted), accounted once, and the task runs again', async () => {
    const s = setup('ks-exit-adopt-');
    await exitSkill(s, 'quick', 'sleep-first', { arg: '1' });
    await exitSkill(s, 'long', 'sleep-first', { arg: '15' });
    const quick = await addTask(s, 'quick', ['--max-attempts', '1']);
    const long = await addTask(s, 'long', ['--max-attempts', '1']);
    const first = cleanups.startCli(s.db, ['run'], supEnv());
    const runs = join(s.out, 'runs.txt');
    await waitFor(() => existsSync(runs) && readFileSync(runs, 'utf8').trim().split('\n').length === 2 && logEvents(first.output(), 'spawned').length === 2);
    const firstRuns = new Map<string, number>();
    for (const runId of readFileSync(runs, 'utf8').trim().split('\n')) {
      const pid = await waitFor(() => pidsIn(join(s.out, `pid-${runId}`))[0]);
      firstRuns.set(runId, pid);
      cleanups.push(() => killQuietly(pid));
    }
    const runOf = (task: string) => logEvents(first.output(), 'spawned').find((e) => e.task === task)!.run as string;
    const quickRun = runOf(quick);
    const longRun = runOf(long);
    // Let the spawns reach the board (the next tick), then kill the supervisor outright.
    await sleep(500);
    first.kill('SIGKILL');
    await exited(first);
    // The quick worker ends while no supervisor runs.
    await waitFor(() => !pidAlive(firstRuns.get(quickRun)!), 20_000);
    expect(pidAlive(firstRuns.get(longRun)!)).toBe(true);
    const out = await runUntilIdle(s);
    expect(logEvents(out, 'adopted').map((e) => e.run)).toEqual([longRun]);
    expect(logEvents(out, 'crash_detected').map((e) => [e.run, e.outcome])).toEqual([[quickRun, 'abandoned']]);
    for (const [id, runId] of [[quick, quickRun], [long, longRun]] as const) {
      const t = await show(s.db, id);
      expect(t).toMatchObject({ status: 'done', consecutive_failures: 0 });
      expect(outcomes(t)).toEqual(['abandoned', 'completed']);
      expect(t.runs[0].error).toContain('its exit status is unknowable');
      // Accounted once: one requeue (not counted) for the first run, then the completion.
      const requeued = t.events.filter((e: { kind: string }) => e.kind === 'requeued');
      expect(requeued).toHaveLength(1);
      expect(requeued[0]).toMatchObject({ run_id: runId, data: { outcome: 'abandoned', counted: false } });
    }
    expect(readFileSync(runs, 'utf8').trim().split('\n')).toHaveLength(4);
  });

  it('skill list, skill show and --json say the report mode; bad flags are refused with exit 2 naming them', async () => {
    const s = setup('ks-exit-cli-');
    await exitSkill(s, 'json', 'json', { result: true });
    const list = await cli(s.db, ['skill', 'list']);
    expect(list.stdout).toContain('report=exit\tresult=stdout-json');
    const shown = await cli(s.db, ['skill', 'show', 'json']);
    expect(shown.stdout).toContain('report       exit (exit-code skill: the exit status is the report; result: stdout-json)');
    expect(JSON.parse((await cli(s.db, ['--json', 'skill', 'show', 'json'])).stdout)).toMatchObject({ name: 'json', report: 'exit', resultFrom: 'stdout-json' });
    const missing = await cli(s.db, ['skill', 'show', 'nope']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('no skill "nope"');
    const badMode = await cli(s.db, ['skill', 'add', 'x', '--report', 'socket', '--', 'true']);
    expect(badMode.code).toBe(2);
    expect(badMode.stderr).toContain('--report must be board or exit, got "socket"');
    const noExit = await cli(s.db, ['skill', 'add', 'x', '--result', 'stdout-json', '--', 'true']);
    expect(noExit.code).toBe(2);
    expect(noExit.stderr).toContain('--result stdout-json is for exit-code skills: add --report exit');
    expect(readdirSync(join(s.dir, 'board')).length).toBeGreaterThan(0);
  });
});
