/**
 * The report channel's protocol: what a worker and its supervisor say over the supervisor's local
 * Unix socket (KANBAN_SOCKET). Language-neutral: newline-delimited JSON, one object per line, at
 * most MAX_FRAME_BYTES a line (a longer line, or one that is not a JSON object, closes the
 * connection).
 *
 * A request: `{"v":1,"id":<int>,"op":…,"task":…,"run":…,"token":…,"seq":"<decimal>", …op fields}`
 *   hello                      → `{"id":…,"ok":true,"versions":[1]}` (no run needed)
 *   heartbeat [progress]       the run's heartbeat (no seq needed: idempotent)
 *   event kind [data]          an event on the task's history
 *   payload                    → `{"id":…,"ok":true,"task":{"id","title","skill","payload"},"parentIds":[…]}`
 *   parents [after]            → `{"id":…,"ok":true,"parents":{"<parent task id>":<its result>,…},"next":<cursor>|null}`:
 *                                one page of the parents' results (PARENTS_PAGE_BYTES; a larger result alone),
 *                                in id order after the cursor `after`; `next` is the cursor of the next page
 *   complete [result] | fail error | defer seconds [reason]   the run's end
 *   stop signal                the worker stopped on a signal (allowed while it is reclaimed)
 * An answer: `{"id":…,"ok":true[,"duplicate":true]}` once what the report wrote is committed, or
 * `{"id":…,"ok":false,"code":"fenced"|"invalid"|"unavailable","error":"…"}`. `fenced`: the run is
 * no longer current (`run R is no longer current for task T`); `invalid`: the request is wrong
 * (nothing written); `unavailable`: not applied (the board could not take it): write it directly.
 *
 * `seq` (1-20 decimal digits, per run, increasing) makes a report apply at most once: the same seq
 * again, over the channel or written directly, is answered `duplicate` and writes nothing.
 *
 * A request is at most MAX_FRAME_BYTES; an answer at most MAX_ANSWER_BYTES (it may carry a board
 * value: up to 4 Mi UTF-16 units of JSON text, so up to 12 MiB of UTF-8).
 */
import type { Json, RunCredentials, WorkerReport } from '@kanban-supervisor/board/light';

export const PROTOCOL_VERSIONS = [1] as const;
export const PROTOCOL_VERSION = 1;
/** The longest line either side accepts, bytes (the newline excluded). */
export const MAX_FRAME_BYTES = 1024 * 1024;
/**
 * The longest answer line, bytes (the newline excluded): the largest board value (MAX_JSON_CHARS
 * UTF-16 units of JSON text, at most 3 UTF-8 bytes each: 12 MiB) plus its envelope (the task's id,
 * title, skill; up to 100 parent ids), with room to spare. An answer that would be longer is not sent:
 * the request is answered `invalid`, saying so.
 */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/**
 * How much of the parents' results (stored JSON text, bytes) one `parents` answer carries; a single
 * result larger than this is a page of its own (still within MAX_ANSWER_BYTES).
 */
export const PARENTS_PAGE_BYTES = 2 * 1024 * 1024;

export const OPS = ['hello', 'heartbeat', 'event', 'payload', 'parents', 'complete', 'fail', 'defer', 'stop'] as const;
export type Op = (typeof OPS)[number];

export type AnswerCode = 'fenced' | 'invalid' | 'unavailable';

/** A request as a worker sends it (the op's fields beside the common ones). */
export interface WireRequest {
  v: number;
  id: number;
  op: Op;
  task?: string;
  run?: string;
  token?: string;
  seq?: string;
  progress?: Json;
  kind?: string;
  data?: Json;
  result?: Json;
  error?: string;
  seconds?: number;
  reason?: string;
  signal?: string;
  /** `parents`: the cursor (the `next` of the previous page); absent: the first page. */
  after?: string;
}

export type WireAnswer =
  | {
      id: number;
      ok: true;
      duplicate?: true;
      versions?: readonly number[];
      task?: { id: string; title: string; skill: string; payload: Json };
      /** `payload`: the ids of the task's parents, in id order (their results: the `parents` op). */
      parentIds?: string[];
      /** `parents`: one page of the parents' results, by id. */
      parents?: Record<string, Json | null>;
      /** `parents`: the cursor of the next page, null after the last. */
      next?: string | null;
    }
  | { id: number; ok: false; code: AnswerCode; error: string };

