/**
 * The worker CLI, for skills written in any language: `kanban-supervisor worker <command>`.
 * It reads the same KANBAN_* variables as the runtime and makes one fenced report per invocation:
 * through the supervisor's report channel (KANBAN_SOCKET) when it answers, else on the board.
 *
 * Exit statuses: 0 ok, 1 other failure, 2 bad arguments or environment, 3 fenced out
 * (`run R is no longer current for task T`, nothing written).
 */
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';
import { BoardInputError, NotCurrentError, localConnectionOf, type Json, type WorkerReport } from '@kanban-supervisor/board/light';
import { ConfigError, LIMITS, parseLimit, printable } from '@kanban-supervisor/policies';
import { checkpointAndClose } from './board-io.js';
import { EXIT, readWorkerEnv, WorkerEnvError } from './env.js';
import { Reporter } from './reporter.js';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const stdio: CliIo = {
  out: (t) => {
    try {
      process.stdout.write(t);
    } catch {
      /* reader gone */
    }
  },
  err: (t) => {
    try {
      // Messages quote what the environment and the board say (ids, errors): terminal-safe, one
      // line each (a newline inside one would forge another).
      process.stderr.write(t.endsWith('\n') ? `${printable(t.slice(0, -1))}\n` : printable(t));
    } catch {
      /* reader gone */
    }
  },
};

type FlagKind = 'json' | 'string' | 'seconds';

interface CommandSpec {
  args: string[];
  flags: Record<string, FlagKind>;
  required?: string[];
  summary: string;
}

const COMMANDS: Record<string, CommandSpec> = {
  heartbeat: { args: [], flags: { '--progress': 'json' }, summary: 'record a heartbeat, with optional progress JSON' },
  event: { args: ['KIND'], flags: { '--data': 'json' }, summary: 'append an event of KIND to the task history' },
  complete: { args: [], flags: { '--result': 'json' }, summary: 'end the run completed (the task becomes done with this result)' },
  fail: { args: [], flags: { '--error': 'string' }, summary: 'end the run failed with a message' },
  defer: { args: [], flags: { '--seconds': 'seconds', '--reason': 'string' }, required: ['--seconds'], summary: 'end the run deferred: retry the task after N seconds' },
  payload: { args: [], flags: { '--get': 'string' }, summary: 'print the task payload (JSON), or one field of it (strings raw)' },
  parents: { args: [], flags: {}, summary: "print the results of the task's parents (JSON object, by task id)" },
};

export const WORKER_CLI_USAGE = `usage: kanban-supervisor worker <command> [options]

Commands (they read KANBAN_DB, KANBAN_TASK_ID, KANBAN_RUN_ID, KANBAN_RUN_TOKEN):
  heartbeat [--progress JSON]          ${COMMANDS.heartbeat!.summary}
  event KIND [--data JSON]             ${COMMANDS.event!.summary}
  complete [--result JSON]             ${COMMANDS.complete!.summary}
  fail [--error MSG]                   ${COMMANDS.fail!.summary}
  defer --seconds N [--reason R]       ${COMMANDS.defer!.summary}
  payload [--get FIELD[.FIELD...]]     ${COMMANDS.payload!.summary}
  parents                              ${COMMANDS.parents!.summary}

Exit status: 0 ok; 1 failure; 2 bad arguments or environment;
3 the run is no longer current (reclaimed, cancelled, ended): nothing was written.
One command's details: kanban-supervisor worker COMMAND --help
`;

const ENV_NOTE = `It reads KANBAN_DB, KANBAN_TASK_ID, KANBAN_RUN_ID and KANBAN_RUN_TOKEN (set by the supervisor).
Exit status: 0 ok; 1 failure; 2 bad arguments or environment; 3 the run is no longer current
(reclaimed, cancelled, ended): nothing was written.`;

