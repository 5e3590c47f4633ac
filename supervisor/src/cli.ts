#!/usr/bin/env node
/**
 * kanban-supervisor: the daemon (`run`), the board CLI, and the worker CLI for skills in any language.
 * Exit codes (`EXIT`, policies/src/reasons.ts): 0 ok, 1 failure, 2 usage or configuration error, 3 fenced
 * out (worker), 4 board owned by another supervisor.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ReaperConfigError } from '@kanban-supervisor/reaper';
import { BoardInputError, BoardPathError, openBoard, resolveBoardPath, checkBoard, recoverBoard, recoverInPlace, formatRecoverReport, type Board, type Json, type Run, type RunListing, type Task, type TaskDetail } from '@kanban-supervisor/board';
import { CONFIG_VARS, ConfigError, EXIT, LIMITS, loadConfig, parseLimit, RUN_OUTCOMES, TASK_STATUSES, type LimitRange, type RunOutcome, type TaskStatus } from '@kanban-supervisor/policies';
import { workerCli } from '@kanban-supervisor/worker-runtime';
import { argvTokens, flagName, parseArgs, parseJsonArg, parseNumberArg, parseOptions, UsageError, type FlagSpec } from './args.js';
import { printable as safe, printableLines } from './text.js';
import { makeLogger } from './logger.js';
import { Supervisor } from './supervisor.js';
import { fmtAge, statusReport, printStatus, watchStatus } from './status.js';
import { logsCommand } from './logs.js';
import { readEnvFile } from './env-file.js';

const USAGE = `Usage: kanban-supervisor [--db PATH] [--json] COMMAND ...
       kanban-supervisor COMMAND --help      options of one command

Daemon:
  run [--standby] [--until-idle] [--detach-on-exit] [--pass-env NAME]... [--env-file FILE]...
      [--log-format auto|pretty|json] [tuning flags]
  status [--watch [--interval S]]       owner, pool, dispatch and each live worker (reads only)

Board (init and skill add create a missing board and its folder; run creates one only in an
existing folder or at ./.kanban/kanban.db; every other command needs an existing board):
  init                                  create the board (idempotent)
  skill add NAME [--cwd DIR] [--env K=V]... [--pass-env NAME]... [--max-runtime S]
                 [--heartbeat-timeout S] [--reclaim-grace S] [--max-rss-mb N] -- CMD [ARGS...]
  skill list | skill rm NAME
  add --skill NAME [--title T] [--payload JSON] [--priority N] [--max-runtime S] [--max-attempts N]
  list [--status S] [--skill NAME] [--limit N]
  show ID                               a task (ID: task or run id) with its runs and events
  runs [--task ID] [--outcome O] [--limit N]     runs across tasks, newest first
  logs ID [--run RUN_ID | --attempt N] [--tail N] [-f]   a run's output; -f follows the task
  cancel ID | block ID --reason R | unblock ID | retry ID
  check [--full]                        is the board healthy (exit 0) or damaged (exit 1)
  recover --out NEW.db | --in-place     salvage every readable row into a fresh board

Worker (inside a worker, with the KANBAN_* variables the supervisor sets; see worker --help):
  worker heartbeat [--progress JSON] | worker event KIND [--data JSON] | worker payload [--get F]
  worker complete [--result JSON] | worker fail [--error MSG] | worker defer --seconds N

Tuning (environment variable, or flag for run):
${CONFIG_VARS.map((v) => `  ${v.env.padEnd(26)} ${v.flag.padEnd(26)} default ${v.def.padEnd(20)} ${v.help}`).join('\n')}

Exit status: 0 ok, 1 failure, 2 usage or configuration error, 3 fenced out (worker),
4 board owned by another supervisor.
`;

const GLOBAL_OPTS = `Global options: --db PATH (or KANBAN_DB; default ./.kanban/kanban.db), --json (machine output).`;

/** `COMMAND --help`: each command's usage, options and what it does. */
const HELP: Record<string, string> = {
  run: `Usage: kanban-supervisor run [options] [tuning flags]

Run the supervisor on the board: claim ready tasks, spawn their workers, watch, reclaim and
account for them. One supervisor owns a board; a second is refused (exit 4) and names the owner.

  --standby              wait for the board's owner to go away, then take over
  --until-idle           exit 0 once nothing is ready, running or waiting for accounting
  --detach-on-exit       on SIGTERM/SIGINT leave the workers running (a restart adopts them)
  --pass-env NAME        give every worker this variable of the supervisor's environment
                         (repeatable; values are read at each spawn, never stored)
  --env-file FILE        give every worker the variables in FILE (systemd EnvironmentFile
                         syntax: KEY=VALUE lines, # comments, "double" or 'single' quotes;
                         repeatable, later files win; read once at start, never stored)
  --log-format F         auto (default: pretty on a terminal, JSON lines otherwise), pretty
                         (one line per event) or json; or LOG_FORMAT

Tuning (flag, or environment variable; the flag wins):
${CONFIG_VARS.filter((v) => v.flag !== '--db').map((v) => `  ${v.flag.padEnd(26)} ${v.env.padEnd(26)} default ${v.def.padEnd(10)} ${v.help}`).join('\n')}

A worker gets only PATH, HOME, LANG, TZ, TMPDIR, the --env-file variables, its skill's --env and
--pass-env variables, the run's --pass-env variables and the KANBAN_* variables.
${GLOBAL_OPTS}
`,
  status: `Usage: kanban-supervisor status [--watch [--interval S]]

The board's owner (pid, host, since), pool use (live/cap), dispatch (running, paused by the storm
breaker, held by a quarantine) with reasons, task counts per status, and one row per live worker:
task, skill, attempt, pid, age, heartbeat age, CPU %, RSS and reclaim state.
Reads only: a read-only board connection, the owner's status file and /proc; takes no lock.

  --watch                refresh until Ctrl-C (exit 0): redrawn in place on a terminal, one
                         block per refresh otherwise (with --json: one JSON object per line)
  --interval S           seconds between refreshes (default 2, from 0.2 to 3600)
${GLOBAL_OPTS}
`,
  init: `Usage: kanban-supervisor init

Create the board (and its folder) if missing; idempotent.
${GLOBAL_OPTS}
`,
  skill: `Usage: kanban-supervisor skill add NAME [options] -- CMD [ARGS...]
       kanban-supervisor skill list
       kanban-supervisor skill rm NAME

skill add registers (or replaces) a skill: the command its workers run (argv, no shell).
  --cwd DIR              working directory of the workers
  --env K=V              a variable for its workers (repeatable; stored on the board: no secrets)
  --pass-env NAME        a variable its workers get from the supervisor's environment at each
                         spawn (repeatable; the name is stored, the value never is: for API keys)
  --max-runtime S        seconds a run may take before it is reclaimed (timed_out)
  --heartbeat-timeout S  seconds without a heartbeat before a run is reclaimed (stalled; 0 = off)
  --reclaim-grace S      seconds between SIGTERM and SIGKILL when a run is reclaimed
  --max-rss-mb N         memory limit of a worker's process group in MB (0 = off)
${GLOBAL_OPTS}
`,
  add: `Usage: kanban-supervisor add --skill NAME [options]

Add a ready task; prints its id.
  --skill NAME           the skill that runs it (required)
  --title T              a title (default: the skill name)
  --payload JSON         the task's input (default null)
  --priority N           higher runs first (default 0)
  --max-runtime S        seconds a run of this task may take (overrides the skill and
                         MAX_RUNTIME_SECONDS)
  --max-attempts N       attempts in total: the task is blocked after N counted failures in a
                         row (overrides FAILURE_LIMIT; deferred runs, runs abandoned at a
                         shutdown and supervisor faults do not count)
  --max-retries N        deprecated name of --max-attempts (same meaning: N attempts in total)
${GLOBAL_OPTS}
`,
  list: `Usage: kanban-supervisor list [--status S] [--skill NAME] [--limit N]

Tasks, oldest first: id, status, skill, title and last error.
  --status S             only tasks in status S (${TASK_STATUSES.join(', ')})
  --skill NAME           only tasks of this skill
  --limit N              at most N tasks (default 100000)
${GLOBAL_OPTS}
`,
  show: `Usage: kanban-supervisor show ID

A task with its payload, result, failures, runs (attempt, outcome, pid, exit, times, log file,
last heartbeat and progress) and events in time order. ID may be a run id: its task is shown.
Times are ISO 8601 (UTC) with their age; --json gives raw milliseconds since the epoch.
${GLOBAL_OPTS}
`,
  runs: `Usage: kanban-supervisor runs [--task ID] [--outcome O] [--limit N]

Runs across tasks, newest first: run, task, skill, attempt, outcome, start, duration, pid.
  --task ID              only the runs of this task
  --outcome O            only runs that ended with O (${RUN_OUTCOMES.join(', ')})
  --limit N              at most N runs (default 100)
${GLOBAL_OPTS}
`,
  logs: `Usage: kanban-supervisor logs ID [--run RUN_ID | --attempt N] [--tail N] [-f]

Print a run's output (stdout and stderr of its processes). ID is a task id or a run id; without
--run or --attempt, the task's latest run.
  --run RUN_ID           this run of the task
  --attempt N            the task's Nth run (1 = its first, as show numbers them)
  --tail N               only the last N lines
  -f, --follow           follow the file as it grows, then each later attempt of the task (a
                         "==> task … attempt N: run … <==" line heads each); ends by itself,
                         exit 0, once the task is done, blocked or cancelled and its last run's
                         processes are gone. Ctrl-C exits 0. Works with or without a supervisor.
A log cut by LOG_MAX_BYTES keeps its head and newest tail with one marker line between them
("[kanban-supervisor: log truncated: N bytes dropped here …]"); --tail and -f print that line too.
${GLOBAL_OPTS}
`,
  cancel: `Usage: kanban-supervisor cancel ID

Cancel a task; a running worker is stopped (SIGTERM, then SIGKILL after its grace).
${GLOBAL_OPTS}
`,
  block: `Usage: kanban-supervisor block ID --reason R

Block a ready task with a reason (it will not run until unblock or retry).
${GLOBAL_OPTS}
`,
  unblock: `Usage: kanban-supervisor unblock ID

Make a blocked task ready again, its failure counter reset.
${GLOBAL_OPTS}
`,
  retry: `Usage: kanban-supervisor retry ID

Make a blocked, cancelled or done task ready again for a new attempt: its failure counter, last
error and result are reset. Refused for a ready or running task, and while the task's last run has
not ended (its worker may still be stopping). Works with or without a supervisor.
${GLOBAL_OPTS}
`,
  check: `Usage: kanban-supervisor check [--full]

Is the board healthy (exit 0) or damaged (exit 1): header, journal mode, schema version and
quick_check (--full: integrity_check).
${GLOBAL_OPTS}
`,
  recover: `Usage: kanban-supervisor recover --out NEW.db | --in-place

Salvage every readable row of a damaged board into a fresh one: --out writes NEW.db (the board is
only read); --in-place backs the damaged files up and swaps the recovered board in (refused while a
supervisor owns the board).
${GLOBAL_OPTS}
`,
};

