// CPU and RSS of each worker, summed over its group and tree: from /proc/PID/stat of the tree on
// linux-proc (CPU as the difference of the tick counters since the previous sample), from
// pidusage on the portable backend (see PortableSampler in fallback.ts).
import { collectTree, groupOwnedStateless, type ProcessIdentity } from './identity.js';
import { snapshot } from './group.js';
import { isDeadState, lastAllocatedPid, scanProcesses, sysconf, uptimeSeconds, type RawStat } from './platform.js';
import type { ReaperState } from './state.js';
import type { Usage } from './types.js';

/** The live processes of each worker's tree in one fresh table (refreshing what tracking knows of them). */
function liveTrees(state: ReaperState, ids: ProcessIdentity[]): Array<[ProcessIdentity, RawStat[]]> {
  const cursorNow = lastAllocatedPid(); // before the scan, as in terminate()
  const table = scanProcesses();
  const out: Array<[ProcessIdentity, RawStat[]]> = [];
  for (const id of ids) {
    const t = state.tracked.get(id.pid);
    const tree =
      t && t.id.startTime === id.startTime && t.id.bootId === id.bootId
        ? snapshot(t, table, cursorNow).tree
        : collectTree(id, table, groupOwnedStateless(id, table));
    out.push([id, tree.filter((s) => !isDeadState(s.state))]);
  }
  return out;
}

/**
 * CPU (percent of one core) and RSS summed over each worker's group and tree. Never blocks: on
 * the portable backend the figures are pidusage's latest readings (kept fresh in the background,
 * see PortableSampler), and a process seen for the first time counts from the next refresh.
 */
export function sample(state: ReaperState, ids: ProcessIdentity[]): Map<number, Usage> {
  if (state.portable) return state.portable.usage(liveTrees(state, ids).map(([id, live]) => [id.pid, live] as const));
  const out = new Map<number, Usage>();
  const { clockTicks, pageSize } = sysconf();
  const trees = liveTrees(state, ids);
  const uptime = uptimeSeconds();
  const wanted = new Set<number>();
  for (const [id, live] of trees) {
    wanted.add(id.pid);
    let prev = state.samples.get(id.pid);
    if (prev && prev.startTime !== id.startTime) prev = undefined;
    const procs = new Map<number, { start: number; total: number; ppid: number }>();
    let deltaTicks = 0;
    let lifetimePercent = 0;
    let rssPages = 0;
    let totalTicks = 0;
    for (const s of live) {
      const total = s.cpuTicks + s.childTicks;
      totalTicks += total;
      rssPages += s.rssPages;
      procs.set(s.pid, { start: s.startTime, total, ppid: s.ppid });
      const p = prev?.procs.get(s.pid);
      if (p && p.start === s.startTime) {
        deltaTicks += Math.max(0, total - p.total);
      } else if (prev && s.startTime / clockTicks >= prev.uptime) {
        deltaTicks += total; // born since the previous sample
      } else {
        // first sight without a baseline: its lifetime average instead of a meaningless 0
        const age = uptime - s.startTime / clockTicks;
        if (age > 0) lifetimePercent += (total / clockTicks / age) * 100;
      }
    }
    if (prev) {
      // a child that vanished and was reaped by a parent still in the tree re-appears in the
      // parent's cutime/cstime: do not count what we already counted for it
      for (const [pid, p] of prev.procs) {
        const cur = procs.get(pid);
        if ((!cur || cur.start !== p.start) && procs.has(p.ppid)) deltaTicks -= p.total;
      }
    }
    const dt = prev ? uptime - prev.uptime : 0;
    const cpuPercent = (prev && dt > 0 ? (Math.max(0, deltaTicks) / clockTicks / dt) * 100 : 0) + lifetimePercent;
    state.samples.set(id.pid, { startTime: id.startTime, uptime, procs });
    out.set(id.pid, { cpuPercent: Math.round(cpuPercent * 10) / 10, rssBytes: rssPages * pageSize, processes: live.length, cpuSeconds: totalTicks / clockTicks });
  }
  for (const pid of state.samples.keys()) if (!wanted.has(pid)) state.samples.delete(pid);
  return out;
}

/**
 * The same, waiting for fresh readings on the portable backend (one pidusage call; a first
 * reading of a process is its lifetime average). On linux-proc: sample().
 */
export async function sampleNow(state: ReaperState, ids: ProcessIdentity[]): Promise<Map<number, Usage>> {
  if (state.portable) return state.portable.usageNow(liveTrees(state, ids).map(([id, live]) => [id.pid, live] as const));
  return sample(state, ids);
}
