/**
 * The worker's operations, each fenced: it presents its run id and token with every call, and a
 * write lands only while that run is the task's current, unended, unreclaimed run. A reclaimed
 * run's late write is refused (NotCurrentError) in the same transaction that would have written it.
 *
 * A write with a `seq` is applied at most once: the seq is kept with what it wrote (the event's
 * `seq`, the run's `report_seq`), and the same (run, token, seq) again is a `duplicate`, checked
 * before the fence (the run a duplicate final report ended has ended: the fence would refuse it).
 */
import { NotCurrentError } from '../errors.js';
import type { Json, Run, RunCredentials, Task, WorkerReport, WriteResult } from '../types.js';
import { eventKind, jsonText, progressText, reportSeq, validReport } from '../validate.js';
import type { Conn } from './connection.js';
import { toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { releaseChildren } from './graph.js';

/**
 * Throws NotCurrentError unless the run is the task's current, unended, unreclaimed run with this
 * token. `allowReclaiming`: only the token and that the run has not ended are checked (a run being
 * reclaimed passes: its worker may record that it stopped).
 */
export function fence(c: Conn, cred: RunCredentials, allowReclaiming = false): Run {
  const r = c.get(
    `SELECT r.*, t.status AS t_status, t.current_run_id AS t_current FROM runs r JOIN tasks t ON t.id = r.task_id
      WHERE r.id = ? AND r.task_id = ?`,
    cred.runId,
    cred.taskId,
  );
  const current =
    r !== undefined &&
    r.token === cred.token &&
    r.status !== 'ended' &&
    r.exited_at === null &&
    (allowReclaiming || (r.stop_reason === null && r.t_status === 'running' && r.t_current === cred.runId));
  if (!current) throw new NotCurrentError(cred.runId, cred.taskId);
  return toRun(r);
}

export async function loadRun(c: Conn, w: Writer, cred: RunCredentials): Promise<{ task: Task; run: Run }> {
  return w.read(() => {
    const run = fence(c, cred);
    return { run, task: toTask(c.get('SELECT * FROM tasks WHERE id = ?', cred.taskId)!) };
  });
}

export async function heartbeat(c: Conn, w: Writer, cred: RunCredentials, progress: Json | undefined, now: number): Promise<void> {
  const text = progressText(progress);
  await w.write(() => {
    fence(c, cred);
    c.run('UPDATE runs SET heartbeat_at = ?, progress = COALESCE(?, progress) WHERE id = ?', now, text, cred.runId);
  });
}

/**
 * Bare heartbeats of many runs (BoardTx.beats): the fence of `fence` in each UPDATE's WHERE (one
 * statement per run instead of a savepoint, a read and a write); the items it did not change are
 * the refused ones. A run's time never goes back: these are beats the supervisor heard and writes
 * later (every MEMORY_BEAT_WRITE_MS), and its worker may have written a later one itself meanwhile.
 */
export async function beats(c: Conn, w: Writer, items: ReadonlyArray<{ cred: RunCredentials; at: number }>): Promise<number[]> {
  if (items.length === 0) return [];
  return w.write(() => {
    const refused: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const { cred, at } = items[i]!;
      const changed = c.run(
        `UPDATE runs SET heartbeat_at = MAX(COALESCE(heartbeat_at, 0), ?) WHERE id = ? AND task_id = ? AND token = ? AND status != 'ended' AND exited_at IS NULL AND stop_reason IS NULL
           AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = runs.task_id AND t.status = 'running' AND t.current_run_id = runs.id)`,
        at,
        cred.runId,
        cred.taskId,
        cred.token,
      ).changes;
      if (changed === 0) refused.push(i);
    }
    return refused;
  });
}

/** Whether an event with this run's `seq` is on the board (the run presented with its token). */
function eventSeen(c: Conn, cred: RunCredentials, seq: string | null): boolean {
  if (seq === null) return false;
  return (
    c.get(
      'SELECT 1 AS x FROM events e JOIN runs r ON r.id = e.run_id WHERE e.run_id = ? AND e.seq = ? AND r.token = ? AND r.task_id = ?',
      cred.runId,
      seq,
      cred.token,
      cred.taskId,
    ) !== undefined
  );
}

