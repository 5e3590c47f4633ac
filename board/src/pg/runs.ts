/**
 * Runs, as the supervisor sees them: spawns, exits, reclaims (the fence closes before the SIGTERM),
 * SIGKILLs, runs that never spawned, and the reads of runs (live, unaccounted, listings). The
 * worker's own writes, fenced by the run token, are in worker.ts. Where a write reads a run to
 * decide, it locks the row first (FOR UPDATE): a worker's fenced write and a reclaim of the same
 * run take turns, as SQLite's single writer makes them.
 */
import { exitReportApplies, reclaimMayBegin, type RunOutcome, type StopReason, type TaskStatus } from '@kanban-supervisor/policies';
import { BoardInputError } from '../errors.js';
import type { ExitObservation, LiveRun, Run, RunFilter, RunListing, SpawnInfo, Task } from '../types.js';
import { runLimit } from '../validate.js';
import { releaseChildren } from './graph.js';
import { PG_HOT_SQL } from './hot-sql.js';
import { num, toLiveRun, toRun, toTask } from './rows.js';
import type { Writer } from './tx.js';

/** Record several spawns in ONE write. */
export async function recordSpawns(w: Writer, items: Array<{ runId: string; info: SpawnInfo }>, now: number): Promise<void> {
  if (items.length === 0) return;
  await w.write(async (q) => {
    for (const { runId, info } of items) {
      const r = await q.get(
        `UPDATE runs SET pid = $1, pgid = $2, proc_start_time = $3, boot_id = $4,
                status = CASE WHEN status = 'starting' THEN 'running' ELSE status END
          WHERE id = $5 RETURNING task_id`,
        [info.pid, info.pgid, info.procStartTime, info.bootId, runId],
      );
      if (!r) continue; // nothing to record it on (a run is never deleted while its worker lives)
      await q.event(String(r.task_id), runId, 'spawned', { pid: info.pid }, now);
    }
  });
}

/** End a run that never produced a process (spawn failed, validation refused). */
export async function endUnspawned(w: Writer, runId: string, outcome: RunOutcome, error: string, now: number): Promise<void> {
  await w.write(async (q) => {
    const r = await q.get('SELECT task_id FROM runs WHERE id = $1 FOR UPDATE', [runId]);
    if (!r) throw new BoardInputError(`no run ${runId}`);
    await q.run(
      `UPDATE runs SET status = 'ended', outcome = $1, error = $2, ended_at = $3, exited_at = $3 WHERE id = $4 AND status <> 'ended'`,
      [outcome, error, now, runId],
    );
    await q.event(String(r.task_id), runId, 'ended', { outcome, error }, now);
  });
}

/**
 * Runs whose processes may be alive (not yet confirmed gone), read as arrays (see PG_HOT_SQL.liveRuns);
 * with `hostId`, only that host's (runs of its supervisors, and runs with no supervisor recorded).
 */
export async function liveRuns(w: Writer, hostId: string | null = null): Promise<LiveRun[]> {
  return w.read(async (q) => (await q.arrays(PG_HOT_SQL.liveRuns, [hostId])).map(toLiveRun));
}

