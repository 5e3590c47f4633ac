// Signalling a worker's group and tree, every process checked first. The group gets kill(-pgid)
// only when its ownership was proven in the snapshot (group.ts). Single processes outside the
// group are signalled through a pidfd opened before the start time is re-checked (pidfd_open +
// /proc re-read + pidfd_send_signal), so a pid that is reused can never receive the signal;
// without the native addon, the check-then-kill window remains.
import * as fs from 'node:fs';
import { treeKillChecked, treeKillUsable } from './fallback.js';
import type { ProcessIdentity } from './identity.js';
import { isDeadState, readRawStat, type RawStat } from './platform.js';
import { key, SIGNAL_NAMES, type ReaperState } from './state.js';

const ENOSYS = 38;

/** Signal one process only if it is still the same process (pidfd when available). */
function killChecked(state: ReaperState, pid: number, start: number, sig: number): boolean {
  if (pid <= 1 || pid === process.pid) return false;
  if (state.pidfdUsable && state.native) {
    const fd = state.native.pidfdOpen(pid);
    if (fd >= 0) {
      try {
        const s = readRawStat(pid);
        if (!s || s.startTime !== start) return false;
        return state.native.pidfdSendSignal(fd, sig) === 0;
      } finally {
        fs.closeSync(fd);
      }
    }
    if (fd !== -ENOSYS) return false; // ESRCH: gone
    state.pidfdUsable = false;
  }
  const s = readRawStat(pid);
  if (!s || s.startTime !== start) return false;
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pgid: number, sig: number): void {
  if (pgid <= 1) return;
  try {
    process.kill(-pgid, sig);
  } catch {
    /* ESRCH: the group emptied meanwhile */
  }
}

/**
 * `sig` to the live processes of `tree`: the whole group at once when `groupOwned` (and a member
 * is live), every other process on its own. With `skip`, what is already in it is not signalled
 * again, and what this call signals (or tries to) is added to it ("group", "pid:start").
 */
export function signalTree(state: ReaperState, id: ProcessIdentity, tree: RawStat[], groupOwned: boolean, sig: number, skip?: Set<string>): void {
  const live = tree.filter((s) => !isDeadState(s.state));
  const groupLive = groupOwned && live.some((s) => s.pgid === id.pgid);
  if (groupLive && !(skip && skip.has('group'))) {
    killGroup(id.pgid, sig);
    skip?.add('group');
  }
  if (state.portable && treeKillUsable().ok) {
    treeKillRest(state, live, groupLive ? id.pgid : null, sig, skip);
    return;
  }
  for (const s of live) {
    if (groupLive && s.pgid === id.pgid) {
      skip?.add(key(s.pid, s.startTime));
      continue; // covered by kill(-pgid)
    }
    const k = key(s.pid, s.startTime);
    if (skip?.has(k)) continue;
    killChecked(state, s.pid, s.startTime, sig);
    skip?.add(k);
  }
}

/**
 * Portable backend, after the group kill: what lies outside the group (escapees of the group,
 * everything when the group is not ours to signal) goes to tree-kill, from each root — a process
 * not signalled yet whose parent is not one of them either — once its pid and start time are
 * checked. tree-kill signals the root and whatever its own walk finds below it (processes born
 * since our table included); the root's descendants in our table count as signalled with it.
 * A root that is no longer itself gets nothing, and its children are roots in their turn.
 */
function treeKillRest(state: ReaperState, live: RawStat[], killedGroup: number | null, sig: number, skip?: Set<string>): void {
  const pending: RawStat[] = [];
  for (const s of live) {
    const k = key(s.pid, s.startTime);
    if (killedGroup !== null && s.pgid === killedGroup) skip?.add(k); // covered by kill(-pgid)
    else if (!skip?.has(k)) pending.push(s);
  }
  if (pending.length === 0) return;
  const pids = new Set(pending.map((s) => s.pid));
  const children = new Map<number, RawStat[]>();
  for (const s of pending) {
    if (!pids.has(s.ppid)) continue;
    let c = children.get(s.ppid);
    if (!c) children.set(s.ppid, (c = []));
    c.push(s);
  }
  const roots = pending.filter((s) => !pids.has(s.ppid));
  while (roots.length) {
    const r = roots.shift()!;
    const sent = treeKillChecked(r.pid, r.startTime, sig, (err) =>
      state.logger.warn({ event: 'tree_kill_failed', pid: r.pid, signal: SIGNAL_NAMES.get(sig) ?? sig, error: err.message }, 'reaper: tree-kill failed'),
    );
    if (sent === 'gone') {
      roots.push(...(children.get(r.pid) ?? []));
      continue;
    }
    if (!skip) continue;
    const below = [r];
    while (below.length) {
      const x = below.pop()!;
      skip.add(key(x.pid, x.startTime));
      below.push(...(children.get(x.pid) ?? []));
    }
  }
}