interface Globals {
  db: string;
  json: boolean;
  rest: string[];
}

const GLOBAL_FLAGS = { db: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

/**
 * Pull the global flags (--db PATH or --db=PATH, --json, --help or -h) from anywhere before a `--`;
 * every other argument, in order, is the command's (`--json=1` and `-hx` too: its parser refuses or
 * keeps them).
 */
function globals(argv: string[]): Globals & { help: boolean } {
  const rest: string[] = [];
  let db: string | undefined;
  let json = false;
  let help = false;
  let last = -1;
  for (const t of argvTokens(argv, GLOBAL_FLAGS)) {
    if (t.kind === 'option-terminator') {
      rest.push(...argv.slice(t.index));
      break;
    }
    if (t.kind === 'positional') {
      rest.push(t.value);
      continue;
    }
    // node splits `-xyz` into one token per letter, all with the index of `-xyz`.
    if (t.index === last) continue;
    last = t.index;
    const arg = argv[t.index]!;
    if (flagName(arg) === '--db') {
      if (t.value === undefined) throw new UsageError('option --db needs a value');
      db = t.value;
    } else if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') help = true;
    else rest.push(arg);
  }
  const cfgDb = db ?? (process.env.KANBAN_DB && process.env.KANBAN_DB !== '' ? process.env.KANBAN_DB : DEFAULT_DB);
  if (cfgDb.trim() === '') throw new UsageError('--db must not be empty');
  return { db: cfgDb, json, rest, help };
}

function out(g: Globals, human: string, json: unknown): void {
  process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human + (human.endsWith('\n') || human === '' ? '' : '\n'));
}

