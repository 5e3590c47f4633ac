// The Reaper: spawns workers in their own process group, drains their exits, terminates whole
// groups/trees with a non-blocking SIGTERM -> grace -> SIGKILL escalation, reaps re-parented
// orphans (child subreaper), and samples CPU/RSS from /proc. Nothing here sleeps or blocks:
// every method does one /proc scan and a few syscalls and returns.
//
// This class is the façade: it chooses the backend, holds the state (ReaperState, state.ts) and
// hands it to the parts, each in its own file:
//   spawn.ts       starting workers (posix_spawn through the addon, or Node's spawn), their exits
//   group.ts       proving a process group is still ours to kill(-pgid) (PGID REUSE), a tree's snapshot
//   signal.ts      signalling a group and tree, every process checked first (pidfd, tree-kill)
//   terminate.ts   SIGTERM -> grace -> SIGKILL, one step per call
//   orphans.ts     orphans re-parented to us, zombies among our children
//   sampling.ts    CPU and RSS per worker
import type { ProcessIdentity, ProcTable } from './identity.js';
import { loadNative } from './native.js';
import { chooseBackend, fallbackForced, PortableSampler, treeKillUsable, type PortableSamplerOptions, type ProcBackend } from './fallback.js';
import { HAVE_PROC, IS_LINUX, isDeadState, lastAllocatedPid, openFdCount, scanProcesses } from './platform.js';
import { snapshot } from './group.js';
import { orphansPending, reapOrphans, reapZombieChildren } from './orphans.js';
import { sample, sampleNow } from './sampling.js';
import { childExited, drainExits, spawn } from './spawn.js';
import { ensureTracked, type ReaperState } from './state.js';
import { resumeTermination, terminate } from './terminate.js';
import type { ExitRecord, ReaperLogger, SpawnRequest, SpawnResult, TerminationState, Usage } from './types.js';

export type { ExitRecord, ReaperLogger, SpawnFault, SpawnRequest, SpawnResult, TerminationState, Usage } from './types.js';

export interface ReaperOptions {
  logger?: ReaperLogger;
  /** become PR_SET_CHILD_SUBREAPER (default: true on Linux) */
  subreaper?: boolean;
  /** grace between SIGTERM and SIGKILL for orphans found by reapOrphans (default 5000 ms) */
  orphanGraceMs?: number;
  /** default grace for cleanupAfterExit (default 5000 ms) */
  cleanupGraceMs?: number;
  /** called (synchronously, from Node's exit event) whenever an own child exits: a wake-up hint */
  onExit?: () => void;
  /**
   * How to start workers. 'native' (the default where the addon has it): posix_spawn, whose cost
   * does not grow with this process's size, exits collected by waitpid on exactly those pids at
   * SIGCHLD. 'node': child_process.spawn (fork + exec of this process).
   */
  spawner?: 'native' | 'node';
  /**
   * Use the portable backend (pidusage, tree-kill, Node's spawn, no addon) even where the fast path
   * is available. Default: KANBAN_REAPER_FALLBACK=1 (validated once; anything but 0/1 throws).
   */
  fallback?: boolean;
  /** pidusage's history age and refresh period of the portable backend (tests) */
  portableSampler?: PortableSamplerOptions;
}

let warnedNative = false;
let warnedPortable = false;

const consoleLogger: ReaperLogger = {
  warn: (obj, msg) => console.warn(`[reaper] ${msg ?? ''} ${JSON.stringify(obj)}`),
  info: () => {},
};

export class Reaper {
  readonly subreaperActive: boolean;
  /**
   * 'linux-proc': /proc and the native addon (posix_spawn, pidfd signals, child subreaper).
   * 'portable': where either is missing, or forced: pidusage for CPU/RSS, tree-kill for what lies
   * outside the group after the group kill, Node's spawn, no subreaper (see fallback.ts).
   */
  readonly procBackend: ProcBackend;
  /** why this backend (for the supervisor's start-up log) */
  readonly procBackendReason: string;
  /** workers are started with the addon's posix_spawn (false: Node's child_process.spawn) */
  readonly nativeSpawn: boolean;
  private readonly logger: ReaperLogger;
  private readonly cleanupGraceMs: number;
  /** what every part works on: tracked workers, samples, orphans, exits (see state.ts) */
  private readonly state: ReaperState;