/** `worker COMMAND --help`. */
export const WORKER_COMMAND_HELP: Record<string, string> = {
  heartbeat: `usage: kanban-supervisor worker heartbeat [--progress JSON]

Record that the worker is alive (a skill with --heartbeat-timeout is reclaimed as stalled without
one in time). --progress JSON replaces the run's progress (shown by status, show and runs --json);
without it the last progress stays.
${ENV_NOTE}
`,
  event: `usage: kanban-supervisor worker event KIND [--data JSON]

Append an event to the task's history (shown by show). KIND: 1-64 letters, digits, '.', '_', ':'
or '-'. --data JSON is stored with it.
${ENV_NOTE}
`,
  payload: `usage: kanban-supervisor worker payload [--get FIELD[.FIELD...]]

Print the task's payload as JSON on stdout. --get prints one field of it instead, by a dotted path
(array elements by index: --get items.0.url); a string field is printed raw (no quotes), anything
else as JSON; a missing field prints nothing (exit 0), an empty field name (--get '', a..b)
is a usage error (exit 2). Example in a shell skill:
  url=$("$KANBAN_CLI" worker payload --get url)
${ENV_NOTE}
`,
  parents: `usage: kanban-supervisor worker parents

Print the results of the task's parents (the tasks it was added --after, or linked after) as one
JSON object on stdout: {"<parent task id>": <its result>, ...}; {} for a task without parents.
Example: "$KANBAN_CLI" worker parents | jq -r '.[] | .summary'
${ENV_NOTE}
`,
  complete: `usage: kanban-supervisor worker complete [--result JSON]

End the run completed: the task becomes done with this result (default null). Then exit 0. A board
that cannot take it (damaged, locked, not writable) gets it later from the spool: nothing is lost.
${ENV_NOTE}
`,
  fail: `usage: kanban-supervisor worker fail [--error MSG]

End the run failed with a message: the failure counts toward the task's limit (retried with
backoff, blocked at the limit). Then exit (any status).
${ENV_NOTE}
`,
  defer: `usage: kanban-supervisor worker defer --seconds N [--reason R]

End the run deferred: the task is ready again after N seconds; it does not count as a failure.
${ENV_NOTE}
`,
};

class UsageError extends Error {}

interface Parsed {
  command: string;
  positional: string[];
  flags: Map<string, string | number | Json>;
}

/**
 * `worker COMMAND [ARGS] [--flag VALUE | --flag=VALUE]...`, read by node:util parseArgs (not strict:
 * a value may start with a dash, `--seconds -1` is refused by its range, not as a missing value) and
 * checked here: an unknown flag, a flag without its value or given twice is a usage error naming it.
 * `--help` or `-h` before a `--` prints the command's help; an argument with a single dash (`-x`) and
 * everything after `--` are positional.
 */
function parseArgs(args: string[]): Parsed | 'help' | { help: string } {
  const [command, ...rest] = args;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') return 'help';
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(`unknown worker command ${JSON.stringify(command)}; one of ${Object.keys(COMMANDS).join(', ')}`);
  const positional: string[] = [];
  const flags = new Map<string, string | number | Json>();
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const name of Object.keys(spec.flags)) options[name.slice(2)] = { type: 'string' };
  const { tokens } = nodeParseArgs({ args: rest, options, strict: false, allowPositionals: true, tokens: true });
  let last = -1;
  for (const t of tokens) {
    if (t.kind === 'option-terminator') continue;
    if (t.kind === 'positional') {
      positional.push(t.value);
      continue;
    }
    // node splits `-xyz` into one token per letter, all with the index of `-xyz`.
    if (t.index === last) continue;
    last = t.index;
    const a = rest[t.index]!;
    if (a === '--help' || a === '-h') return { help: command };
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(0, eq) : a;
    const kind = spec.flags[name];
    if (!kind) {
      const known = Object.keys(spec.flags);
      throw new UsageError(`worker ${command}: unknown option ${name}${known.length ? ` (options: ${known.join(', ')})` : ''}`);
    }
    if (t.value === undefined) throw new UsageError(`worker ${command}: ${name} needs a value`);
    if (flags.has(name)) throw new UsageError(`worker ${command}: ${name} was given twice`);
    flags.set(name, parseFlag(command, name, kind, t.value));
  }
  if (positional.length !== spec.args.length) {
    throw new UsageError(
      spec.args.length === 0
        ? `worker ${command}: unexpected argument ${JSON.stringify(positional[0])}`
        : `worker ${command}: expects ${spec.args.join(' ')}, got ${positional.length === 0 ? 'nothing' : positional.map((p) => JSON.stringify(p)).join(' ')}`,
    );
  }
  for (const r of spec.required ?? []) {
    if (!flags.has(r)) throw new UsageError(`worker ${command}: ${r} is required`);
  }
  const get = flags.get('--get');
  if (typeof get === 'string' && get.split('.').some((part) => part === '')) {
    throw new UsageError(`worker ${command}: --get ${JSON.stringify(get)} has an empty field name (FIELD[.FIELD...], e.g. items.0.url)`);
  }
  return { command, positional, flags };
}

function parseFlag(command: string, name: string, kind: FlagKind, raw: string): string | number | Json {
  switch (kind) {
    case 'string':
      return raw;
    case 'seconds':
      try {
        return parseLimit(name, raw, LIMITS.deferSeconds);
      } catch (e) {
        throw new UsageError(`worker ${command}: ${e instanceof ConfigError ? e.message : String(e)}`);
      }
    case 'json':
      try {
        return JSON.parse(raw) as Json;
      } catch (e) {
        throw new UsageError(`worker ${command}: ${name} is not valid JSON: ${JSON.stringify(raw)} (${(e as Error).message})`);
      }
  }
}

