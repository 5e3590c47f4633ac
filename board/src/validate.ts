/**
 * The input rules of the board's operations, outside the SQL: every backend runs its inputs through
 * these functions before touching its store, so a refusal reads the same whatever the backend.
 * Each throws BoardValidationError (a BoardInputError: the input alone is at fault, exit 2 in the
 * CLI) naming the thing at fault (the CLI and the README quote the messages), and returns the values as the store keeps them (JSON texts, defaults applied, limits checked).
 *
 * Rules that depend on what the board holds (an unknown skill, a task that is running) are not
 * here: they are checked inside the operation's transaction.
 */
import { LIMITS, limitProblem, PRIORITY_RANGE, REPORT_MODES, RESULT_SOURCES, TASK_STATUSES, type LimitRange, type ReportMode, type ResultSource, type TaskStatus } from '@kanban-supervisor/policies';
import { BoardInputError, BoardValidationError } from './errors.js';
import type { Json, PruneQuery, RunFilter, SkillInput, TaskInput, TaskKey, TaskPageQuery, WorkerReport } from './types.js';

const SKILL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const EVENT_KIND = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** The largest JSON text the board keeps for a payload, a result, progress or event data. */
export const MAX_JSON_CHARS = 4 * 1024 * 1024;
/** How much of a worker's error a run keeps, and how much its `reported` event repeats. */
export const RUN_ERROR_MAX_CHARS = 8192;
export const EVENT_ERROR_MAX_CHARS = 1024;

/** `v` as the JSON text the board stores (undefined stays absent: null); refused when not JSON or over 4 MiB. */
export function jsonText(what: string, v: Json | undefined | null): string | null {
  if (v === undefined) return null;
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch (e) {
    throw new BoardValidationError(`${what} is not serialisable as JSON: ${(e as Error).message}`);
  }
  if (s === undefined) throw new BoardValidationError(`${what} is not serialisable as JSON`);
  if (s.length > MAX_JSON_CHARS) throw new BoardValidationError(`${what} is larger than 4 MiB of JSON`);
  return s;
}

/** An optional limit inside its range (LIMITS, shared with the CLI, the supervisor and the worker runtime). */
export function optLimit(what: string, v: number | null | undefined, range: LimitRange): number | null {
  if (v === null || v === undefined) return null;
  const problem = limitProblem(v, range);
  if (problem !== null) throw new BoardValidationError(`${what} ${problem}`);
  return v;
}

/** A skill as the board stores it: name checked, env and passEnv checked (passEnv deduplicated), limits in range. */
export interface ValidSkill {
  name: string;
  argv: string[];
  cwd: string | null;
  env: Record<string, string>;
  passEnv: string[];
  maxRuntimeSeconds: number | null;
  heartbeatTimeoutSeconds: number | null;
  reclaimGraceSeconds: number | null;
  maxRssMb: number | null;
  maxConcurrent: number | null;
  report: ReportMode;
  resultFrom: ResultSource | null;
}

