/**
 * The daemon: `run` (flags and environment → config → a Supervisor on the board, with its signal
 * handlers). Its view, `status`, is commands/status.ts (it does not load the daemon).
 */
import { CONFIG_VARS, loadConfig } from '@kanban-supervisor/policies';
import { parseArgs, UsageError, type FlagSpec } from '../args.js';
import { makeLogger } from '../logger.js';
import { Supervisor } from '../supervisor.js';
import { readEnvFile } from '../env-file.js';
import { assertWritable, boardPath, namingBoard, type Globals } from './board.js';
import { checkPassEnv } from './flags.js';

/** The flags of `run`: its own, then one per tuning variable (CONFIG_VARS; --db is global). */
const RUN_FLAGS: Record<string, FlagSpec> = {
  '--standby': { kind: 'bool' },
  '--until-idle': { kind: 'bool' },
  '--detach-on-exit': { kind: 'bool' },
  '--pass-env': { kind: 'multi' },
  '--env-file': { kind: 'multi' },
  ...Object.fromEntries(CONFIG_VARS.filter((v) => v.flag !== '--db' && !v.envOnly).map((v) => [v.flag, { kind: 'value' as const }])),
};

/** `run`: supervise the board until stopped (or idle with --until-idle); resolves to the exit code. */
export async function cmdRun(g: Globals, args: string[]): Promise<number> {
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