function taskJson(t: Task): Record<string, unknown> {
  return {
    id: t.id,
    title: t.title,
    skill: t.skill,
    status: t.status,
    priority: t.priority,
    payload: t.payload,
    result: t.result,
    consecutive_failures: t.consecutiveFailures,
    last_error: t.lastError,
    not_before: t.notBefore,
    created_at: t.createdAt,
  };
}

function runJson(r: Run, attempt: number): Record<string, unknown> {
  return {
    id: r.id,
    attempt,
    status: r.status,
    outcome: r.outcome,
    pid: r.pid,
    exit_code: r.exitCode,
    signal: r.signal,
    started_at: r.startedAt,
    ended_at: r.endedAt,
    exited_at: r.exitedAt,
    error: r.error,
    stop_reason: r.stopReason,
    heartbeat_at: r.heartbeatAt,
    progress: r.progress,
    log_path: r.logPath,
  };
}

/** Events in time order (the board keeps them in insertion order; an exit is stamped when it was observed). */
function eventsInTime(d: TaskDetail): TaskDetail['events'] {
  return [...d.events].sort((a, b) => a.at - b.at || a.id - b.id);
}

/** Times in event data (at, until, not_before) as ISO text, for human output only (--json keeps the numbers). */
function humanTimes(data: Json): Json {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  const out: { [k: string]: Json } = {};
  for (const [k, v] of Object.entries(data)) {
    out[k] = (k === 'at' || k === 'until' || k === 'not_before') && typeof v === 'number' && v > 0 ? iso(v) : v;
  }
  return out;
}

function detailJson(d: TaskDetail): Record<string, unknown> {
  return {
    ...taskJson(d.task),
    runs: d.runs.map((r, i) => runJson(r, i + 1)),
    events: eventsInTime(d).map((e) => ({ kind: e.kind, at: e.at, run_id: e.runId, data: e.data })),
  };
}

const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : '-');

/** A time for people: ISO 8601 (UTC) and how long ago (or how far ahead) it is. */
function when(ms: number | null, now = Date.now()): string {
  if (!ms) return '-';
  const d = now - ms;
  return `${iso(ms)} (${d >= 0 ? `${fmtAge(d)} ago` : `in ${fmtAge(-d)}`})`;
}

