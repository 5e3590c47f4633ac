/**
 * The JSON shapes of the board's records, as `--json` prints them and the HTTP API returns them
 * (snake_case, times in milliseconds since the epoch): a task, a run, a task's detail.
 */
import type { LinkedTask, Run, Task, TaskDetail } from './types.js';

export function taskJson(t: Task): Record<string, unknown> {
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
    key: t.key,
  };
}

export function runJson(r: Run, attempt: number): Record<string, unknown> {
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
export function eventsInTime(d: TaskDetail): TaskDetail['events'] {
  return [...d.events].sort((a, b) => a.at - b.at || a.id - b.id);
}

export function detailJson(d: TaskDetail): Record<string, unknown> {
  return {
    ...taskJson(d.task),
    runs: d.runs.map((r, i) => runJson(r, i + 1)),
    events: eventsInTime(d).map((e) => ({ kind: e.kind, at: e.at, run_id: e.runId, data: e.data })),
    parents: d.parents.map(linkedJson),
    children: d.children.map(linkedJson),
  };
}

/** A task seen through a link of the task graph (show --json's parents and children). */
export function linkedJson(t: LinkedTask): Record<string, unknown> {
  return { id: t.id, title: t.title, status: t.status, last_error: t.lastError };
}

/** Why a parent holds a waiting task, for people: `ID (status[: last error])`. */
export function holdText(t: LinkedTask): string {
  return `${t.id} (${t.status}${t.lastError && (t.status === 'blocked' || t.status === 'cancelled') ? `: ${t.lastError}` : ''})`;
}