  constructor(opts: ReaperOptions = {}) {
    this.logger = opts.logger ?? consoleLogger;
    const orphanGraceMs = opts.orphanGraceMs ?? 5000;
    this.cleanupGraceMs = opts.cleanupGraceMs ?? 5000;
    const forced = opts.fallback ?? fallbackForced();
    const loadedAddon = loadNative();
    const { backend, reason } = chooseBackend({ forced, haveProc: HAVE_PROC, addon: !!loadedAddon.addon, addonError: loadedAddon.error });
    this.procBackend = backend;
    this.procBackendReason = reason;
    // The portable backend does without the addon altogether: forced, it runs as where it is missing.
    const addon = backend === 'linux-proc' ? loadedAddon.addon : null;
    const portable = backend === 'portable' ? new PortableSampler(opts.portableSampler) : null;
    this.nativeSpawn = IS_LINUX && typeof addon?.spawn === 'function' && (opts.spawner ?? 'native') === 'native';
    let active = false;
    const want = opts.subreaper ?? IS_LINUX;
    if (!addon) {
      if (!warnedPortable) {
        warnedPortable = true;
        const walk = treeKillUsable();
        const obj = { event: 'proc_backend', procBackend: backend, reason, treeKill: walk.ok ? 'usable' : walk.why };
        const msg = `reaper: portable process backend (${reason}): pidusage sampling, tree-kill after the group kill, no child subreaper (descendants that leave the tree unseen re-parent to init)`;
        // expected where there is no /proc, or when asked for; a degradation where the addon failed
        if (HAVE_PROC && !forced) this.logger.warn(obj, msg);
        else this.logger.info(obj, msg);
      }
    } else if (want) {
      const rc = addon.setChildSubreaper();
      active = rc === 0 && addon.isChildSubreaper();
      if (!active) this.warnOnce({ errno: rc }, 'reaper: prctl(PR_SET_CHILD_SUBREAPER) failed; running without child subreaper');
      else this.logger.info({ event: 'subreaper_active' }, 'reaper: child subreaper active');
    }
    this.subreaperActive = active;
    this.state = {
      logger: this.logger,
      native: addon,
      portable,
      pidfdUsable: IS_LINUX && !!addon,
      nativeSpawn: this.nativeSpawn,
      subreaperActive: active,
      orphanGraceMs,
      onExit: opts.onExit,
      exits: [],
      tracked: new Map(),
      samples: new Map(),
      orphans: new Map(),
    };
  }

  private warnOnce(obj: object, msg: string): void {
    if (warnedNative) return;
    warnedNative = true;
    this.logger.warn(obj, msg);
  }

  // ------------------------------------------------------------------ spawning (spawn.ts)

  spawn(req: SpawnRequest): Promise<SpawnResult> {
    return spawn(this.state, req);
  }

  /** @internal an own child exited (Node's exit event, or the SIGCHLD collector for native children) */
  childExited(pid: number, exitCode: number | null, signal: string | null, notify: boolean): void {
    childExited(this.state, pid, exitCode, signal, notify);
  }

  drainExits(): ExitRecord[] {
    return drainExits(this.state);
  }

  // ------------------------------------------------------------------ tracking

  track(id: ProcessIdentity): void {
    const t = ensureTracked(this.state, id);
    const scan = this.turnScan();
    snapshot(t, scan.table, scan.cursor);
  }

  /**
   * One /proc scan per turn of the event loop for track() and liveMembers(): a supervisor that
   * restarts adopts every live worker in one go, and adopted workers that end together are checked
   * together (one scan each kept the event loop busy for seconds with 64 workers and 1,000
   * processes on the host). Dropped at the next turn.
   */
  private turnScan(): { table: ProcTable; cursor: number | null } {
    if (!this.scanOfTurn) {
      const scan = { table: scanProcesses(), cursor: lastAllocatedPid() };
      this.scanOfTurn = scan;
      setImmediate(() => {
        if (this.scanOfTurn === scan) this.scanOfTurn = null;
      });
    }
    return this.scanOfTurn;
  }