/** Record observed exits: exit code or signal, the outcome if the worker reported none, and when the processes are gone. */
export async function recordExits(w: Writer, observations: ExitObservation[]): Promise<void> {
  if (observations.length === 0) return;
  await w.write(async (q) => {
    for (const o of observations) {
      const r = await q.get('SELECT * FROM runs WHERE id = $1 FOR UPDATE', [o.runId]);
      if (!r) continue;
      const run = toRun(r);
      if (o.exitCode !== undefined || o.signal !== undefined) {
        await q.run('UPDATE runs SET exit_code = $1, signal = $2 WHERE id = $3', [o.exitCode ?? null, o.signal ?? null, o.runId]);
        await q.event(run.taskId, run.id, 'exited', { exit_code: o.exitCode ?? null, signal: o.signal ?? null, pid: run.pid }, o.at);
      }
      if (o.exitReport) {
        // An exit-code skill's end, fenced like a worker's report (policies' exitReportApplies).
        const t = await q.get('SELECT status, current_run_id FROM tasks WHERE id = $1 FOR UPDATE', [run.taskId]);
        const end = exitReportApplies(o.exitReport, { ended: run.status === 'ended', stopReason: run.stopReason }, t?.status === 'running' && t.current_run_id === run.id);
        if (end) {
          await q.run(`UPDATE runs SET status = 'ended', outcome = $1, error = $2, ended_at = $3 WHERE id = $4`, [end.outcome, end.error, o.at, o.runId]);
          if (end.applyToTask) {
            await q.run(`UPDATE tasks SET status = 'done', result = $1, consecutive_failures = 0, last_error = NULL, updated_at = $2 WHERE id = $3`, [
              end.resultText ?? 'null',
              o.at,
              run.taskId,
            ]);
            // Its waiting children whose parents are now all done are ready in this same transaction
            // (as with a worker's own complete: accounting releases only a task still running).
            await releaseChildren(q, run.taskId, o.at);
          }
          await q.event(run.taskId, run.id, 'ended', { outcome: end.outcome, error: end.error, report: 'exit' }, o.at);
        }
      } else if (run.status !== 'ended' && o.outcomeIfUnreported) {
        await q.run(`UPDATE runs SET status = 'ended', outcome = $1, error = $2, ended_at = $3 WHERE id = $4`, [
          o.outcomeIfUnreported,
          o.errorIfUnreported ?? null,
          o.at,
          o.runId,
        ]);
        await q.event(run.taskId, run.id, 'ended', { outcome: o.outcomeIfUnreported, error: o.errorIfUnreported ?? null }, o.at);
      }
      if (o.gone && run.exitedAt === null) await q.run('UPDATE runs SET exited_at = $1 WHERE id = $2', [o.at, o.runId]);
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
export async function beginReclaim(w: Writer, runId: string, reason: StopReason, now: number): Promise<boolean> {
  return w.write(async (q) => {
    const r = await q.get('SELECT * FROM runs WHERE id = $1 FOR UPDATE', [runId]);
    if (!r) return false;
    const run = toRun(r);
    if (!reclaimMayBegin(reason, run)) return false;
    await q.run('UPDATE runs SET stop_reason = $1, sigterm_at = $2 WHERE id = $3', [reason, now, runId]);
    await q.event(run.taskId, runId, 'sigterm_sent', { reason, at: now, pid: run.pid }, now);
    return true;
  });
}

export async function recordSigkill(w: Writer, runId: string, now: number): Promise<void> {
  await w.write(async (q) => {
    const r = await q.get('SELECT task_id, pid, sigkill_at FROM runs WHERE id = $1 FOR UPDATE', [runId]);
    if (!r || r.sigkill_at !== null) return;
    await q.run('UPDATE runs SET sigkill_at = $1 WHERE id = $2', [now, runId]);
    await q.event(String(r.task_id), runId, 'sigkill_sent', { at: now, pid: num(r.pid) }, now);
  });
}

/** Ended runs whose processes are gone and whose task was not updated yet. */
export async function unaccountedRuns(w: Writer, hostId: string | null = null): Promise<Array<{ run: Run; task: Task }>> {
  return w.read(async (q) => (await q.all(PG_HOT_SQL.unaccountedRuns, [hostId])).map((row) => ({ run: toRun(row, 'r_'), task: toTask(row) })));
}

export async function getRun(w: Writer, id: string): Promise<Run | null> {
  return w.read(async (q) => {
    const r = await q.get('SELECT * FROM runs WHERE id = $1', [id]);
    return r ? toRun(r) : null;
  });
}

/** Runs across tasks (or of one task), newest first; `seq` breaks ties as SQLite's rowid does. */
export async function listRuns(w: Writer, filter: RunFilter = {}): Promise<RunListing[]> {
  const limit = runLimit(filter);
  // Each shape can walk one index in (started_at, seq) order and stop at the limit (no sort of
  // all runs): runs_task, runs_live, runs_started.
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.taskId !== undefined) {
    params.push(filter.taskId);
    where.push(`r.task_id = $${params.length}`);
  }
  if (filter.live) where.push('r.exited_at IS NULL');
  if (filter.outcome !== undefined) {
    params.push(filter.outcome);
    where.push(`r.outcome = $${params.length}`);
  }
  params.push(limit);
  const sql = `SELECT r.*, t.title AS t_title, t.status AS t_status, t.skill AS t_skill,
      (SELECT count(*) FROM runs p WHERE p.task_id = r.task_id AND (p.started_at < r.started_at OR (p.started_at = r.started_at AND p.seq <= r.seq))) AS attempt
     FROM runs r JOIN tasks t ON t.id = r.task_id
    ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY r.started_at DESC, r.seq DESC LIMIT $${params.length}`;
  return w.read(async (q) =>
    (await q.all(sql, params)).map(
      (r): RunListing => ({ ...toRun(r), taskTitle: String(r.t_title), taskStatus: r.t_status as TaskStatus, skill: String(r.t_skill), attempt: Number(r.attempt) }),
    ),
  );
}
