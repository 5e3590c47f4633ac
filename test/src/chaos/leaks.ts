/**
 * The final leak check, after every scenario: processes of this run still alive (by the harness
 * mark, or in a process group a worker of any board led: SQLite files, and the PostgreSQL runs the
 * pg scenario lists in workerGroups), the supervisors' zombies and their fd growth at rest (recorded by the scenarios in leakChecks). All hard.
 */
import { existsSync } from 'node:fs';
import { listPids, openSql, readCmdline, readStat } from '../lib.js';
import { boards, h, leakChecks, res, workerGroups } from './setup.js';

export function finalLeaks(): void {
  const S = 'leaks';
  // Every process of this run carries the mark; all supervisors are stopped by now.
  const marked = h.leftovers();
  // And anything in a process group a worker led (workers that scrub their environment).
  // pgid → the start times of the workers that led it (a pid, hence a pgid, is reused over a long run).
  const pgids = new Map<number, Set<number>>();
  for (const db of boards) {
    if (!existsSync(db)) continue;
    try {
      const c = openSql(db);
      for (const r of c.prepare('SELECT DISTINCT pgid, proc_start_time FROM runs WHERE pgid IS NOT NULL').all() as Array<{ pgid: number; proc_start_time: number | null }>) {
        if (!pgids.has(r.pgid)) pgids.set(r.pgid, new Set());
        if (r.proc_start_time !== null) pgids.get(r.pgid)!.add(r.proc_start_time);
      }
      c.close();
    } catch {
      /* a board we cannot open is reported by its scenario */
    }
  }
  for (const g of workerGroups) {
    if (!pgids.has(g.pgid)) pgids.set(g.pgid, new Set());
    if (g.startTime !== null) pgids.get(g.pgid)!.add(g.startTime);
  }
  // The kernel never hands out a pid still in use as a process group id: while anything of a
  // worker's group lives, its pgid names that group. A live process whose pid is the pgid but
  // whose start time is no worker's is the leader of a new, unrelated group (another program on a
  // busy host reused the pid after the worker's group was gone): not ours.
  const ourGroup = (pgid: number): boolean => {
    const leader = readStat(pgid);
    return !leader || leader.state === 'Z' || pgids.get(pgid)!.has(leader.startTime);
  };
  const selfStart = readStat(process.pid)?.startTime ?? 0;
  const inGroups = listPids()
    .map((p) => readStat(p))
    .filter((s) => s && s.state !== 'Z' && pgids.has(s.pgid) && s.startTime >= selfStart && s.pid !== process.pid && ourGroup(s.pgid));
  const all = new Set([...marked.map((p) => p.pid), ...inGroups.map((s) => s!.pid)]);
  const what = [...all].slice(0, 5).map((pid) => `${pid} ${readCmdline(pid).join(' ').slice(0, 60)}`);
  res.add({
    scenario: S,
    figure: "processes left from any worker's group or tree (after everything)",
    value: `${all.size}${what.length ? ` (${what.join('; ')})` : ''}`,
    number: all.size,
    target: '0',
    pass: all.size === 0,
    hard: true,
  });
  if (leakChecks.length === 0) return;
  const zombies = Math.max(...leakChecks.map((c) => c.zombies));
  res.add({
    scenario: S,
    figure: 'zombies of the supervisor (at rest after load)',
    value: leakChecks.map((c) => `${c.label} ${c.zombies}`).join(', '),
    number: zombies,
    target: '0',
    pass: zombies === 0,
    hard: true,
  });
  const growth = leakChecks.filter((c) => c.fdBefore !== null && c.fdAfter !== null);
  if (growth.length) {
    const worst = Math.max(...growth.map((c) => c.fdAfter! - c.fdBefore!));
    res.add({
      scenario: S,
      figure: 'supervisor fd count growth (at rest, before → after load)',
      value: growth.map((c) => `${c.label} ${c.fdBefore} → ${c.fdAfter}`).join(', '),
      number: worst,
      target: '≤ +2',
      pass: worst <= 2,
      hard: true,
      note: worst > 2 ? `open fds after: ${growth.map((c) => c.fdDetail?.join(' ')).join(' | ')}` : undefined,
    });
  }
}
