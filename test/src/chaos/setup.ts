/**
 * What every chaos scenario shares. Importing this module parses the flags (--help and a wrong flag
 * exit here, before anything is started), then creates the run's Harness (its temp dir, the kill of
 * everything at the end) and Results. Here too: the sizes of each scenario (P, full and --short), the
 * healthy skill the storm and crash scenarios keep beside their faults, the boards and supervisors
 * the final leak check looks at, and small helpers (SQL reads, waiting for an idle board, the rows
 * several scenarios print).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Board, Db } from '@kanban-supervisor/board';
import { FIXTURES, Harness, Results, Sup, fdCount, fdTargets, integrity, parseFlags, sleep, zombieChildren, type LogLine } from '../lib.js';

const FLAGS = parseFlags(process.argv.slice(2));
/** Small healthy tasks kept open beside the storm (the successes a real pool has). */
export const OK_TRICKLE = Number(process.env.CHAOS_OK_TRICKLE ?? 4);
/**
 * The healthy skill: the bench's tiny native worker (sh + one sqlite3 transaction, ~5 ms) when the
 * sqlite3 command exists, else a Node worker through the runtime. Its successes are what keeps the
 * pool's storm breaker from escalating, as in a real pool where most tasks succeed.
 */
export const HAVE_SQLITE3 = spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;
export const OK_ARGV = HAVE_SQLITE3 ? [join(FIXTURES, 'bench', 'native-report.sh')] : [process.execPath, join(FIXTURES, 'chaos', 'ok-worker.mjs')];
export const SHORT = FLAGS.short;
/** --pg: the PostgreSQL scenario only (with --short, its short variant). */
export const PG_ONLY = FLAGS.pg;
export const CHAOS = join(FIXTURES, 'chaos');

export const P = SHORT
  ? {
      storm: { workers: 16, kills: 200, budgetS: 35, iters: 25, iterMs: 5 },
      restart: { kills: 8, gapMs: [900, 2000] as const, budgetS: 45, open: 10 },
      crash: { tasks: 20, ghosts: 2, badCwd: 3, limit: 3, baseS: 2, factor: 2, budgetS: 60 },
      tree: { each: 3 },
      load: { workers: 64, churnS: 10, taskMs: [1000, 4000] as const, restarts: 2, waveMs: 6000, otherProcesses: 600 },
      pg: { hosts: 3, workers: 3, tasks: 60, open: 10, taskMs: [300, 1200] as const, workerKills: 25, killMs: [150, 450] as const, supKills: 3, partitions: 2, gapMs: [1000, 2500] as const, partitionExtraMs: [2000, 4000] as const, leaseS: 3, heartbeatTimeoutS: 6, budgetS: 70, drainS: 45 },
    }
  : {
      storm: { workers: 16, kills: 2000, budgetS: 300, iters: 25, iterMs: 5 },
      restart: { kills: 50, gapMs: [1500, 4000] as const, budgetS: 300, open: 12 },
      crash: { tasks: 100, ghosts: 5, badCwd: 10, limit: 3, baseS: 4, factor: 2, budgetS: 300 },
      tree: { each: 8 },
      load: { workers: 64, churnS: 45, taskMs: [1000, 4000] as const, restarts: 10, waveMs: 6000, otherProcesses: 600 },
      pg: { hosts: 3, workers: 3, tasks: 2000, open: 10, taskMs: [300, 1200] as const, workerKills: 1000, killMs: [100, 300] as const, supKills: 30, partitions: 6, gapMs: [2000, 6000] as const, partitionExtraMs: [2000, 4000] as const, leaseS: 3, heartbeatTimeoutS: 6, budgetS: 1200, drainS: 180 },
    };

export const h = new Harness({ prefix: 'ks-chaos-', keep: FLAGS.keep, deadlineMs: (SHORT ? 10 : PG_ONLY ? 30 : 60) * 60_000 });
export const res = new Results();
export const want = (name: string) => (PG_ONLY ? name === 'pg' : !FLAGS.only || FLAGS.only.has(name));

/** Supervisors measured for leaks: zombies and fd growth at quiet moments. */
export const leakChecks: Array<{ label: string; pid: number; fdBefore: number | null; fdAfter: number | null; zombies: number; fdDetail?: string[] }> = [];
/** Every board of this run (for the pgid part of the final leak scan). */
export const boards: string[] = [];
/** Process groups of workers on boards the leak scan cannot open as files (PostgreSQL): pgid and the leader's start time. */
export const workerGroups: Array<{ pgid: number; startTime: number | null }> = [];

export function tail(sup: Sup, n = 15): string {
  return sup.lines
    .slice(-n)
    .map((l) => JSON.stringify(l))
    .join('\n');
}

export function rows<T>(c: Db, sql: string, ...params: unknown[]): T[] {
  return c.prepare(sql).all(...params) as T[];
}

export function one<T>(c: Db, sql: string, ...params: unknown[]): T {
  return c.prepare(sql).get(...params) as T;
}

export async function waitIdle(b: Board, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await b.idle()) return true;
    await sleep(200);
  }
  return b.idle();
}

export function outcomes(c: Db, where = '1'): string {
  return rows<{ outcome: string | null; n: number }>(c, `SELECT outcome, count(*) AS n FROM runs WHERE ${where} GROUP BY outcome ORDER BY n DESC`)
    .map((r) => `${r.outcome ?? 'open'} ${r.n}`)
    .join(', ');
}

export function integrityRow(scenario: string, db: string, when: string): boolean {
  const r = integrity(db);
  res.add({ scenario, figure: `board integrity_check ${when}`, value: r, target: 'ok', pass: r === 'ok', hard: true });
  return r === 'ok';
}

export function tickErrors(sups: Sup[]): string {
  const byClass = new Map<string, number>();
  for (const s of sups) {
    for (const l of s.events('tick_step_failed')) {
      const k = `${String(l.step)}/${String(l.errorClass)}`;
      byClass.set(k, (byClass.get(k) ?? 0) + 1);
    }
  }
  return byClass.size ? [...byClass].map(([k, n]) => `${k} ×${n}`).join(', ') : 'none';
}

export function stormPauses(sups: Sup[]): Array<{ from: number; until: number }> {
  return sups.flatMap((s) => s.events('storm_pause').map((l: LogLine) => ({ from: Number(l.time), until: Number(l.until) })));
}

export async function quiet(label: string, sup: Sup, fdBefore: number | null): Promise<void> {
  // A zombie may exist for the few ms between a worker's exit and Node's reaping; look twice.
  let zombies = zombieChildren(sup.pid).length;
  if (zombies > 0) {
    await sleep(500);
    zombies = zombieChildren(sup.pid).length;
  }
  leakChecks.push({ label, pid: sup.pid, fdBefore, fdAfter: fdCount(sup.pid), zombies, fdDetail: fdTargets(sup.pid) });
}
