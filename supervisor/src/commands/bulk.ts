/**
 * `add --from FILE.jsonl` (`-`: stdin): one task per line, with the fields of `add`'s flags, added
 * all or nothing in one transaction; a bad line is refused naming its line number and field.
 * `prune --older-than 7d [--status done,cancelled]`: retention in bounded batches.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { BoardInputError, BoardValidationError, boardFiles, checkpointingOf, MAX_PARENTS, validTask, type Board, type Json, type TaskInput } from '@kanban-supervisor/board';
import {
  ConfigError,
  EXIT,
  LIMITS,
  limitProblem,
  nextPruneBatchSize,
  notBeforeOf,
  parseDuration,
  parseIsoTime,
  PRUNE_BATCH,
  prunePauseMs,
  PRIORITY_RANGE,
} from '@kanban-supervisor/policies';
import { parseArgs, UsageError } from '../args.js';
import { removeRunLogs } from '../services/retention.js';
import { printable as safe } from '../text.js';
import { withBoard, type Globals } from './board.js';
import { out } from './output.js';

/** The fields of a line of `add --from` (the flags of `add`, in snake case). */
const LINE_FIELDS = ['skill', 'title', 'payload', 'priority', 'max_runtime', 'max_attempts', 'after', 'delay', 'at', 'key'] as const;

/** The largest file `add --from` reads (one transaction holds all of it). */
const MAX_FROM_BYTES = 64 * 1024 * 1024;

/** One line as a task; throws a UsageError naming the line and the field at fault. */
export function taskOfLine(text: string, line: number, now: number): TaskInput {
  const bad = (field: string | null, why: string) => new UsageError(`--from: line ${line}${field ? `, field "${field}"` : ''}: ${why}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw bad(null, `not JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(null, 'must be a JSON object, e.g. {"skill": "echo", "title": "one"}');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!(LINE_FIELDS as readonly string[]).includes(k)) throw bad(k, `unknown field; fields are ${LINE_FIELDS.join(', ')}`);
  if (typeof o.skill !== 'string' || o.skill === '') throw bad('skill', 'is required: a skill name');
  if (o.title !== undefined && typeof o.title !== 'string') throw bad('title', 'must be a string');
  if (o.key !== undefined && (typeof o.key !== 'string' || o.key.length < 1 || o.key.length > 200)) throw bad('key', 'must be a string of 1-200 characters');
  if (o.priority !== undefined) {
    const problem = limitProblem(o.priority, PRIORITY_RANGE);
    if (problem) throw bad('priority', problem);
  }
  // after: the ids of tasks already on the board (as add --after), one id or an array of them.
  const after = o.after === undefined || o.after === null ? [] : typeof o.after === 'string' ? [o.after] : o.after;
  if (!Array.isArray(after) || after.some((x) => typeof x !== 'string' || x.length < 1 || x.length > 200)) {
    throw bad('after', `must be a task id or an array of task ids, got ${JSON.stringify(o.after).slice(0, 100)}`);
  }
  if (after.length > MAX_PARENTS) throw bad('after', `at most ${MAX_PARENTS} parents, got ${after.length}`);
  const limit = (field: string, range: (typeof LIMITS)[keyof typeof LIMITS]): number | null => {
    if (o[field] === undefined || o[field] === null) return null;
    const problem = limitProblem(o[field], range);
    if (problem) throw bad(field, problem);
    return o[field] as number;
  };
  let delayMs: number | null = null;
  let at: number | null = null;
  const field = <T>(name: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ConfigError) throw bad(name, e.message);
      throw e;
    }
  };
  if (o.delay !== undefined) delayMs = field('delay', () => (typeof o.delay === 'number' && o.delay >= 0 ? Math.round(o.delay * 1000) : parseDuration('delay', String(o.delay))));
  if (o.at !== undefined) at = field('at', () => parseIsoTime('at', String(o.at)));
  if (delayMs !== null && at !== null) throw bad('at', 'give delay or at, not both');
  const notBefore = notBeforeOf(now, delayMs, at);
  const task: TaskInput = {
    skill: o.skill,
    title: o.title as string | undefined,
    payload: (o.payload ?? null) as Json,
    priority: (o.priority as number | undefined) ?? 0,
    maxRuntimeSeconds: limit('max_runtime', LIMITS.maxRuntimeSeconds),
    maxRetries: limit('max_attempts', LIMITS.failureLimit),
    after: after as string[],
    notBefore,
    key: (o.key as string | undefined) ?? null,
  };
  // The board's own checks of the line (a payload over 4 MiB …), before the board is opened.
  try {
    validTask(task);
  } catch (e) {
    if (e instanceof BoardInputError) throw bad(null, e.message);
    throw e;
  }
  return task;
}

/** Every task of a JSONL text (blank lines skipped), with the line number of each. */
export function tasksOfJsonl(text: string, now: number): Array<{ line: number; task: TaskInput }> {
  const out: Array<{ line: number; task: TaskInput }> = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    out.push({ line: i + 1, task: taskOfLine(raw, i + 1, now) });
  });
  return out;
}

/**
 * The text of `--from` (a file, a FIFO such as `<(…)`, a device, or stdin for `-`), read as a
 * stream and refused as soon as it holds more than MAX_FROM_BYTES: never more than the limit and
 * one chunk in memory, whatever the source (`/dev/zero`, an endless `yes | … --from -`).
 */