/** A checked request, as the supervisor applies it. */
export type Report =
  | { op: 'heartbeat'; cred: RunCredentials; progress: Json | undefined }
  | { op: 'event'; cred: RunCredentials; seq: string | null; kind: string; data: Json | null }
  | { op: 'payload'; cred: RunCredentials }
  | { op: 'parents'; cred: RunCredentials; after: string | null }
  | { op: 'end'; cred: RunCredentials; seq: string | null; report: WorkerReport }
  | { op: 'stop'; cred: RunCredentials; seq: string | null; signal: string };

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (r: Record<string, unknown>, k: string, max = 256): string => {
  const v = r[k];
  if (typeof v !== 'string' || v === '' || v.length > max) throw new ProtocolError(`"${k}" must be a non-empty string of at most ${max} characters`);
  return v;
};
const optStr = (r: Record<string, unknown>, k: string): string | undefined => {
  const v = r[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ProtocolError(`"${k}" must be a string`);
  return v;
};

/** The request's id, if it has a usable one (an answer names it). */
export function requestId(v: unknown): number | null {
  return isObj(v) && Number.isSafeInteger(v.id) ? (v.id as number) : null;
}

/**
 * Check a parsed request. Returns 'hello', or the report to apply; throws ProtocolError naming
 * what is wrong (the board checks the values themselves: kinds, JSON sizes, seconds).
 */
export function parseRequest(v: unknown): 'hello' | Report {
  if (!isObj(v)) throw new ProtocolError('a request must be a JSON object');
  if (requestId(v) === null) throw new ProtocolError('"id" must be an integer');
  if (v.v !== PROTOCOL_VERSION) throw new ProtocolError(`"v" must be ${PROTOCOL_VERSION} (this supervisor speaks versions ${PROTOCOL_VERSIONS.join(', ')})`);
  const op = v.op;
  if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op)) throw new ProtocolError(`"op" must be one of ${OPS.join(', ')}`);
  if (op === 'hello') return 'hello';
  const cred: RunCredentials = { taskId: str(v, 'task'), runId: str(v, 'run'), token: str(v, 'token', 1024) };
  const seqRaw = v.seq;
  if (seqRaw !== undefined && (typeof seqRaw !== 'string' || !/^[0-9]{1,20}$/.test(seqRaw))) throw new ProtocolError('"seq" must be a string of 1-20 decimal digits');
  const seq = (seqRaw as string | undefined) ?? null;
  switch (op as Op) {
    case 'heartbeat':
      return { op: 'heartbeat', cred, progress: v.progress as Json | undefined };
    case 'event':
      return { op: 'event', cred, seq, kind: str(v, 'kind', 1024), data: v.data === undefined ? null : (v.data as Json) };
    case 'payload':
      return { op: 'payload', cred };
    case 'parents':
      return { op: 'parents', cred, after: v.after === undefined || v.after === null ? null : str(v, 'after') };
    case 'complete':
      return { op: 'end', cred, seq, report: { outcome: 'completed', result: v.result === undefined ? null : (v.result as Json) } };
    case 'fail':
      return { op: 'end', cred, seq, report: { outcome: 'failed', error: optStr(v, 'error') ?? 'failed' } };
    case 'defer': {
      if (typeof v.seconds !== 'number') throw new ProtocolError('"seconds" must be a number');
      const reason = optStr(v, 'reason');
      return { op: 'end', cred, seq, report: reason === undefined ? { outcome: 'deferred', seconds: v.seconds } : { outcome: 'deferred', seconds: v.seconds, reason } };
    }
    case 'stop':
      return { op: 'stop', cred, seq, signal: str(v, 'signal', 32) };
    default:
      throw new ProtocolError(`"op" ${op} is not a report`);
  }
}

/** The request for a report (the worker's side): its op and fields, without v, id, run and token. */
export function reportFields(report: WorkerReport): Partial<WireRequest> & { op: Op } {
  switch (report.outcome) {
    case 'completed':
      return { op: 'complete', result: report.result === undefined ? null : report.result };
    case 'failed':
      return { op: 'fail', error: report.error };
    case 'deferred':
      return report.reason === undefined ? { op: 'defer', seconds: report.seconds } : { op: 'defer', seconds: report.seconds, reason: report.reason };
  }
}

let lastSeq = 0n;

/**
 * A new report sequence number: CLOCK_MONOTONIC's nanoseconds (system-wide, so the reports of
 * one run's successive CLI processes increase too), strictly increasing within this process.
 */
export function nextSeq(): string {
  let n = process.hrtime.bigint();
  if (n <= lastSeq) n = lastSeq + 1n;
  lastSeq = n;
  return n.toString();
}
