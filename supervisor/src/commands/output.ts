/**
 * Output helpers of the board commands: `out` prints human text or, with --json, the JSON value;
 * the JSON shapes of a task, a run, a run listing and a task's detail (snake_case, times in
 * milliseconds since the epoch); and the human forms of times (`iso`, `when`).
 */
import { runJson, type Json, type RunListing } from '@kanban-supervisor/board';
export { detailJson, eventsInTime, holdText, linkedJson, runJson, taskJson } from '@kanban-supervisor/board';
import { fmtAge } from '../status.js';
import type { Globals } from './board.js';

export function out(g: Globals, human: string, json: unknown): void {
  process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human + (human.endsWith('\n') || human === '' ? '' : '\n'));
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
