#!/usr/bin/env node
/**
 * kanban-supervisor: the daemon (`run`), the board CLI, and the worker CLI for skills in any language.
 * This entry reads the global flags, prints the help texts (commands/help.ts), dispatches to the
 * commands (commands/*.ts; `worker` to the worker CLI of worker-runtime) and maps an error to its
 * exit code. It runs at import: bin/kanban-supervisor.js loads it, and workers run it as $KANBAN_CLI.
 * Exit codes (`EXIT`, policies/src/reasons.ts): 0 ok, 1 failure, 2 usage or configuration error, 3 fenced
 * out (worker), 4 board owned by another supervisor.
 */
import { ConfigError, DEFAULT_DB, EXIT } from '@kanban-supervisor/policies';
import { argvTokens, flagName, UsageError } from './args.js';
import { printableLines } from './text.js';
import type { Globals } from './commands/board.js';
import { HELP, USAGE } from './commands/help.js';

// Each command's module is imported when that command runs: a worker's `worker heartbeat` does not
// load the board's backends (unless it falls back to writing the board) nor the daemon (HTTP server,
// metrics, process scan); `status` not the daemon. Loading all of it took most of a CLI call's
// start-up (0.40 s for `worker heartbeat --help`, now 0.15; bare node 0.10; test/supervisor/cli-startup.test.ts).
const workerCli = async (args: string[]): Promise<number> => (await import('@kanban-supervisor/worker-runtime')).workerCli(args, process.env);

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
  if (cmd === 'worker' && g.help) return workerCli([...args, '--help']);
  if (cmd === 'help' && args[0] === 'worker') return workerCli([...args.slice(1), '--help']);
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
      case 'init':
        return await (await import('./commands/maintenance.js')).cmdInit(g, args);
      case 'skill':
        return await (await import('./commands/skills.js')).cmdSkill(g, args);
      case 'add':
        return await (await import('./commands/tasks.js')).cmdAdd(g, args);
      case 'list':
        return await (await import('./commands/tasks.js')).cmdList(g, args);
      case 'show':
        return await (await import('./commands/tasks.js')).cmdShow(g, args);
      case 'cancel':
      case 'block':
      case 'unblock':
      case 'retry':
        return await (await import('./commands/tasks.js')).cmdTaskChange(g, cmd, args);
      case 'link':
      case 'unlink':
        return await (await import('./commands/graph.js')).cmdLink(g, cmd, args);
      case 'runs':
        return await (await import('./commands/runs.js')).cmdRuns(g, args);
      case 'logs':
        return await (await import('./commands/runs.js')).cmdLogs(g, args);
      case 'prune':
        return await (await import('./commands/bulk.js')).cmdPrune(g, args);
      case 'check':
        return await (await import('./commands/maintenance.js')).cmdCheck(g, args);
      case 'recover':
        return await (await import('./commands/maintenance.js')).cmdRecover(g, args);
      case 'migrate':
        return await (await import('./commands/migrate.js')).cmdMigrate(g, args);
      case 'run': {
        const code = await (await import('./commands/run.js')).cmdRun(g, args);
        // Detached workers (and their exit watchers) must not keep the daemon alive once it is done.
        process.exit(code);
      }
      case 'status':
        return await (await import('./commands/status.js')).cmdStatus(g, args);
      case 'worker':
        return await workerCli(args);
      default:
        throw new UsageError(`unknown ${cmd.startsWith('-') ? 'option' : 'command'} ${JSON.stringify(cmd)} (see kanban-supervisor --help)`);
    }
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    // Messages quote board text (task ids, skill names): escaped like every human output.
    process.stderr.write(`kanban-supervisor: ${printableLines(msg)}\n`);
    // Configuration: flags, variables, the board path, a board this user may not write; input the
    // board refuses for itself (a skill name, a range, a size: BoardValidationError), as the CLI's
    // own checks of flags. A refusal that depends on the board's contents (an unknown task or
    // skill, a change the task's status refuses) is a failure (1).
    // In use by a supervisor (migrate): exit 4, as a second `run`.
    // A command's module missing (a partial build): say so, without loading anything more.
    if ((e as { code?: unknown })?.code === 'ERR_MODULE_NOT_FOUND') {
      process.stderr.write('kanban-supervisor: part of the build is missing: run `npm run build` in the repository (or reinstall the package)\n');
      return EXIT.failed;
    }
    // (Their classes are loaded by now: the module that threw them imported them.)
    const { BoardOwnedError, BoardPathError, BoardValidationError } = await import('@kanban-supervisor/board/light');
    const { isAccessError } = await import('./commands/board.js');
    const { ReaperConfigError } = await import('@kanban-supervisor/reaper');
    if (e instanceof BoardOwnedError) return EXIT.boardOwned;
    if (e instanceof ConfigError || e instanceof ReaperConfigError || e instanceof BoardPathError || e instanceof BoardValidationError || isAccessError(e)) return EXIT.usage;
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
