/**
 * The daemon and its view: `run` (flags and environment → config → a Supervisor on the board, with
 * its signal handlers) and `status [--watch]` (read-only, status.ts).
 */
import { CONFIG_VARS, EXIT, loadConfig, parseLimit } from '@kanban-supervisor/policies';
import { parseArgs, parseOptions, UsageError, type FlagSpec } from '../args.js';
import { makeLogger } from '../logger.js';
import { Supervisor } from '../supervisor.js';
import { statusReport, printStatus, watchStatus, type StatusReport } from '../status.js';
import { boardFiles, isPgLocation, resolveBoardPath } from '@kanban-supervisor/board';
import { readTokenFile, tokenFilePath } from '@kanban-supervisor/web';
import { readEnvFile } from '../env-file.js';
import { assertWritable, boardPath, namingBoard, type Globals } from './board.js';
import { checkPassEnv } from './flags.js';
import { out } from './output.js';

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

/** `status [--watch [--interval S]]`: owner, pool, dispatch and each live worker, once or until Ctrl-C. */
export async function cmdStatus(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { watch: { type: 'boolean', short: 'w' }, interval: { type: 'string' } }, 'status');
  if (positionals.length) throw new UsageError(`status: unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values.interval !== undefined && !values.watch) throw new UsageError('status: --interval goes with --watch');
  if (values.watch) {
    const seconds = values.interval !== undefined ? parseLimit('--interval', values.interval, { min: 0.2, max: 3600, integer: false, unit: 'seconds' }) : 2;
    return watchStatus(boardPath(g.db, 'existing'), Math.round(seconds * 1000), g.json);
  }
  const db = boardPath(g.db, 'existing');
  const r = await statusReport(db);
  if (g.json) out(g, '', r);
  else {
    printStatus(r);
    const page = pageLine(r, db);
    if (page) process.stdout.write(`${page}\n`);
    if (r.reportSocket) process.stdout.write(`report channel: ${r.reportSocket}\n`);
  }
  return EXIT.ok;
}

/**
 * How to open the live owner's page: its URL with the token in the fragment (never sent to a
 * server, never in a log) when this user can read the token file; else the URL alone.
 */
export function pageLine(r: StatusReport, db: string): string {
  if (!r.http) return '';
  const path = isPgLocation(db) ? db : resolveBoardPath(db);
  let token: string | null = null;
  try {
    token = readTokenFile(tokenFilePath(boardFiles(path), path));
  } catch {
    token = null;
  }
  return token !== null
    ? `page: ${r.http.url}#token=${token}`
    : `page: ${r.http.url} (actions need its token: KANBAN_HTTP_TOKEN, or the token file next to the board, not readable here)`;
}
