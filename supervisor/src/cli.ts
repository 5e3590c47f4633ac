#!/usr/bin/env node
/**
 * kanban-supervisor: the daemon (`run`), the board CLI, and the worker CLI for skills in any language.
 * Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 fenced out (worker), 4 board owned by another supervisor.
 */
import { BoardDamagedError, BoardError, BoardInputError, SqliteBoard, checkBoard, recoverBoard, recoverInPlace, formatRecoverReport, type Json, type Task, type TaskDetail } from '@kanban-supervisor/board';
import { CONFIG_VARS, ConfigError, loadConfig, TASK_STATUSES, type TaskStatus } from '@kanban-supervisor/policies';
import { workerCli } from '@kanban-supervisor/worker-runtime';
import { parseArgs, parseJsonArg, parseNumberArg, UsageError, type FlagSpec } from './args.js';
import { makeLogger } from './logger.js';
import { Supervisor } from './daemon.js';
import { statusReport, printStatus } from './status.js';

const USAGE = `Usage: kanban-supervisor [--db PATH] [--json] COMMAND ...

Daemon:
  run [--standby] [--until-idle] [--detach-on-exit] [--pass-env NAME]... [tuning flags]
  status                          owner, pool and running workers

Board:
  init                            create the board (idempotent)
  skill add NAME [--cwd DIR] [--env K=V]... [--max-runtime S] [--heartbeat-timeout S]
                 [--reclaim-grace S] [--max-rss-mb N] -- CMD [ARGS...]
  skill list | skill rm NAME
  add --skill NAME [--title T] [--payload JSON] [--priority N] [--max-runtime S] [--max-retries N]
  list [--status S] | show ID
  cancel ID | block ID --reason R | unblock ID
  check [--full]                  is the board healthy (exit 0) or damaged (exit 1)
  recover --out NEW.db | --in-place   salvage every readable row into a fresh board

Worker (inside a worker, with the KANBAN_* variables the supervisor sets):
  worker heartbeat [--progress JSON] | worker event KIND [--data JSON] | worker payload
  worker complete [--result JSON] | worker fail [--error MSG] | worker defer --seconds N

Tuning (environment variable, or flag for run):
${CONFIG_VARS.map((v) => `  ${v.env.padEnd(26)} ${v.flag.padEnd(26)} default ${v.def.padEnd(20)} ${v.help}`).join('\n')}
`;

interface Globals {
  db: string;
  json: boolean;
  rest: string[];
}

/** Pull the global flags (--db, --json, --help) from anywhere before a `--`. */
function globals(argv: string[]): Globals & { help: boolean } {
  const rest: string[] = [];
  let db: string | undefined;
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === '--db') {
      if (i + 1 >= argv.length) throw new UsageError('option --db needs a value');
      db = argv[++i]!;
    } else if (a.startsWith('--db=')) db = a.slice(5);
    else if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') help = true;
    else rest.push(a);
  }
  const cfgDb = db ?? (process.env.KANBAN_DB && process.env.KANBAN_DB !== '' ? process.env.KANBAN_DB : CONFIG_VARS.find((v) => v.key === 'db')!.def);
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

function detailJson(d: TaskDetail): Record<string, unknown> {
  return {
    ...taskJson(d.task),
    runs: d.runs.map((r) => ({
      id: r.id,
      status: r.status,
      outcome: r.outcome,
      pid: r.pid,
      exit_code: r.exitCode,
      signal: r.signal,
      started_at: r.startedAt,
      ended_at: r.endedAt,
      error: r.error,
    })),
    events: d.events.map((e) => ({ kind: e.kind, at: e.at, run_id: e.runId, data: e.data })),
  };
}

const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : '-');

