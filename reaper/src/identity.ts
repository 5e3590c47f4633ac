// Process identity: (pid, start time, boot id) and the /proc walk that finds what is left of a
// worker (its process group plus every descendant, by ppid).
import { bootId, isDeadState, readRawStat, scanProcesses, type RawStat } from './platform.js';

export interface ProcessIdentity {
  pid: number;
  pgid: number;
  startTime: number;
  bootId: string;
}

/** /proc/PID/stat fields that identify a process and place it in its group and tree. */
export type ProcStat = Pick<RawStat, 'pid' | 'comm' | 'state' | 'ppid' | 'pgid' | 'sid' | 'startTime'>;

export type ProcTable = Map<number, RawStat>;

export { bootId };

/** /proc/PID/stat parsed after the last ')'; null when the process is gone. */
export function readStat(pid: number): ProcStat | null {
  const s = readRawStat(pid);
  if (!s) return null;
  return { pid: s.pid, comm: s.comm, state: s.state, ppid: s.ppid, pgid: s.pgid, sid: s.sid, startTime: s.startTime };
}

/** Identity of a live (non-zombie) process now. */
export function identify(pid: number): ProcessIdentity | null {
  const s = readRawStat(pid);
  if (!s || isDeadState(s.state)) return null;
  return { pid: s.pid, pgid: s.pgid, startTime: s.startTime, bootId: bootId() };
}

/** True only for the very same process (pid + start time + boot), still running (not Z/X). */
export function alive(id: ProcessIdentity): boolean {
  if (id.bootId !== bootId()) return false;
  const s = readRawStat(id.pid);
  return !!s && !isDeadState(s.state) && s.startTime === id.startTime;
}

/** Same process as recorded (alive or zombie) in a snapshot. */
export function matches(table: ProcTable, pid: number, startTime: number): RawStat | null {
  const s = table.get(pid);
  return s && s.startTime === startTime ? s : null;
}

/**
 * May this identity's process group be signalled as a whole (kill(-pgid))? Only when the
 * worker leads its own group (as every worker we spawn does: detached => setsid), never
 * for pgid 0/1 and never for the group we ourselves belong to.
 */
export function groupSignalAllowed(id: ProcessIdentity, table: ProcTable): boolean {
  if (id.pgid !== id.pid || id.pgid <= 1) return false;
  const self = table.get(process.pid) ?? readRawStat(process.pid);
  if (self && self.pgid === id.pgid) return false;
  return true;
}

/**
 * Stateless group ownership: the number pgid is either still held by the recorded leader
 * (alive or zombie; a held pid number cannot be reused) or held by nobody. If another
 * process now has pid == pgid, the number was reused and the group is not ours.
 * (The Reaper adds a stateful proof for leaderless groups; see group.ts.)
 */
export function groupOwnedStateless(id: ProcessIdentity, table: ProcTable): boolean {
  if (!groupSignalAllowed(id, table)) return false;
  const holder = table.get(id.pgid);
  if (holder) return holder.startTime === id.startTime;
  return true;
}

/**
 * Members by group and children by parent of one snapshot, built once per snapshot (a snapshot is
 * never changed after the scan): the supervisor walks every worker's tree in the same snapshot,
 * and building these per worker was most of what a sample of 64 workers allocated.
 */
const indexes = new WeakMap<ProcTable, { byGroup: Map<number, RawStat[]>; byParent: Map<number, RawStat[]> }>();

function indexOf(table: ProcTable): { byGroup: Map<number, RawStat[]>; byParent: Map<number, RawStat[]> } {
  let ix = indexes.get(table);
  if (!ix) {
    ix = { byGroup: new Map(), byParent: new Map() };
    for (const s of table.values()) {
      let g = ix.byGroup.get(s.pgid);
      if (!g) ix.byGroup.set(s.pgid, (g = []));
      g.push(s);
      let c = ix.byParent.get(s.ppid);
      if (!c) ix.byParent.set(s.ppid, (c = []));
      c.push(s);
    }
    indexes.set(table, ix);
  }
  return ix;
}

/**
 * Everything that belongs to a worker in one snapshot: the leader (if it is still the same
 * process), members of its process group (if ownership is established), extra known roots
 * (pid -> start time, e.g. descendants seen earlier that were re-parented), and all their
 * descendants by ppid. Includes zombies; callers filter with isDeadState.
 */
export function collectTree(
  id: ProcessIdentity,
  table: ProcTable,
  groupOwned: boolean,
  extraRoots?: Map<number, number>,
): RawStat[] {
  if (id.bootId !== bootId()) return [];
  const picked = new Map<number, RawStat>();
  const queue: RawStat[] = [];
  const add = (s: RawStat) => {
    if (s.pid === process.pid || s.pid <= 1 || picked.has(s.pid)) return;
    picked.set(s.pid, s);
    queue.push(s);
  };
  const leader = matches(table, id.pid, id.startTime);
  if (leader) add(leader);
  if (groupOwned) {
    for (const s of indexOf(table).byGroup.get(id.pgid) ?? []) add(s);
  }
  if (extraRoots) {
    for (const [pid, start] of extraRoots) {
      const s = matches(table, pid, start);
      if (s) add(s);
    }
  }
  if (queue.length === 0) return [];
  const children = indexOf(table).byParent;
  for (let i = 0; i < queue.length; i++) {
    const kids = children.get(queue[i]!.pid);
    if (kids) for (const k of kids) add(k);
  }
  return [...picked.values()];
}

/** Pids (not zombies) still alive in the worker's process group or below the worker by ppid. */
export function groupProcesses(id: ProcessIdentity, table: ProcTable = scanProcesses()): number[] {
  return collectTree(id, table, groupOwnedStateless(id, table))
    .filter((s) => !isDeadState(s.state))
    .map((s) => s.pid);
}

/** Nothing of the worker remains (verified by a full /proc scan; pass a fresh `table` to share one scan). */
export function isGone(id: ProcessIdentity, table?: ProcTable): boolean {
  return groupProcesses(id, table ?? scanProcesses()).length === 0 && !alive(id);
}

/** One snapshot of every process, to share between several isGone/groupProcesses calls of one tick. */
export function processTable(): ProcTable {
  return scanProcesses();
}
