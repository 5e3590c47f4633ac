/**
 * The API's JSON: the CLI's --json shapes (board json-shapes), a task with the few fields the page
 * needs besides (updated_at: age in its column; max_retries: attempt / limit; current_run_id), the
 * keyset page cursor, and an event of the feed.
 */
import { taskJson, type FeedEvent, type Task, type TaskKey } from '@kanban-supervisor/board';
import { HttpError } from '../errors.js';

export function apiTask(t: Task): Record<string, unknown> {
  return { ...taskJson(t), updated_at: t.updatedAt, max_retries: t.maxRetries, max_runtime_seconds: t.maxRuntimeSeconds, current_run_id: t.currentRunId };
}

/** A page cursor: the last task's (created_at, id), base64url JSON (opaque to clients). */
export function encodeCursor(k: TaskKey): string {
  return Buffer.from(JSON.stringify([k.createdAt, k.id])).toString('base64url');
}

export function decodeCursor(text: string): TaskKey {
  const bad = () => new HttpError(400, 'bad_cursor', 'cursor is not a cursor this server gave out (take nextCursor of the previous page)');
  if (text.length > 400 || !/^[A-Za-z0-9_-]+$/.test(text)) throw bad();
  try {
    const v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(v) || v.length !== 2 || !Number.isSafeInteger(v[0]) || typeof v[1] !== 'string' || v[1] === '') throw bad();
    return { createdAt: v[0] as number, id: v[1] as string };
  } catch {
    throw bad();
  }
}

export function eventJson(e: FeedEvent): Record<string, unknown> {
  return { cursor: e.cursor, id: e.id, task_id: e.taskId, run_id: e.runId, kind: e.kind, data: e.data, at: e.at, task: e.task ? apiTask(e.task) : null };
}
