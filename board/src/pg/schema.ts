/**
 * The PostgreSQL board's schema, in its own PostgreSQL schema (default `kanban`), and its
 * migrations, keyed on the one row of `schema_version` (SQLite keeps `user_version`; the rule is
 * the same: a board whose schema is newer than this build is refused, naming both versions).
 *
 * The tables mirror the SQLite board's (../schema.ts) column for column, so the row mappers are
 * shared: JSON stays text (what JSON.stringify wrote; `::json` in the CHECKs validates it), ms
 * timestamps are bigint. Keys and skill names collate "C" (byte order, as SQLite compares them),
 * so listings and tie-breaks order the same on both backends and the indexes serve them.
 * `runs.seq` is the insertion order SQLite's rowid gives (the tie-break of same-millisecond runs).
 */
import type { Migration } from '../schema.js';

export const PG_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE skills (
  name text COLLATE "C" PRIMARY KEY,
  argv text NOT NULL CHECK (json_typeof(argv::json) = 'array' AND json_array_length(argv::json) > 0),
  cwd text,
  env text NOT NULL DEFAULT '{}' CHECK (json_typeof(env::json) = 'object'),
  pass_env text NOT NULL DEFAULT '[]' CHECK (json_typeof(pass_env::json) = 'array'),
  max_runtime_seconds double precision CHECK (max_runtime_seconds IS NULL OR max_runtime_seconds > 0),
  heartbeat_timeout_seconds double precision CHECK (heartbeat_timeout_seconds IS NULL OR heartbeat_timeout_seconds >= 0),
  reclaim_grace_seconds double precision CHECK (reclaim_grace_seconds IS NULL OR reclaim_grace_seconds >= 0),
  max_rss_mb bigint CHECK (max_rss_mb IS NULL OR max_rss_mb >= 0),
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

CREATE TABLE tasks (
  id text COLLATE "C" PRIMARY KEY,
  title text NOT NULL,
  skill text COLLATE "C" NOT NULL,
  payload text NOT NULL DEFAULT 'null' CHECK (payload::json IS NOT NULL),
  status text NOT NULL CHECK (status IN ('ready', 'running', 'done', 'blocked', 'cancelled')),
  priority bigint NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  not_before bigint NOT NULL DEFAULT 0,
  consecutive_failures integer NOT NULL DEFAULT 0,
  max_retries integer CHECK (max_retries IS NULL OR max_retries >= 1),
  max_runtime_seconds double precision CHECK (max_runtime_seconds IS NULL OR max_runtime_seconds > 0),
  last_error text,
  result text CHECK (result IS NULL OR result::json IS NOT NULL),
  current_run_id text COLLATE "C"
);
-- The claim's index: ready tasks in claim order (priority, then age, then id). Partial, so its
-- size is the ready queue's, not the board's.
CREATE INDEX tasks_ready ON tasks (priority DESC, created_at, id) WHERE status = 'ready';
CREATE INDEX tasks_status ON tasks (status, created_at);
CREATE INDEX tasks_ready_skill ON tasks (skill) WHERE status = 'ready';

CREATE TABLE runs (
  id text COLLATE "C" PRIMARY KEY,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  task_id text COLLATE "C" NOT NULL REFERENCES tasks (id),
  token text NOT NULL,
  status text NOT NULL CHECK (status IN ('starting', 'running', 'ended')),
  outcome text CHECK (outcome IS NULL OR outcome IN ('completed', 'failed', 'crashed', 'spawn_failed', 'timed_out',
                      'stalled', 'memory_exceeded', 'cancelled', 'deferred', 'abandoned')),
  pid integer,
  pgid integer,
  proc_start_time bigint,
  boot_id text,
  started_at bigint NOT NULL,
  heartbeat_at bigint,
  progress text CHECK (progress IS NULL OR progress::json IS NOT NULL),
  ended_at bigint,
  exit_code integer,
  signal text,
  error text,
  log_path text,
  stop_reason text,
  sigterm_at bigint,
  sigkill_at bigint,
  exited_at bigint,
  accounted_at bigint,
  defer_until bigint,
  stopped_on_request integer NOT NULL DEFAULT 0
);
CREATE INDEX runs_task ON runs (task_id, started_at, seq);
CREATE INDEX runs_live ON runs (started_at, seq) WHERE exited_at IS NULL;
CREATE INDEX runs_unaccounted ON runs (ended_at) WHERE accounted_at IS NULL AND status = 'ended';
CREATE INDEX runs_started ON runs (started_at, seq);

CREATE TABLE events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task_id text COLLATE "C" NOT NULL,
  run_id text COLLATE "C",
  kind text NOT NULL,
  data text CHECK (data IS NULL OR data::json IS NOT NULL),
  at bigint NOT NULL
);
CREATE INDEX events_task ON events (task_id, id);