export function validSkill(input: SkillInput): ValidSkill {
  if (!SKILL_NAME.test(input.name)) {
    throw new BoardValidationError(`skill name ${JSON.stringify(input.name)} is invalid: use 1-64 letters, digits, '.', '_' or '-'`);
  }
  if (!Array.isArray(input.argv) || input.argv.length === 0 || !input.argv.every((a) => typeof a === 'string')) {
    throw new BoardValidationError(`skill ${input.name}: the command must be a non-empty array of strings`);
  }
  if (input.argv[0] === '') throw new BoardValidationError(`skill ${input.name}: the command name is empty`);
  const env = input.env ?? {};
  for (const [k, v] of Object.entries(env)) {
    if (!ENV_NAME.test(k)) throw new BoardValidationError(`skill ${input.name}: invalid environment variable name ${JSON.stringify(k)}`);
    if (typeof v !== 'string') throw new BoardValidationError(`skill ${input.name}: environment variable ${k} must be a string`);
    if (k.startsWith('KANBAN_')) throw new BoardValidationError(`skill ${input.name}: environment variable ${k} is reserved for the supervisor`);
  }
  const passEnv = [...new Set(input.passEnv ?? [])];
  for (const k of passEnv) {
    if (typeof k !== 'string' || !ENV_NAME.test(k)) throw new BoardValidationError(`skill ${input.name}: --pass-env must name an environment variable, got ${JSON.stringify(k)}`);
    if (k.startsWith('KANBAN_')) throw new BoardValidationError(`skill ${input.name}: --pass-env ${k}: KANBAN_* variables are set by the supervisor`);
  }
  const report = input.report ?? 'board';
  if (!(REPORT_MODES as readonly unknown[]).includes(report)) {
    throw new BoardValidationError(`skill ${input.name}: --report must be one of ${REPORT_MODES.join(', ')}, got ${JSON.stringify(report)}`);
  }
  const resultFrom = input.resultFrom ?? null;
  if (resultFrom !== null && !(RESULT_SOURCES as readonly unknown[]).includes(resultFrom)) {
    throw new BoardValidationError(`skill ${input.name}: --result must be one of ${RESULT_SOURCES.join(', ')}, got ${JSON.stringify(resultFrom)}`);
  }
  if (resultFrom !== null && report !== 'exit') {
    throw new BoardValidationError(`skill ${input.name}: --result ${resultFrom} is for exit-code skills only (add --report exit)`);
  }
  return {
    name: input.name,
    argv: input.argv,
    cwd: input.cwd ?? null,
    env,
    passEnv,
    report,
    resultFrom,
    maxRuntimeSeconds: optLimit(`skill ${input.name}: max runtime`, input.maxRuntimeSeconds, LIMITS.maxRuntimeSeconds),
    heartbeatTimeoutSeconds: optLimit(`skill ${input.name}: heartbeat timeout`, input.heartbeatTimeoutSeconds, LIMITS.heartbeatTimeoutSeconds),
    reclaimGraceSeconds: optLimit(`skill ${input.name}: reclaim grace`, input.reclaimGraceSeconds, LIMITS.reclaimGraceSeconds),
    maxRssMb: optLimit(`skill ${input.name}: max RSS`, input.maxRssMb, LIMITS.maxRssMb),
    maxConcurrent: optLimit(`skill ${input.name}: max concurrent`, input.maxConcurrent, LIMITS.maxConcurrent),
  };
}

/** A new task as the board stores it (whether its skill is registered is the store's check). */
export interface ValidTask {
  skill: string;
  title: string;
  /** The payload's JSON text ('null' when none). */
  payload: string;
  priority: number;
  maxRuntimeSeconds: number | null;
  maxRetries: number | null;
  notBefore: number;
  /** Parents (distinct ids, in the order given). */
  after: string[];
  key: string | null;
}

/** The most parents one task may have (task graph). */
export const MAX_PARENTS = 100;

/** A task's parents as given (`add --after`, the API's `after`): 1-100 distinct ids. */
export function validParents(after: unknown): string[] {
  if (after === undefined || after === null) return [];
  if (!Array.isArray(after)) throw new BoardValidationError('after must be an array of task ids');
  const out: string[] = [];
  for (const [i, id] of after.entries()) {
    if (typeof id !== 'string' || id.length === 0 || id.length > 200) throw new BoardValidationError(`after[${i}] must be a task id, got ${JSON.stringify(id)}`);
    if (!out.includes(id)) out.push(id);
  }
  if (out.length > MAX_PARENTS) throw new BoardValidationError(`a task waits for at most ${MAX_PARENTS} parents, got ${out.length}`);
  return out;
}

/** The longest idempotency key. */
export const MAX_KEY_CHARS = 200;

export function validTask(input: TaskInput): ValidTask {
  if (typeof input.skill !== 'string' || input.skill === '') throw new BoardValidationError('skill must be a non-empty string');
  if (input.title !== undefined && typeof input.title !== 'string') throw new BoardValidationError('title must be a string');
  const key = input.key ?? null;
  if (key !== null && (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_CHARS)) {
    throw new BoardValidationError(`key must be a string of 1-${MAX_KEY_CHARS} characters, got ${JSON.stringify(key)}`);
  }
  const notBefore = input.notBefore ?? 0;
  if (!Number.isSafeInteger(notBefore) || notBefore < 0) throw new BoardValidationError(`notBefore must be a time in ms since the epoch, got ${String(input.notBefore)}`);
  const payload = jsonText('payload', input.payload ?? null) ?? 'null';
  const priority = input.priority ?? 0;
  const priorityProblem = limitProblem(priority, PRIORITY_RANGE);
  if (priorityProblem !== null) throw new BoardValidationError(`priority ${priorityProblem}`);
  const maxRuntimeSeconds = optLimit('max runtime', input.maxRuntimeSeconds, LIMITS.maxRuntimeSeconds);
  const maxRetries = optLimit('max retries', input.maxRetries, LIMITS.failureLimit);
  return {
    skill: input.skill,
    // No title, or an empty one: the skill's name (as `add --help` says), never a blank card or row.
    title: input.title === undefined || input.title === '' ? input.skill : input.title,
    payload,
    priority,
    maxRuntimeSeconds,
    maxRetries,
    notBefore,
    after: validParents(input.after),
    key,
  };
}