const DEFAULT_DB = CONFIG_VARS.find((v) => v.key === 'db')!.def;

/**
 * The board path of a command, checked before anything is opened or created (BoardPathError, exit 2).
 * Where a board is created:
 * - `init` and `skill add` (the commands that build a board) create a missing board, and its
 *   missing folders;
 * - `run` creates a missing board only where its folder exists, or at the default location
 *   ./.kanban/kanban.db (creating ./.kanban): a mistyped --db must not start a supervisor on a new
 *   empty board;
 * - every other command needs an existing board.
 * Whatever the command: a directory, a non-regular file and a board file with several hard links
 * are refused, and a symlinked board file is followed to its target (one board, one owner lock).
 */
export function boardPath(db: string, use: 'build' | 'run' | 'existing'): string {
  if (use === 'existing') return resolveBoardPath(db, { mustExist: true });
  if (use === 'build') return resolveBoardPath(db);
  return resolveBoardPath(db, { folderMustExist: resolve(db) !== resolve(DEFAULT_DB) });
}

/** What a command does with the board: `build` may create it; `build` and `write` need it writable by this user. */
type BoardUse = 'build' | 'write' | 'read';

/**
 * Refuse, naming the board, what would fail later with SQLite's "attempt to write a readonly
 * database" (no path in it). Checked with access(2), which opens nothing.
 */
function assertWritable(abs: string): void {
  if (!existsSync(abs)) return;
  try {
    accessSync(abs, constants.R_OK | constants.W_OK);
  } catch (e) {
    throw new BoardPathError(abs, `is not writable by this user (uid ${process.getuid?.() ?? '?'}): ${(e as Error).message}`, { cause: e });
  }
}

async function withBoard<T>(g: Globals, fn: (b: Board) => Promise<T>, use: BoardUse = 'read'): Promise<T> {
  const abs = boardPath(g.db, use === 'build' ? 'build' : 'existing');
  if (use !== 'read') assertWritable(abs);
  let b: Board;
  try {
    b = await openBoard(abs, { create: use === 'build', busyTimeoutMs: 2000 });
  } catch (e) {
    throw namingBoard(abs, e);
  }
  try {
    return await fn(b);
  } catch (e) {
    throw namingBoard(abs, e);
  } finally {
    await b.close();
  }
}

/** SQLite and `fs` errors that mean "this user may not use the board here" (permissions, read-only file or filesystem). */
function isAccessError(e: unknown): boolean {
  const code = String((e as { code?: unknown })?.code ?? '');
  return code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH' || code === 'SQLITE_CANTOPEN' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
}

/** An access error from SQLite or `fs` does not name the board: wrap it in one that does (exit 2). */
function namingBoard(abs: string, e: unknown): unknown {
  if (!isAccessError(e)) return e;
  const msg = (e as Error).message ?? String(e);
  if (msg.includes(abs)) return new BoardPathError(abs, `cannot be used by this user (uid ${process.getuid?.() ?? '?'}): ${msg}`, { cause: e });
  return new BoardPathError(
    abs,
    `cannot be used by this user (uid ${process.getuid?.() ?? '?'}): ${msg}; the board file and its folder must be writable (SQLite creates ${abs}-wal and -shm next to it)`,
    { cause: e },
  );
}

/** An optional limit flag, checked against the range the board and the worker runtime accept (exit 2 naming the flag and the range). */
function optLimit(values: Record<string, string>, flag: string, range: LimitRange): number | null {
  const raw = values[flag];
  return raw === undefined ? null : parseLimit(flag, raw, range);
}

function one(p: { positionals: string[] }, what: string, cmd: string): string {
  if (p.positionals.length !== 1) throw new UsageError(`${cmd}: expected one ${what}, got ${p.positionals.length}`);
  return p.positionals[0]!;
}

