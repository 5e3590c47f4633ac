/**
 * What the PostgreSQL chaos scenario (pg.ts) reads back at the end: the workers' records against
 * the board (acknowledged writes lost, work that ran to the end twice, spawn → handler latency), the
 * board's rows against their invariants, and the CPU the parts of the run used.
 */
import { readFileSync } from 'node:fs';
import { clockTicks, listPids, quantile, readRecords, readStat } from '../lib.js';

export const SCHEMA = 'chaos';

export type Query = <T>(text: string, params?: unknown[]) => Promise<T[]>;

/** The workers' records against the board: every acknowledged event is there, every acknowledged heartbeat's seq is ≤ the run's progress. */
export async function lostWrites(records: string, q: Query): Promise<{ events: number; heartbeats: number; lostEv: number; lostHb: number; unacked: number; example: string }> {
  const evAck = new Set<string>();
  const hbAck = new Map<string, number>();
  let heartbeats = 0;
  for (const r of readRecords(records)) {
    if (r[0] === 'e') evAck.add(`${r[2]} ${r[3]}`);
    else if (r[0] === 'h') {
      heartbeats++;
      hbAck.set(r[2]!, Math.max(hbAck.get(r[2]!) ?? 0, Number(r[3])));
    }
  }
  const evBoard = new Set(
    (await q<{ run_id: string; seq: string }>(`SELECT run_id, data::json->>'seq' AS seq FROM ${SCHEMA}.events WHERE kind = 'chaos.ev'`)).map((r) => `${r.run_id} ${r.seq}`),
  );
  const progress = new Map((await q<{ id: string; seq: string | null }>(`SELECT id, progress::json->>'seq' AS seq FROM ${SCHEMA}.runs`)).map((r) => [r.id, r.seq === null ? -1 : Number(r.seq)]));
  let lostEv = 0;
  let lostHb = 0;
  let example = '';
  for (const k of evAck) {
    if (!evBoard.has(k)) {
      lostEv++;
      example ||= `event ${k}`;
    }
  }
  for (const [run, seq] of hbAck) {
    if (!((progress.get(run) ?? -1) >= seq)) {
      lostHb++;
      example ||= `heartbeat ${run} ${seq} (board: ${progress.get(run) ?? 'no run'})`;
    }
  }
  let unacked = 0;
  for (const k of evBoard) if (!evAck.has(k)) unacked++;
  return { events: evAck.size, heartbeats, lostEv, lostHb, unacked, example };
}

/** Invariants of the board's rows once everything stopped; each violated one, with its count and an example. */
export async function consistency(q: Query): Promise<string[]> {
  const checks: Array<[string, string]> = [
    ['done tasks without a completed run', `FROM ${SCHEMA}.tasks t WHERE status = 'done' AND NOT EXISTS (SELECT 1 FROM ${SCHEMA}.runs r WHERE r.task_id = t.id AND r.outcome = 'completed')`],
    ['tasks not running that still point at a run', `FROM ${SCHEMA}.tasks WHERE status IN ('done', 'ready', 'blocked') AND current_run_id IS NOT NULL`],
    ['running tasks whose run is not live', `FROM ${SCHEMA}.tasks t LEFT JOIN ${SCHEMA}.runs r ON r.id = t.current_run_id WHERE t.status = 'running' AND (r.id IS NULL OR r.status = 'ended')`],
    ['completed runs of a task not done', `FROM ${SCHEMA}.runs r JOIN ${SCHEMA}.tasks t ON t.id = r.task_id WHERE r.outcome = 'completed' AND t.status != 'done'`],
    ['runs not ended', `FROM ${SCHEMA}.runs WHERE status != 'ended' OR outcome IS NULL`],
    ['runs not accounted', `FROM ${SCHEMA}.runs WHERE accounted_at IS NULL`],
    ['runs without a supervisor', `FROM ${SCHEMA}.runs WHERE supervisor_id IS NULL`],
    ['runs whose supervisor row is missing', `FROM ${SCHEMA}.runs r WHERE NOT EXISTS (SELECT 1 FROM ${SCHEMA}.supervisors s WHERE s.id = r.supervisor_id)`],
    ['supervisor rows not stopped', `FROM ${SCHEMA}.supervisors WHERE stopped_at IS NULL`],
  ];
  const bad: string[] = [];
  for (const [what, from] of checks) {
    const n = Number((await q<{ n: string }>(`SELECT count(*) AS n ${from}`))[0]!.n);
    if (n) bad.push(`${what}: ${n}`);
  }
  return bad;
}

/** Tasks with more than one run that recorded `effect` (its work finished), and what became of the runs that did not count. */
export async function workRedone(records: string, killed: Set<string>, q: Query): Promise<{ n: number; why: string }> {
  const effects = new Map<string, string[]>();
  for (const r of readRecords(records)) if (r[0] === 'effect') effects.set(r[1]!, [...(effects.get(r[1]!) ?? []), r[2]!]);
  const runs = new Map((await q<{ id: string; outcome: string | null; stop_reason: string | null }>(`SELECT id, outcome, stop_reason FROM ${SCHEMA}.runs`)).map((r) => [r.id, r]));
  const why = new Map<string, number>();
  let n = 0;
  for (const list of effects.values()) {
    if (list.length < 2) continue;
    n++;
    for (const id of list) {
      const r = runs.get(id);
      if (r?.outcome === 'completed') continue;
      const k = `${r ? `${r.outcome ?? 'open'}${r.stop_reason ? ` (${r.stop_reason})` : ''}` : 'no run'}${killed.has(id) ? ' SIGKILLed by the harness' : ''}`;
      why.set(k, (why.get(k) ?? 0) + 1);
    }
  }
  return { n, why: [...why].map(([k, c]) => `${k} ×${c}`).join(', ') };
}