/** The `created` event's data: the skill and priority, and the key and not-before time when set. */
export function createdData(t: ValidTask): { [k: string]: Json } {
  return { skill: t.skill, priority: t.priority, ...(t.key !== null ? { key: t.key } : {}), ...(t.notBefore > 0 ? { not_before: t.notBefore } : {}) };
}

/** `e` with another message, of the same class (a validation error stays one: exit 2 in the CLI). */
export function renamed(e: BoardInputError, message: string): BoardInputError {
  return e instanceof BoardValidationError ? new BoardValidationError(message) : new BoardInputError(message);
}

/**
 * A refusal about one task of a bulk add (an unknown parent, found in the board's transaction)
 * names its place, `tasks[i]: ` as validTasks does (a single add is not prefixed).
 */
export function placed<T>(valid: ValidTask[], t: ValidTask, fn: () => T): T {
  const name = (e: unknown): unknown =>
    e instanceof BoardInputError && valid.length > 1 ? renamed(e, `tasks[${valid.indexOf(t)}]: ${e.message}`) : e;
  try {
    const r = fn();
    return (r instanceof Promise ? r.catch((e: unknown) => Promise.reject(name(e))) : r) as T;
  } catch (e) {
    throw name(e);
  }
}

/**
 * Tasks of one bulk add, checked before any is stored: a refusal names the task's place
 * (`what(i)`, e.g. "line 3"), so a file's bad line is found at once.
 */
export function validTasks(inputs: TaskInput[], what: (i: number) => string = (i) => `tasks[${i}]`): ValidTask[] {
  if (!Array.isArray(inputs)) throw new BoardValidationError('tasks must be an array');
  return inputs.map((input, i) => {
    try {
      return validTask(input);
    } catch (e) {
      if (e instanceof BoardInputError) throw renamed(e, `${what(i)}: ${e.message}`);
      throw e;
    }
  });
}

/** A retention query, checked: a time, known finished statuses (default done and cancelled), a limit of 1-10,000. */
export function pruneQuery(query: PruneQuery): { before: number; statuses: Array<'done' | 'cancelled'>; limit: number } {
  if (!Number.isSafeInteger(query.before)) throw new BoardValidationError(`prune: before must be a time in ms, got ${String(query.before)}`);
  const statuses = query.statuses ?? ['done', 'cancelled'];
  if (statuses.length === 0) throw new BoardValidationError('prune: give at least one status (done, cancelled)');
  for (const s of statuses) {
    if (s !== 'done' && s !== 'cancelled') throw new BoardValidationError(`prune: only finished tasks are pruned (done, cancelled), got ${JSON.stringify(s)}`);
  }
  if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > 10_000) throw new BoardValidationError(`prune: a batch's limit must be an integer from 1 to 10000, got ${String(query.limit)}`);
  return { before: query.before, statuses: [...new Set(statuses)], limit: query.limit };
}

/** An operator's block needs a reason (it becomes the task's last error). */
export function blockReason(reason: string): string {
  if (!reason.trim()) throw new BoardValidationError('a block needs a reason');
  return reason;
}

/** The kind of an event a worker appends. */
export function eventKind(kind: string): string {
  if (!EVENT_KIND.test(kind)) {
    throw new BoardValidationError(`event kind ${JSON.stringify(kind)} is invalid: use 1-64 letters, digits, '.', '_', ':' or '-'`);
  }
  return kind;
}

/**
 * A worker report's sequence number (per run, increasing; the worker picks it): 1-20 decimal
 * digits (the worker runtime uses CLOCK_MONOTONIC's nanoseconds). null/undefined: none (a write
 * without one is applied as before, never recognized as a duplicate).
 */
export function reportSeq(seq: string | null | undefined): string | null {
  if (seq === null || seq === undefined) return null;
  if (typeof seq !== 'string' || !/^[0-9]{1,20}$/.test(seq)) throw new BoardValidationError(`a report's seq must be 1-20 decimal digits, got ${JSON.stringify(seq)}`);
  return seq;
}