async function withBoard<T>(g: Globals, fn: (b: SqliteBoard) => Promise<T>, opts: { create?: boolean } = {}): Promise<T> {
  const b = SqliteBoard.open(g.db, { create: opts.create ?? false, busyTimeoutMs: 2000 });
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
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
    const optNum = (flag: string, integer = false) => (p.values[flag] !== undefined ? parseNumberArg(flag, p.values[flag]!, { min: 0, integer }) : null);
    const skill = await withBoard(g, (b) =>
      b.putSkill({
        name,
        argv: p.rest!,
        cwd: p.values['--cwd'] ?? null,
        env,
        maxRuntimeSeconds: optNum('--max-runtime'),
        heartbeatTimeoutSeconds: optNum('--heartbeat-timeout'),
        reclaimGraceSeconds: optNum('--reclaim-grace'),
        maxRssMb: optNum('--max-rss-mb', true),
      }), { create: true });
    out(g, `skill ${skill.name}: ${JSON.stringify(skill.argv)}`, skill);
    return 0;
  }
  if (sub === 'list') {
    parseArgs(args.slice(1), {}, 'skill list');
    const skills = await withBoard(g, (b) => b.listSkills());
    out(g, skills.map((s) => `${s.name}\t${JSON.stringify(s.argv)}${s.cwd ? `\tcwd=${s.cwd}` : ''}`).join('\n'), skills);
    return 0;
  }
  if (sub === 'rm') {
    const p = parseArgs(args.slice(1), {}, 'skill rm');
    const name = one(p, 'skill name', 'skill rm');
    const removed = await withBoard(g, (b) => b.removeSkill(name));
    if (!removed) throw new BoardInputError(`no skill ${JSON.stringify(name)} on board ${SqliteBoard.resolvePath(g.db)}`);
    out(g, `removed skill ${name}`, { removed: name });
    return 0;
  }
  throw new UsageError(`skill: expected add, list or rm, got ${JSON.stringify(sub ?? '')}`);
}

async function cmdAdd(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, {
    '--skill': { kind: 'value' },
    '--title': { kind: 'value' },
    '--payload': { kind: 'value' },
    '--priority': { kind: 'value' },
    '--max-runtime': { kind: 'value' },
    '--max-retries': { kind: 'value' },
  }, 'add');
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
      maxRuntimeSeconds: p.values['--max-runtime'] !== undefined ? parseNumberArg('--max-runtime', p.values['--max-runtime']!, { min: 0 }) : null,
      maxRetries: p.values['--max-retries'] !== undefined ? parseNumberArg('--max-retries', p.values['--max-retries']!, { integer: true, min: 1 }) : null,
    }),
  );
  out(g, task.id, { id: task.id });
  return 0;
}

async function cmdList(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--status': { kind: 'value' } }, 'list');
  const status = p.values['--status'];
  if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status must be one of ${TASK_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);
  }
  const tasks = await withBoard(g, (b) => b.listTasks({ status: status as TaskStatus | undefined, limit: 100_000 }));
  out(
    g,
    tasks.map((t) => `${t.id}\t${t.status.padEnd(9)}\t${t.skill}\t${t.title}${t.lastError ? `\t(${t.lastError})` : ''}`).join('\n'),
    tasks.map(taskJson),
  );
  return 0;
}

async function cmdShow(g: Globals, args: string[]): Promise<number> {
  const id = one(parseArgs(args, {}, 'show'), 'task id', 'show');
  const d = await withBoard(g, (b) => b.showTask(id));
  if (!d) throw new BoardInputError(`no task ${JSON.stringify(id)} on board ${SqliteBoard.resolvePath(g.db)}`);
  const t = d.task;
  const human = [
    `${t.id}  ${t.title}`,
    `  skill ${t.skill}  status ${t.status}  priority ${t.priority}  failures ${t.consecutiveFailures}`,
    `  payload ${JSON.stringify(t.payload)}`,
    t.result !== null ? `  result ${JSON.stringify(t.result)}` : '',
    t.lastError ? `  last error: ${t.lastError}` : '',
    t.notBefore > Date.now() ? `  not before ${iso(t.notBefore)}` : '',
    `  runs:`,
    ...d.runs.map((r) => `    ${r.id} ${r.status} ${r.outcome ?? ''} pid=${r.pid ?? '-'} exit=${r.exitCode ?? '-'} signal=${r.signal ?? '-'} ${iso(r.startedAt)} → ${iso(r.endedAt)}${r.error ? `  ${r.error}` : ''}`),
    `  events:`,
    ...d.events.map((e) => `    ${iso(e.at)} ${e.kind}${e.runId ? ` ${e.runId}` : ''}${e.data !== null ? ` ${JSON.stringify(e.data)}` : ''}`),
  ].filter((l) => l !== '');
  out(g, human.join('\n'), detailJson(d));
  return 0;
}

async function cmdTaskChange(g: Globals, cmd: 'cancel' | 'block' | 'unblock', args: string[]): Promise<number> {
  const p = parseArgs(args, cmd === 'block' ? { '--reason': { kind: 'value' } } : {}, cmd);
  const id = one(p, 'task id', cmd);
  const t = await withBoard(g, async (b) => {
    if (cmd === 'cancel') return b.cancelTask(id);
    if (cmd === 'unblock') return b.unblockTask(id);
    const reason = p.values['--reason'];
    if (!reason) throw new UsageError('block: --reason R is required');
    return b.blockTask(id, reason);
  });
  out(g, `${t.id} ${t.status}`, taskJson(t));
  return 0;
}

