// Rough edges a new user hit (issue 12 §7), each with its test: secrets for workers (skill
// --pass-env, run --env-file) never stored; COMMAND --help everywhere; list --skill --limit; runs;
// show with log paths, progress and readable times; --max-attempts; one line per log event on a
// terminal; a refused second `run` names the live owner.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { initLockPath, openBoard } from '@kanban-supervisor/board';
import { CLI, Cleanups, FIXTURES, cli, exited, run, startProcess, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const setup = () => cleanups.boardDir('ks-edges-');

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' };

function envOf(dump: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(dump, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

/** Every byte the board keeps (the file, its WAL): a secret must be in none of them. */
function boardBytes(db: string): string {
  return [db, `${db}-wal`].filter(existsSync).map((f) => readFileSync(f, 'latin1')).join('');
}

describe('secrets for workers', () => {
  it('skill add --pass-env NAME: the worker gets the value from the supervisor’s environment; the board keeps only the name', async () => {
    const { dir, db } = setup();
    const dump = join(dir, 'env.bin');
    const add = await cli(db, ['skill', 'add', 'llm', '--pass-env', 'API_KEY', '--pass-env', 'ABSENT_KEY', '--', join(SUP, 'env-dump.sh'), dump]);
    expect(add.code, add.stderr).toBe(0);
    expect(JSON.parse((await cli(db, ['--json', 'skill', 'list'])).stdout)[0]).toMatchObject({ name: 'llm', passEnv: ['API_KEY', 'ABSENT_KEY'] });
    await cli(db, ['add', '--skill', 'llm']);
    const secret = 'sk-pass-env-4f1c2a9e77';
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, API_KEY: secret, OTHER_SECRET: 'nope' });
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const env = envOf(dump);
    expect(env.API_KEY).toBe(secret);
    expect(env.ABSENT_KEY).toBeUndefined(); // not set in the supervisor: not invented
    expect(env.OTHER_SECRET).toBeUndefined();
    expect(boardBytes(db)).not.toContain(secret);
    expect(sup.output()).not.toContain(secret);
    // Names only, and never the supervisor's own KANBAN_* variables.
    const bad = await cli(db, ['skill', 'add', 'x', '--pass-env', 'A=1', '--', 'true']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--pass-env must name an environment variable, got "A=1"');
    expect((await cli(db, ['skill', 'add', 'x', '--pass-env', 'KANBAN_RUN_TOKEN', '--', 'true'])).stderr).toContain('KANBAN_* variables are set by the supervisor');
  });

  it('run --env-file FILE (systemd EnvironmentFile syntax) gives every worker its variables, never stored; errors name the file and line', async () => {
    const { dir, db } = setup();
    const dump = join(dir, 'env.bin');
    const file = join(dir, 'secrets.env');
    const secret = 'sk-env-file-93b7d1c0aa';
    writeFileSync(
      file,
      [
        '# API keys for the workers',
        '; another comment',
        '',
        `OPENAI_API_KEY=${secret}`,
        '  SPACED =  value with spaces   ',
        'DQ="a \\"quoted\\" $HOME value"',
        "SQ='single # not a comment'",
        'MULTI="line one',
        'line two"',
        'CONT=first \\',
        'second',
        'INLINE=a#b',
        'EMPTY=',
        'SKILL_VAR=from-file',
      ].join('\n') + '\n',
    );
    await cli(db, ['skill', 'add', 'env', '--env', 'SKILL_VAR=from-skill', '--', join(SUP, 'env-dump.sh'), dump]);
    await cli(db, ['add', '--skill', 'env']);
    const sup = cleanups.startCli(db, ['run', '--until-idle', '--env-file', file], FAST);
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const env = envOf(dump);
    expect(env).toMatchObject({
      OPENAI_API_KEY: secret,
      SPACED: 'value with spaces',
      DQ: 'a "quoted" $HOME value',
      SQ: 'single # not a comment',
      MULTI: 'line one\nline two',
      CONT: 'first second',
      INLINE: 'a#b',
      EMPTY: '',
      SKILL_VAR: 'from-skill', // the skill's own --env wins over the file
    });
    expect(boardBytes(db)).not.toContain(secret);
    expect(sup.output()).not.toContain(secret);
    // Errors: exit 2, naming the file and the line, before anything starts.
    const cases: Array<[string, string]> = [
      ['A=1\nnot a pair\n', 'line 2: expected KEY=VALUE'],
      ['A=1\n\n1BAD=x\n', 'line 3: invalid variable name "1BAD"'],
      ['A="open\nstill open\n', 'line 1: A: the double quote opened here is never closed'],
      ['KANBAN_DB=/tmp/x\n', 'line 1: KANBAN_DB: KANBAN_* variables are set by the supervisor'],
      ["Q='a' trailing\n", 'line 1: Q: unexpected text after the closing quote'],
    ];
    for (const [text, msg] of cases) {
      writeFileSync(file, text);
      const r = await cli(db, ['run', '--until-idle', '--env-file', file], FAST);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--env-file ${file}: ${msg}`);
    }
    // A missing file is named too. (Node 20 itself scans the whole command line for --env-file and
    // stops a missing one before the CLI runs: "node: FILE: not found", exit 9.)
    const missing = await cli(db, ['run', '--env-file', join(dir, 'nope.env')]);
    if (missing.code === 9) expect(missing.stderr).toContain(`${join(dir, 'nope.env')}: not found`);
    else {
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain(`--env-file ${join(dir, 'nope.env')}: cannot be read: ENOENT`);
    }
    writeFileSync(file, Buffer.from([0x41, 0x3d, 0xff, 0xfe, 0x0a]));
    const binary = await cli(db, ['run', '--env-file', file]);
    expect(binary.code).toBe(2);
    expect(binary.stderr).toContain(`--env-file ${file}: is not valid UTF-8`);
  });
});

describe('--help', () => {
  const COMMANDS = ['run', 'status', 'init', 'skill', 'add', 'list', 'show', 'runs', 'logs', 'cancel', 'block', 'unblock', 'retry', 'check', 'recover', 'migrate'];
  const WORKER = ['heartbeat', 'event', 'payload', 'complete', 'fail', 'defer'];

  it('COMMAND --help prints that command’s usage and exits 0, for every command and every worker verb (no board needed)', async () => {
    const { db } = setup();
    for (const c of COMMANDS) {
      for (const args of [[c, '--help'], ['help', c]]) {
        const r = await cli(db, args);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        expect(r.stdout.startsWith(`Usage: kanban-supervisor ${c}`), `${args.join(' ')}:\n${r.stdout}`).toBe(true);
      }
    }
    expect((await cli(db, ['skill', 'add', '--help'])).stdout).toContain('--pass-env NAME');
    for (const v of WORKER) {
      const r = await cli(db, ['worker', v, '--help']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.startsWith(`usage: kanban-supervisor worker ${v}`), r.stdout).toBe(true);
    }
    expect((await cli(db, ['worker', 'payload', '--help'])).stdout).toContain('--get FIELD');
    expect((await cli(db, ['worker', '--help'])).stdout).toContain('usage: kanban-supervisor worker <command>');
    expect(existsSync(db)).toBe(false);
    const unknown = await cli(db, ['help', 'frobnicate']);
    expect(unknown.code).toBe(2);
  });

  it('the limit flags say what they count: --max-attempts (and the deprecated --max-retries) is attempts in total', async () => {
    const { dir, db } = setup();
    const help = (await cli(db, ['add', '--help'])).stdout;
    expect(help).toContain('--max-attempts N       attempts in total');
    expect(help).toContain('--max-retries N        deprecated name of --max-attempts');
    expect((await cli(db, ['run', '--help'])).stdout).toMatch(/--failure-limit\s+FAILURE_LIMIT\s+\(default 2\)\s+attempts per task/);
    const spawns = join(dir, 'spawns.txt');
    await cli(db, ['skill', 'add', 'crash', '--', join(SUP, 'crash.sh'), spawns]);
    const a = (await cli(db, ['add', '--skill', 'crash', '--max-attempts', '3'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, BACKOFF_BASE_SECONDS: '0.1' });
    expect((await exited(sup)).code, sup.output()).toBe(0);
    expect(readFileSync(spawns, 'utf8').trim().split('\n').length).toBe(3);
    expect(JSON.parse((await cli(db, ['--json', 'show', a])).stdout)).toMatchObject({ status: 'blocked', consecutive_failures: 3 });
    const both = await cli(db, ['add', '--skill', 'crash', '--max-attempts', '3', '--max-retries', '3']);
    expect(both.code).toBe(2);
    expect((await cli(db, ['add', '--skill', 'crash', '--max-attempts', '0'])).stderr).toContain('--max-attempts must be an integer from 1 to 1000');
  });
});

describe('reading the board', () => {
  it('list --skill S --limit N, and runs [--task ID] [--outcome O] [--limit N] across tasks, newest first', async () => {
    const { dir, db } = setup();
    await cli(db, ['skill', 'add', 'ok', '--', join(SUP, 'sleeper.sh'), join(dir, 'pids.txt'), '0']);
    await cli(db, ['skill', 'add', 'crash', '--', join(SUP, 'crash.sh'), join(dir, 'spawns.txt')]);
    const oks: string[] = [];
    for (let i = 0; i < 3; i++) oks.push((await cli(db, ['add', '--skill', 'ok', '--title', `ok ${i}`])).stdout.trim());
    const bad = (await cli(db, ['add', '--skill', 'crash', '--max-attempts', '2'])).stdout.trim();
    const l1 = JSON.parse((await cli(db, ['--json', 'list', '--skill', 'ok', '--limit', '2'])).stdout);
    expect(l1.map((t: { id: string }) => t.id)).toEqual(oks.slice(0, 2));
    expect(JSON.parse((await cli(db, ['--json', 'list', '--skill', 'crash'])).stdout).map((t: { id: string }) => t.id)).toEqual([bad]);
    expect((await cli(db, ['list', '--skill', 'ok', '--limit', '1'])).stdout.trim().split('\n')).toHaveLength(1);
    expect((await cli(db, ['list', '--limit', '0'])).code).toBe(2);
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, BACKOFF_BASE_SECONDS: '0.1', MAX_CONCURRENT_WORKERS: '1' });
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const all = JSON.parse((await cli(db, ['--json', 'runs'])).stdout);
    expect(all).toHaveLength(5);
    const starts = all.map((r: { started_at: number }) => r.started_at);
    expect([...starts].sort((a: number, b: number) => b - a)).toEqual(starts);
    expect(all[0]).toMatchObject({ task_id: expect.any(String), skill: expect.any(String), attempt: expect.any(Number), log_path: expect.stringContaining('/logs/') });
    const crashed = JSON.parse((await cli(db, ['--json', 'runs', '--outcome', 'crashed'])).stdout);
    expect(crashed.map((r: { task_id: string; attempt: number }) => [r.task_id, r.attempt])).toEqual([[bad, 2], [bad, 1]]);
    expect(JSON.parse((await cli(db, ['--json', 'runs', '--task', oks[1]!])).stdout).map((r: { outcome: string }) => r.outcome)).toEqual(['completed']);
    expect(JSON.parse((await cli(db, ['--json', 'runs', '--limit', '2'])).stdout)).toHaveLength(2);
    const human = await cli(db, ['runs', '--task', bad]);
    expect(human.stdout.split('\n')[0]).toMatch(/^RUN\s+TASK\s+SKILL\s+ATTEMPT\s+OUTCOME\s+STARTED\s+TOOK\s+PID\s+EXIT$/);
    expect(human.stdout).toMatch(/crashed\s+\d{4}-\d\d-\d\dT[\d:.]+Z \(\S+ ago\)/);
    expect((await cli(db, ['runs', '--outcome', 'exploded'])).stderr).toContain('--outcome must be one of completed');
    expect((await cli(db, ['runs', '--task', 'tnothere'])).stderr).toContain('no task "tnothere"');
  });

  it('show: each run’s log path, the last heartbeat’s progress, events in time order, readable times; show RUN_ID shows its task', async () => {
    const { dir, db } = setup();
    const script = join(dir, 'progress.sh');
    // Its first attempt fails (a requeue event with a not_before time), its second reports progress and completes.
    writeFileSync(
      script,
      `#!/usr/bin/env bash\nif [ ! -e "${dir}/once" ]; then : > "${dir}/once"; exit 1; fi\n"$KANBAN_CLI" worker heartbeat --progress '{"done":3,"of":7}'\nexec "$KANBAN_CLI" worker complete\n`,
      { mode: 0o755 },
    );
    await cli(db, ['skill', 'add', 'p', '--', script]);
    const id = (await cli(db, ['add', '--skill', 'p'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, BACKOFF_BASE_SECONDS: '0.1' });
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const j = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(j.events.find((e: { kind: string }) => e.kind === 'requeued').data.not_before).toEqual(expect.any(Number));
    const r = j.runs[1];
    expect(r).toMatchObject({ attempt: 2, outcome: 'completed', progress: { done: 3, of: 7 }, log_path: join(dir, 'board', 'logs', `${r.id}.log`) });
    expect(typeof r.heartbeat_at).toBe('number');
    const ats = j.events.map((e: { at: number }) => e.at);
    expect([...ats].sort((a: number, b: number) => a - b)).toEqual(ats);
    const human = (await cli(db, ['show', id])).stdout;
    expect(human).toContain(`log ${r.log_path}`);
    expect(human).toMatch(/last heartbeat \d{4}-\d\d-\d\dT[\d:.]+Z \(\S+ ago\) {2}progress \{"done":3,"of":7\}/);
    expect(human).toMatch(/created \d{4}-\d\d-\d\dT[\d:.]+Z \(\S+ ago\)/);
    expect(human).not.toMatch(/\b1\d{12}\b/); // no raw millisecond times in human output
    // By run id: the run's task, the run marked.
    const byRun = await cli(db, ['show', r.id]);
    expect(byRun.code, byRun.stderr).toBe(0);
    expect(byRun.stdout).toContain(`run ${r.id} is attempt 2 of task ${id}:`);
    expect(byRun.stdout).toContain(`>2 ${r.id} completed`);
    expect(byRun.stdout).toContain(`#1 ${j.runs[0].id} crashed`);
    expect(JSON.parse((await cli(db, ['--json', 'show', r.id])).stdout)).toMatchObject({ id, selected_run: r.id });
  });
});

describe('supervisor logs on a terminal', () => {
  it('LOG_FORMAT / --log-format: pretty is one line per event; json is JSON lines; a bad value names the variable', async () => {
    const { db } = setup();
    await cli(db, ['init']);
    const pretty = await cli(db, ['run', '--until-idle', '--log-format', 'pretty'], FAST);
    expect(pretty.code, pretty.stderr).toBe(0);
    const lines = pretty.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(l).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR|DEBUG) \(\d+\): \S/);
    expect(lines.find((l) => l.includes('supervisor started'))).toMatch(/supervisor started event=started board=\S+ maxConcurrentWorkers=4/);
    const json = await cli(db, ['run', '--until-idle'], { ...FAST, LOG_FORMAT: 'json' });
    for (const l of json.stdout.trim().split('\n')) expect(JSON.parse(l)).toHaveProperty('level');
    // Through a pseudo-terminal: pretty by default, one line per event.
    const tty = await run('script', ['-qefc', `${process.execPath} ${CLI} --db ${db} run --until-idle`, '/dev/null'], { input: '', env: { ...process.env, ...FAST } });
    expect(tty.code, tty.stdout).toBe(0);
    const ttyLines = tty.stdout.replace(/\x1b\[[0-9;]*m/g, '').trim().split(/\r?\n/);
    for (const l of ttyLines) expect(l).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR|DEBUG) \(\d+\): \S/);
    const bad = await cli(db, ['run'], { LOG_FORMAT: 'xml' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('LOG_FORMAT must be one of auto, pretty, json, got "xml"');
  });
});

describe('a refused second run', () => {
  it('names the live owner, not the previous (dead) one, even while the new owner is still opening the board', async () => {
    const { db } = setup();
    await cli(db, ['init']);
    // A previous owner that died: its row stays on the board.
    const dead = startProcess(process.execPath, ['-e', '0']);
    await exited(dead);
    const b = await openBoard(db);
    await b.setOwner({ pid: dead.pid!, host: hostname(), startedAt: Date.now() - 60_000 });
    await b.close();
    // Hold the new owner between taking the owner lock and writing its row: a board in rollback
    // mode makes its open wait for the init lock, which this test holds.
    const raw = new Database(db);
    raw.pragma('journal_mode = DELETE');
    raw.close();
    const init = new Database(initLockPath(db));
    init.exec('BEGIN IMMEDIATE');
    cleanups.push(() => init.close());
    const a = cleanups.startCli(db, ['run'], FAST);
    // A holds the owner lock and waits in its open for the init lock: it has both files open.
    const fds = () => {
      try {
        return readdirSync(`/proc/${a.pid}/fd`).map((f) => {
          try {
            return readlinkSync(`/proc/${a.pid}/fd/${f}`);
          } catch {
            return '';
          }
        });
      } catch {
        return [];
      }
    };
    await waitFor(() => fds().includes(`${db}.owner-lock`) && fds().includes(initLockPath(db)), 20_000, 20);
    const second = await cli(db, ['run'], FAST);
    expect(second.code).toBe(4);
    expect(second.stderr).toContain(`board ${db} is owned by supervisor pid ${a.pid} `);
    expect(second.stderr).not.toContain(`pid ${dead.pid} `);
    const st = JSON.parse((await cli(db, ['--json', 'status'])).stdout);
    expect(st.owner).toMatchObject({ pid: a.pid, live: true });
    init.exec('COMMIT');
    await waitFor(() => a.output().includes('supervisor started'));
    a.kill('SIGTERM');
    expect((await exited(a)).code).toBe(0);
  });
});