async function readFrom(source: string): Promise<string> {
  const name = source === '-' ? 'stdin' : JSON.stringify(source);
  const input: Readable = source === '-' ? process.stdin : createReadStream(source, { highWaterMark: 1024 * 1024 });
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of input) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      total += buf.length;
      if (total > MAX_FROM_BYTES) throw new UsageError(`--from ${name}: larger than ${MAX_FROM_BYTES / 1024 / 1024} MiB; split it into several files`);
      chunks.push(buf);
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--from ${name}: cannot read it: ${(e as Error).message}`);
  } finally {
    // Stop reading (an endless writer gets EPIPE, a file or device is closed).
    input.destroy();
  }
  return Buffer.concat(chunks, total).toString('utf8');
}

/** `add --from FILE.jsonl|-`: prints the ids, one a line (--json: [{id, created}]). */
export async function addFrom(g: Globals, source: string): Promise<number> {
  const lines = tasksOfJsonl(await readFrom(source), Date.now());
  if (lines.length === 0) throw new UsageError(`--from ${source === '-' ? 'stdin' : JSON.stringify(source)}: no task in it`);
  const added = await withBoard(g, async (b) => {
    // Unknown skills are named by line before anything is written (the board checks again, in its transaction).
    const skills = new Set((await b.listSkills()).map((s) => s.name));
    for (const { line, task } of lines) {
      if (!skills.has(task.skill)) throw new BoardInputError(`--from: line ${line}, field "skill": unknown skill ${JSON.stringify(task.skill)}; registered: ${[...skills].join(', ') || '(none)'}`);
    }
    // So are unknown parents (ids of tasks already on the board; the board checks again).
    const known = new Set<string>();
    for (const { line, task } of lines) {
      for (const id of task.after ?? []) {
        if (known.has(id)) continue;
        if (!(await b.getTask(id))) throw new BoardInputError(`--from: line ${line}, field "after": no task ${JSON.stringify(id)} on board ${b.location} (after names tasks already on the board)`);
        known.add(id);
      }
    }
    try {
      return await b.createTasks(lines.map((l) => l.task));
    } catch (e) {
      // The board names a task by its place (tasks[i]): say which line it was.
      // (Of the same class: a line the board refuses for itself is bad input, exit 2.)
      if (e instanceof BoardInputError) {
        const m = /^tasks\[(\d+)\]: (.*)$/s.exec(e.message);
        if (m) {
          const text = `--from: line ${lines[Number(m[1])]!.line}: ${m[2]}`;
          throw e instanceof BoardValidationError ? new BoardValidationError(text) : new BoardInputError(text);
        }
      }
      throw e;
    }
  }, 'write');
  out(g, added.map((a) => safe(a.task.id)).join('\n'), added.map((a) => ({ id: a.task.id, created: a.created })));
  return EXIT.ok;
}

/** `prune --older-than DURATION [--status done,cancelled]`. */
export async function cmdPrune(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--older-than': { kind: 'value' }, '--status': { kind: 'value' } }, 'prune');
  if (p.positionals.length) throw new UsageError(`prune: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const raw = p.values['--older-than'];
  if (raw === undefined) throw new UsageError('prune: --older-than DURATION is required (e.g. 7d, 12h)');
  const age = parseDuration('--older-than', raw);
  const statuses = (p.values['--status'] ?? 'done,cancelled').split(',').map((s) => s.trim());
  for (const s of statuses) {
    if (s !== 'done' && s !== 'cancelled') {
      throw new UsageError(`--status must list finished statuses (done, cancelled), got ${JSON.stringify(s)}: waiting, ready, running and blocked tasks are never pruned`);
    }
  }
  const before = Date.now() - age;
  const r = await withBoard(g, (b) => pruneAll(b, before, statuses as Array<'done' | 'cancelled'>, logDirOf(b)), 'write');
  const human = `pruned ${r.tasks} task(s), ${r.runs} run(s), ${r.events} event(s), ${r.links} link(s) and ${r.logs} log file(s) finished before ${new Date(before).toISOString()}, in ${r.batches} batch(es); the longest held the write lock ${r.longestHoldMs.toFixed(1)} ms`;
  out(g, human, { tasks: r.tasks, runs: r.runs, events: r.events, links: r.links, logs: r.logs, batches: r.batches, longest_batch_ms: Math.round(r.longestHoldMs * 10) / 10, before });
  return EXIT.ok;
}

/** The run logs' folder of this host for board `b` (where the supervisor writes them). */
function logDirOf(b: Board): string {
  return boardFiles(b.location, process.env, process.env.KANBAN_STATE_DIR || null).logDir;
}

export interface PruneTotals {
  tasks: number;
  runs: number;
  events: number;
  links: number;
  logs: number;
  batches: number;
  longestHoldMs: number;
}

/** Prune in batches sized to hold the write lock briefly (nextPruneBatchSize) until nothing is left. */
export async function pruneAll(b: Board, before: number, statuses: Array<'done' | 'cancelled'>, logDir: string): Promise<PruneTotals> {
  const t: PruneTotals = { tasks: 0, runs: 0, events: 0, links: 0, logs: 0, batches: 0, longestHoldMs: 0 };
  let size: number = PRUNE_BATCH.first;
  for (;;) {
    const r = await b.pruneBatch({ before, statuses, limit: size });
    t.batches++;
    t.tasks += r.tasks;
    t.runs += r.runs;
    t.events += r.events;
    t.links += r.links;
    t.longestHoldMs = Math.max(t.longestHoldMs, r.holdMs);
    t.logs += removeRunLogs(r.logPaths, logDir);
    if (!r.more) return t;
    size = nextPruneBatchSize(size, r.holdMs);
    // Keep the WAL short (a worker's commit would otherwise run the checkpoint of our pages), and
    // leave the write lock free long enough for waiting writers (workers' heartbeats) to get in.
    await checkpointingOf(b)?.checkpoint('PASSIVE');
    await new Promise((res) => setTimeout(res, prunePauseMs(r.holdMs)));
  }
}
