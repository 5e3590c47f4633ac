/**
 * Exit-code skills (`skill add NAME --report exit [--result stdout-json] -- CMD …`): the worker
 * never touches the board. It gets no board path and no run token; its task id, run id and payload
 * come in its environment (KANBAN_PAYLOAD, or KANBAN_PAYLOAD_FILE for a payload over 64 KiB of
 * JSON). The supervisor ends its run from the exit status it reaped (policies' exitReport):
 *
 * - reap: the exit of an own worker becomes an observation carrying its exit report; one that needs
 *   the end of the run's log (a result line, a failure's last lines) is marked `exitLog`;
 * - account (and a stopping supervisor's last write): settleExitReports reads those log ends,
 *   bounded and safely (the log is in a folder the worker can write: no symlink, no FIFO, a regular
 *   file of ours with one link, at most RESULT_LINE_MAX_BYTES + 1 bytes from its end), and settles
 *   the reports; the board applies them fenced (recordExits, policies' exitReportApplies) in the
 *   tick's transaction, with the accounting of the same runs.
 *
 * Nothing here blocks on or is steered by the worker: a log it replaced by a FIFO, a symlink or a
 * hard link is not read, and the run fails saying so.
 */
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Json } from '@kanban-supervisor/board';
import { exitLogBytes, exitReport, exitVerdict, PAYLOAD_ENV_MAX_BYTES, type LogTail } from '@kanban-supervisor/policies';
import { readTailSafe, UnsafeFileError, writeFileAtomic, type ExitRecord } from '@kanban-supervisor/reaper';
import type { HeldObservation, TickContext, Worker } from './state.js';

/** The observation of an own exit-code worker's exit: its report as far as the exit status decides it, and which log end settles it. */
export function exitObservation(w: Worker, ex: ExitRecord, gone: boolean): HeldObservation {
  const st = { exitCode: ex.exitCode, signal: ex.signal };
  const bytes = exitLogBytes(exitVerdict(st, w.resultFrom));
  // Until the log is read, the report is what the status alone says (a stopping supervisor that
  // cannot read it still ends the run): a failure without its last lines, a result not read.
  return {
    runId: w.runId,
    at: ex.at,
    exitCode: ex.exitCode,
    signal: ex.signal,
    gone,
    exitReport: exitReport(st, w.resultFrom, null),
    ...(bytes > 0 ? { exitLog: { path: w.logPath, bytes, resultFrom: w.resultFrom } } : {}),
  };
}

/** Read the log ends the held exit reports need and settle them (before they are written). */
export function settleExitReports(ctx: TickContext): void {
  for (const o of ctx.state.heldObs) {
    if (!o.exitLog) continue;
    const tail = readLogTail(o.exitLog.path, o.exitLog.bytes);
    o.exitReport = exitReport({ exitCode: o.exitCode ?? null, signal: o.signal ?? null }, o.exitLog.resultFrom, tail);
    delete o.exitLog;
  }
}

/** The last `bytes` of a run's log, read safely; what went wrong otherwise (named, for the run's error). */
export function readLogTail(path: string | null, bytes: number): LogTail {
  if (path === null) return { error: 'the run has no log' };
  try {
    const { data, whole } = readTailSafe(path, bytes, { singleLink: true });
    return { text: data.toString('utf8'), whole };
  } catch (e) {
    if (e instanceof UnsafeFileError) return { error: `the log ${e.message}` };
    const err = e as NodeJS.ErrnoException;
    return { error: `the log ${path}: ${err.code ?? err.message}` };
  }
}

/** The payload file's name after its run id. */
export const PAYLOAD_SUFFIX = '.payload.json';

/** Where an exit-code worker's payload goes when it is too large for KANBAN_PAYLOAD: next to its log. */
export function payloadFilePath(ctx: TickContext, runId: string): string {
  return join(ctx.logDir, `${runId}${PAYLOAD_SUFFIX}`);
}

/**
 * The payload variables of an exit-code worker: KANBAN_PAYLOAD (the task's payload as JSON) when
 * it is at most 64 KiB, else KANBAN_PAYLOAD_FILE, a 0600 file of the JSON in the run logs' folder
 * (written atomically: a name planted there by a worker is replaced, never written through; removed
 * once the run's processes are gone). Throws when the file cannot be written.
 */
export function payloadEnv(ctx: TickContext, runId: string, payload: Json): Record<string, string> {
  const text = JSON.stringify(payload);
  if (Buffer.byteLength(text, 'utf8') <= PAYLOAD_ENV_MAX_BYTES) return { KANBAN_PAYLOAD: text };
  const file = payloadFilePath(ctx, runId);
  writeFileAtomic(file, text, { mode: 0o600, fsync: false });
  return { KANBAN_PAYLOAD_FILE: file };
}

/** Remove an exit-code worker's payload file, if it had one (its processes are gone). */
export function removePayloadFile(ctx: TickContext, runId: string): void {
  try {
    unlinkSync(payloadFilePath(ctx, runId));
  } catch {
    /* it had none, or it is gone already */
  }
}
