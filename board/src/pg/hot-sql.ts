/**
 * The statements a supervisor runs every tick on a PostgreSQL board. Each must stay flat in the
 * board's size (an index scan, never a Seq Scan or a Sort of the queue):
 * test/board/pg-plans.test.ts checks their plans with 1,000,000 done and 100,000 ready tasks.
 */
/**
 * A supervisor sees only its own host's runs ($1: its host id; NULL: every run, for a board object
 * that registered no supervisor): runs claimed by a supervisor of this host, and runs with no
 * supervisor recorded. Another host's processes are never signalled, adopted or judged from here.
 */
const OF_HOST = `($1::text IS NULL OR r.supervisor_id IS NULL
       OR r.supervisor_id IN (SELECT v.id FROM supervisors v WHERE v.host_id = $1::text))`;

/** Live runs with what decides on them, read as arrays in toLiveRun's column order (the same as SQLite's HOT_SQL.liveRuns). */
const LIVE_RUNS = `SELECT r.id, r.task_id, r.status, r.outcome, r.pid, r.pgid, r.proc_start_time, r.boot_id, r.started_at,
        r.heartbeat_at, r.progress, r.ended_at, r.exit_code, r.signal, r.error, r.log_path, r.stop_reason,
        r.sigterm_at, r.sigkill_at, r.exited_at, r.accounted_at, r.defer_until, r.stopped_on_request,
        t.status, t.max_runtime_seconds, s.max_runtime_seconds, s.heartbeat_timeout_seconds,
        s.reclaim_grace_seconds, s.max_rss_mb, t.skill, s.report, r.token
   FROM runs r JOIN tasks t ON t.id = r.task_id LEFT JOIN skills s ON s.name = t.skill`;

/**
 * The claim statement (PG_HOT_SQL.claimBatch); `only`: restricted to the tasks of $8 (a text
 * array: the candidates a capped claim chose, see claimCandidates), each still re-checked here.
 */
function claimStatement(only: boolean): string {
  return `WITH me AS (
    SELECT v.id FROM supervisors v WHERE v.id = $7::text AND v.stopped_at IS NULL FOR SHARE
  ), picked AS (
    SELECT t.id, t.priority, t.created_at, GREATEST(t.updated_at, t.not_before) AS ready_at,
           s.name AS s_name, s.argv AS s_argv, s.cwd AS s_cwd, s.env AS s_env, s.pass_env AS s_pass_env,
           s.max_runtime_seconds AS s_max_runtime_seconds, s.heartbeat_timeout_seconds AS s_heartbeat_timeout_seconds,
           s.reclaim_grace_seconds AS s_reclaim_grace_seconds, s.max_rss_mb AS s_max_rss_mb,
           s.report AS s_report, s.result_from AS s_result_from
      FROM tasks t JOIN skills s ON s.name = t.skill
     WHERE t.status = 'ready' AND t.not_before <= $1 AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM me))${only ? ' AND t.id = ANY($8::text[])' : ''}
     ORDER BY t.priority DESC, t.created_at, t.id
     LIMIT $2
       FOR UPDATE OF t SKIP LOCKED
  ), numbered AS (
    SELECT p.*, row_number() OVER (ORDER BY p.priority DESC, p.created_at, p.id) AS n FROM picked p
  ), fresh AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS f(run_id, token, log_path, n)
  ), claimed AS (
    UPDATE tasks t SET status = 'running', current_run_id = f.run_id, updated_at = $6
      FROM numbered p JOIN fresh f ON f.n = p.n
     WHERE t.id = p.id
    RETURNING t.*, f.token AS f_token, f.log_path AS f_log_path, p.n AS f_n
  ), started AS (
    INSERT INTO runs (id, task_id, token, status, started_at, log_path, supervisor_id)
    SELECT c.current_run_id, c.id, c.f_token, 'starting', $6, c.f_log_path, $7::text FROM claimed c ORDER BY c.f_n
    RETURNING id
  ), logged AS (
    INSERT INTO events (task_id, run_id, kind, data, at)
    SELECT c.id, c.current_run_id, 'claimed', json_build_object('attempt', c.consecutive_failures + 1)::text, $6
      FROM claimed c ORDER BY c.f_n
  )
  SELECT c.*, p.ready_at AS f_ready_at, p.s_name, p.s_argv, p.s_cwd, p.s_env, p.s_pass_env, p.s_max_runtime_seconds,
         p.s_heartbeat_timeout_seconds, p.s_reclaim_grace_seconds, p.s_max_rss_mb, p.s_report, p.s_result_from
    FROM claimed c JOIN numbered p ON p.id = c.id
   ORDER BY c.f_n`;
}

