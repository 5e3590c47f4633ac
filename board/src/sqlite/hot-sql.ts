/**
 * The statements the supervisor runs every tick. Each must stay flat in the board's size (an index
 * seek, never a scan or a sort of the queue): test/board/board.test.ts checks their query plans.
 */
export const HOT_SQL = {
  // INDEXED BY: left alone, the planner picks tasks_status and sorts every ready task per claim.
  claimReady: `SELECT t.* FROM tasks t INDEXED BY tasks_ready
  WHERE t.status = 'ready' AND t.not_before <= ?
    AND EXISTS (SELECT 1 FROM skills s WHERE s.name = t.skill)
  ORDER BY t.priority DESC, t.created_at, t.id LIMIT ?`,
  // The distinct skills of the ready tasks, one index seek each (a loose index scan).
  firstReadySkill: `SELECT skill FROM tasks INDEXED BY tasks_ready_skill WHERE status = 'ready' ORDER BY skill LIMIT 1`,
  nextReadySkill: `SELECT skill FROM tasks INDEXED BY tasks_ready_skill WHERE status = 'ready' AND skill > ? ORDER BY skill LIMIT 1`,
  readyTasksOfSkill: `SELECT id FROM tasks INDEXED BY tasks_ready_skill WHERE status = 'ready' AND skill = ?`,
  // Read as raw rows (see toLiveRun for the column order): row objects spread into LiveRuns cost
  // ~620 KB of garbage per call with 64 live runs (~10 KB a run); raw rows and one object per run
  // cost ~70 KB. Under churn the first kept the supervisor's young generation at its maximum (RSS +30 MB).
  liveRuns: `SELECT r.id, r.task_id, r.status, r.outcome, r.pid, r.pgid, r.proc_start_time, r.boot_id, r.started_at,
        r.heartbeat_at, r.progress, r.ended_at, r.exit_code, r.signal, r.error, r.log_path, r.stop_reason,
        r.sigterm_at, r.sigkill_at, r.exited_at, r.accounted_at, r.defer_until, r.stopped_on_request,
        t.status, t.max_runtime_seconds, s.max_runtime_seconds, s.heartbeat_timeout_seconds,
        s.reclaim_grace_seconds, s.max_rss_mb, t.skill, s.report, r.token
   FROM runs r JOIN tasks t ON t.id = r.task_id LEFT JOIN skills s ON s.name = t.skill
  WHERE r.exited_at IS NULL ORDER BY r.started_at`,
  // Run columns aliased r_* (toRun(row, 'r_')), task columns as they are (toTask).
  unaccountedRuns: `SELECT r.id AS r_id, r.task_id AS r_task_id, r.token AS r_token, r.status AS r_status, r.outcome AS r_outcome,
        r.pid AS r_pid, r.pgid AS r_pgid, r.proc_start_time AS r_proc_start_time, r.boot_id AS r_boot_id,
        r.started_at AS r_started_at, r.heartbeat_at AS r_heartbeat_at, r.progress AS r_progress,
        r.ended_at AS r_ended_at, r.exit_code AS r_exit_code, r.signal AS r_signal, r.error AS r_error,
        r.log_path AS r_log_path, r.stop_reason AS r_stop_reason, r.sigterm_at AS r_sigterm_at,
        r.sigkill_at AS r_sigkill_at, r.exited_at AS r_exited_at, r.accounted_at AS r_accounted_at,
        r.defer_until AS r_defer_until, r.stopped_on_request AS r_stopped_on_request, t.*
   FROM runs r JOIN tasks t ON t.id = r.task_id
  WHERE r.status = 'ended' AND r.accounted_at IS NULL AND r.exited_at IS NOT NULL
  ORDER BY r.ended_at`,
  // Task graph: the waiting children of a parent just done whose parents are now all done (seeks
  // links_parent, then each child's parents through the links primary key). INDEXED BY and CROSS
  // JOIN: left alone, after ANALYZE the planner may walk every waiting task (tasks_status_skill).
  childrenToRelease: `SELECT l.child FROM links l INDEXED BY links_parent CROSS JOIN tasks t ON t.id = l.child
  WHERE l.parent = ? AND t.status = 'waiting'
    AND NOT EXISTS (SELECT 1 FROM links l2 JOIN tasks p ON p.id = l2.parent WHERE l2.child = l.child AND p.status <> 'done')
  ORDER BY l.child`,
  // Caps (issue 16). The capped skills (the skills table is small: a scan of it is a few rows).
  cappedSkills: `SELECT name, max_concurrent FROM skills WHERE max_concurrent IS NOT NULL`,
  // Live workers per skill: the runs not yet confirmed gone (being reclaimed included), through
  // runs_live (its size is the pool's, not the board's), each joined to its task by primary key;
  // counted by the caller (a GROUP BY here would sort them in a temporary b-tree).
  liveSkills: `SELECT t.skill AS skill FROM runs r INDEXED BY runs_live JOIN tasks t ON t.id = r.task_id
  WHERE r.exited_at IS NULL AND r.accounted_at IS NULL`,
  // The first ready tasks of one skill in claim order: a seek of tasks_ready_skill_order.
  readyOfSkill: `SELECT t.* FROM tasks t INDEXED BY tasks_ready_skill_order
  WHERE t.status = 'ready' AND t.skill = ? AND t.not_before <= ?
  ORDER BY t.priority DESC, t.created_at, t.id LIMIT ?`,
  // The supervisor's next wake-up: the earliest not-yet-due ready task (a seek of tasks_ready_due).
  nextDue: `SELECT not_before FROM tasks INDEXED BY tasks_ready_due WHERE status = 'ready' AND not_before > ? ORDER BY not_before LIMIT 1`,
  // Metrics: tasks by status and skill (not a tick statement, but its plan is checked too).
  taskCountsBySkill: `SELECT status, skill, count(*) AS n FROM tasks GROUP BY status, skill`,
} as const;