/** From the spawn (runs.started_at) to the handler's first line, ms: p50, p95, max. */
export async function startLatency(records: string, q: Query): Promise<{ p50: number; p95: number; max: number; n: number }> {
  const started = new Map((await q<{ id: string; started_at: string }>(`SELECT id, started_at FROM ${SCHEMA}.runs`)).map((r) => [r.id, Number(r.started_at)]));
  const xs: number[] = [];
  for (const r of readRecords(records)) {
    if (r[0] !== 'start') continue;
    const s = started.get(r[2]!);
    if (s !== undefined) xs.push(Number(r[4]) - s);
  }
  return { p50: quantile(xs, 0.5), p95: quantile(xs, 0.95), max: xs.length ? Math.max(...xs) : NaN, n: xs.length };
}

/** utime + stime (own) and cutime + cstime (waited-for children) of a process, seconds. */
export function cpuOf(pid: number): { self: number; children: number } {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const t = clockTicks();
    return { self: (Number(f[11]) + Number(f[12])) / t, children: (Number(f[13]) + Number(f[14])) / t };
  } catch {
    return { self: 0, children: 0 };
  }
}

/** CPU of a process and its live children, and of its waited-for children, seconds (a PostgreSQL postmaster and its backends). */
export function cpuOfTree(pid: number): number {
  const own = cpuOf(pid);
  let live = 0;
  for (const p of listPids()) if (readStat(p)?.ppid === pid) live += cpuOf(p).self;
  return own.self + own.children + live;
}

/**
 * Two worker processes of one task alive at once, from the workers' own records: a process lives
 * from its `boot` line to its `exit` line; one that was SIGKILLed has no `exit` line, and ends at
 * the kill (by the harness: `killedAt`; by its supervisor: `endedAt`, from its log), else at the
 * run's exited_at on the board. Exact where the /proc watch samples; blind to the ~0.1 s before a
 * process runs its first line.
 */
export async function lifetimeOverlaps(
  records: string,
  killedAt: Map<string, number>,
  endedAt: Map<string, number>,
  q: Query,
): Promise<{ overlaps: number; example: string; processes: number; endless: number; takenOver: number; minGapMs: number | null; minGapExample: string; endOf: Map<string, number> }> {
  const exitedAt = new Map((await q<{ id: string; exited_at: string | null }>(`SELECT id, exited_at FROM ${SCHEMA}.runs`)).map((r) => [r.id, r.exited_at === null ? null : Number(r.exited_at)]));
  const life = new Map<string, { task: string; run: string; from: number; to: number | null }>();
  for (const r of readRecords(records)) {
    if (r[0] === 'boot') life.set(r[2]!, { task: r[1]!, run: r[2]!, from: Number(r[4]), to: null });
    else if (r[0] === 'exit') {
      const l = life.get(r[2]!);
      if (l) l.to = Number(r[4]);
    }
  }
  let endless = 0;
  const byTask = new Map<string, Array<{ run: string; from: number; to: number }>>();
  const endOf = new Map<string, number>();
  for (const l of life.values()) {
    const to = l.to ?? killedAt.get(l.run) ?? endedAt.get(l.run) ?? exitedAt.get(l.run) ?? null;
    if (to === null) endless++;
    else endOf.set(l.run, to);
    byTask.set(l.task, [...(byTask.get(l.task) ?? []), { run: l.run, from: l.from, to: to ?? Infinity }]);
  }
  let overlaps = 0;
  let example = '';
  // The margin a takeover left: from a fenced worker's (stop reason lease_lost) exit to the boot of
  // the task's next worker.
  const fenced = new Set((await q<{ id: string }>(`SELECT id FROM ${SCHEMA}.runs WHERE stop_reason = 'lease_lost'`)).map((r) => r.id));
  let takenOver = 0;
  let minGapMs: number | null = null;
  let minGapExample = '';
  for (const [task, list] of byTask) {
    list.sort((a, b) => a.from - b.from);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.from < list[i]!.to; j++) {
        overlaps++;
        example ||= `task ${task}: run ${list[i]!.run} lived until ${list[i]!.to}, run ${list[j]!.run} booted at ${list[j]!.from} (${list[i]!.to - list[j]!.from} ms overlap)`;
      }
      const next = list[i + 1];
      if (fenced.has(list[i]!.run) && next && Number.isFinite(list[i]!.to)) {
        takenOver++;
        const gap = next.from - list[i]!.to;
        if (minGapMs === null || gap < minGapMs) {
          minGapMs = gap;
          minGapExample = `task ${task}: fenced run ${list[i]!.run} exited at ${list[i]!.to}, run ${next.run} booted at ${next.from}`;
        }
      }
    }
  }
  return { overlaps, example, processes: life.size, endless, takenOver, minGapMs, minGapExample, endOf };
}
