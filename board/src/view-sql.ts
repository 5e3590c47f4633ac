/**
 * Bounded reads for the HTTP view (SQL shared by both backends: `length`, `||` and CASE mean the
 * same on SQLite and PostgreSQL). A task's payload and result and an event's data may each hold up
 * to 4 MiB of JSON, and a worker writes results and events: a page of 500 tasks or a feed batch of
 * 200 events read whole could be gigabytes, read on the supervisor's own thread. The view's lists
 * and feed therefore read such a value only when it is at most VIEW_JSON_MAX_CHARS long; a longer
 * one reads as `{"truncated": true, "chars": N}` (the task's detail has its payload and result whole).
 */

/** The longest JSON text the view's lists, feed and event timelines carry whole. */
export const VIEW_JSON_MAX_CHARS = 16 * 1024;

/** The JSON text column `col`, or the truncation marker when it is longer than `max` characters. */
export function boundedJsonSql(col: string, max = VIEW_JSON_MAX_CHARS): string {
  const n = Math.floor(max);
  return `CASE WHEN length(${col}) > ${n} THEN '{"truncated":true,"chars":' || length(${col}) || '}' ELSE ${col} END`;
}

/** The tasks table's columns, payload and result bounded (`prefix`: a table alias with its dot). */
export function boundedTaskColumns(prefix = '', as: (c: string) => string = (c) => c): string {
  const cols = ['id', 'title', 'skill', 'payload', 'status', 'priority', 'created_at', 'updated_at', 'not_before', 'consecutive_failures', 'max_retries', 'max_runtime_seconds', 'last_error', 'result', 'current_run_id'];
  return cols.map((c) => `${c === 'payload' || c === 'result' ? boundedJsonSql(prefix + c) : prefix + c} AS ${as(c)}`).join(', ');
}