export const PG_HOT_SQL = {
  /**
   * One claim batch in ONE statement. `picked` walks tasks_ready in claim order (priority, age,
   * id: the index order, so no Sort) and locks each row it takes, skipping rows another claimer
   * has locked (FOR UPDATE SKIP LOCKED): concurrent supervisors never take one task twice and
   * never wait on each other. It carries the skill as it was read, so a skill removed meanwhile
   * cannot leave a claimed task without its skill in the answer.
   * The run ids, tokens and log paths come precomputed as arrays ($3-$5); the n-th task claimed
   * gets the n-th of each. The task update, its run (`started`) and its `claimed` event land in the
   * same statement (a data-modifying WITH runs once, referenced or not).
   * $1 now (not_before), $2 the batch size, $6 now (timestamps), $7 the claiming supervisor's id
   * (runs.supervisor_id; NULL for a board object that registered no supervisor). A registered
   * supervisor claims only while its row is not marked stopped (taken over: its lease expired),
   * and holds the row (FOR SHARE) until its claims commit, so nobody takes it over meanwhile.
   */
  claimBatch: claimStatement(false),

  /**
   * The skills that ready tasks name but the board lacks: a loose index scan of tasks_ready_skill
   * (one seek per distinct skill, as on SQLite), so nothing-to-block costs a few seeks, not a scan.
   */
  unknownReadySkills: `WITH RECURSIVE s(skill) AS (
      (SELECT skill FROM tasks WHERE status = 'ready' ORDER BY skill LIMIT 1)
      UNION ALL
      SELECT (SELECT t.skill FROM tasks t WHERE t.status = 'ready' AND t.skill > s.skill ORDER BY t.skill LIMIT 1)
        FROM s WHERE s.skill IS NOT NULL
    )
    SELECT skill FROM s WHERE skill IS NOT NULL AND NOT EXISTS (SELECT 1 FROM skills k WHERE k.name = s.skill)`,
  /** Block the ready tasks of one unknown skill (re-checked under the row locks), with their events. */
  blockSkillTasks: `WITH blocked AS (
      UPDATE tasks SET status = 'blocked', last_error = $2, updated_at = $3
       WHERE status = 'ready' AND skill = $1 AND NOT EXISTS (SELECT 1 FROM skills k WHERE k.name = $1)
      RETURNING id
    ), logged AS (
      INSERT INTO events (task_id, run_id, kind, data, at)
      SELECT id, NULL, 'blocked', json_build_object('reason', $2::text)::text, $3 FROM blocked
    )
    SELECT id FROM blocked ORDER BY id`,
  liveRuns: `${LIVE_RUNS}
  WHERE r.exited_at IS NULL AND ${OF_HOST} ORDER BY r.started_at, r.seq`,
  /**
   * Supervisors of other hosts whose lease expired ($1 now, $2 this supervisor's host id), not held
   * by a transaction (a supervisor renewing its lease holds its row: it is alive, skip it).
   */
  expiredSupervisors: `SELECT * FROM supervisors
   WHERE stopped_at IS NULL AND lease_expires_at < $1 AND host_id <> $2::text
   ORDER BY lease_expires_at LIMIT 16 FOR UPDATE SKIP LOCKED`,
  /** The live runs of one supervisor ($1), as liveRuns reads them, locked. */
  liveRunsOfSupervisor: `${LIVE_RUNS}
  WHERE r.exited_at IS NULL AND r.supervisor_id = $1 ORDER BY r.started_at, r.seq FOR UPDATE OF r`,
  // Run columns aliased r_* (toRun(row, 'r_')), task columns as they are (toTask).
  unaccountedRuns: `SELECT r.id AS r_id, r.task_id AS r_task_id, r.token AS r_token, r.status AS r_status, r.outcome AS r_outcome,
        r.pid AS r_pid, r.pgid AS r_pgid, r.proc_start_time AS r_proc_start_time, r.boot_id AS r_boot_id,
        r.started_at AS r_started_at, r.heartbeat_at AS r_heartbeat_at, r.progress AS r_progress,
        r.ended_at AS r_ended_at, r.exit_code AS r_exit_code, r.signal AS r_signal, r.error AS r_error,
        r.log_path AS r_log_path, r.stop_reason AS r_stop_reason, r.sigterm_at AS r_sigterm_at,
        r.sigkill_at AS r_sigkill_at, r.exited_at AS r_exited_at, r.accounted_at AS r_accounted_at,
        r.defer_until AS r_defer_until, r.stopped_on_request AS r_stopped_on_request, t.*
   FROM runs r JOIN tasks t ON t.id = r.task_id
  WHERE r.status = 'ended' AND r.accounted_at IS NULL AND r.exited_at IS NOT NULL AND ${OF_HOST}
  ORDER BY r.ended_at, r.seq`,
  /**
   * Task graph, a parent just done ($1): lock its waiting children (links_parent, then each child
   * by its key), in id order so that two finishing parents of common children never deadlock.
   */
  lockWaitingChildren: `SELECT t.id FROM links l JOIN tasks t ON t.id = l.child
   WHERE l.parent = $1 AND t.status = 'waiting' ORDER BY t.id FOR UPDATE OF t`,
  /**
   * Then, in a new statement (a snapshot taken after the locks were granted): the locked children
   * ($1) whose parents are all done become ready, each with its `released` event ($2 now, $3 the parent).
   */
  releaseChildren: `WITH released AS (
      UPDATE tasks t SET status = 'ready', updated_at = $2
       WHERE t.id = ANY($1::text[]) AND t.status = 'waiting'
         AND NOT EXISTS (SELECT 1 FROM links l JOIN tasks p ON p.id = l.parent WHERE l.child = t.id AND p.status <> 'done')
      RETURNING t.id
    ), logged AS (
      INSERT INTO events (task_id, run_id, kind, data, at)
      SELECT id, NULL, 'released', json_build_object('after', $3::text)::text, $2 FROM released
    )
    SELECT id FROM released ORDER BY id`,
  /** The claim of chosen candidates ($8), with the same checks and writes as claimBatch. */
  claimChosen: claimStatement(true),
  /**
   * Caps (issue 16): lock the capped skills' rows (FOR NO KEY UPDATE: createTask's FOR KEY SHARE
   * does not wait on it) for the rest of the tick's transaction. Every claimer on a board with caps
   * takes these locks first, in name order, so capped claims are serialised across supervisors and
   * each one counts the live runs committed before it (the next statement's snapshot).
   */
  lockCappedSkills: `SELECT name, max_concurrent FROM skills WHERE max_concurrent IS NOT NULL ORDER BY name FOR NO KEY UPDATE`,
  /**
   * The candidates of a capped claim ($1 now, $2 the batch size): every skill with ready tasks (a
   * loose scan of tasks_ready_skill), its room (cap minus live runs board-wide, through runs_live;
   * the batch size when uncapped), and its first `room` ready tasks by a seek of
   * tasks_ready_skill_order; the first $2 of those in claim order. A full skill is never walked.
   */
  claimCandidates: `WITH RECURSIVE rs(skill) AS (
      (SELECT skill FROM tasks WHERE status = 'ready' ORDER BY skill LIMIT 1)
      UNION ALL
      SELECT (SELECT t.skill FROM tasks t WHERE t.status = 'ready' AND t.skill > rs.skill ORDER BY t.skill LIMIT 1)
        FROM rs WHERE rs.skill IS NOT NULL
    ), live AS (
      SELECT t.skill, count(*) AS n FROM runs r JOIN tasks t ON t.id = r.task_id
       WHERE r.exited_at IS NULL AND r.accounted_at IS NULL GROUP BY t.skill
    ), room AS (
      SELECT rs.skill, CASE WHEN k.max_concurrent IS NULL THEN $2::bigint
                            ELSE LEAST($2::bigint, GREATEST(0, k.max_concurrent - COALESCE(l.n, 0))) END AS room
        FROM rs JOIN skills k ON k.name = rs.skill LEFT JOIN live l ON l.skill = rs.skill
       WHERE rs.skill IS NOT NULL
    )
    SELECT c.id FROM room m CROSS JOIN LATERAL (
      SELECT t.id, t.priority, t.created_at FROM tasks t
       WHERE t.status = 'ready' AND t.skill = m.skill AND t.not_before <= $1
       ORDER BY t.priority DESC, t.created_at, t.id LIMIT m.room
    ) c
    ORDER BY c.priority DESC, c.created_at, c.id LIMIT $2`,
  /** The supervisor's next wake-up: the earliest not-yet-due ready task (a seek of tasks_ready_due). */
  nextDue: `SELECT not_before FROM tasks WHERE status = 'ready' AND not_before > $1 ORDER BY not_before LIMIT 1`,
  /** Metrics: tasks by status and skill (not a tick statement; read on a connection of its own). */
  taskCountsBySkill: `SELECT status, skill, count(*) AS n FROM tasks GROUP BY status, skill`,
} as const;
