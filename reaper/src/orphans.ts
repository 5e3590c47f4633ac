// Our direct children that are not our workers: orphans re-parented to us (we are the child
// subreaper) are terminated with their group and tree (SIGTERM, grace, SIGKILL), and zombies among
// our children are reaped. Node's own children and workers not yet collected are never touched.
import * as os from 'node:os';
import { collectTree, groupOwnedStateless, matches, type ProcessIdentity, type ProcTable } from './identity.js';
import { bootId, isDeadState, readRawStat, scanProcesses, type RawStat } from './platform.js';
import { proveGroup } from './group.js';
import { signalTree } from './signal.js';
import { key, ownChildren, type ReaperState } from './state.js';

const SIGTERM = os.constants.signals.SIGTERM;
const SIGKILL = os.constants.signals.SIGKILL;

export function reapOrphans(state: ReaperState, knownPids: Set<number>, now: number): { terminated: number[]; reaped: number[] } {
  // Without a child subreaper (the portable backend, or prctl refused) nothing is re-parented to
  // us: our children are the workers we spawned and Node's own helpers, never orphans. Nothing to
  // look for, and no table to read (where /proc is missing that would be a `ps` at every call).
  if (!state.subreaperActive) return { terminated: [], reaped: [] };
  const terminated: number[] = [];
  const table = scanProcesses();
  const exclude = nodeChildPids();
  for (const p of knownPids) exclude.add(p);

  const children: RawStat[] = [];
  for (const s of table.values()) if (s.ppid === process.pid) children.push(s);
  // a zombie in knownPids is still reaped when it is an adopted worker of ours (re-parented to
  // us, not Node's child): nobody else will ever wait for it
  const zombieExclude = new Set(knownPids);
  for (const t of state.tracked.values()) {
    const z = table.get(t.id.pid);
    if (z && z.startTime === t.id.startTime && isDeadState(z.state)) zombieExclude.delete(t.id.pid);
  }
  const reaped = reapZombies(state, children, zombieExclude);
  for (const pid of reaped) state.orphans.delete(pid);

  const live = children.filter((s) => !isDeadState(s.state) && !exclude.has(s.pid));
  let protectedSet: Set<string> | null = null;
  for (const s of live) {
    protectedSet ??= liveWorkersProcesses(state, table);
    // a process of a worker that is still running (its own double-forked helper): leave it
    // to that worker's cleanupAfterExit
    if (protectedSet.has(key(s.pid, s.startTime))) continue;
    let o = state.orphans.get(s.pid);
    if (o && o.start !== s.startTime) o = undefined;
    // the orphan with everything below it (and its own group if it leads one, e.g. after setsid)
    const orphanId: ProcessIdentity = { pid: s.pid, pgid: s.pgid, startTime: s.startTime, bootId: bootId() };
    const owned = groupOwnedStateless(orphanId, table);
    if (!o) {
      o = { start: s.startTime, termAt: now, killed: false };
      state.orphans.set(s.pid, o);
      signalTree(state, orphanId, collectTree(orphanId, table, owned), owned, SIGTERM);
      terminated.push(s.pid);
    } else if (o.killed || now >= o.termAt + state.orphanGraceMs) {
      signalTree(state, orphanId, collectTree(orphanId, table, owned), owned, SIGKILL);
      if (!o.killed) terminated.push(s.pid);
      o.killed = true;
    }
  }
  // forget orphans that are gone
  for (const [pid, o] of state.orphans) {
    const s = table.get(pid);
    if (!s || s.startTime !== o.start || (isDeadState(s.state) && s.ppid !== process.pid)) state.orphans.delete(pid);
  }
  return { terminated, reaped };
}

/** Orphans whose termination (SIGTERM, grace, SIGKILL) is under way: a supervisor waits for them before it exits. */
export function orphansPending(state: ReaperState, now: number): number {
  // One that outlives its SIGKILL by 5 s (not ours to kill: another user's) is not waited for.
  let n = 0;
  for (const o of state.orphans.values()) if (now - o.termAt < state.orphanGraceMs + 5000) n++;
  return n;
}

/**
 * "pid:start" of every process of a tracked worker that is still running (its own
 * double-forked helpers) or whose termination is in progress (it follows that worker's
 * grace and escalation). Everything else re-parented to us is an orphan.
 */
function liveWorkersProcesses(state: ReaperState, table: ProcTable): Set<string> {
  const out = new Set<string>();
  for (const t of state.tracked.values()) {
    const leader = matches(table, t.id.pid, t.id.startTime);
    const running = !!leader && !isDeadState(leader.state);
    const terminating = !!t.term && t.term.state.phase !== 'gone';
    if (!running && !terminating) continue;
    const owned = running ? groupOwnedStateless(t.id, table) : proveGroup(t, table, null);
    for (const s of collectTree(t.id, table, owned, t.known)) out.add(key(s.pid, s.startTime));
  }
  return out;
}

/** pids of live ChildProcess handles Node itself owns (best effort; unref'd handles are not listed). */
function nodeChildPids(): Set<number> {
  const out = new Set<number>(ownChildren);
  const get = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles;
  if (typeof get === 'function') {
    try {
      for (const h of get.call(process)) {
        const pid = (h as { pid?: unknown } | null)?.pid;
        if (typeof pid === 'number' && (h as object).constructor?.name === 'ChildProcess') out.add(pid);
      }
    } catch {
      /* ignore */
    }
  }
  return out;
}

/**
 * Reap the zombies among these direct children of ours (one /proc read each, no scan); Node's
 * own children and native children not yet collected are never touched. Returns the reaped pids.
 */
export function reapZombieChildren(state: ReaperState, pids: number[]): number[] {
  const stats: RawStat[] = [];
  for (const pid of pids) {
    const st = readRawStat(pid);
    if (st) stats.push(st);
  }
  return reapZombies(state, stats);
}

/** waitpid(pid, WNOHANG) on zombies that are our children but not Node's own. */
export function reapZombies(state: ReaperState, candidates: RawStat[], exclude?: Set<number>): number[] {
  const reaped: number[] = [];
  if (!state.native) return reaped;
  let nodeKids: Set<number> | null = null;
  for (const s of candidates) {
    if (!isDeadState(s.state) || s.ppid !== process.pid) continue;
    nodeKids ??= nodeChildPids();
    if (nodeKids.has(s.pid) || exclude?.has(s.pid)) continue;
    const r = state.native.waitNoHang(s.pid);
    if (Array.isArray(r)) reaped.push(s.pid);
  }
  return reaped;
}
