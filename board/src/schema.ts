/**
 * Schema migrations keyed on PRAGMA user_version. Each runs in one BEGIN IMMEDIATE
 * transaction that re-reads the version, so concurrent openers migrate exactly once.
 */
export interface Migration {
  version: number;
  sql: string;
  /**
   * SQLite: the migration rebuilds a table that other tables reference (the documented
   * "make other kinds of table schema changes" procedure): foreign keys are switched off around
   * its transaction and `foreign_key_check` must come back empty before it commits.
   */
  rebuildsTables?: boolean;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE skills (
  name TEXT PRIMARY KEY,
  argv TEXT NOT NULL CHECK (json_valid(argv) AND json_type(argv) = 'array' AND json_array_length(argv) > 0),
  cwd TEXT,
  env TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(env) AND json_type(env) = 'object'),
  max_runtime_seconds REAL CHECK (max_runtime_seconds IS NULL OR max_runtime_seconds > 0),
  heartbeat_timeout_seconds REAL CHECK (heartbeat_timeout_seconds IS NULL OR heartbeat_timeout_seconds >= 0),
  reclaim_grace_seconds REAL CHECK (reclaim_grace_seconds IS NULL OR reclaim_grace_seconds >= 0),
  max_rss_mb INTEGER CHECK (max_rss_mb IS NULL OR max_rss_mb >= 0),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  skill TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(payload)),
  status TEXT NOT NULL CHECK (status IN ('ready', 'running', 'done', 'blocked', 'cancelled')),
  priority INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  not_before INTEGER NOT NULL DEFAULT 0,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  max_retries INTEGER CHECK (max_retries IS NULL OR max_retries >= 1),
  max_runtime_seconds REAL CHECK (max_runtime_seconds IS NULL OR max_runtime_seconds > 0),
  last_error TEXT,
  result TEXT CHECK (result IS NULL OR json_valid(result)),
  current_run_id TEXT
) STRICT;
CREATE INDEX tasks_ready ON tasks (priority DESC, created_at, id) WHERE status = 'ready';
CREATE INDEX tasks_status ON tasks (status, created_at);

CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  task_id TEXT NOT NULL REFERENCES tasks (id),
  token TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('starting', 'running', 'ended')),
  outcome TEXT CHECK (outcome IS NULL OR outcome IN ('completed', 'failed', 'crashed', 'spawn_failed', 'timed_out',
                      'stalled', 'memory_exceeded', 'cancelled', 'deferred', 'abandoned')),
  pid INTEGER,
  pgid INTEGER,
  proc_start_time INTEGER,
  boot_id TEXT,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER,
  progress TEXT CHECK (progress IS NULL OR json_valid(progress)),
  ended_at INTEGER,
  exit_code INTEGER,
  signal TEXT,
  error TEXT,
  log_path TEXT,
  stop_reason TEXT,
  sigterm_at INTEGER,
  sigkill_at INTEGER,
  exited_at INTEGER,
  accounted_at INTEGER,
  defer_until INTEGER,
  stopped_on_request INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX runs_task ON runs (task_id, started_at);
CREATE INDEX runs_live ON runs (started_at) WHERE exited_at IS NULL;
CREATE INDEX runs_unaccounted ON runs (ended_at) WHERE accounted_at IS NULL AND status = 'ended';

CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  run_id TEXT,
  kind TEXT NOT NULL,
  data TEXT CHECK (data IS NULL OR json_valid(data)),
  at INTEGER NOT NULL
) STRICT;
CREATE INDEX events_task ON events (task_id, id);

CREATE TABLE owner (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  seen_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'running',
  detail TEXT
) STRICT;
`,
  },
  {
    // Unknown-skill checks look up the distinct skills of ready tasks by seeking this index (a few
    // seeks per skill) instead of scanning every ready task.
    version: 2,
    sql: `CREATE INDEX tasks_ready_skill ON tasks (skill) WHERE status = 'ready';`,
  },
  {
    // pass_env: the names of variables a skill's workers get from the supervisor's environment at
    // spawn (names only: the values are never stored). The UPDATE rewrites the few skill rows with
    // the new column, so every row's record has the table's full column count (a salvage's page
    // scan matches records by their column count).
    // runs_started: `runs` across tasks, newest first, without sorting every run (tasks, flags).
    version: 3,
    sql: `
ALTER TABLE skills ADD COLUMN pass_env TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(pass_env) AND json_type(pass_env) = 'array');
UPDATE skills SET pass_env = '[]';
CREATE INDEX runs_started ON runs (started_at);
`,
  },
  {
    // The HTTP view (issue 15): keyset pages of tasks, newest first (created_at DESC, id DESC), of
    // every task or of one skill, without sorting the board (one status: tasks_status); tasks by
    // status and skill (/metrics) from tasks_status_skill alone, without reading every task row
    // (measured at 100,000 tasks: a table scan ~10× the index scan).
    version: 4,
    sql: `
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_skill_created ON tasks (skill, created_at, id);
CREATE INDEX tasks_status_skill ON tasks (status, skill, created_at, id);
`,
  },
  {
    // The task graph (issue 16): a `waiting` status (a task whose parents are not all done; it is
    // not in tasks_ready, so the claim never sees it) and the links between tasks, (child, parent),
    // read both ways: a finishing parent seeks its children (links_parent), a child its parents
    // (the primary key). SQLite cannot change a CHECK in place: the tasks table is rebuilt with the
    // same columns in the same order (a salvage matches records by their column count) and its
    // indexes made again. `links` keeps a rowid: `migrate` to PostgreSQL pages every table by it.
    version: 5,
    rebuildsTables: true,
    sql: `