async function cmdSkill(g: Globals, args: string[]): Promise<number> {
  const sub = args[0];
  if (sub === 'add') {
    const p = parseArgs(args.slice(1), {
      '--cwd': { kind: 'value' },
      '--env': { kind: 'multi' },
      '--pass-env': { kind: 'multi' },
      '--max-runtime': { kind: 'value' },
      '--heartbeat-timeout': { kind: 'value' },
      '--reclaim-grace': { kind: 'value' },
      '--max-rss-mb': { kind: 'value' },
    }, 'skill add');
    const name = one(p, 'skill name', 'skill add');
    if (!p.rest || p.rest.length === 0) throw new UsageError('skill add: give the command after `--`, e.g. skill add echo -- node echo.js');
    const env: Record<string, string> = {};
    for (const kv of p.multi['--env'] ?? []) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`--env must be KEY=VALUE, got ${JSON.stringify(kv)}`);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const passEnv = p.multi['--pass-env'] ?? [];
    for (const name of passEnv) checkPassEnv(name);
    // The ranges the board and every worker of the skill accept: refused here, before anything is stored.
    const maxRuntimeSeconds = optLimit(p.values, '--max-runtime', LIMITS.maxRuntimeSeconds);
    const heartbeatTimeoutSeconds = optLimit(p.values, '--heartbeat-timeout', LIMITS.heartbeatTimeoutSeconds);
    const reclaimGraceSeconds = optLimit(p.values, '--reclaim-grace', LIMITS.reclaimGraceSeconds);
    const maxRssMb = optLimit(p.values, '--max-rss-mb', LIMITS.maxRssMb);
    const skill = await withBoard(g, (b) =>
      b.putSkill({ name, argv: p.rest!, cwd: p.values['--cwd'] ?? null, env, passEnv, maxRuntimeSeconds, heartbeatTimeoutSeconds, reclaimGraceSeconds, maxRssMb }), 'build');
    out(g, `skill ${safe(skill.name)}: ${safe(JSON.stringify(skill.argv))}`, skill);
    return EXIT.ok;
  }
  if (sub === 'list') {
    parseArgs(args.slice(1), {}, 'skill list');
    const skills = await withBoard(g, (b) => b.listSkills());
    out(
      g,
      skills.map((s) => `${safe(s.name)}\t${safe(JSON.stringify(s.argv))}${s.cwd ? `\tcwd=${safe(s.cwd)}` : ''}${s.passEnv.length ? `\tpass-env=${safe(s.passEnv.join(','))}` : ''}`).join('\n'),
      skills,
    );
    return EXIT.ok;
  }
  if (sub === 'rm') {
    const p = parseArgs(args.slice(1), {}, 'skill rm');
    const name = one(p, 'skill name', 'skill rm');
    const removed = await withBoard(g, (b) => b.removeSkill(name), 'write');
    if (!removed) throw new BoardInputError(`no skill ${JSON.stringify(name)} on board ${resolveBoardPath(g.db)}`);
    out(g, `removed skill ${safe(name)}`, { removed: name });
    return EXIT.ok;
  }
  throw new UsageError(`skill: expected add, list or rm, got ${JSON.stringify(sub ?? '')}`);
}

/** A --pass-env NAME: a variable name, not one of the KANBAN_* the supervisor sets (exit 2). */
function checkPassEnv(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--pass-env must name an environment variable, got ${JSON.stringify(name)}`);
  if (name.startsWith('KANBAN_')) throw new UsageError(`--pass-env ${name}: KANBAN_* variables are set by the supervisor`);
}

async function cmdAdd(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, {
    '--skill': { kind: 'value' },
    '--title': { kind: 'value' },
    '--payload': { kind: 'value' },
    '--priority': { kind: 'value' },
    '--max-runtime': { kind: 'value' },
    '--max-attempts': { kind: 'value' },
    '--max-retries': { kind: 'value' },
  }, 'add');
  if (p.values['--max-attempts'] !== undefined && p.values['--max-retries'] !== undefined) {
    throw new UsageError('add: give --max-attempts only (--max-retries is its deprecated name)');
  }
  // --max-retries N always meant N attempts in total: the deprecated name of --max-attempts.
  const attemptsFlag = p.values['--max-retries'] !== undefined ? '--max-retries' : '--max-attempts';
  if (p.positionals.length) throw new UsageError(`add: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const skill = p.values['--skill'];
  if (!skill) throw new UsageError('add: --skill NAME is required');
  const payload = p.values['--payload'] !== undefined ? (parseJsonArg('--payload', p.values['--payload']!) as Json) : null;
  const task = await withBoard(g, (b) =>
    b.createTask({
      skill,
      title: p.values['--title'],
      payload,
      priority: p.values['--priority'] !== undefined ? parseNumberArg('--priority', p.values['--priority']!, { integer: true }) : 0,
      maxRuntimeSeconds: optLimit(p.values, '--max-runtime', LIMITS.maxRuntimeSeconds),
      maxRetries: optLimit(p.values, attemptsFlag, LIMITS.failureLimit),
    }),
    'write',
  );
  out(g, task.id, { id: task.id });
  return EXIT.ok;
}