/** A heartbeat's progress as JSON text, or null to keep the run's last progress. */
export function progressText(progress: Json | undefined): string | null {
  return progress === undefined ? null : jsonText('progress', progress);
}

/** A worker's report as the board stores it on the run (and repeats in its `reported` event). */
export type ValidReport =
  | { outcome: 'completed'; resultText: string }
  | { outcome: 'failed'; error: string; eventError: string }
  | { outcome: 'deferred'; deferMs: number; reason: string | null };

/**
 * The first `n` UTF-16 code units of `s`, never ending inside a surrogate pair (half a character
 * is not UTF-8: a store would keep it as invalid bytes or a replacement character).
 */
export function prefix(s: string, n: number): string {
  const out = s.slice(0, n);
  const last = out.charCodeAt(out.length - 1);
  return last >= 0xd800 && last <= 0xdbff && out.length === n && s.length > n ? out.slice(0, -1) : out;
}

export function validReport(report: WorkerReport): ValidReport {
  switch (report.outcome) {
    case 'completed':
      return { outcome: 'completed', resultText: jsonText('result', report.result ?? null) ?? 'null' };
    case 'failed':
      return { outcome: 'failed', error: prefix(report.error, RUN_ERROR_MAX_CHARS), eventError: prefix(report.error, EVENT_ERROR_MAX_CHARS) };
    case 'deferred':
      if (!Number.isFinite(report.seconds) || report.seconds < 0) {
        throw new BoardValidationError(`defer seconds must be a non-negative number, got ${String(report.seconds)}`);
      }
      return { outcome: 'deferred', deferMs: Math.round(report.seconds * 1000), reason: report.reason ?? null };
  }
}

/** A task listing's filter: a known status, the default limit applied. */
export function taskFilter(filter: { status?: TaskStatus; skill?: string; limit?: number }): { status?: TaskStatus; skill?: string; limit: number } {
  if (filter.status && !(TASK_STATUSES as readonly string[]).includes(filter.status)) {
    throw new BoardValidationError(`unknown status ${JSON.stringify(filter.status)}; one of ${TASK_STATUSES.join(', ')}`);
  }
  return { status: filter.status || undefined, skill: filter.skill, limit: filter.limit ?? 1000 };
}

/** A keyset page's query, checked: a known status, a limit of 1-500 (default 50), a search of at most 200 characters, a sound bound. */
export function taskPageQuery(query: TaskPageQuery): { status?: TaskStatus; skill?: string; q?: string; limit: number; after: TaskKey | null; scan: number } {
  const f = taskFilter({ status: query.status, skill: query.skill });
  const limit = query.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new BoardValidationError(`limit must be an integer from 1 to 500, got ${JSON.stringify(query.limit)}`);
  const q = query.q === undefined || query.q === '' ? undefined : query.q;
  if (q !== undefined && q.length > 200) throw new BoardValidationError(`a search must be at most 200 characters, got ${q.length}`);
  const a = query.after ?? null;
  if (a !== null && (!Number.isSafeInteger(a.createdAt) || typeof a.id !== 'string' || a.id === '' || a.id.length > 200)) {
    throw new BoardValidationError('the page cursor is not valid');
  }
  const scan = query.scan ?? TASK_SEARCH_SCAN;
  if (!Number.isInteger(scan) || scan < 1 || scan > TASK_SEARCH_SCAN) throw new BoardValidationError(`a search's scan budget must be an integer from 1 to ${TASK_SEARCH_SCAN}, got ${JSON.stringify(query.scan)}`);
  return { status: f.status, skill: f.skill === '' ? undefined : f.skill, q, limit, after: a, scan };
}

/**
 * How many tasks one search (`q`, a substring of the title: no index can serve it) looks at, at
 * most, per page: a search on a board of millions of tasks costs one bounded index walk per request
 * (and never blocks the supervisor's loop for long), and goes on from where it stopped with the
 * page's cursor. An exact task id is found at once, wherever it is.
 */
export const TASK_SEARCH_SCAN = 5000;

/** An event feed read's limit: 1 to 1,000. */
export function feedLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new BoardValidationError(`an event read's limit must be an integer from 1 to 1000, got ${JSON.stringify(limit)}`);
  return limit;
}

/** A LIKE pattern matching `text` anywhere, with \ as the escape character. */
export function likeContains(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** How many runs a run listing returns: its limit (default 100) within 1 to 1,000,000. */
export function runLimit(filter: RunFilter): number {
  return Math.max(1, Math.min(filter.limit ?? 100, 1_000_000));
}
