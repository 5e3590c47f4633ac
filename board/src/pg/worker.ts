/**
 * The worker's operations, each fenced: it presents its run id and token with every call, and a
 * write lands only while that run is the task's current, unended, unreclaimed run. A reclaimed
 * run's late write is refused (NotCurrentError) in the same transaction that would have written it.
 *
 * The fence reads the run and its task FOR UPDATE (a write's fence) or plainly (loadRun): once it
 * passed, no reclaim, cancel or accounting can change either row before this write commits; one
 * that came first has committed, and the fence sees it.
 *
 * A write with a `seq` is applied at most once: the seq is kept with what it wrote (the event's
 * `seq`, the run's `report_seq`); the same (run, token, seq) again is a `duplicate`, checked with
 * the run's row locked (a concurrent write of the same seq has committed by then) and before the
 * rest of the fence (the run a duplicate final report ended has ended). `owner` (a supervisor's id):
 * a report applied by a supervisor must be of a run it claimed.
 */
import { NotCurrentError } from '../errors.js';
import type { Json, Run, RunCredentials, Task, WorkerReport, WriteResult } from '../types.js';
import { eventKind, jsonText, progressText, reportSeq, validReport } from '../validate.js';
import type { Q } from './connection.js';
import { toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';
import { releaseChildren } from './graph.js';

/** A write that was a duplicate (its run's seq already applied): nothing to write. */
class Duplicate {}

/**
 * Throws NotCurrentError unless the run is the task's current, unended, unreclaimed run with this
 * token (run id + token + run not ended + not being reclaimed + task still pointing at the run).
 * `allowReclaiming`: only the token and that the run has not ended are checked (a run being
 * reclaimed passes: its worker may record that it stopped). `owner`: the run must also have been
 * claimed by this supervisor (a report through its channel). `seen`: asked once the row is locked
 * and the token matched, before the rest: a duplicate (this seq already applied) throws Duplicate.
 */
export async function fence(
  q: Q,
  cred: RunCredentials,
  opts: { allowReclaiming?: boolean; lock?: boolean; owner?: string | null; seen?: (r: Record<string, unknown>) => Promise<boolean> } = {},
): Promise<Run> {
  const r = await q.get(
    `SELECT r.*, t.status AS t_status, t.current_run_id AS t_current FROM runs r JOIN tasks t ON t.id = r.task_id
      WHERE r.id = $1 AND r.task_id = $2${opts.lock === false ? '' : ' FOR UPDATE'}`,
    [cred.runId, cred.taskId],
  );
  if (r !== undefined && r.token === cred.token && opts.seen && (await opts.seen(r))) throw new Duplicate();
  const current =
    r !== undefined &&
    r.token === cred.token &&
    r.status !== 'ended' &&
    r.exited_at === null &&
    (opts.owner === undefined || opts.owner === null || r.supervisor_id === opts.owner) &&
    (opts.allowReclaiming === true || (r.stop_reason === null && r.t_status === 'running' && r.t_current === cred.runId));
  if (!current) throw new NotCurrentError(cred.runId, cred.taskId);
  return toRun(r);
}

/** Run a fenced write; a Duplicate from its fence is the answer `duplicate`. */
async function once(fn: () => Promise<void>): Promise<WriteResult> {
  try {
    await fn();
    return 'applied';
  } catch (e) {
    if (e instanceof Duplicate) return 'duplicate';
    throw e;
  }
}

/** Whether an event with this seq is on the run (asked with the run's row locked). */
const eventSeen = (q: Q, cred: RunCredentials, seq: string | null) => async (): Promise<boolean> =>
  seq !== null && (await q.get('SELECT 1 AS x FROM events WHERE run_id = $1 AND seq = $2', [cred.runId, seq])) !== undefined;

export async function loadRun(w: Writer, cred: RunCredentials, owner: string | null = null): Promise<{ task: Task; run: Run }> {
  return w.read(async (q) => {
    const run = await fence(q, cred, { lock: false, owner });
    return { run, task: toTask((await q.get('SELECT * FROM tasks WHERE id = $1', [cred.taskId]))!) };
  });
}

export async function heartbeat(w: Writer, cred: RunCredentials, progress: Json | undefined, now: number, owner: string | null = null): Promise<void> {
  const text = progressText(progress);
  await w.write(async (q) => {
    await fence(q, cred, { owner });
    await q.run('UPDATE runs SET heartbeat_at = $1, progress = COALESCE($2, progress) WHERE id = $3', [now, text, cred.runId]);
  });
}

/**
 * Bare heartbeats of many runs (BoardTx.beats) in one statement: the runs that pass the fence of
 * `fence` (and `owner`) are locked with their tasks (FOR UPDATE, in id order) and written; the
 * items it did not return are the refused ones. A run's time never goes back (beats heard earlier,
 * written later: SQLite's `beats`).
 */
export async function beats(w: Writer, items: ReadonlyArray<{ cred: RunCredentials; at: number }>, owner: string | null = null): Promise<number[]> {
  if (items.length === 0) return [];
  return w.write(async (q) => {
    // Each input row keeps its index (n): a row is written (and returned) only on its own
    // credentials, so two items of one run with different tokens are answered each on its own.
    const rows = await q.all(
      `WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS v(id, task_id, token, at, n)),
       ok AS (SELECT r.id, v.at, v.n FROM runs r JOIN v ON v.id = r.id AND v.task_id = r.task_id JOIN tasks t ON t.id = r.task_id
               WHERE r.token = v.token AND r.status <> 'ended' AND r.exited_at IS NULL AND r.stop_reason IS NULL
                 AND t.status = 'running' AND t.current_run_id = r.id AND ($5::text IS NULL OR r.supervisor_id = $5)
               ORDER BY r.id FOR UPDATE OF r, t)
       UPDATE runs SET heartbeat_at = GREATEST(runs.heartbeat_at, ok.at) FROM ok WHERE runs.id = ok.id RETURNING ok.n`,
      [items.map((i) => i.cred.runId), items.map((i) => i.cred.taskId), items.map((i) => i.cred.token), items.map((i) => i.at), owner],
    );
    const written = new Set(rows.map((r) => Number(r.n) - 1));
    const refused: number[] = [];
    for (let i = 0; i < items.length; i++) if (!written.has(i)) refused.push(i);
    return refused;
  });
}

export async function workerEvent(
  w: Writer,
  cred: RunCredentials,
  kind: string,
  data: Json | null,
  now: number,
  seq?: string | null,
  owner: string | null = null,
): Promise<WriteResult> {
  eventKind(kind);
  const text = jsonText('event data', data);
  const s = reportSeq(seq);
  return w.write((q) =>
    once(async () => {
      await fence(q, cred, { owner, seen: eventSeen(q, cred, s) });
      await q.run('INSERT INTO events (task_id, run_id, kind, data, at, seq) VALUES ($1, $2, $3, $4, $5, $6)', [cred.taskId, cred.runId, kind, text, now, s]);
    }),
  );
}

/**
 * The worker's report ends its run. A completed task is done at once (result kept, counter reset);
 * a failure or a deferral waits for the supervisor's accounting, which applies the policy.
 */
export async function report(w: Writer, cred: RunCredentials, input: WorkerReport, now: number, seq?: string | null, owner: string | null = null): Promise<WriteResult> {
  const rep = validReport(input);
  const s = reportSeq(seq);
  return w.write((q) => once(async () => {
    await fence(q, cred, { owner, seen: async (r) => s !== null && r.report_seq === s });
    await q.run('UPDATE runs SET report_seq = $1 WHERE id = $2', [s, cred.runId]);
    switch (rep.outcome) {
      case 'completed':
        await q.run(`UPDATE runs SET status = 'ended', outcome = 'completed', ended_at = $1 WHERE id = $2`, [now, cred.runId]);
        await q.run(`UPDATE tasks SET status = 'done', result = $1, consecutive_failures = 0, last_error = NULL, updated_at = $2 WHERE id = $3`, [
          rep.resultText,
          now,
          cred.taskId,
        ]);
        await q.event(cred.taskId, cred.runId, 'reported', { outcome: 'completed' }, now, s);
        // Its waiting children whose parents are now all done are ready in this same transaction.
        await releaseChildren(q, cred.taskId, now);
        break;
      case 'failed':
        await q.run(`UPDATE runs SET status = 'ended', outcome = 'failed', error = $1, ended_at = $2 WHERE id = $3`, [rep.error, now, cred.runId]);
        await q.event(cred.taskId, cred.runId, 'reported', { outcome: 'failed', error: rep.eventError }, now, s);
        break;
      case 'deferred': {
        const until = now + rep.deferMs;
        await q.run(`UPDATE runs SET status = 'ended', outcome = 'deferred', defer_until = $1, error = $2, ended_at = $3 WHERE id = $4`, [
          until,
          rep.reason,
          now,
          cred.runId,
        ]);
        await q.event(cred.taskId, cred.runId, 'reported', { outcome: 'deferred', until, reason: rep.reason }, now, s);
        break;
      }
    }
  }));
}

/** Whether a spooled report is already on the board (the run, with this token, ended with this outcome). */
export async function reportApplied(w: Writer, cred: RunCredentials, outcome: WorkerReport['outcome']): Promise<boolean> {
  return w.read(async (q) => {
    const r = await q.get('SELECT token, status, outcome FROM runs WHERE id = $1 AND task_id = $2', [cred.runId, cred.taskId]);
    return r !== undefined && r.token === cred.token && r.status === 'ended' && r.outcome === outcome;
  });
}

/** Record that the worker stopped on a signal; allowed while its run is being reclaimed. */
export async function recordStop(w: Writer, cred: RunCredentials, signal: string, now: number, seq?: string | null, owner: string | null = null): Promise<WriteResult> {
  const s = reportSeq(seq);
  return w.write((q) =>
    once(async () => {
      await fence(q, cred, { allowReclaiming: true, owner, seen: eventSeen(q, cred, s) });
      await q.run('UPDATE runs SET stopped_on_request = 1 WHERE id = $1', [cred.runId]);
      await q.event(cred.taskId, cred.runId, 'stopped_on_request', { signal }, now, s);
    }),
  );
}