  private scanOfTurn: { table: ProcTable; cursor: number | null } | null = null;

  /**
   * Processes that belong to a tracked worker although they are neither in its group nor below it
   * (escapees found by the run id in their environment after a restart): from now on they are part
   * of its tree, signalled and waited for with it.
   */
  addKnown(id: ProcessIdentity, members: ProcessIdentity[]): void {
    const t = ensureTracked(this.state, id);
    for (const m of members) if (m.pid !== id.pid && m.bootId === id.bootId) t.known.set(m.pid, m.startTime);
  }

  /** Pids still running of a tracked worker's tree: its group, its descendants and known escapees. */
  liveMembers(id: ProcessIdentity): number[] {
    const t = ensureTracked(this.state, id);
    const scan = this.turnScan();
    const { tree } = snapshot(t, scan.table, scan.cursor);
    return tree.filter((s) => !isDeadState(s.state)).map((s) => s.pid);
  }

  untrack(pid: number): void {
    this.state.tracked.delete(pid);
    this.state.samples.delete(pid);
  }

  /** pids currently tracked (spawned or adopted and not yet confirmed gone/untracked) */
  trackedPids(): number[] {
    return [...this.state.tracked.keys()];
  }

  // ------------------------------------------------------------------ termination (terminate.ts)

  terminate(id: ProcessIdentity, graceMs: number, now: number = Date.now()): TerminationState {
    return terminate(this.state, id, graceMs, now);
  }

  cleanupAfterExit(id: ProcessIdentity, graceMs: number = this.cleanupGraceMs, now: number = Date.now()): TerminationState {
    return terminate(this.state, id, graceMs, now);
  }

  /**
   * Resume a termination that an earlier supervisor began (its SIGTERM time, and its SIGKILL time
   * if it got that far): the next terminate() call escalates from where it stood, SIGKILL at
   * sigtermAt + grace, or at once when that has passed. The SIGTERM is sent again (the earlier
   * supervisor may have died between recording it and sending it).
   */
  resumeTermination(id: ProcessIdentity, sigtermAt: number, sigkillAt: number | null): void {
    resumeTermination(this.state, id, sigtermAt, sigkillAt);
  }

  // ------------------------------------------------------------------ orphans and zombies (orphans.ts)

  reapOrphans(knownPids: Set<number>, now: number = Date.now()): { terminated: number[]; reaped: number[] } {
    return reapOrphans(this.state, knownPids, now);
  }

  /** Orphans whose termination (SIGTERM, grace, SIGKILL) is under way: a supervisor waits for them before it exits. */
  orphansPending(now: number = Date.now()): number {
    return orphansPending(this.state, now);
  }

  /**
   * Reap the zombies among these direct children of ours (one /proc read each, no scan); Node's
   * own children and native children not yet collected are never touched. Returns the reaped pids.
   */
  reapZombieChildren(pids: number[]): number[] {
    return reapZombieChildren(this.state, pids);
  }

  // ------------------------------------------------------------------ sampling (sampling.ts)

  /**
   * CPU (percent of one core) and RSS summed over each worker's group and tree. Never blocks: on
   * the portable backend the figures are pidusage's latest readings (kept fresh in the background,
   * see PortableSampler), and a process seen for the first time counts from the next refresh.
   */
  sample(ids: ProcessIdentity[]): Map<number, Usage> {
    return sample(this.state, ids);
  }

  /**
   * The same, waiting for fresh readings on the portable backend (one pidusage call; a first
   * reading of a process is its lifetime average). On linux-proc: sample().
   */
  sampleNow(ids: ProcessIdentity[]): Promise<Map<number, Usage>> {
    return sampleNow(this.state, ids);
  }

  openFdCount(): number {
    return openFdCount();
  }
}