async function cmdCheck(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--full': { kind: 'bool' } }, 'check');
  const r = checkBoard(g.db, { full: p.bools.has('--full') });
  const human = [
    `board ${r.path}: ${r.healthy ? 'healthy' : 'DAMAGED'}`,
    `  file ${r.fileSize ?? '-'} bytes, wal ${r.walSize ?? '-'} bytes, ${r.pageCount ?? '-'} pages of ${r.pageSize ?? '-'} bytes`,
    `  journal mode ${r.journalMode ?? '-'}, schema version ${r.schemaVersion ?? '-'} (supported ${r.supportedSchemaVersion})`,
    `  ${r.check}: ${r.checkResult.length ? r.checkResult.slice(0, 10).join('; ') : '-'}`,
    ...r.problems.map((x) => `  problem: ${x}`),
    ...r.warnings.map((x) => `  note: ${x}`),
    r.healthy ? '' : '  next: stop writers, keep the -wal and -shm files next to the board, and run `kanban-supervisor recover --out NEW.db`',
  ].filter(Boolean);
  out(g, human.join('\n'), r);
  return r.healthy ? 0 : 1;
}

async function cmdRecover(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--out': { kind: 'value' }, '--in-place': { kind: 'bool' } }, 'recover');
  if (p.positionals.length) throw new UsageError(`recover: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const outPath = p.values['--out'];
  const inPlace = p.bools.has('--in-place');
  if (!outPath === !inPlace) throw new UsageError('recover: give exactly one of --out NEW.db or --in-place');
  const log = g.json ? undefined : (line: string) => process.stderr.write(line + '\n');
  const report = inPlace ? recoverInPlace(g.db, { log }) : recoverBoard(g.db, outPath!, { log });
  out(g, formatRecoverReport(report), report);
  return 0;
}

const RUN_FLAGS: Record<string, FlagSpec> = {
  '--standby': { kind: 'bool' },
  '--until-idle': { kind: 'bool' },
  '--detach-on-exit': { kind: 'bool' },
  '--pass-env': { kind: 'multi' },
  ...Object.fromEntries(CONFIG_VARS.filter((v) => v.flag !== '--db').map((v) => [v.flag, { kind: 'value' as const }])),
};

async function cmdRun(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, RUN_FLAGS, 'run');
  if (p.positionals.length) throw new UsageError(`run: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const cfg = loadConfig(process.env, { ...p.values, '--db': g.db });
  for (const name of p.multi['--pass-env'] ?? []) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--pass-env must name an environment variable, got ${JSON.stringify(name)}`);
    if (name.startsWith('KANBAN_')) throw new UsageError(`--pass-env ${name}: KANBAN_* variables are set by the supervisor`);
  }
  const log = makeLogger(cfg.logLevel);
  const sup = new Supervisor(cfg, log, {
    standby: p.bools.has('--standby'),
    untilIdle: p.bools.has('--until-idle'),
    detachOnExit: p.bools.has('--detach-on-exit'),
    passEnv: p.multi['--pass-env'] ?? [],
  });
  process.on('SIGTERM', () => sup.requestStop('SIGTERM'));
  process.on('SIGINT', () => sup.requestStop('SIGINT'));
  process.on('SIGHUP', () => undefined);
  // Workers must never depend on our stdio: a closed stdout must not kill the daemon either.
  process.stdout.on('error', () => undefined);
  return sup.start();
}

async function cmdStatus(g: Globals, args: string[]): Promise<number> {
  parseArgs(args, {}, 'status');
  const r = await statusReport(g.db);
  if (g.json) out(g, '', r);
  else printStatus(r);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let g: Globals & { help: boolean };
  try {
    g = globals(argv);
  } catch (e) {
    process.stderr.write(`kanban-supervisor: ${(e as Error).message}\n`);
    return 2;
  }
  const [cmd, ...args] = g.rest;
  if (g.help || !cmd || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd || g.help ? 0 : 2;
  }
  try {
    switch (cmd) {
      case 'init': {
        parseArgs(args, {}, 'init');
        const counts = await withBoard(g, (b) => b.counts(), { create: true });
        out(g, `board ${SqliteBoard.resolvePath(g.db)} ready`, { path: SqliteBoard.resolvePath(g.db), counts });
        return 0;
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
        return await cmdTaskChange(g, cmd, args);
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
    process.stderr.write(`kanban-supervisor: ${msg}\n`);
    if (e instanceof ConfigError) return 2;
    if (e instanceof BoardInputError) return 1;
    if (e instanceof BoardDamagedError || e instanceof BoardError) return 1;
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`kanban-supervisor: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
