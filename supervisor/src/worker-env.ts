/**
 * A worker's environment, explicit: nothing of the supervisor's own environment reaches a worker
 * unless named here or passed through by name. An exit-code skill's worker (`--report exit`) gets
 * neither the board's location (KANBAN_DB) nor a run token: its task id, run id and reclaim grace
 * here, its payload (KANBAN_PAYLOAD or KANBAN_PAYLOAD_FILE) added by dispatch (exit-skills.ts).
 */
import { fileURLToPath } from 'node:url';
import type { ReportMode } from '@kanban-supervisor/policies';
import type { TickContext } from './state.js';

/** The worker CLI (`kanban-supervisor worker …`), for workers that are not Node programs. */
const CLI_PATH = fileURLToPath(new URL('./cli.js', import.meta.url));
const BASE_ENV = ['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR'];

/** What identifies a worker's run and its limits, in its KANBAN_* variables. */
export interface WorkerRunVars {
  taskId: string;
  runId: string;
  token: string;
  graceSeconds: number;
  heartbeatTimeoutSeconds: number;
  /** 'exit': an exit-code skill's worker (nothing that reaches the board). */
  report?: ReportMode;
}

/**
 * The base variables, `run --env-file` variables, the skill's env, the names passed through from
 * ours (`run --pass-env`, `skill add --pass-env`; values read now, never stored), then the
 * KANBAN_* variables.
 */
export function workerEnv(ctx: TickContext, skill: { env: Record<string, string>; passEnv?: string[] }, k: WorkerRunVars): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of BASE_ENV) {
    const v = process.env[name];
    if (v !== undefined) env[name] = v;
  }
  env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
  Object.assign(env, ctx.opts.envFile ?? {}, skill.env);
  for (const name of [...(ctx.opts.passEnv ?? []), ...(skill.passEnv ?? [])]) {
    const v = process.env[name];
    if (v !== undefined) env[name] = v;
  }
  if (k.report === 'exit') {
    // Exit-code skill: nothing that reaches the board (no KANBAN_DB, no token, no CLI, no spool).
    Object.assign(env, { KANBAN_TASK_ID: k.taskId, KANBAN_RUN_ID: k.runId, KANBAN_RECLAIM_GRACE_SECONDS: String(k.graceSeconds) });
    // The host id: the start-up stray sweep of a shared board looks only at its own host's workers.
    if (ctx.kind === 'postgres' && ctx.hostId !== null) env.KANBAN_HOST_ID = ctx.hostId;
    return env;
  }
  Object.assign(env, {
    KANBAN_DB: ctx.boardPath,
    KANBAN_TASK_ID: k.taskId,
    KANBAN_RUN_ID: k.runId,
    KANBAN_RUN_TOKEN: k.token,
    KANBAN_RECLAIM_GRACE_SECONDS: String(k.graceSeconds),
    KANBAN_HEARTBEAT_TIMEOUT_SECONDS: String(k.heartbeatTimeoutSeconds),
    KANBAN_CLI: CLI_PATH,
  });
  // The report channel, when it listens: reports go to the supervisor, not to the board.
  if (ctx.state.socketPath) env.KANBAN_SOCKET = ctx.state.socketPath;
  // A PostgreSQL board: where to spool a final report the board cannot take (the state folder's
  // spool, which the spool step reads; a SQLite board's is next to it, as workers find it), and
  // the host id (the start-up stray sweep looks only at its own host's workers).
  if (ctx.kind === 'postgres') {
    env.KANBAN_SPOOL_DIR = ctx.files.spoolDir;
    if (ctx.hostId !== null) env.KANBAN_HOST_ID = ctx.hostId;
  }
  return env;
}