CREATE TABLE owner (
  id integer PRIMARY KEY CHECK (id = 1),
  pid integer NOT NULL,
  host text NOT NULL,
  started_at bigint NOT NULL,
  seen_at bigint NOT NULL,
  state text NOT NULL DEFAULT 'running',
  detail text
);
`,
  },
  {
    // Several supervisors on one board (issue 14): one row per supervisor that ran (its host id,
    // pid, boot id, start, lease), and the supervisor that claimed each run. The lease is renewed
    // in every tick's transaction; ownership per host is a session advisory lock (host-lock.ts),
    // not a row, so that the server releases it when the supervisor's connection dies.
    version: 2,
    sql: `
CREATE TABLE supervisors (
  id text COLLATE "C" PRIMARY KEY,
  host_id text COLLATE "C" NOT NULL,
  host text NOT NULL,
  pid integer NOT NULL,
  boot_id text,
  proc_start_time bigint,
  started_at bigint NOT NULL,
  lease_expires_at bigint NOT NULL,
  stopped_at bigint
);
CREATE INDEX supervisors_host ON supervisors (host_id, started_at);
ALTER TABLE runs ADD COLUMN supervisor_id text COLLATE "C";
CREATE INDEX runs_live_supervisor ON runs (supervisor_id) WHERE exited_at IS NULL;
`,
  },
  {
    // Takeover of expired leases (issue 14): the supervisor that took another's runs over, and the
    // index every tick's look for expired leases walks (only supervisors not marked stopped).
    version: 3,
    sql: `
ALTER TABLE supervisors ADD COLUMN taken_over_by text COLLATE "C";
CREATE INDEX supervisors_live ON supervisors (lease_expires_at) WHERE stopped_at IS NULL;
`,
  },
  {
    // The HTTP view (issue 15). The event feed in commit order: an event's id is taken at insert,
    // not at commit, so each event records its transaction's id, and the feed is read in (txid, id)
    // order up to the oldest transaction still running (pg/pages.ts). Existing events get this
    // migration's transaction id (they are all committed before it). tasks_created: a keyset page
    // of every task, newest first; tasks_skill_created: the same for one skill.
    version: 4,
    sql: `
ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_txid ON events (txid, id);
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_skill_created ON tasks (skill, created_at, id);
CREATE INDEX tasks_status_skill ON tasks (status, skill, created_at, id);
`,
  },
  {
    // The task graph (issue 16): a `waiting` status (not in tasks_ready: the claim never sees it)
    // and the links between tasks, (child, parent), read both ways: a finishing parent seeks its
    // children (links_parent), a child its parents (the primary key).
    version: 5,
    sql: `
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check CHECK (status IN ('waiting', 'ready', 'running', 'done', 'blocked', 'cancelled'));
CREATE TABLE links (
  child text COLLATE "C" NOT NULL REFERENCES tasks (id),
  parent text COLLATE "C" NOT NULL REFERENCES tasks (id),
  created_at bigint NOT NULL,
  PRIMARY KEY (child, parent)
);
CREATE INDEX links_parent ON links (parent, child);
`,
  },
  {
    // Issue 16 (caps, scheduling, keys, retention), as SQLite's version 6 (../schema.ts).
    version: 6,
    sql: `
ALTER TABLE skills ADD COLUMN max_concurrent integer CHECK (max_concurrent IS NULL OR max_concurrent >= 1);
ALTER TABLE tasks ADD COLUMN key text COLLATE "C" CHECK (key IS NULL OR length(key) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX tasks_key ON tasks (key) WHERE key IS NOT NULL;
CREATE INDEX tasks_ready_skill_order ON tasks (skill, priority DESC, created_at, id) WHERE status = 'ready';
CREATE INDEX tasks_ready_due ON tasks (not_before) WHERE status = 'ready';
CREATE INDEX tasks_finished ON tasks (updated_at) WHERE status IN ('done', 'cancelled');
`,
  },
  {
    // Exit-code skills (issue 17), as on SQLite (../schema.ts version 7): how a skill's workers
    // report, and an exit-code skill's result source.
    version: 7,
    sql: `
ALTER TABLE skills ADD COLUMN report text NOT NULL DEFAULT 'board' CHECK (report IN ('board', 'exit'));
ALTER TABLE skills ADD COLUMN result_from text;
ALTER TABLE skills ADD CONSTRAINT skills_result_from CHECK (result_from IS NULL OR (result_from = 'stdout-json' AND report = 'exit'));
`,
  },
  {
    // Worker reports applied at most once (issue 17), as on SQLite (../schema.ts, version 8): an
    // event keeps the seq of the report that wrote it (unique per run), a run the seq of the
    // report that ended it.
    version: 8,
    sql: `
ALTER TABLE events ADD COLUMN seq text COLLATE "C";
CREATE UNIQUE INDEX events_run_seq ON events (run_id, seq) WHERE seq IS NOT NULL;
ALTER TABLE runs ADD COLUMN report_seq text;
`,
  },
];

export const PG_SCHEMA_VERSION = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version;
