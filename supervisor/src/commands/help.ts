/**
 * The CLI's help texts: `USAGE` (`kanban-supervisor --help`, or no command) and `HELP`, each
 * command's `COMMAND --help` / `help COMMAND` text. The worker verbs' help is the worker CLI's
 * (worker-runtime).
 */
import { CONFIG_VARS, RUN_OUTCOMES, TASK_STATUSES, shownDefault } from '@kanban-supervisor/policies';

export const USAGE = `Usage: kanban-supervisor [--db PATH] [--json] COMMAND ...
       kanban-supervisor COMMAND --help      options of one command

Daemon:
  run [--standby] [--until-idle] [--detach-on-exit] [--pass-env NAME]... [--env-file FILE]...
      [--log-format auto|pretty|json] [tuning flags]
  status [--watch [--interval S]]       owner, pool, dispatch and each live worker (reads only)

Board (init and skill add create a missing board and its folder; run creates one only in an
existing folder or at ./.kanban/kanban.db; every other command needs an existing board):
  init                                  create the board (idempotent)
  skill add NAME [--cwd DIR] [--env K=V]... [--pass-env NAME]... [--max-runtime S]
                 [--heartbeat-timeout S] [--reclaim-grace S] [--max-rss-mb N] [--max-concurrent N]
                 [--report board|exit [--result stdout-json]] -- CMD [ARGS...]
  skill set NAME --max-concurrent N|none   change a skill's cap on live workers
  skill list | skill show NAME | skill rm NAME
  add --skill NAME [--title T] [--payload JSON] [--priority N] [--max-runtime S] [--max-attempts N]
      [--after ID]... [--delay 30s|5m|2h | --at 2026-12-24T09:00:00Z] [--key KEY]
                                        with --after the task waits until every parent is done
  add --from FILE.jsonl|-               one task per line, all or nothing; prints the ids
  prune --older-than 7d [--status done,cancelled]   remove finished tasks, runs, events, logs
  list [--status S] [--skill NAME] [--limit N]
  show ID                               a task (ID: task or run id) with its runs and events
  runs [--task ID] [--outcome O] [--limit N]     runs across tasks, newest first
  logs ID [--run RUN_ID | --attempt N] [--tail N] [-f]   a run's output; -f follows the task
  cancel ID [--cascade] | block ID --reason R | unblock ID | retry ID
  link ID --after PARENT... | unlink ID --after PARENT...   the task graph of existing tasks
  check [--full]                        is the board healthy (exit 0) or damaged (exit 1)
  recover --out NEW.db | --in-place     salvage every readable row into a fresh board
  migrate --from PATH.db --to postgres://... [--dry-run]   copy a SQLite board to PostgreSQL

Worker (inside a worker, with the KANBAN_* variables the supervisor sets; see worker --help):
  worker heartbeat [--progress JSON] | worker event KIND [--data JSON] | worker payload [--get F]
  worker complete [--result JSON] | worker fail [--error MSG] | worker defer --seconds N
  worker parents                        the results of the task's parents (JSON, by id)

Tuning (environment variable, or flag for run):
${tuningRows(CONFIG_VARS, 'env')}

Exit status: 0 ok, 1 failure, 2 usage or configuration error, 3 fenced out (worker),
4 board owned by another supervisor (migrate: by any supervisor).
`;

/** Words of `text` on lines of at most `width` characters, each after `indent`. */
function wrap(text: string, indent: string, width = 78): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(indent + line);
  return lines.join('\n');
}

/**
 * The tuning table: per variable, its names and default on one line, what it does wrapped below
 * (a one-line table overflowed any terminal: names up to 27 characters, texts up to 150).
 */
function tuningRows(vars: readonly (typeof CONFIG_VARS)[number][], first: 'env' | 'flag'): string {
  return vars.map((v) => `  ${first === 'env' ? `${v.env}  ${v.flag}` : `${v.flag}  ${v.env}`}  (default ${shownDefault(v)})\n${wrap(v.help, '      ')}`).join('\n');
}

const GLOBAL_OPTS = `Global options: --db PATH (or KANBAN_DB; default ./.kanban/kanban.db), --json (machine output).`;

