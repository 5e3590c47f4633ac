/** Row mapping: SQLite rows (snake_case columns, JSON as text) to the board's types. */
import type { ReportMode, ResultSource, RunOutcome, StopReason, TaskStatus } from '@kanban-supervisor/policies';
import { isStopReason } from '@kanban-supervisor/policies';
import type { BoardEvent, Json, LiveRun, OwnerInfo, Run, Skill, Task } from '../types.js';

export type Row = Record<string, unknown>;

export function parseJson(v: unknown): Json | null {
  if (v === null || v === undefined) return null;
  return JSON.parse(String(v)) as Json;
}

export function num(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

export function toTask(r: Row): Task {
  return {
    id: String(r.id),
    title: String(r.title),
    skill: String(r.skill),
    payload: parseJson(r.payload),
    status: r.status as TaskStatus,
    priority: Number(r.priority),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    notBefore: Number(r.not_before),
    consecutiveFailures: Number(r.consecutive_failures),
    maxRetries: num(r.max_retries),
    maxRuntimeSeconds: num(r.max_runtime_seconds),
    lastError: (r.last_error as string | null) ?? null,
    result: parseJson(r.result),
    currentRunId: (r.current_run_id as string | null) ?? null,
    key: (r.key as string | null | undefined) ?? null,
  };
}

/** A stored stop reason: only beginReclaim writes the column, with a typed reason; anything else reads as null. */
function stopReasonOf(v: unknown): StopReason | null {
  return isStopReason(v) ? v : null;
}

/** A run from a row of `runs` (`prefix`: the columns' alias prefix when joined, e.g. 'r_'). */
export function toRun(r: Row, prefix = ''): Run {
  const g = (k: string) => r[prefix + k];
  return {
    id: String(g('id')),
    taskId: String(g('task_id')),
    status: g('status') as Run['status'],
    outcome: (g('outcome') as RunOutcome | null) ?? null,
    pid: num(g('pid')),
    pgid: num(g('pgid')),
    procStartTime: num(g('proc_start_time')),
    bootId: (g('boot_id') as string | null) ?? null,
    startedAt: Number(g('started_at')),
    heartbeatAt: num(g('heartbeat_at')),
    progress: parseJson(g('progress')),
    endedAt: num(g('ended_at')),
    exitCode: num(g('exit_code')),
    signal: (g('signal') as string | null) ?? null,
    error: (g('error') as string | null) ?? null,
    logPath: (g('log_path') as string | null) ?? null,
    stopReason: stopReasonOf(g('stop_reason')),
    sigtermAt: num(g('sigterm_at')),
    sigkillAt: num(g('sigkill_at')),
    exitedAt: num(g('exited_at')),
    accountedAt: num(g('accounted_at')),
    deferUntil: num(g('defer_until')),
    stoppedOnRequest: Number(g('stopped_on_request') ?? 0) === 1,
  };
}

/** A raw row of HOT_SQL.liveRuns (columns in its order): one object per run, nothing else. */
export function toLiveRun(v: unknown[]): LiveRun {
  return {
    id: String(v[0]),
    taskId: String(v[1]),
    status: v[2] as Run['status'],
    outcome: (v[3] as RunOutcome | null) ?? null,
    pid: num(v[4]),
    pgid: num(v[5]),
    procStartTime: num(v[6]),
    bootId: (v[7] as string | null) ?? null,
    startedAt: Number(v[8]),
    heartbeatAt: num(v[9]),
    progress: parseJson(v[10]),
    endedAt: num(v[11]),
    exitCode: num(v[12]),
    signal: (v[13] as string | null) ?? null,
    error: (v[14] as string | null) ?? null,
    logPath: (v[15] as string | null) ?? null,
    stopReason: stopReasonOf(v[16]),
    sigtermAt: num(v[17]),
    sigkillAt: num(v[18]),
    exitedAt: num(v[19]),
    accountedAt: num(v[20]),
    deferUntil: num(v[21]),
    stoppedOnRequest: Number(v[22] ?? 0) === 1,
    taskStatus: v[23] as TaskStatus,
    taskMaxRuntimeSeconds: num(v[24]),
    skillMaxRuntimeSeconds: num(v[25]),
    skillHeartbeatTimeoutSeconds: num(v[26]),
    skillReclaimGraceSeconds: num(v[27]),
    skillMaxRssMb: num(v[28]),
    taskSkill: String(v[29]),
    skillReport: v[30] === 'exit' ? 'exit' : 'board',
    token: String(v[31]),
  };
}

export function toSkill(r: Row): Skill {
  return {
    name: String(r.name),
    argv: JSON.parse(String(r.argv)) as string[],
    cwd: (r.cwd as string | null) ?? null,
    env: JSON.parse(String(r.env ?? '{}')) as Record<string, string>,
    passEnv: JSON.parse(String(r.pass_env ?? '[]')) as string[],
    maxRuntimeSeconds: num(r.max_runtime_seconds),
    heartbeatTimeoutSeconds: num(r.heartbeat_timeout_seconds),
    reclaimGraceSeconds: num(r.reclaim_grace_seconds),
    maxRssMb: num(r.max_rss_mb),
    maxConcurrent: num(r.max_concurrent),
    report: (r.report === 'exit' ? 'exit' : 'board') satisfies ReportMode,
    resultFrom: (r.result_from === 'stdout-json' ? 'stdout-json' : null) satisfies ResultSource | null,
  };
}

export function toEvent(r: Row): BoardEvent {
  return {
    id: Number(r.id),
    taskId: String(r.task_id),
    runId: (r.run_id as string | null) ?? null,
    kind: String(r.kind),
    data: parseJson(r.data),
    at: Number(r.at),
  };
}

export function toOwner(r: Row): OwnerInfo {
  return {
    pid: Number(r.pid),
    host: String(r.host),
    startedAt: Number(r.started_at),
    seenAt: Number(r.seen_at),
    state: String(r.state),
    detail: (r.detail as string | null) ?? null,
  };
}
