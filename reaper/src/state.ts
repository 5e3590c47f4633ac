// What one Reaper knows, shared by its parts (spawn.ts, group.ts, signal.ts, terminate.ts,
// orphans.ts, sampling.ts): the Reaper (reaper.ts) holds one ReaperState and passes it to their
// functions. Also the small helpers they all use.
import * as os from 'node:os';
import type { ProcessIdentity } from './identity.js';
import type { NativeAddon } from './native.js';
import type { PortableSampler } from './fallback.js';
import type { ExitRecord, ReaperLogger, TerminationState } from './types.js';

export interface TermInternal {
  state: TerminationState;
  /** "pid:start" of processes that already got SIGTERM (do not repeat it every tick) */
  termSent: Set<string>;
  groupTermSent: boolean;
}

export interface Tracked {
  id: ProcessIdentity;
  /** processes (pid -> start time) seen in the worker's tree in the latest snapshot */
  known: Map<number, number>;
  /** ns_last_pid at the last moment group ownership was proven (null: never / unavailable) */
  cursor: number | null;
  /** group ownership has been proven at least once */
  everProven: boolean;
  term: TermInternal | null;
}

export interface SampleState {
  startTime: number;
  uptime: number;
  procs: Map<number, { start: number; total: number; ppid: number }>;
}

export interface OrphanState {
  start: number;
  termAt: number;
  killed: boolean;
}

export interface ReaperState {
  readonly logger: ReaperLogger;
  /** the native addon (null on the portable backend) */
  readonly native: NativeAddon | null;
  /** CPU/RSS of the portable backend (null on linux-proc) */
  readonly portable: PortableSampler | null;
  /** pidfd_open may be tried (cleared for good at its first ENOSYS) */
  pidfdUsable: boolean;
  /** workers are started with the addon's posix_spawn (false: Node's child_process.spawn) */
  readonly nativeSpawn: boolean;
  readonly subreaperActive: boolean;
  readonly orphanGraceMs: number;
  /** called (synchronously) whenever an own child exits: a wake-up hint */
  readonly onExit: (() => void) | undefined;
  /** exits not drained yet */
  exits: ExitRecord[];
  readonly tracked: Map<number, Tracked>;
  readonly samples: Map<number, SampleState>;
  readonly orphans: Map<number, OrphanState>;
}

/**
 * Children spawned by any Reaper in this process that Node has not reaped yet (never waitpid
 * these). Process-wide so that one instance's reapOrphans never waitpid()s or signals another
 * instance's worker.
 */
export const ownChildren = new Set<number>();

export const SIGNAL_NAMES = new Map<number, string>(Object.entries(os.constants.signals).map(([name, n]) => [n, name]));

export function key(pid: number, start: number): string {
  return `${pid}:${start}`;
}

export function newTracked(id: ProcessIdentity): Tracked {
  return { id: { ...id }, known: new Map(), cursor: null, everProven: false, term: null };
}

/** The tracking record of this very worker (a new one when the pid now names another process). */
export function ensureTracked(state: ReaperState, id: ProcessIdentity): Tracked {
  let t = state.tracked.get(id.pid);
  if (!t || t.id.startTime !== id.startTime || t.id.bootId !== id.bootId || t.id.pgid !== id.pgid) {
    t = newTracked(id);
    state.tracked.set(id.pid, t);
  }
  return t;
}