async function cmdList(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--status': { kind: 'value' }, '--skill': { kind: 'value' }, '--limit': { kind: 'value' } }, 'list');
  if (p.positionals.length) throw new UsageError(`list: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const status = p.values['--status'];
  if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status must be one of ${TASK_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);
  }
  const limit = p.values['--limit'] !== undefined ? parseLimit('--limit', p.values['--limit']!, { min: 1, max: 10_000_000, integer: true, unit: '' }) : 100_000;
  const tasks = await withBoard(g, (b) => b.listTasks({ status: status as TaskStatus | undefined, skill: p.values['--skill'], limit }));
  out(
    g,
    tasks.map((t) => `${safe(t.id)}\t${safe(t.status.padEnd(9))}\t${safe(t.skill)}\t${safe(t.title)}${t.lastError ? `\t(${safe(t.lastError)})` : ''}`).join('\n'),
    tasks.map(taskJson),
  );
  return EXIT.ok;
}

async function cmdShow(g: Globals, args: string[]): Promise<number> {
  const id = one(parseArgs(args, {}, 'show'), 'task or run id', 'show');
  // A run id shows its task (the run marked).
  const found = await withBoard(g, async (b) => {
    const d = await b.showTask(id);
    if (d) return { d, run: null as string | null };
    const r = await b.getRun(id);
    const dr = r ? await b.showTask(r.taskId) : null;
    return dr ? { d: dr, run: r!.id } : null;
  });
  if (!found) throw new BoardInputError(`no task ${JSON.stringify(id)} (nor a run of that id) on board ${resolveBoardPath(g.db)}`);
  const { d, run: selected } = found;
  const t = d.task;
  const now = Date.now();
  // Every field from the board is escaped (printable): a title or error cannot forge lines or reach the terminal.
  const human = [
    selected ? `run ${safe(selected)} is attempt ${d.runs.findIndex((r) => r.id === selected) + 1} of task ${safe(t.id)}:` : '',
    `${safe(t.id)}  ${safe(t.title)}`,
    `  skill ${safe(t.skill)}  status ${safe(t.status)}  priority ${t.priority}  failures in a row ${t.consecutiveFailures}${t.maxRetries !== null ? ` (max attempts ${t.maxRetries})` : ''}`,
    `  created ${when(t.createdAt, now)}  updated ${when(t.updatedAt, now)}`,
    `  payload ${safe(JSON.stringify(t.payload))}`,
    t.result !== null ? `  result ${safe(JSON.stringify(t.result))}` : '',
    t.lastError ? `  last error: ${safe(t.lastError)}` : '',
    t.notBefore > now ? `  not before ${when(t.notBefore, now)}` : '',
    d.runs.length ? `  runs (oldest first):` : '  runs: none',
    ...d.runs.flatMap((r, i) => {
      const took = r.startedAt && (r.exitedAt ?? r.endedAt) ? `, took ${fmtAge((r.exitedAt ?? r.endedAt)! - r.startedAt)}` : '';
      return [
        `    ${selected === r.id ? '>' : '#'}${i + 1} ${safe(r.id)} ${safe(r.outcome ?? r.status)}  pid ${r.pid ?? '-'}  exit ${r.exitCode ?? '-'}  signal ${safe(String(r.signal ?? '-'))}  started ${when(r.startedAt, now)}${took}`,
        r.stopReason ? `       reclaimed: ${safe(r.stopReason)}` : '',
        r.error ? `       error: ${safe(r.error)}` : '',
        r.heartbeatAt !== null ? `       last heartbeat ${when(r.heartbeatAt, now)}${r.progress !== null ? `  progress ${safe(JSON.stringify(r.progress))}` : ''}` : '',
        `       log ${r.logPath ? safe(r.logPath) : '-'}`,
      ].filter((l) => l !== '');
    }),
    `  events (in time order):`,
    ...eventsInTime(d).map((e) => `    ${iso(e.at)} ${safe(e.kind)}${e.runId ? ` ${safe(e.runId)}` : ''}${e.data !== null ? ` ${safe(JSON.stringify(humanTimes(e.data)))}` : ''}`),
  ].filter((l) => l !== '');
  out(g, human.join('\n'), selected ? { ...detailJson(d), selected_run: selected } : detailJson(d));
  return EXIT.ok;
}

function listingJson(r: RunListing): Record<string, unknown> {
  return { ...runJson(r, r.attempt), task_id: r.taskId, task_title: r.taskTitle, task_status: r.taskStatus, skill: r.skill };
}

async function cmdRuns(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { task: { type: 'string' }, outcome: { type: 'string' }, limit: { type: 'string' } }, 'runs');
  if (positionals.length) throw new UsageError(`runs: unexpected argument ${JSON.stringify(positionals[0])}`);
  const outcome = values.outcome;
  if (outcome !== undefined && !(RUN_OUTCOMES as readonly string[]).includes(outcome)) {
    throw new UsageError(`--outcome must be one of ${RUN_OUTCOMES.join(', ')}, got ${JSON.stringify(outcome)}`);
  }
  const limit = values.limit !== undefined ? parseLimit('--limit', values.limit, { min: 1, max: 1_000_000, integer: true, unit: '' }) : 100;
  const runs = await withBoard(g, async (b) => {
    if (values.task !== undefined && !(await b.getTask(values.task))) throw new BoardInputError(`no task ${JSON.stringify(values.task)} on board ${b.location}`);
    return b.listRuns({ taskId: values.task, outcome: outcome as RunOutcome | undefined, limit });
  });
  const now = Date.now();
  const rows = [
    ['RUN', 'TASK', 'SKILL', 'ATTEMPT', 'OUTCOME', 'STARTED', 'TOOK', 'PID', 'EXIT'],
    ...runs.map((r) => [
      r.id,
      r.taskId,
      r.skill,
      String(r.attempt),
      r.outcome ?? (r.exitedAt === null ? (r.status === 'ended' ? 'exiting' : r.status) : r.status),
      when(r.startedAt, now),
      (r.exitedAt ?? r.endedAt) ? fmtAge((r.exitedAt ?? r.endedAt)! - r.startedAt) : `${fmtAge(now - r.startedAt)}+`,
      String(r.pid ?? '-'),
      r.exitCode !== null ? String(r.exitCode) : r.signal ?? '-',
    ].map((c) => safe(c))),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const human = runs.length ? rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') : 'no runs';
  out(g, human, runs.map(listingJson));
  return EXIT.ok;
}

async function cmdLogs(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(
    args,
    { run: { type: 'string' }, attempt: { type: 'string' }, tail: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
    'logs',
  );
  if (positionals.length !== 1) throw new UsageError(`logs: expected one task or run id, got ${positionals.length}`);
  if (values.run !== undefined && values.attempt !== undefined) throw new UsageError('logs: give --run or --attempt, not both');
  const attempt = values.attempt !== undefined ? parseLimit('--attempt', values.attempt, { min: 1, max: 1_000_000, integer: true, unit: '' }) : undefined;
  const tail = values.tail !== undefined ? parseLimit('--tail', values.tail, { min: 0, max: 100_000_000, integer: true, unit: '' }) : undefined;
  const abs = boardPath(g.db, 'existing');
  // A reader that goes away (logs … | head) ends the command quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
  });
  try {
    return await logsCommand(abs, positionals[0]!, { run: values.run, attempt, tail, follow: values.follow === true }, {
      out: (chunk) => {
        process.stdout.write(chunk);
      },
      err: (text) => {
        process.stderr.write(text);
      },
    });
  } catch (e) {
    throw namingBoard(abs, e);
  }
}

async function cmdTaskChange(g: Globals, cmd: 'cancel' | 'block' | 'unblock' | 'retry', args: string[]): Promise<number> {
  const p = parseArgs(args, cmd === 'block' ? { '--reason': { kind: 'value' } } : {}, cmd);
  const id = one(p, 'task id', cmd);
  const t = await withBoard(g, async (b) => {
    if (cmd === 'cancel') return b.cancelTask(id);
    if (cmd === 'unblock') return b.unblockTask(id);
    if (cmd === 'retry') return b.retryTask(id);
    const reason = p.values['--reason'];
    if (!reason) throw new UsageError('block: --reason R is required');
    return b.blockTask(id, reason);
  }, 'write');
  out(g, `${safe(t.id)} ${safe(t.status)}`, taskJson(t));
  return EXIT.ok;
}

async function cmdCheck(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--full': { kind: 'bool' } }, 'check');
  const r = checkBoard(boardPath(g.db, 'existing'), { full: p.bools.has('--full') });
  const human = [
    `board ${safe(r.path)}: ${r.healthy ? 'healthy' : 'DAMAGED'}`,
    `  file ${r.fileSize ?? '-'} bytes, wal ${r.walSize ?? '-'} bytes, ${r.pageCount ?? '-'} pages of ${r.pageSize ?? '-'} bytes`,
    `  journal mode ${safe(String(r.journalMode ?? '-'))}, schema version ${r.schemaVersion ?? '-'} (supported ${r.supportedSchemaVersion})`,
    `  ${r.check}: ${r.checkResult.length ? safe(r.checkResult.slice(0, 10).join('; ')) : '-'}`,
    ...r.problems.map((x) => `  problem: ${safe(x)}`),
    ...r.warnings.map((x) => `  note: ${safe(x)}`),
    r.healthy ? '' : '  next: stop writers, keep the -wal and -shm files next to the board, and run `kanban-supervisor recover --out NEW.db`',
  ].filter(Boolean);
  out(g, human.join('\n'), r);
  return r.healthy ? EXIT.ok : EXIT.failed;
}

async function cmdRecover(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--out': { kind: 'value' }, '--in-place': { kind: 'bool' } }, 'recover');
  if (p.positionals.length) throw new UsageError(`recover: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const outPath = p.values['--out'];
  const inPlace = p.bools.has('--in-place');
  if (!outPath === !inPlace) throw new UsageError('recover: give exactly one of --out NEW.db or --in-place');
  const log = g.json ? undefined : (line: string) => process.stderr.write(line + '\n');
  const report = inPlace ? recoverInPlace(g.db, { log }) : recoverBoard(g.db, outPath!, { log });
  out(g, printableLines(formatRecoverReport(report)), report);
  return EXIT.ok;
}

const RUN_FLAGS: Record<string, FlagSpec> = {
  '--standby': { kind: 'bool' },
  '--until-idle': { kind: 'bool' },
  '--detach-on-exit': { kind: 'bool' },
  '--pass-env': { kind: 'multi' },
  '--env-file': { kind: 'multi' },
  ...Object.fromEntries(CONFIG_VARS.filter((v) => v.flag !== '--db').map((v) => [v.flag, { kind: 'value' as const }])),
};

async function cmdRun(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, RUN_FLAGS, 'run');
  if (p.positionals.length) throw new UsageError(`run: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const cfg = loadConfig(process.env, { ...p.values, '--db': g.db });
  for (const name of p.multi['--pass-env'] ?? []) checkPassEnv(name);
  // Read once, now: an error names the file and the line (exit 2); later files win.
  const envFile: Record<string, string> = {};
  for (const f of p.multi['--env-file'] ?? []) Object.assign(envFile, readEnvFile(f));
  // Before the owner lock (which would create files next to it): the board's one path, created
  // only where `init` would create it, and writable by this user.
  const abs = boardPath(g.db, 'run');
  assertWritable(abs);
  cfg.db = abs;
  const log = makeLogger(cfg.logLevel, cfg.logFormat);
  const sup = new Supervisor(cfg, log, {
    standby: p.bools.has('--standby'),
    untilIdle: p.bools.has('--until-idle'),
    detachOnExit: p.bools.has('--detach-on-exit'),
    passEnv: p.multi['--pass-env'] ?? [],
    envFile,
  });
  process.on('SIGTERM', () => sup.requestStop('SIGTERM'));
  process.on('SIGINT', () => sup.requestStop('SIGINT'));
  process.on('SIGHUP', () => undefined);
  // Workers must never depend on our stdio: a closed stdout must not kill the daemon either.
  process.stdout.on('error', () => undefined);
  try {
    return await sup.start();
  } catch (e) {
    throw namingBoard(abs, e);
  }
}

async function cmdStatus(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { watch: { type: 'boolean', short: 'w' }, interval: { type: 'string' } }, 'status');
  if (positionals.length) throw new UsageError(`status: unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values.interval !== undefined && !values.watch) throw new UsageError('status: --interval goes with --watch');
  if (values.watch) {
    const seconds = values.interval !== undefined ? parseLimit('--interval', values.interval, { min: 0.2, max: 3600, integer: false, unit: 'seconds' }) : 2;
    return watchStatus(boardPath(g.db, 'existing'), Math.round(seconds * 1000), g.json);
  }
  const r = await statusReport(boardPath(g.db, 'existing'));
  if (g.json) out(g, '', r);
  else printStatus(r);
  return EXIT.ok;
}