/** `COMMAND --help`: each command's usage, options and what it does. */
export const HELP: Record<string, string> = {
  run: `Usage: kanban-supervisor run [options] [tuning flags]

Run the supervisor on the board: claim ready tasks, spawn their workers, watch, reclaim and
account for them. One supervisor owns a board; a second is refused (exit 4) and names the owner.

  --standby              wait for the board's owner to go away, then take over
  --until-idle           exit 0 once nothing is ready, running or waiting for accounting;
                         exit 1 once a damaged (quarantined) board has no worker left
  --detach-on-exit       on SIGTERM/SIGINT leave the workers running (a restart adopts them)
  --pass-env NAME        give every worker this variable of the supervisor's environment
                         (repeatable; values are read at each spawn, never stored)
  --env-file FILE        give every worker the variables in FILE (systemd EnvironmentFile
                         syntax: KEY=VALUE lines, # comments, "double" or 'single' quotes;
                         repeatable, later files win; read once at start, never stored)
  --log-format F         auto (default: pretty on a terminal, JSON lines otherwise), pretty
                         (one line per event) or json; or LOG_FORMAT

Tuning (flag, or environment variable; the flag wins):
${tuningRows(CONFIG_VARS.filter((v) => v.flag !== '--db'), 'flag')}

A worker gets only PATH, HOME, LANG, TZ, TMPDIR, the --env-file variables, its skill's --env and
--pass-env variables, the run's --pass-env variables and the KANBAN_* variables.
${GLOBAL_OPTS}
`,
  status: `Usage: kanban-supervisor status [--watch [--interval S]]

The board's owner (pid, host, since), pool use (live/cap), dispatch (running, paused by the storm
breaker, held by a quarantine) with reasons, task counts per status, and one row per live worker:
task, skill, attempt, pid, age, heartbeat age, CPU %, RSS and reclaim state.
Reads only: a read-only board connection, the owner's status file and /proc; takes no lock.

  --watch                refresh until Ctrl-C (exit 0): redrawn in place on a terminal, one
                         block per refresh otherwise (with --json: one JSON object per line)
  --interval S           seconds between refreshes (default 2, from 0.2 to 3600)
${GLOBAL_OPTS}
`,
  init: `Usage: kanban-supervisor init

Create the board (and its folder) if missing; idempotent.
${GLOBAL_OPTS}
`,
  skill: `Usage: kanban-supervisor skill add NAME [options] -- CMD [ARGS...]
       kanban-supervisor skill set NAME --max-concurrent N|none
       kanban-supervisor skill list
       kanban-supervisor skill show NAME
       kanban-supervisor skill rm NAME

skill add registers (or replaces) a skill: the command its workers run (argv, no shell).
  --cwd DIR              working directory of the workers
  --env K=V              a variable for its workers (repeatable; stored on the board: no secrets)
  --pass-env NAME        a variable its workers get from the supervisor's environment at each
                         spawn (repeatable; the name is stored, the value never is: for API keys)
  --max-runtime S        seconds a run may take before it is reclaimed (timed_out)
  --heartbeat-timeout S  seconds without a heartbeat before a run is reclaimed (stalled; 0 = off)
  --reclaim-grace S      seconds between SIGTERM and SIGKILL when a run is reclaimed
  --max-rss-mb N         memory limit of a worker's process group in MB (0 = off)
  --max-concurrent N     at most N live workers of this skill at once, board-wide (a worker
                         being reclaimed counts until it is gone), within MAX_CONCURRENT_WORKERS;
                         its backlog never holds back other skills' tasks
  --report MODE          how its workers report: board (default: through the board, with the
                         run token) or exit (an exit-code skill: any command, nothing to change;
                         the supervisor ends the run from its exit status: 0 completed, 75
                         deferred (not counted), other codes failed (counted, with the code and
                         the log's last lines), killed by a signal crashed; the worker gets no
                         KANBAN_DB and no token, its payload in KANBAN_PAYLOAD (JSON, up to
                         64 KiB) or KANBAN_PAYLOAD_FILE (a 0600 file, larger); heartbeats off
                         unless --heartbeat-timeout is given)
  --result stdout-json   exit-code skill: the result is the last non-empty line of the run's log
                         (stdout and stderr) parsed as JSON; a missing or bad line fails the run

skill set changes a registered skill's cap without re-adding its command (none: no cap).
skill list shows each skill's command (report=exit for exit-code skills); skill show NAME all of
one skill's fields (with --json: the skill as stored, its report mode included).
${GLOBAL_OPTS}
`,
  add: `Usage: kanban-supervisor add --skill NAME [options]

Add a ready task (waiting, with --after); prints its id.
  --skill NAME           the skill that runs it (required)
  --title T              a title (default, and for an empty T: the skill name)
  --payload JSON         the task's input (default null)
  --priority N           higher runs first (default 0)
  --max-runtime S        seconds a run of this task may take (overrides the skill and
                         MAX_RUNTIME_SECONDS)
  --max-attempts N       attempts in total: the task is blocked after N counted failures in a
                         row (overrides FAILURE_LIMIT; deferred runs, runs abandoned at a
                         shutdown and supervisor faults do not count)
  --max-retries N        deprecated name of --max-attempts (same meaning: N attempts in total)
  --after ID             a parent (repeatable, up to 100): the task is waiting until every parent
                         is done, and ready in the same transaction that marks the last one done;
                         with every parent already done it starts ready. An unknown id is refused.
  --delay D              not run before D from now (30s, 5m, 2h, 7d; a bare number is seconds)
  --at TIME              not run before TIME (ISO 8601 with its offset: 2026-12-24T09:00:00Z)
  --key KEY              idempotency key (1-200 characters): if a task with this key is on the
                         board (any status, until pruned), nothing is added and its id is
                         printed (--json: {"id": ..., "created": false}; exit 0); the existing
                         task is left as it is (no links added)
  --from FILE.jsonl      add one task per line (- for stdin; at most 64 MiB), all or nothing in
                         one transaction; fields: skill, title, payload, priority, max_runtime,
                         max_attempts, after (an array of existing task ids), delay, at, key.
                         A bad line is refused naming its line number and field; prints the
                         ids, one a line
                         (--json: [{"id", "created"}])
${GLOBAL_OPTS}
`,
  prune: `Usage: kanban-supervisor prune --older-than DURATION [--status done,cancelled]

Remove finished tasks whose last change is older than DURATION (7d, 12h, 30m) with their runs,
events and run log files, in batches that each hold the board's write lock briefly (~50 ms at
most); prints the counts and the longest batch. Never a waiting, ready, running or blocked task,
nor a task whose worker may still be stopping, nor a parent of a task that is not finished
(the links of a pruned task go with it). RETENTION_DAYS makes the supervisor do this itself.
  --older-than D         the age (required)
  --status S,...         which finished statuses (default done,cancelled)
${GLOBAL_OPTS}
`,
  list: `Usage: kanban-supervisor list [--status S] [--skill NAME] [--limit N]

Tasks, oldest first: id, status, skill, title and last error; a waiting task shows the parents
that hold it, with their status and why (a blocked or cancelled parent's last error).
  --status S             only tasks in status S (${TASK_STATUSES.join(', ')})
  --skill NAME           only tasks of this skill
  --limit N              at most N tasks (default 100000)
${GLOBAL_OPTS}
`,
  show: `Usage: kanban-supervisor show ID

A task with its payload, result, failures, runs (attempt, outcome, pid, exit, times, log file,
last heartbeat and progress) and events in time order. ID may be a run id: its task is shown.
A task of the task graph shows its parents ("after"), its children ("before") and, while it is
waiting, a "waiting for" line naming the parents not done and why (--json: parents, children).
Times are ISO 8601 (UTC) with their age; --json gives raw milliseconds since the epoch.
${GLOBAL_OPTS}
`,
  runs: `Usage: kanban-supervisor runs [--task ID] [--outcome O] [--limit N]

Runs across tasks, newest first: run, task, skill, attempt, outcome, start, duration, pid.
  --task ID              only the runs of this task
  --outcome O            only runs that ended with O:
${wrap(RUN_OUTCOMES.join(', '), ' '.repeat(25))}
  --limit N              at most N runs (default 100)
${GLOBAL_OPTS}
`,
  logs: `Usage: kanban-supervisor logs ID [--run RUN_ID | --attempt N] [--tail N] [-f]

Print a run's output (stdout and stderr of its processes). ID is a task id or a run id; without
--run or --attempt, the task's latest run.
  --run RUN_ID           this run of the task
  --attempt N            the task's Nth run (1 = its first, as show numbers them)
  --tail N               only the last N lines
  -f, --follow           follow the file as it grows, then each later attempt of the task (a
                         "==> task … attempt N: run … <==" line heads each); ends by itself,
                         exit 0, once the task is done, blocked or cancelled and its last run's
                         processes are gone. Ctrl-C exits 0. Works with or without a supervisor.
A log cut by LOG_MAX_BYTES keeps its head and newest tail with one marker line between them
("[kanban-supervisor: log truncated: N bytes dropped here …]"); --tail and -f print that line too.
${GLOBAL_OPTS}
`,
  cancel: `Usage: kanban-supervisor cancel ID [--cascade]

Cancel a task; a running worker is stopped (SIGTERM, then SIGKILL after its grace). The tasks that
wait for it stay waiting (show and list say which parent holds them).
  --cascade              also cancel every task waiting on it, transitively, in the same
                         transaction; prints each id cancelled (--json: {"cancelled": [ids]})
${GLOBAL_OPTS}
`,
  link: `Usage: kanban-supervisor link ID --after PARENT [--after PARENT]...

Make an existing task wait for other tasks (the task graph). The task must be waiting or ready; a
ready task with a parent that is not done becomes waiting. Refused, naming it: an unknown task, and
a link that would close a cycle (the cycle's ids in order). Prints the task's status.
${GLOBAL_OPTS}
`,
  unlink: `Usage: kanban-supervisor unlink ID --after PARENT [--after PARENT]...

Remove links of the task graph; a waiting task whose remaining parents are all done becomes ready.
Refused when the task does not wait for PARENT. Prints the task's status.
${GLOBAL_OPTS}
`,
  block: `Usage: kanban-supervisor block ID --reason R

Block a ready task with a reason (it will not run until unblock or retry).
${GLOBAL_OPTS}
`,
  unblock: `Usage: kanban-supervisor unblock ID

Make a blocked task ready again, its failure counter reset.
${GLOBAL_OPTS}
`,
  retry: `Usage: kanban-supervisor retry ID

Make a blocked, cancelled or done task ready again for a new attempt: its failure counter, last
error and result are reset. Refused for a ready or running task, and while the task's last run has
not ended (its worker may still be stopping). Works with or without a supervisor.
${GLOBAL_OPTS}
`,
  check: `Usage: kanban-supervisor check [--full]

Is the board healthy (exit 0) or damaged (exit 1): header, journal mode, schema version and
quick_check (--full: integrity_check).
${GLOBAL_OPTS}
`,
  recover: `Usage: kanban-supervisor recover --out NEW.db | --in-place

Salvage every readable row of a damaged board into a fresh one: --out writes NEW.db, a path that
must not exist (the board is only read); --in-place backs the damaged files up and swaps the
recovered board in (refused while a supervisor owns the board).
${GLOBAL_OPTS}
`,
  migrate: `Usage: kanban-supervisor migrate --from PATH.db --to postgres://USER@HOST/DB[?schema=NAME]
                                 [--dry-run]

Copy a SQLite board to a PostgreSQL board: its skills, tasks, runs and events as they are (ids,
tokens, timestamps, statuses, current runs, the order of runs and events). The SQLite board is only
read (one snapshot; its owner lock is held meanwhile, so no supervisor starts on it) and stays as it
was. The PostgreSQL board (schema kanban, or ?schema=) is created or brought up to date as init
does, and filled in one transaction: a failure leaves it empty. Run logs stay where they are.

Refused, nothing written:
  exit 4  a supervisor owns the SQLite board, a worker of one of its runs is still alive, or the
          PostgreSQL board has a live supervisor (a lease not expired, or its host lock held)
  exit 2  the PostgreSQL board already holds skills, tasks, runs or events (boards are never
          merged); a --from that is missing or not a SQLite board; a --to that is not a
          postgres:// or postgresql:// URL

  --from PATH            the SQLite board file to copy
  --to URL               the PostgreSQL board to copy into (its password is never printed)
  --dry-run              check both boards and print what would be copied; write nothing
Prints the rows copied per table: skills N, tasks N, runs N, events N (--json: an object).
`,
};
