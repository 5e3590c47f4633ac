/**
 * Output helpers of the board commands: `out` prints human text or, with --json, the JSON value;
 * the JSON shapes of a task, a run, a run listing and a task's detail (snake_case, times in
 * milliseconds since the epoch); and the human forms of times (`iso`, `when`).
 */
import type { Json, Run, RunListing, Task, TaskDetail } from '@kanban-supervisor/board';
import { fmtAge } from '../status.js';
import type { Globals } from './board.js';

export function out(g: Globals, human: string, json: unknown): void {
  process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human + (human.endsWith('\n') || human === '' ? '' : '\n'));
}

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

/** Times in event data (at, until, not_before) as ISO text, for human output only (--json keeps the numbers). */
export function humanTimes(data: Json): Json {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  const out: { [k: string]: Json } = {};
  for (const [k, v] of Object.entries(data)) {
    out[k] = (k === 'at' || k === 'until' || k === 'not_before') && typeof v === 'number' && v > 0 ? iso(v) : v;
  }
  return out;
}

export function detailJson(d: TaskDetail): Record<string, unknown> {
  return {
    ...taskJson(d.task),
    runs: d.runs.map((r, i) => runJson(r, i + 1)),
    events: eventsInTime(d).map((e) => ({ kind: e.kind, at: e.at, run_id: e.runId, data: e.data })),
  };
}

export const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : '-');

/** A time for people: ISO 8601 (UTC) and how long ago (or how far ahead) it is. */
export function when(ms: number | null, now = Date.now()): string {
  if (!ms) return '-';
  const d = now - ms;
  return `${iso(ms)} (${d >= 0 ? `${fmtAge(d)} ago` : `in ${fmtAge(-d)}`})`;
}

export function listingJson(r: RunListing): Record<string, unknown> {
  return { ...runJson(r, r.attempt), task_id: r.taskId, task_title: r.taskTitle, task_status: r.taskStatus, skill: r.skill };
}