export async function main(argv: string[]): Promise<number> {
  let g: Globals & { help: boolean };
  try {
    g = globals(argv);
  } catch (e) {
    process.stderr.write(`kanban-supervisor: ${(e as Error).message}\n`);
    return EXIT.usage;
  }
  const [cmd, ...args] = g.rest;
  // `worker … --help` is the worker CLI's (per verb); `COMMAND --help` and `help COMMAND` print the command's.
  if (cmd === 'worker' && g.help) return workerCli([...args, '--help'], process.env);
  if (cmd === 'help' && args[0] === 'worker') return workerCli([...args.slice(1), '--help'], process.env);
  const topic = cmd === 'help' ? args[0] : g.help ? cmd : undefined;
  if (topic !== undefined) {
    const text = HELP[topic];
    if (text) {
      process.stdout.write(text);
      return EXIT.ok;
    }
    if (cmd === 'help') {
      process.stderr.write(`kanban-supervisor: no help for ${JSON.stringify(topic)}: commands are ${[...Object.keys(HELP), 'worker'].join(', ')}\n`);
      return EXIT.usage;
    }
  }
  if (g.help || !cmd || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd || g.help ? EXIT.ok : EXIT.usage;
  }
  try {
    switch (cmd) {
      case 'init': {
        parseArgs(args, {}, 'init');
        const counts = await withBoard(g, (b) => b.counts(), 'build');
        out(g, `board ${safe(resolveBoardPath(g.db))} ready`, { path: resolveBoardPath(g.db), counts });
        return EXIT.ok;
      }
      case 'skill':
        return await cmdSkill(g, args);
      case 'add':
        return await cmdAdd(g, args);
      case 'list':
        return await cmdList(g, args);
      case 'show':
        return await cmdShow(g, args);
      case 'cancel':
      case 'block':
      case 'unblock':
      case 'retry':
        return await cmdTaskChange(g, cmd, args);
      case 'runs':
        return await cmdRuns(g, args);
      case 'logs':
        return await cmdLogs(g, args);
      case 'check':
        return await cmdCheck(g, args);
      case 'recover':
        return await cmdRecover(g, args);
      case 'run': {
        const code = await cmdRun(g, args);
        // Detached workers (and their exit watchers) must not keep the daemon alive once it is done.
        process.exit(code);
      }
      case 'status':
        return await cmdStatus(g, args);
      case 'worker':
        return await workerCli(args, process.env);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)} (see kanban-supervisor --help)`);
    }
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    // Messages quote board text (task ids, skill names): escaped like every human output.
    process.stderr.write(`kanban-supervisor: ${printableLines(msg)}\n`);
    // Configuration: flags, variables, the board path, a board this user may not write.
    if (e instanceof ConfigError || e instanceof ReaperConfigError || e instanceof BoardPathError || isAccessError(e)) return EXIT.usage;
    return EXIT.failed;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`kanban-supervisor: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = EXIT.failed;
  },
);
