#!/usr/bin/env node
/**
 * kanban-supervisor: the daemon (`run`), the board CLI, and the worker CLI for skills in any language.
 * This entry reads the global flags, prints the help texts (commands/help.ts), dispatches to the
 * commands (commands/*.ts; `worker` to the worker CLI of worker-runtime) and maps an error to its
 * exit code. It runs at import: bin/kanban-supervisor.js loads it, and workers run it as $KANBAN_CLI.
 * Exit codes (`EXIT`, policies/src/reasons.ts): 0 ok, 1 failure, 2 usage or configuration error, 3 fenced
 * out (worker), 4 board owned by another supervisor.
 */
import { ReaperConfigError } from '@kanban-supervisor/reaper';
import { BoardOwnedError, BoardPathError } from '@kanban-supervisor/board';
import { ConfigError, EXIT } from '@kanban-supervisor/policies';
import { workerCli } from '@kanban-supervisor/worker-runtime';
import { argvTokens, flagName, UsageError } from './args.js';
import { printableLines } from './text.js';
import { DEFAULT_DB, isAccessError, type Globals } from './commands/board.js';
import { HELP, USAGE } from './commands/help.js';
import { cmdCheck, cmdInit, cmdRecover } from './commands/maintenance.js';
import { cmdMigrate } from './commands/migrate.js';
import { cmdRun, cmdStatus } from './commands/run.js';
import { cmdLogs, cmdRuns } from './commands/runs.js';
import { cmdSkill } from './commands/skills.js';
import { cmdAdd, cmdList, cmdShow, cmdTaskChange } from './commands/tasks.js';
import { cmdLink } from './commands/graph.js';
import { cmdPrune } from './commands/bulk.js';

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
      case 'init':
        return await cmdInit(g, args);
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
      case 'link':
      case 'unlink':
        return await cmdLink(g, cmd, args);
      case 'runs':
        return await cmdRuns(g, args);
      case 'logs':
        return await cmdLogs(g, args);
      case 'prune':
        return await cmdPrune(g, args);
      case 'check':
        return await cmdCheck(g, args);
      case 'recover':
        return await cmdRecover(g, args);
      case 'migrate':
        return await cmdMigrate(g, args);
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
    // In use by a supervisor (migrate): exit 4, as a second `run`.
    if (e instanceof BoardOwnedError) return EXIT.boardOwned;
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
