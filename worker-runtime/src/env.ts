/**
 * The environment contract between the supervisor and a worker process.
 * The supervisor sets these variables; the runtime and the worker CLI read them.
 */
import { isAbsolute, resolve } from 'node:path';
import { CONFIG_VARS, EXIT, LIMITS, readLimit, type LimitRange } from '@kanban-supervisor/policies';
import { boardFiles, isPgLocation, type RunCredentials } from '@kanban-supervisor/board/light';

/** Process exit statuses of a worker (runtime and CLI): the table every command of the product uses. */
export { EXIT };

export const REQUIRED_VARS = ['KANBAN_DB', 'KANBAN_TASK_ID', 'KANBAN_RUN_ID', 'KANBAN_RUN_TOKEN'] as const;

/** A missing or invalid KANBAN_* variable; always exit status 2. */
export class WorkerEnvError extends Error {
  override name = 'WorkerEnvError';
  readonly exitCode = EXIT.usage;
}

export interface WorkerEnv {
  /** The board: the absolute path of a SQLite file, or a PostgreSQL URL (as given: it may carry the password). */
  dbPath: string;
  /**
   * Where a final report the board cannot take is spooled: KANBAN_SPOOL_DIR (the supervisor sets it),
   * else the board's spool folder (boardFiles: next to a SQLite board, in a PostgreSQL board's state folder).
   */
  spoolDir: string;
  cred: RunCredentials;
  /** The SIGTERM → SIGKILL grace the supervisor announced (KANBAN_RECLAIM_GRACE_SECONDS). */
  reclaimGraceSeconds: number;
  /** The stall limit of this run (KANBAN_HEARTBEAT_TIMEOUT_SECONDS), 0 = off. */
  heartbeatTimeoutSeconds: number;
  /** The supervisor's report channel (KANBAN_SOCKET, an absolute path); null: reports go to the board directly. */
  socketPath: string | null;
  /** The run's heartbeat slot (KANBAN_HEARTBEAT_SLOT, an absolute path: policies beat-slot.ts); null: none. */
  heartbeatSlot: string | null;
}

function defaultGraceSeconds(): number {
  const spec = CONFIG_VARS.find((v) => v.key === 'reclaimGraceSeconds');
  const n = Number(spec?.def ?? '30');
  return Number.isFinite(n) ? n : 30;
}

/** A limit the supervisor passed: checked against the same range `skill add` and the board accept (LIMITS). */
function optionalLimit(env: NodeJS.ProcessEnv, name: string, range: LimitRange, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const r = readLimit(raw, range);
  if ('problem' in r) throw new WorkerEnvError(`${name} ${r.problem}`);
  return r.value;
}

/** KANBAN_SOCKET or KANBAN_HEARTBEAT_SLOT: an absolute path (unset or empty: none). */
function pathVar(env: NodeJS.ProcessEnv, name: 'KANBAN_SOCKET' | 'KANBAN_HEARTBEAT_SLOT'): string | null {
  const raw = (env[name] ?? '').trim();
  if (raw === '') return null;
  if (!isAbsolute(raw)) throw new WorkerEnvError(`${name} must be an absolute path, got ${JSON.stringify(raw)}`);
  return raw;
}

/** Read and check the KANBAN_* variables. Throws WorkerEnvError naming every missing variable. */
export function readWorkerEnv(env: NodeJS.ProcessEnv): WorkerEnv {
  const missing = REQUIRED_VARS.filter((k) => (env[k] ?? '').trim() === '');
  if (missing.length > 0) {
    const list = missing.join(', ');
    throw new WorkerEnvError(
      `${list} ${missing.length === 1 ? 'is' : 'are'} not set: this program runs as a kanban-supervisor worker, ` +
        `which gets KANBAN_DB, KANBAN_TASK_ID, KANBAN_RUN_ID and KANBAN_RUN_TOKEN from the supervisor that spawned it`,
    );
  }
  const raw = env.KANBAN_DB!;
  const dbPath = isPgLocation(raw.trim()) ? raw.trim() : resolve(raw);
  const spool = (env.KANBAN_SPOOL_DIR ?? '').trim();
  return {
    dbPath,
    spoolDir: spool !== '' ? resolve(spool) : boardFiles(dbPath, env).spoolDir,
    cred: { taskId: env.KANBAN_TASK_ID!.trim(), runId: env.KANBAN_RUN_ID!.trim(), token: env.KANBAN_RUN_TOKEN!.trim() },
    reclaimGraceSeconds: optionalLimit(env, 'KANBAN_RECLAIM_GRACE_SECONDS', LIMITS.reclaimGraceSeconds, defaultGraceSeconds()),
    heartbeatTimeoutSeconds: optionalLimit(env, 'KANBAN_HEARTBEAT_TIMEOUT_SECONDS', LIMITS.heartbeatTimeoutSeconds, 0),
    socketPath: pathVar(env, 'KANBAN_SOCKET'),
    heartbeatSlot: pathVar(env, 'KANBAN_HEARTBEAT_SLOT'),
  };
}
