// A tracked worker in one /proc snapshot: is its process group still ours to signal as a whole,
// and which processes make up its tree now.
//
// PGID REUSE (why kill(-pgid) is safe here)
// Linux never hands out a pid number while it is still in use as anybody's process-group id,
// so while group X has at least one member, no new process can be born with pid X and no new
// group X can exist. We therefore signal -pgid only when ownership of group X is proven in the
// /proc snapshot taken just before the kill:
//   1. the recorded leader (pid X with the recorded start time, alive or zombie) still holds X; or
//   2. the leader is gone but a current member of X is a process (pid + start time) that we saw
//      in the worker's tree in an earlier snapshot: X has been continuously occupied since; or
//   3. the leader is gone and /proc/sys/kernel/ns_last_pid shows that the number X has not been
//      allocated again since the last moment ownership was proven (the allocator is cyclic, so a
//      new group X needs a fresh allocation of X); or
//   4. the worker was adopted after a restart with its leader already gone and no earlier
//      observation: every member must have started after the recorded leader (residual risk:
//      a full pid wrap-around during the supervisor's downtime; we accept it and say so).
// Group signalling is never used when pgid != pid (the worker does not lead its group), for
// pgid <= 1, or for our own group; then only the individually verified tree is signalled.
// The only remaining window is between the scan and kill(-X) (microseconds; it would need the
// whole group to die AND X to be re-allocated in between). How single processes are signalled:
// see signal.ts.
import { collectTree, groupSignalAllowed, type ProcTable } from './identity.js';
import { isDeadState, type RawStat } from './platform.js';
import type { Tracked } from './state.js';

/** Did the cyclic pid allocator hand out `x` in (c0, c1]? */
function pidAllocatedBetween(c0: number, c1: number, x: number): boolean {
  if (c1 === c0) return false;
  if (c1 > c0) return x > c0 && x <= c1;
  return x > c0 || x <= c1; // wrapped around pid_max
}

/** Group ownership proof, see the header comment. */
export function proveGroup(t: Tracked, table: ProcTable, cursorNow: number | null): boolean {
  const id = t.id;
  if (!groupSignalAllowed(id, table)) return false;
  const holder = table.get(id.pgid);
  if (holder) return holder.startTime === id.startTime; // (1) or reused number
  let members = 0;
  let allAfterLeader = true;
  for (const s of table.values()) {
    if (s.pgid !== id.pgid) continue;
    members++;
    if (t.known.get(s.pid) === s.startTime) return true; // (2)
    if (s.startTime < id.startTime) allAfterLeader = false;
  }
  if (members === 0) return false;
  if (t.cursor !== null && cursorNow !== null) return !pidAllocatedBetween(t.cursor, cursorNow, id.pgid); // (3)
  if (!t.everProven) return allAfterLeader; // (4)
  return false;
}

/** One look at the worker in a snapshot; refreshes what we know about its tree. */
export function snapshot(t: Tracked, table: ProcTable, cursorNow: number | null): { tree: RawStat[]; groupOwned: boolean } {
  const groupOwned = proveGroup(t, table, cursorNow);
  const tree = collectTree(t.id, table, groupOwned, t.known);
  if (groupOwned) {
    t.everProven = true;
    if (cursorNow !== null) t.cursor = cursorNow;
  }
  t.known = new Map(tree.filter((s) => !isDeadState(s.state)).map((s) => [s.pid, s.startTime]));
  return { tree, groupOwned };
}