CREATE TABLE tasks_v5 (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  skill TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(payload)),
  status TEXT NOT NULL CHECK (status IN ('waiting', 'ready', 'running', 'done', 'blocked', 'cancelled')),
  priority INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  not_before INTEGER NOT NULL DEFAULT 0,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  max_retries INTEGER CHECK (max_retries IS NULL OR max_retries >= 1),
  max_runtime_seconds REAL CHECK (max_runtime_seconds IS NULL OR max_runtime_seconds > 0),
  last_error TEXT,
  result TEXT CHECK (result IS NULL OR json_valid(result)),
  current_run_id TEXT
) STRICT;
INSERT INTO tasks_v5 (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures,
                      max_retries, max_runtime_seconds, last_error, result, current_run_id)
  SELECT id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures,
         max_retries, max_runtime_seconds, last_error, result, current_run_id FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v5 RENAME TO tasks;
CREATE INDEX tasks_ready ON tasks (priority DESC, created_at, id) WHERE status = 'ready';
CREATE INDEX tasks_status ON tasks (status, created_at);
CREATE INDEX tasks_ready_skill ON tasks (skill) WHERE status = 'ready';
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_skill_created ON tasks (skill, created_at, id);
CREATE INDEX tasks_status_skill ON tasks (status, skill, created_at, id);

CREATE TABLE links (
  child TEXT NOT NULL REFERENCES tasks (id),
  parent TEXT NOT NULL REFERENCES tasks (id),
  created_at INTEGER NOT NULL,
  PRIMARY KEY (child, parent)
) STRICT;
CREATE INDEX links_parent ON links (parent, child);
`,
  },
  {
    // Issue 16 (caps, scheduling, keys, retention).
    // - skills.max_concurrent: at most that many live workers of the skill (NULL: no cap).
    // - tasks.key: an idempotency key, unique while the task exists (until pruned).
    // - tasks_ready_skill_order: the ready tasks of one skill in claim order (a capped claim takes
    //   each skill with room by a seek, never walks a full skill's backlog).
    // - tasks_ready_due: the earliest not-yet-due ready task (the supervisor's wake-up), a seek.
    // - tasks_finished: finished tasks by age, the retention's batches (a seek per batch).
    // The UPDATEs rewrite every row with the new columns (a salvage's page scan matches records by
    // their column count; see version 3).
    version: 6,
    sql: `
ALTER TABLE skills ADD COLUMN max_concurrent INTEGER CHECK (max_concurrent IS NULL OR max_concurrent >= 1);
UPDATE skills SET max_concurrent = NULL;
ALTER TABLE tasks ADD COLUMN key TEXT CHECK (key IS NULL OR length(key) BETWEEN 1 AND 200);
UPDATE tasks SET key = NULL;
CREATE UNIQUE INDEX tasks_key ON tasks (key) WHERE key IS NOT NULL;
CREATE INDEX tasks_ready_skill_order ON tasks (skill, priority DESC, created_at, id) WHERE status = 'ready';
CREATE INDEX tasks_ready_due ON tasks (not_before) WHERE status = 'ready';
CREATE INDEX tasks_finished ON tasks (updated_at) WHERE status IN ('done', 'cancelled');
`,
  },
  {
    // Exit-code skills (issue 17): how a skill's workers report ('board': through the board with
    // their run token; 'exit': by their exit status alone, the supervisor ends the run), and where
    // an exit-code skill's result comes from (NULL: none; 'stdout-json': the log's last line). The
    // UPDATE rewrites the skill rows with the new columns (a salvage's page scan matches records
    // by their column count, see version 3).
    version: 7,
    sql: `
ALTER TABLE skills ADD COLUMN report TEXT NOT NULL DEFAULT 'board' CHECK (report IN ('board', 'exit'));
ALTER TABLE skills ADD COLUMN result_from TEXT CHECK (result_from IS NULL OR (result_from = 'stdout-json' AND report = 'exit'));
UPDATE skills SET report = 'board';
`,
  },
  {
    // Worker reports applied at most once (issue 17): every non-idempotent worker write carries
    // the report's sequence number (per run, increasing; the worker picks it). An event keeps it
    // (unique per run: a report retried after its answer was lost is a duplicate), a run the seq
    // of the report that ended it. Old rows keep NULL; the columns are the last of their tables,
    // so a salvage's page scan reads a record written before this migration with NULL there
    // (recover/shape.ts: ADDED_COLUMNS).
    version: 8,
    sql: `
ALTER TABLE events ADD COLUMN seq TEXT;
CREATE UNIQUE INDEX events_run_seq ON events (run_id, seq) WHERE seq IS NOT NULL;
ALTER TABLE runs ADD COLUMN report_seq TEXT;
`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
