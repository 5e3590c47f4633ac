/**
 * Schema migrations keyed on PRAGMA user_version. Each runs in one BEGIN IMMEDIATE
 * transaction that re-reads the version, so concurrent openers migrate exactly once.
 */
export interface Migration {
  version: number;
  sql: string;
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
    // NOTE: becomes version 8 at the merge (issue 16 takes 5, 6; exit-code skills 7)
    // Worker reports applied at most once (issue 17): every non-idempotent worker write carries
    // the report's sequence number (per run, increasing; the worker picks it). An event keeps it
    // (unique per run: a report retried after its answer was lost is a duplicate), a run the seq
    // of the report that ended it. Old rows keep NULL; the columns are the last of their tables,
    // so a salvage's page scan reads a record written before this migration with NULL there
    // (recover/shape.ts: ADDED_COLUMNS).
    version: 5,
    sql: `
ALTER TABLE events ADD COLUMN seq TEXT;
CREATE UNIQUE INDEX events_run_seq ON events (run_id, seq) WHERE seq IS NOT NULL;
ALTER TABLE runs ADD COLUMN report_seq TEXT;
`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
