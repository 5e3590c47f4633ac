// Terminating a worker's whole group and tree without ever blocking: each terminate() call takes
// one snapshot, signals what is left (SIGTERM, then SIGKILL once the grace has passed) and returns;
// the caller calls it again (every tick) until the phase is 'gone'.
import * as os from 'node:os';
import type { ProcessIdentity } from './identity.js';
import { snapshot } from './group.js';
import { reapZombies } from './orphans.js';
import { isDeadState, lastAllocatedPid, scanProcesses } from './platform.js';
import { signalTree } from './signal.js';
import { ensureTracked, ownChildren, type ReaperState } from './state.js';
import type { TerminationState } from './types.js';

const SIGTERM = os.constants.signals.SIGTERM;
const SIGKILL = os.constants.signals.SIGKILL;

export function terminate(state: ReaperState, id: ProcessIdentity, graceMs: number, now: number): TerminationState {
  const t = ensureTracked(state, id);
  const cursorNow = lastAllocatedPid();
  const table = scanProcesses();
  const { tree, groupOwned } = snapshot(t, table, cursorNow);
  reapZombies(state, tree);
  const live = tree.filter((s) => !isDeadState(s.state));
  const firstCall = !t.term;
  if (!t.term) {
    t.term = {
      state: { pid: id.pid, phase: 'term', sigtermAt: now, sigkillAt: null, remaining: [] },
      termSent: new Set(),
      groupTermSent: false,
    };
  }
  const term = t.term;
  const st = term.state;
  if (live.length === 0) {
    st.phase = 'gone';
    st.remaining = [];
    const out = { ...st, remaining: [] };
    // nothing left to prove or escalate: forget the worker unless its leader is still ours to watch
    if (!ownChildren.has(id.pid)) {
      state.tracked.delete(id.pid);
      state.samples.delete(id.pid);
    }
    return out;
  }
  if (st.phase === 'gone') st.phase = st.sigkillAt === null ? 'term' : 'kill'; // something reappeared
  // the first call always sends SIGTERM (even with graceMs <= 0); escalation happens on a later call
  if (st.phase === 'term' && !firstCall && now >= st.sigtermAt + graceMs) {
    st.phase = 'kill';
    st.sigkillAt = now;
  }
  if (st.phase === 'term') {
    signalTree(state, t.id, tree, groupOwned, SIGTERM, term.termSent);
  } else {
    signalTree(state, t.id, tree, groupOwned, SIGKILL); // every call until nothing is left
  }
  st.remaining = live.map((s) => s.pid);
  return { ...st, remaining: [...st.remaining] };
}

/**
 * Resume a termination that an earlier supervisor began (its SIGTERM time, and its SIGKILL time
 * if it got that far): the next terminate() call escalates from where it stood, SIGKILL at
 * sigtermAt + grace, or at once when that has passed. The SIGTERM is sent again (the earlier
 * supervisor may have died between recording it and sending it).
 */
export function resumeTermination(state: ReaperState, id: ProcessIdentity, sigtermAt: number, sigkillAt: number | null): void {
  const t = ensureTracked(state, id);
  if (t.term) return;
  t.term = {
    state: { pid: id.pid, phase: sigkillAt === null ? 'term' : 'kill', sigtermAt, sigkillAt, remaining: [] },
    termSent: new Set(),
    groupTermSent: false,
  };
}
