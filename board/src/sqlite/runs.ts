/**
 * Runs, as the supervisor sees them: spawns, exits, reclaims (the fence closes before the SIGTERM),
 * SIGKILLs, runs that never spawned, and the reads of runs (live, unaccounted, listings). The
 * worker's own writes, fenced by the run token, are in worker.ts.
 */
import { exitReportApplies, reclaimMayBegin, type RunOutcome, type StopReason, type TaskStatus } from '@kanban-supervisor/policies';
import type { ExitObservation, LiveRun, Run, RunFilter, RunListing, SpawnInfo, Task } from '../types.js';
import { BoardInputError } from '../errors.js';
import { runLimit } from '../validate.js';
import type { Conn } from './connection.js';
import { releaseChildren } from './graph.js';
import { HOT_SQL } from './hot-sql.js';
import { num, toLiveRun, toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';

/** Record several spawns in ONE write. */
export async function recordSpawns(c: Conn, w: Writer, items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void> {
  if (items.length === 0) return;
  await w.write(() => {
    for (const { runId, info } of items) {
      const r = c.get('SELECT task_id FROM runs WHERE id = ?', runId);
      if (!r) continue; // nothing to record it on (a run is never deleted while its worker lives)
      c.run(
        `UPDATE runs SET pid = ?, pgid = ?, proc_start_time = ?, boot_id = ?,
                status = CASE WHEN status = 'starting' THEN 'running' ELSE status END
          WHERE id = ?`,
        info.pid,
        info.pgid,
        info.procStartTime,
        info.bootId,
        runId,
      );
      c.event(String(r.task_id), runId, 'spawned', { pid: info.pid }, now);
    }
  });
}

/** End a run that never produced a process (spawn failed, validation refused). */
export async function endUnspawned(c: Conn, w: Writer, runId: string, outcome: RunOutcome, error: string, now: number): Promise<void> {
  await w.write(() => {
    const r = c.get('SELECT task_id FROM runs WHERE id = ?', runId);
    if (!r) throw new BoardInputError(`no run ${runId}`);
    c.run(
      `UPDATE runs SET status = 'ended', outcome = ?, error = ?, ended_at = ?, exited_at = ? WHERE id = ? AND status != 'ended'`,
      outcome,
      error,
      now,
      now,
      runId,
    );
    c.event(String(r.task_id), runId, 'ended', { outcome, error }, now);
  });
}

/** Runs whose processes may be alive (not yet confirmed gone), read as raw rows (see HOT_SQL.liveRuns). */
export async function liveRuns(c: Conn, w: Writer): Promise<LiveRun[]> {
  return w.read(() => (c.stmt(HOT_SQL.liveRuns).raw(true).all() as unknown[][]).map(toLiveRun));
}

/** Record observed exits: exit code or signal, the outcome if the worker reported none, and when the processes are gone. */
export async function recordExits(c: Conn, w: Writer, observations: ExitObservation[]): Promise<void> {
  if (observations.length === 0) return;
  await w.write(() => {
    for (const o of observations) {
      const r = c.get('SELECT * FROM runs WHERE id = ?', o.runId);
      if (!r) continue;
      const run = toRun(r);
      if (o.exitCode !== undefined || o.signal !== undefined) {
        c.run('UPDATE runs SET exit_code = ?, signal = ? WHERE id = ?', o.exitCode ?? null, o.signal ?? null, o.runId);
        c.event(run.taskId, run.id, 'exited', { exit_code: o.exitCode ?? null, signal: o.signal ?? null, pid: run.pid }, o.at);
      }
      if (o.exitReport) {
        // An exit-code skill's end, fenced like a worker's report (policies' exitReportApplies).
        const t = c.get('SELECT status, current_run_id FROM tasks WHERE id = ?', run.taskId);
        const end = exitReportApplies(o.exitReport, { ended: run.status === 'ended', stopReason: run.stopReason }, t?.status === 'running' && t.current_run_id === run.id);
        if (end) {
          c.run(`UPDATE runs SET status = 'ended', outcome = ?, error = ?, ended_at = ? WHERE id = ?`, end.outcome, end.error, o.at, o.runId);
          if (end.applyToTask) {
            c.run(
              `UPDATE tasks SET status = 'done', result = ?, consecutive_failures = 0, last_error = NULL, updated_at = ? WHERE id = ?`,
              end.resultText ?? 'null',
              o.at,
              run.taskId,
            );
            // Its waiting children whose parents are now all done are ready in this same transaction
            // (as with a worker's own complete: accounting releases only a task still running).
            releaseChildren(c, run.taskId, o.at);
          }
          c.event(run.taskId, run.id, 'ended', { outcome: end.outcome, error: end.error, report: 'exit' }, o.at);
        }
      } else if (run.status !== 'ended' && o.outcomeIfUnreported) {
        c.run(
          `UPDATE runs SET status = 'ended', outcome = ?, error = ?, ended_at = ? WHERE id = ?`,
          o.outcomeIfUnreported,
          o.errorIfUnreported ?? null,
          o.at,
          o.runId,
        );
        c.event(run.taskId, run.id, 'ended', { outcome: o.outcomeIfUnreported, error: o.errorIfUnreported ?? null }, o.at);
      }
      if (o.gone && run.exitedAt === null) {
        c.run('UPDATE runs SET exited_at = ? WHERE id = ?', o.at, o.runId);
      }
    }
  });
}

/**
 * Close the run's fence (stop_reason set: the worker's writes are refused from now on) and record
 * the SIGTERM; the caller signals only after this is committed. False when there is nothing to
 * reclaim: no such run, its processes are gone, it is being reclaimed already, or it has ended
 * (`hung_after_report` is the other way round: it reclaims only a run that has ended; `lease_lost`
 * only a run taken over by another supervisor: policies' reclaimMayBegin).
 */
export async function beginReclaim(c: Conn, w: Writer, runId: string, reason: StopReason, now: number): Promise<boolean> {
  return w.write(() => {
    const r = c.get('SELECT * FROM runs WHERE id = ?', runId);
    if (!r) return false;
    const run = toRun(r);
    if (!reclaimMayBegin(reason, run)) return false;
    c.run('UPDATE runs SET stop_reason = ?, sigterm_at = ? WHERE id = ?', reason, now, runId);
    c.event(run.taskId, runId, 'sigterm_sent', { reason, at: now, pid: run.pid }, now);
    return true;
  });
}

export async function recordSigkill(c: Conn, w: Writer, runId: string, now: number): Promise<void> {
  await w.write(() => {
    const r = c.get('SELECT task_id, pid, sigkill_at FROM runs WHERE id = ?', runId);
    if (!r || r.sigkill_at !== null) return;
    c.run('UPDATE runs SET sigkill_at = ? WHERE id = ?', now, runId);
    c.event(String(r.task_id), runId, 'sigkill_sent', { at: now, pid: num(r.pid) }, now);
  });
}

/** Ended runs whose processes are gone and whose task was not updated yet. */
export async function unaccountedRuns(c: Conn, w: Writer): Promise<Array<{ run: Run; task: Task }>> {
  return w.read(() => c.all(HOT_SQL.unaccountedRuns).map((row) => ({ run: toRun(row, 'r_'), task: toTask(row) })));
}

export async function getRun(c: Conn, w: Writer, id: string): Promise<Run | null> {
  return w.read(() => {
    const r = c.get('SELECT * FROM runs WHERE id = ?', id);
    return r ? toRun(r) : null;
  });
}

/** Runs across tasks (or of one task), newest first. */
export async function listRuns(c: Conn, w: Writer, filter: RunFilter = {}): Promise<RunListing[]> {
  const limit = runLimit(filter);
  // Each shape seeks one index in started_at order and stops at the limit (no sort of all runs):
  // runs_task (task_id, started_at), runs_live (started_at WHERE exited_at IS NULL), runs_started.
  const where: string[] = [];
  const params: unknown[] = [];
  let index = 'runs_started';
  if (filter.taskId !== undefined) {
    where.push('r.task_id = ?');
    params.push(filter.taskId);
    index = 'runs_task';
  }
  if (filter.live) {
    where.push('r.exited_at IS NULL');
    if (filter.taskId === undefined) index = 'runs_live';
  }
  if (filter.outcome !== undefined) {
    where.push('r.outcome = ?');
    params.push(filter.outcome);
  }
  const sql = `SELECT r.*, t.title AS t_title, t.status AS t_status, t.skill AS t_skill,
      (SELECT count(*) FROM runs p WHERE p.task_id = r.task_id AND (p.started_at < r.started_at OR (p.started_at = r.started_at AND p.rowid <= r.rowid))) AS attempt
     FROM runs r INDEXED BY ${index} JOIN tasks t ON t.id = r.task_id
    ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?`;
  return w.read(() =>
    c.all(sql, ...params, limit).map(
      (r): RunListing => ({ ...toRun(r), taskTitle: String(r.t_title), taskStatus: r.t_status as TaskStatus, skill: String(r.t_skill), attempt: Number(r.attempt) }),
    ),
  );
}