function pick(value: Json, path: string): Json | undefined {
  let cur: Json | undefined = value;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = Array.isArray(cur) ? (/^\d+$/.test(part) ? cur[Number(part)] : undefined) : cur[part];
    if (cur === undefined) return undefined;
  }
  return cur;
}

/**
 * Run one worker CLI command. `args` are the words after `worker`; returns the exit status.
 * Messages go to stderr (`io.err`); only `payload` and `parents` write to stdout.
 */
export async function workerCli(args: string[], env: NodeJS.ProcessEnv, io: CliIo = stdio): Promise<number> {
  let parsed: Parsed | 'help' | { help: string };
  try {
    parsed = parseArgs(args);
  } catch (e) {
    io.err(`kanban-supervisor ${(e as Error).message}\n`);
    if (!(e instanceof UsageError)) return EXIT.failed;
    io.err(`(see: kanban-supervisor worker --help)\n`);
    return EXIT.usage;
  }
  if (parsed === 'help') {
    io.out(WORKER_CLI_USAGE);
    return EXIT.ok;
  }
  if ('help' in parsed) {
    io.out(WORKER_COMMAND_HELP[parsed.help] ?? WORKER_CLI_USAGE);
    return EXIT.ok;
  }
  const { command, positional, flags } = parsed;

  let wenv;
  try {
    wenv = readWorkerEnv(env);
  } catch (e) {
    io.err(`kanban-supervisor worker ${command}: ${(e as Error).message}\n`);
    return e instanceof WorkerEnvError ? e.exitCode : EXIT.failed;
  }
  const { dbPath } = wenv;
  const final = command === 'complete' || command === 'fail' || command === 'defer';

  let report: WorkerReport | null = null;
  if (command === 'complete') report = { outcome: 'completed', result: (flags.get('--result') as Json | undefined) ?? null };
  else if (command === 'fail') report = { outcome: 'failed', error: String(flags.get('--error') ?? 'failed') };
  else if (command === 'defer') {
    const reason = flags.get('--reason');
    report = reason === undefined
      ? { outcome: 'deferred', seconds: flags.get('--seconds') as number }
      : { outcome: 'deferred', seconds: flags.get('--seconds') as number, reason: String(reason) };
  }

  // Through the supervisor's report channel when KANBAN_SOCKET is set and answers; else the board
  // directly (opened only then); a final report the board cannot take is spooled (reporter.ts).
  const reporter = new Reporter(wenv);
  try {
    switch (command) {
      case 'heartbeat':
        await reporter.heartbeat(flags.get('--progress') as Json | undefined);
        break;
      case 'event':
        await reporter.event(positional[0]!, (flags.get('--data') as Json | undefined) ?? null);
        break;
      case 'payload': {
        const task = await reporter.loadTask();
        const path = flags.get('--get') as string | undefined;
        const v = path === undefined ? task.payload : pick(task.payload, path);
        if (v !== undefined) io.out((typeof v === 'string' ? v : JSON.stringify(v)) + '\n');
        break;
      }
      case 'parents':
        io.out(JSON.stringify(await reporter.loadParents()) + '\n');
        break;
      default: {
        // A final report is never lost to a board that cannot be opened, whatever the reason
        // (damaged, I/O, not readable or writable by this user, read-only, missing): it is spooled.
        const d = await reporter.deliver(report!);
        if (d.via === 'spool') io.err(`kanban-supervisor worker ${command}: the board could not take the report (${d.cause}); it was spooled to ${d.path}\n`);
      }
    }
    return EXIT.ok;
  } catch (e) {
    if (e instanceof NotCurrentError) {
      io.err(`${e.message}\n`);
      return EXIT.notCurrent;
    }
    if (e instanceof BoardInputError) {
      io.err(`kanban-supervisor worker ${command}: ${e.message}\n`);
      return EXIT.usage;
    }
    // Not opened: the channel did not answer and the board could not be opened either.
    const what = !reporter.openedBoard && !final ? `cannot open board ${dbPath}: ` : '';
    io.err(`kanban-supervisor worker ${command}: ${what}${(e as Error)?.message ?? String(e)}\n`);
    return EXIT.failed;
  } finally {
    reporter.channel?.close();
    const board = reporter.openedBoard;
    if (final && board && localConnectionOf(board)) checkpointAndClose(board);
    else if (board) {
      try {
        await board.close();
      } catch {
        /* best effort */
      }
    }
  }
}
