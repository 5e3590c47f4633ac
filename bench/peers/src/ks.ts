/**
 * kanban-supervisor's series, one per kind of skill this build has: the repository's CLI (by path)
 * registers the skill on a fresh board, the board package adds the tasks (not timed), then
 * `kanban-supervisor run --until-idle` with MAX_CONCURRENT_WORKERS=4 runs them. Timed from the
 * first claim to the last run accounted (the board's own timestamps, as in `npm run bench`); the
 * system's own CPU is the supervisor process's in that window (its workers are the tasks).
 *
 * - exit-code skill: `skill add --report exit -- sh -c 'exit 0'`, when this build has it (the
 *   supervisor records the completion from the exit status it reaped);
 * - native command with sh + sqlite3: the bench's fixture, one fenced sqlite3 report (needs sqlite3);
 * - native command with the worker CLI: `sh -c 'exec "$KANBAN_CLI" worker complete'`;
 * - Node worker (runWorker), with the report channel off when this build has one;
 * - Node worker through the report channel, when this build has one. The label says "channel"
 *   only when the supervisor's log shows its socket, else "direct".
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, FIXTURES, Sup, openBoard, openSql } from '../../../test/dist/lib.js';
import type { Series } from './peers.js';
import { CpuPoll, tailOf, type Ctx } from './proc.js';

function cliHelp(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, KANBAN_HTTP: 'off' } });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

let features: { exitSkills: boolean; channel: boolean } | null = null;
/** What this build of the CLI offers (from its help texts). */
export function ksFeatures(): { exitSkills: boolean; channel: boolean } {
  return (features ??= { exitSkills: /--report\b/.test(cliHelp(['skill', 'add', '--help'])), channel: /REPORT_CHANNEL/.test(cliHelp(['--help'])) });
}

interface KsKind {
  /** The skill's command. */
  argv: string[];
  /** Extra `skill add` flags. */
  skillFlags?: string[];
  /** The supervisor's extra environment. */
  env?: Record<string, string>;
  /** Why this build cannot run it, or null. */
  missing(): string | null;
  /** The label once a round's log was read (channel or direct). */
  label?(channel: boolean): string;
}

const OWN_REPORT = "SQLite WAL, synchronous=FULL: the task's own fenced report";
const GROUP_COMMIT = "SQLite WAL, synchronous=FULL: the supervisor's group commit";
/** What makes a reporting worker's completion durable: its own report, or the supervisor's commit of what it sent. */
const durabilityOf = (channel: boolean) => (channel ? GROUP_COMMIT : OWN_REPORT);

const BENCH = join(FIXTURES, 'bench');
const haveSqlite3 = () => spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;
const via = (channel: boolean) => (channel ? 'through the report channel' : 'direct board writes');

const KINDS: Record<string, KsKind> = {
  'ks-exit': {
    argv: ['sh', '-c', 'exit 0'],
    skillFlags: ['--report', 'exit'],
    missing: () => (ksFeatures().exitSkills ? null : 'exit-code skills (skill add --report exit) are not available in this build'),
  },
  'ks-native': {
    argv: [join(BENCH, 'native-report.sh')],
    missing: () => (haveSqlite3() ? null : 'no sqlite3 command on PATH'),
  },
  'ks-cli': {
    argv: ['sh', '-c', 'exec "$KANBAN_CLI" worker complete'],
    missing: () => null,
    label: (channel) => `kanban-supervisor, native command reporting with the worker CLI, ${via(channel)}`,
  },
  'ks-node': {
    argv: [process.execPath, join(BENCH, 'noop-worker.mjs')],
    get env(): Record<string, string> {
      return ksFeatures().channel ? { REPORT_CHANNEL: 'off' } : {};
    },
    missing: () => null,
    label: (channel) => `kanban-supervisor, Node worker (runWorker), ${via(channel)}`,
  },
  'ks-channel': {
    argv: [process.execPath, join(BENCH, 'noop-worker.mjs')],
    env: { REPORT_CHANNEL: 'on' },
    missing: () => (ksFeatures().channel ? null : 'the report channel (REPORT_CHANNEL) is not available in this build'),
    label: (channel) => (channel ? 'kanban-supervisor, Node worker through the report channel' : 'kanban-supervisor, Node worker, direct (REPORT_CHANNEL=on, but the log shows no socket)'),
  },
};

export function ksSeries(ctx: Ctx, key: string): Series {
  const kind = KINDS[key];
  if (!kind) throw new Error(`no kanban-supervisor series ${key}`);
  return {
    key,
    prepare: async () => kind.missing(),
    async round(round) {
      const dir = ctx.h.dir(`${key}-${round}`);
      const db = join(dir, 'board', 'kanban.db');
      const add = spawnSync(process.execPath, [CLI, '--db', db, 'skill', 'add', 'noop', ...(kind.skillFlags ?? []), '--', ...kind.argv], {
        encoding: 'utf8',
        env: { ...process.env, KANBAN_HTTP: 'off' },
      });
      if (add.status !== 0) throw new Error(`skill add exited ${add.status}: ${add.stderr}`);
      const b = await openBoard(db);
      for (let i = 0; i < ctx.n; i++) await b.createTask({ skill: 'noop', title: `noop ${i}` });
      await b.close();
      spawnSync('sync');
      const logFile = join(dir, 'supervisor.log');
      const sup = new Sup(ctx.h, db, { env: { MAX_CONCURRENT_WORKERS: String(ctx.conc), ...kind.env }, args: ['--until-idle'], logFile, direct: true });
      const poll = new CpuPoll(sup.pid);
      const fin = await sup.waitExit(ctx.n * 2000 + 60_000);
      const lifetimeCpu = poll.stop();
      const c = openSql(db);
      const r = c
        .prepare(
          `SELECT sum(t.status = 'done') AS done, min(r.started_at) AS t0, max(r.accounted_at) AS t1, count(DISTINCT r.id) AS runs
             FROM tasks t JOIN runs r ON r.task_id = t.id`,
        )
        .get() as { done: number | null; t0: number; t1: number; runs: number };
      c.close();
      if (fin.timedOut || fin.code !== 0 || r.done !== ctx.n || r.runs !== ctx.n) {
        throw new Error(
          `${r.done ?? 0} of ${ctx.n} tasks done in ${r.runs} runs, supervisor ${fin.timedOut ? 'timed out' : `exit ${fin.code ?? fin.signal}`}; its log:\n${tailOf(logFile, 8)}`,
        );
      }
      let log = '';
      try {
        log = readFileSync(logFile, 'utf8');
      } catch {
        /* no log: no socket shown */
      }
      const channel = /socket/i.test(log);
      const seconds = (r.t1 - r.t0) / 1000;
      const cpu = poll.between(r.t0, r.t1);
      return {
        tps: ctx.n / seconds,
        seconds,
        cpu,
        cpuParts: { supervisor: cpu },
        lifetimeCpu,
        ...(kind.label ? { label: kind.label(channel), durability: durabilityOf(channel) } : {}),
      };
    },
    about: () => '',
  };
}