export async function workerEvent(c: Conn, w: Writer, cred: RunCredentials, kind: string, data: Json | null, now: number, seq?: string | null): Promise<WriteResult> {
  eventKind(kind);
  const text = jsonText('event data', data);
  const s = reportSeq(seq);
  return w.write(() => {
    if (eventSeen(c, cred, s)) return 'duplicate';
    fence(c, cred);
    c.run('INSERT INTO events (task_id, run_id, kind, data, at, seq) VALUES (?, ?, ?, ?, ?, ?)', cred.taskId, cred.runId, kind, text, now, s);
    return 'applied';
  });
}

/**
 * The worker's report ends its run. A completed task is done at once (result kept, counter reset);
 * a failure or a deferral waits for the supervisor's accounting, which applies the policy.
 */
export async function report(c: Conn, w: Writer, cred: RunCredentials, input: WorkerReport, now: number, seq?: string | null): Promise<WriteResult> {
  const rep = validReport(input);
  const s = reportSeq(seq);
  return w.write(() => {
    if (s !== null) {
      const r = c.get('SELECT token, report_seq FROM runs WHERE id = ? AND task_id = ?', cred.runId, cred.taskId);
      if (r !== undefined && r.token === cred.token && r.report_seq === s) return 'duplicate';
    }
    fence(c, cred);
    c.run('UPDATE runs SET report_seq = ? WHERE id = ?', s, cred.runId);
    switch (rep.outcome) {
      case 'completed':
        c.run(`UPDATE runs SET status = 'ended', outcome = 'completed', ended_at = ? WHERE id = ?`, now, cred.runId);
        c.run(
          `UPDATE tasks SET status = 'done', result = ?, consecutive_failures = 0, last_error = NULL, updated_at = ? WHERE id = ?`,
          rep.resultText,
          now,
          cred.taskId,
        );
        c.event(cred.taskId, cred.runId, 'reported', { outcome: 'completed' }, now, s);
        // Its waiting children whose parents are now all done are ready in this same transaction.
        releaseChildren(c, cred.taskId, now);
        break;
      case 'failed':
        c.run(`UPDATE runs SET status = 'ended', outcome = 'failed', error = ?, ended_at = ? WHERE id = ?`, rep.error, now, cred.runId);
        c.event(cred.taskId, cred.runId, 'reported', { outcome: 'failed', error: rep.eventError }, now, s);
        break;
      case 'deferred': {
        const until = now + rep.deferMs;
        c.run(
          `UPDATE runs SET status = 'ended', outcome = 'deferred', defer_until = ?, error = ?, ended_at = ? WHERE id = ?`,
          until,
          rep.reason,
          now,
          cred.runId,
        );
        c.event(cred.taskId, cred.runId, 'reported', { outcome: 'deferred', until, reason: rep.reason }, now, s);
        break;
      }
    }
    return 'applied';
  });
}

/** Whether a spooled report is already on the board (the run, with this token, ended with this outcome). */
export async function reportApplied(c: Conn, w: Writer, cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean> {
  return w.read(() => {
    const r = c.get('SELECT token, status, outcome FROM runs WHERE id = ? AND task_id = ?', cred.runId, cred.taskId);
    return r !== undefined && r.token === cred.token && r.status === 'ended' && r.outcome === outcome;
  });
}

/** Record that the worker stopped on a signal; allowed while its run is being reclaimed. */
export async function recordStop(c: Conn, w: Writer, cred: RunCredentials, signal: string, now: number, seq?: string | null): Promise<WriteResult> {
  const s = reportSeq(seq);
  return w.write(() => {
    if (eventSeen(c, cred, s)) return 'duplicate';
    fence(c, cred, true);
    c.run('UPDATE runs SET stopped_on_request = 1 WHERE id = ?', cred.runId);
    c.event(cred.taskId, cred.runId, 'stopped_on_request', { signal }, now, s);
    return 'applied';
  });
}
