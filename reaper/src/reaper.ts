// The Reaper: spawns workers in their own process group, drains their exits, terminates whole
// groups/trees with a non-blocking SIGTERM -> grace -> SIGKILL escalation, reaps re-parented
// orphans (child subreaper), and samples CPU/RSS from /proc. Nothing here sleeps or blocks:
// every method does one /proc scan and a few syscalls and returns.
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
// whole group to die AND X to be re-allocated in between).
// Single processes outside the group are signalled through a pidfd opened before the start
// time is re-checked (pidfd_open + /proc re-read + pidfd_send_signal), so a pid that is reused
// can never receive the signal; without the native addon, the check-then-kill window remains.
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { DEFAULT_PATH, lookupExecutable } from './exec.js';
import {
  collectTree,
  groupOwnedStateless,
  groupSignalAllowed,
  matches,
  type ProcessIdentity,
  type ProcTable,
} from './identity.js';
import { loadNative, type NativeAddon } from './native.js';
import {
  chooseBackend,
  fallbackForced,
  PortableSampler,
  treeKillChecked,
  treeKillUsable,
  type PortableSamplerOptions,
  type ProcBackend,
} from './fallback.js';
import { UnsafeFileError, openSafe } from './safe-fs.js';
import {
  bootId,
  HAVE_PROC,
  IS_LINUX,
  isDeadState,
  lastAllocatedPid,
  openFdCount,
  readRawStat,
  scanProcesses,
  sysconf,
  uptimeSeconds,
  type RawStat,
} from './platform.js';

export interface SpawnRequest {
  argv: string[];
  cwd?: string;
  env: Record<string, string>;
  logPath: string;
}
/**
 * A failed spawn says whose fault it is: `skill` (its command, working directory or arguments) or
 * `supervisor` (the supervisor's own resources: the log file or folder, file descriptors, processes,
 * memory). The supervisor's faults must never count against a task.
 */
export type SpawnFault = 'skill' | 'supervisor';
export type SpawnResult = { ok: true; identity: ProcessIdentity } | { ok: false; code: string; message: string; fault: SpawnFault };

/** errno codes of a spawn that say the supervisor (not the skill) is short of something. */
const SUPERVISOR_SPAWN_ERRORS = new Set(['EAGAIN', 'ENOMEM', 'EMFILE', 'ENFILE', 'ENOSPC', 'EDQUOT']);
export interface ExitRecord {
  pid: number;
  exitCode: number | null;
  signal: string | null;
  /** ms epoch */
  at: number;
}
export interface TerminationState {
  pid: number;
  phase: 'term' | 'kill' | 'gone';
  sigtermAt: number;
  sigkillAt: number | null;
  remaining: number[];
}
export interface Usage {
  /** percent of one core, summed over the worker's group/tree */
  cpuPercent: number;
  rssBytes: number;
  processes: number;
}
export interface ReaperLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}
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

const SIGTERM = os.constants.signals.SIGTERM;
const SIGKILL = os.constants.signals.SIGKILL;
const ENOSYS = 38;

interface TermInternal {
  state: TerminationState;
  /** "pid:start" of processes that already got SIGTERM (do not repeat it every tick) */
  termSent: Set<string>;
  groupTermSent: boolean;
}

interface Tracked {
  id: ProcessIdentity;
  /** processes (pid -> start time) seen in the worker's tree in the latest snapshot */
  known: Map<number, number>;
  /** ns_last_pid at the last moment group ownership was proven (null: never / unavailable) */
  cursor: number | null;
  /** group ownership has been proven at least once */
  everProven: boolean;
  term: TermInternal | null;
}

interface SampleState {
  startTime: number;
  uptime: number;
  procs: Map<number, { start: number; total: number; ppid: number }>;
}

interface OrphanState {
  start: number;
  termAt: number;
  killed: boolean;
}

let warnedNative = false;
let warnedPortable = false;
/**
 * Children spawned by any Reaper in this process that Node has not reaped yet. Process-wide so
 * that one instance's reapOrphans never waitpid()s or signals another instance's worker.
 */
const ownChildren = new Set<number>();

/**
 * Children started with the native posix_spawn, and the Reaper that collects each one's exit.
 * Node does not know them: we waitpid() exactly these pids at SIGCHLD (and, as a safety net, from
 * drainExits() at most every 500 ms).
 */
const nativeChildren = new Map<number, Reaper>();
let sigchldListening = false;
let lastNativePoll = 0;

function collectNativeExits(notify = true): void {
  const addon = loadNative().addon;
  if (!addon) return;
  for (const [pid, owner] of nativeChildren) {
    const r = addon.waitNoHang(pid);
    if (r === 0) continue;
    nativeChildren.delete(pid);
    // -ECHILD cannot happen unless someone else reaped it; record the exit without a status.
    const [code, sig] = Array.isArray(r) ? r : [-1, 0];
    owner.childExited(pid, code >= 0 ? code : null, sig > 0 ? (SIGNAL_NAMES.get(sig) ?? `SIG${sig}`) : null, notify);
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

const SIGNAL_NAMES = new Map<number, string>(Object.entries(os.constants.signals).map(([name, n]) => [n, name]));

const consoleLogger: ReaperLogger = {
  warn: (obj, msg) => console.warn(`[reaper] ${msg ?? ''} ${JSON.stringify(obj)}`),
  info: () => {},
};

/** Did the cyclic pid allocator hand out `x` in (c0, c1]? */
function pidAllocatedBetween(c0: number, c1: number, x: number): boolean {
  if (c1 === c0) return false;
  if (c1 > c0) return x > c0 && x <= c1;
  return x > c0 || x <= c1; // wrapped around pid_max
}

function key(pid: number, start: number): string {
  return `${pid}:${start}`;
}

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
  /** CPU/RSS of the portable backend (null on linux-proc) */
  private readonly portable: PortableSampler | null;
  private readonly logger: ReaperLogger;
  private readonly native: NativeAddon | null;
  private pidfdUsable: boolean;
  private readonly orphanGraceMs: number;
  private readonly cleanupGraceMs: number;
  private readonly onExit: (() => void) | undefined;
  /** workers are started with the addon's posix_spawn (false: Node's child_process.spawn) */
  readonly nativeSpawn: boolean;
  private exits: ExitRecord[] = [];
  /** our own spawned children that Node has not reaped yet (never waitpid these); process-wide */
  private readonly ownChildren = ownChildren;
  private readonly tracked = new Map<number, Tracked>();
  private readonly samples = new Map<number, SampleState>();
  private readonly orphans = new Map<number, OrphanState>();

  constructor(opts: ReaperOptions = {}) {
    this.logger = opts.logger ?? consoleLogger;
    this.orphanGraceMs = opts.orphanGraceMs ?? 5000;
    this.cleanupGraceMs = opts.cleanupGraceMs ?? 5000;
    this.onExit = opts.onExit;
    const forced = opts.fallback ?? fallbackForced();
    const loadedAddon = loadNative();
    const { backend, reason } = chooseBackend({ forced, haveProc: HAVE_PROC, addon: !!loadedAddon.addon, addonError: loadedAddon.error });
    this.procBackend = backend;
    this.procBackendReason = reason;
    // The portable backend does without the addon altogether: forced, it runs as where it is missing.
    const addon = backend === 'linux-proc' ? loadedAddon.addon : null;
    this.native = addon;
    this.portable = backend === 'portable' ? new PortableSampler(opts.portableSampler) : null;
    this.nativeSpawn = IS_LINUX && typeof addon?.spawn === 'function' && (opts.spawner ?? 'native') === 'native';
    this.pidfdUsable = IS_LINUX && !!addon;
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
  }

  private warnOnce(obj: object, msg: string): void {
    if (warnedNative) return;
    warnedNative = true;
    this.logger.warn(obj, msg);
  }

  // ------------------------------------------------------------------ spawning

  async spawn(req: SpawnRequest): Promise<SpawnResult> {
    const fail = (code: string, message: string, fault?: SpawnFault): SpawnResult => ({ ok: false, code, message, fault: fault ?? (SUPERVISOR_SPAWN_ERRORS.has(code) ? 'supervisor' : 'skill') });
    if (!Array.isArray(req.argv) || req.argv.length === 0 || typeof req.argv[0] !== 'string' || req.argv[0] === '') {
      return fail('EINVAL', 'argv must be a non-empty array of strings');
    }
    const cwd = req.cwd;
    if (cwd !== undefined) {
      let st: fs.Stats;
      try {
        st = fs.statSync(cwd);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'ENOENT';
        return fail(code, `working directory ${cwd} is not accessible: ${code}`);
      }
      if (!st.isDirectory()) return fail('ENOTDIR', `working directory ${cwd} is not a directory`);
      try {
        fs.accessSync(cwd, fs.constants.X_OK);
      } catch {
        return fail('EACCES', `working directory ${cwd}: permission denied`);
      }
    }
    const lookup = lookupExecutable(req.argv[0], req.env.PATH ?? DEFAULT_PATH, cwd);
    if (!lookup.ok) return fail(lookup.code, lookup.message);

    let fd: number;
    try {
      // In a folder workers can write: a symlink, FIFO, hard link or foreign file planted at the
      // log's name is refused (never followed, never blocked on, never appended to).
      fd = openSafe(req.logPath, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, { owner: true, singleLink: true, mode: 0o600 }).fd;
    } catch (err) {
      if (err instanceof UnsafeFileError) return fail(err.code, `log ${err.message}`, 'supervisor');
      const e = err as NodeJS.ErrnoException;
      return fail(e.code ?? 'EIO', `cannot open log ${req.logPath}: ${e.message}`, 'supervisor');
    }
    if (this.nativeSpawn && (cwd === undefined || this.native!.spawnCanChdir)) return this.spawnNative(req, lookup.file, fd);
    let child: ChildProcess;
    try {
      child = spawnChild(lookup.file, req.argv.slice(1), {
        cwd,
        env: req.env, // exactly this env, nothing inherited
        argv0: req.argv[0],
        detached: true, // setsid(): own session and process group (pgid = pid)
        stdio: ['ignore', fd, fd], // no pipes to us: the worker survives our death, no SIGPIPE
        shell: false,
        windowsHide: true,
      });
    } catch (err) {
      fs.closeSync(fd);
      const e = err as NodeJS.ErrnoException;
      return fail(e.code ?? 'ESPAWN', e.message);
    }
    // uv_spawn forked (and waited for exec) synchronously: the child holds its own copy now.
    fs.closeSync(fd);
    child.on('error', () => {}); // errors after the spawn (e.g. from kill()) are not ours to throw

    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<NodeJS.ErrnoException>((resolve) => child.once('error', resolve));
      return fail(err.code ?? 'ESPAWN', `${req.argv[0]}: ${err.message}`);
    }
    // Read /proc now: Node cannot have reaped the child before we return to the event loop.
    let raw: RawStat | null;
    try {
      raw = readRawStat(pid);
    } catch (err) {
      // no /proc and `ps` failed: a worker we cannot identify is not left running
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      return fail('ESRCH', `spawned pid ${pid} could not be identified: ${(err as Error).message}`);
    }
    this.ownChildren.add(pid);
    child.once('exit', (code, signal) => this.childExited(pid, code, signal, true));
    child.unref(); // the supervisor's own timers decide its lifetime, not the workers
    await new Promise<void>((resolve) => {
      child.once('spawn', resolve);
      child.once('error', () => resolve());
    });
    return this.trackSpawned(pid, raw);
  }

  /** Start tracking a child we just spawned (its own group leader), from its /proc stat. */
  private trackSpawned(pid: number, raw: RawStat | null): SpawnResult {
    if (!raw) return { ok: false, code: 'ESRCH', message: `spawned pid ${pid} vanished before it could be identified`, fault: 'skill' };
    const identity: ProcessIdentity = { pid, pgid: pid, startTime: raw.startTime, bootId: bootId() };
    const t = this.newTracked(identity);
    t.known.set(pid, raw.startTime);
    t.cursor = lastAllocatedPid();
    t.everProven = true;
    this.tracked.set(pid, t);
    return { ok: true, identity };
  }

  /**
   * posix_spawn through the addon: no fork of this (large) process, so the cost of a spawn stays
   * flat; same contract as Node's path (own session, exact env, log fd, nothing piped to us).
   */
  private spawnNative(req: SpawnRequest, file: string, fd: number): SpawnResult {
    const envp: string[] = [];
    for (const [k, v] of Object.entries(req.env)) {
      if (k === '' || k.includes('=') || k.includes('\0') || String(v).includes('\0')) {
        fs.closeSync(fd);
        return { ok: false, code: 'EINVAL', message: `environment variable ${JSON.stringify(k)} has an invalid name or value`, fault: 'skill' };
      }
      envp.push(`${k}=${v}`);
    }
    let rc: number;
    try {
      // Synchronous on purpose: measured faster end to end than the same call on a pool thread
      // (the tick waits for its spawns either way), and no child exists unknown to us meanwhile.
      rc = this.native!.spawn!(file, req.argv, envp, req.cwd ?? null, fd);
    } catch (err) {
      return { ok: false, code: 'EINVAL', message: `${req.argv[0]}: ${(err as Error).message}`, fault: 'skill' };
    } finally {
      fs.closeSync(fd); // the child has its own copies on 1 and 2
    }
    if (rc < 0) {
      const code = errnoName(-rc);
      const why = code === 'ENOEXEC' ? 'not an executable format (a script needs a #! line)' : code;
      return { ok: false, code, message: `${req.argv[0]}: cannot execute ${file}: ${why}`, fault: SUPERVISOR_SPAWN_ERRORS.has(code) ? 'supervisor' : 'skill' };
    }
    const pid = rc;
    // Not reaped until we waitpid() it, so /proc/PID/stat is there (a zombie at worst).
    const raw = readRawStat(pid);
    this.ownChildren.add(pid);
    nativeChildren.set(pid, this);
    if (!sigchldListening) {
      sigchldListening = true;
      // A signal listener does not keep the event loop alive (Node unrefs it).
      process.on('SIGCHLD', () => collectNativeExits());
    }
    return this.trackSpawned(pid, raw);
  }

  /** @internal an own child exited (Node's exit event, or the SIGCHLD collector for native children) */
  childExited(pid: number, exitCode: number | null, signal: string | null, notify: boolean): void {
    this.exits.push({ pid, exitCode, signal, at: Date.now() });
    this.ownChildren.delete(pid);
    if (notify) this.onExit?.();
  }

  drainExits(): ExitRecord[] {
    // SIGCHLD collects native children's exits as they happen; this is only a safety net (a
    // waitpid per child, so not at every call: the supervisor drains every 25 ms).
    const now = Date.now();
    if (nativeChildren.size && now - lastNativePoll >= 500) {
      lastNativePoll = now;
      collectNativeExits(false);
    }
    const out = this.exits;
    this.exits = [];
    return out;
  }

  // ------------------------------------------------------------------ tracking

  private newTracked(id: ProcessIdentity): Tracked {
    return { id: { ...id }, known: new Map(), cursor: null, everProven: false, term: null };
  }

  track(id: ProcessIdentity): void {
    const t = this.ensureTracked(id);
    const scan = this.turnScan();
    this.snapshot(t, scan.table, scan.cursor);
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
    const t = this.ensureTracked(id);
    for (const m of members) if (m.pid !== id.pid && m.bootId === id.bootId) t.known.set(m.pid, m.startTime);
  }

  /**
   * Resume a termination that an earlier supervisor began (its SIGTERM time, and its SIGKILL time
   * if it got that far): the next terminate() call escalates from where it stood, SIGKILL at
   * sigtermAt + grace, or at once when that has passed. The SIGTERM is sent again (the earlier
   * supervisor may have died between recording it and sending it).
   */
  resumeTermination(id: ProcessIdentity, sigtermAt: number, sigkillAt: number | null): void {
    const t = this.ensureTracked(id);
    if (t.term) return;
    t.term = {
      state: { pid: id.pid, phase: sigkillAt === null ? 'term' : 'kill', sigtermAt, sigkillAt, remaining: [] },
      termSent: new Set(),
      groupTermSent: false,
    };
  }

  /** Pids still running of a tracked worker's tree: its group, its descendants and known escapees. */
  liveMembers(id: ProcessIdentity): number[] {
    const t = this.ensureTracked(id);
    const scan = this.turnScan();
    const { tree } = this.snapshot(t, scan.table, scan.cursor);
    return tree.filter((s) => !isDeadState(s.state)).map((s) => s.pid);
  }

  untrack(pid: number): void {
    this.tracked.delete(pid);
    this.samples.delete(pid);
  }

  /** Orphans whose termination (SIGTERM, grace, SIGKILL) is under way: a supervisor waits for them before it exits. */
  orphansPending(now: number = Date.now()): number {
    // One that outlives its SIGKILL by 5 s (not ours to kill: another user's) is not waited for.
    let n = 0;
    for (const o of this.orphans.values()) if (now - o.termAt < this.orphanGraceMs + 5000) n++;
    return n;
  }

  /** pids currently tracked (spawned or adopted and not yet confirmed gone/untracked) */
  trackedPids(): number[] {
    return [...this.tracked.keys()];
  }

  private ensureTracked(id: ProcessIdentity): Tracked {
    let t = this.tracked.get(id.pid);
    if (!t || t.id.startTime !== id.startTime || t.id.bootId !== id.bootId || t.id.pgid !== id.pgid) {
      t = this.newTracked(id);
      this.tracked.set(id.pid, t);
    }
    return t;
  }

  /** Group ownership proof, see the header comment. */
  private proveGroup(t: Tracked, table: ProcTable, cursorNow: number | null): boolean {
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
  private snapshot(t: Tracked, table: ProcTable, cursorNow: number | null): { tree: RawStat[]; groupOwned: boolean } {
    const groupOwned = this.proveGroup(t, table, cursorNow);
    const tree = collectTree(t.id, table, groupOwned, t.known);
    if (groupOwned) {
      t.everProven = true;
      if (cursorNow !== null) t.cursor = cursorNow;
    }
    t.known = new Map(tree.filter((s) => !isDeadState(s.state)).map((s) => [s.pid, s.startTime]));
    return { tree, groupOwned };
  }

  // ------------------------------------------------------------------ signalling

  /** Signal one process only if it is still the same process (pidfd when available). */
  private killChecked(pid: number, start: number, sig: number): boolean {
    if (pid <= 1 || pid === process.pid) return false;
    if (this.pidfdUsable && this.native) {
      const fd = this.native.pidfdOpen(pid);
      if (fd >= 0) {
        try {
          const s = readRawStat(pid);
          if (!s || s.startTime !== start) return false;
          return this.native.pidfdSendSignal(fd, sig) === 0;
        } finally {
          fs.closeSync(fd);
        }
      }
      if (fd !== -ENOSYS) return false; // ESRCH: gone
      this.pidfdUsable = false;
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

  private killGroup(pgid: number, sig: number): void {
    if (pgid <= 1) return;
    try {
      process.kill(-pgid, sig);
    } catch {
      /* ESRCH: the group emptied meanwhile */
    }
  }

  /** pids of live ChildProcess handles Node itself owns (best effort; unref'd handles are not listed). */
  private nodeChildPids(): Set<number> {
    const out = new Set<number>(this.ownChildren);
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
  reapZombieChildren(pids: number[]): number[] {
    const stats: RawStat[] = [];
    for (const pid of pids) {
      const st = readRawStat(pid);
      if (st) stats.push(st);
    }
    return this.reapZombies(stats);
  }

  /** waitpid(pid, WNOHANG) on zombies that are our children but not Node's own. */
  private reapZombies(candidates: RawStat[], exclude?: Set<number>): number[] {
    const reaped: number[] = [];
    if (!this.native) return reaped;
    let nodeKids: Set<number> | null = null;
    for (const s of candidates) {
      if (!isDeadState(s.state) || s.ppid !== process.pid) continue;
      nodeKids ??= this.nodeChildPids();
      if (nodeKids.has(s.pid) || exclude?.has(s.pid)) continue;
      const r = this.native.waitNoHang(s.pid);
      if (Array.isArray(r)) reaped.push(s.pid);
    }
    return reaped;
  }

  private signalTree(id: ProcessIdentity, tree: RawStat[], groupOwned: boolean, sig: number, skip?: Set<string>): void {
    const live = tree.filter((s) => !isDeadState(s.state));
    const groupLive = groupOwned && live.some((s) => s.pgid === id.pgid);
    if (groupLive && !(skip && skip.has('group'))) {
      this.killGroup(id.pgid, sig);
      skip?.add('group');
    }
    if (this.portable && treeKillUsable().ok) {
      this.treeKillRest(live, groupLive ? id.pgid : null, sig, skip);
      return;
    }
    for (const s of live) {
      if (groupLive && s.pgid === id.pgid) {
        skip?.add(key(s.pid, s.startTime));
        continue; // covered by kill(-pgid)
      }
      const k = key(s.pid, s.startTime);
      if (skip?.has(k)) continue;
      this.killChecked(s.pid, s.startTime, sig);
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
  private treeKillRest(live: RawStat[], killedGroup: number | null, sig: number, skip?: Set<string>): void {
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
        this.logger.warn({ event: 'tree_kill_failed', pid: r.pid, signal: SIGNAL_NAMES.get(sig) ?? sig, error: err.message }, 'reaper: tree-kill failed'),
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

  // ------------------------------------------------------------------ termination

  terminate(id: ProcessIdentity, graceMs: number, now: number = Date.now()): TerminationState {
    const t = this.ensureTracked(id);
    const cursorNow = lastAllocatedPid();
    const table = scanProcesses();
    const { tree, groupOwned } = this.snapshot(t, table, cursorNow);
    this.reapZombies(tree);
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
      if (!this.ownChildren.has(id.pid)) {
        this.tracked.delete(id.pid);
        this.samples.delete(id.pid);
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
      this.signalTree(t.id, tree, groupOwned, SIGTERM, term.termSent);
    } else {
      this.signalTree(t.id, tree, groupOwned, SIGKILL); // every call until nothing is left
    }
    st.remaining = live.map((s) => s.pid);
    return { ...st, remaining: [...st.remaining] };
  }

  cleanupAfterExit(id: ProcessIdentity, graceMs: number = this.cleanupGraceMs, now: number = Date.now()): TerminationState {
    return this.terminate(id, graceMs, now);
  }

  // ------------------------------------------------------------------ orphans

  reapOrphans(knownPids: Set<number>, now: number = Date.now()): { terminated: number[]; reaped: number[] } {
    // Without a child subreaper (the portable backend, or prctl refused) nothing is re-parented to
    // us: our children are the workers we spawned and Node's own helpers, never orphans. Nothing to
    // look for, and no table to read (where /proc is missing that would be a `ps` at every call).
    if (!this.subreaperActive) return { terminated: [], reaped: [] };
    const terminated: number[] = [];
    const table = scanProcesses();
    const exclude = this.nodeChildPids();
    for (const p of knownPids) exclude.add(p);

    const children: RawStat[] = [];
    for (const s of table.values()) if (s.ppid === process.pid) children.push(s);
    // a zombie in knownPids is still reaped when it is an adopted worker of ours (re-parented to
    // us, not Node's child): nobody else will ever wait for it
    const zombieExclude = new Set(knownPids);
    for (const t of this.tracked.values()) {
      const z = table.get(t.id.pid);
      if (z && z.startTime === t.id.startTime && isDeadState(z.state)) zombieExclude.delete(t.id.pid);
    }
    const reaped = this.reapZombies(children, zombieExclude);
    for (const pid of reaped) this.orphans.delete(pid);

    const live = children.filter((s) => !isDeadState(s.state) && !exclude.has(s.pid));
    let protectedSet: Set<string> | null = null;
    for (const s of live) {
      protectedSet ??= this.liveWorkersProcesses(table);
      // a process of a worker that is still running (its own double-forked helper): leave it
      // to that worker's cleanupAfterExit
      if (protectedSet.has(key(s.pid, s.startTime))) continue;
      let o = this.orphans.get(s.pid);
      if (o && o.start !== s.startTime) o = undefined;
      // the orphan with everything below it (and its own group if it leads one, e.g. after setsid)
      const orphanId: ProcessIdentity = { pid: s.pid, pgid: s.pgid, startTime: s.startTime, bootId: bootId() };
      const owned = groupOwnedStateless(orphanId, table);
      if (!o) {
        o = { start: s.startTime, termAt: now, killed: false };
        this.orphans.set(s.pid, o);
        this.signalTree(orphanId, collectTree(orphanId, table, owned), owned, SIGTERM);
        terminated.push(s.pid);
      } else if (o.killed || now >= o.termAt + this.orphanGraceMs) {
        this.signalTree(orphanId, collectTree(orphanId, table, owned), owned, SIGKILL);
        if (!o.killed) terminated.push(s.pid);
        o.killed = true;
      }
    }
    // forget orphans that are gone
    for (const [pid, o] of this.orphans) {
      const s = table.get(pid);
      if (!s || s.startTime !== o.start || (isDeadState(s.state) && s.ppid !== process.pid)) this.orphans.delete(pid);
    }
    return { terminated, reaped };
  }

  /**
   * "pid:start" of every process of a tracked worker that is still running (its own
   * double-forked helpers) or whose termination is in progress (it follows that worker's
   * grace and escalation). Everything else re-parented to us is an orphan.
   */
  private liveWorkersProcesses(table: ProcTable): Set<string> {
    const out = new Set<string>();
    for (const t of this.tracked.values()) {
      const leader = matches(table, t.id.pid, t.id.startTime);
      const running = !!leader && !isDeadState(leader.state);
      const terminating = !!t.term && t.term.state.phase !== 'gone';
      if (!running && !terminating) continue;
      const owned = running ? groupOwnedStateless(t.id, table) : this.proveGroup(t, table, null);
      for (const s of collectTree(t.id, table, owned, t.known)) out.add(key(s.pid, s.startTime));
    }
    return out;
  }

  // ------------------------------------------------------------------ sampling

  /** The live processes of each worker's tree in one fresh table (refreshing what tracking knows of them). */
  private liveTrees(ids: ProcessIdentity[]): Array<[ProcessIdentity, RawStat[]]> {
    const cursorNow = lastAllocatedPid(); // before the scan, as in terminate()
    const table = scanProcesses();
    const out: Array<[ProcessIdentity, RawStat[]]> = [];
    for (const id of ids) {
      const t = this.tracked.get(id.pid);
      const tree =
        t && t.id.startTime === id.startTime && t.id.bootId === id.bootId
          ? this.snapshot(t, table, cursorNow).tree
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
  sample(ids: ProcessIdentity[]): Map<number, Usage> {
    if (this.portable) return this.portable.usage(this.liveTrees(ids).map(([id, live]) => [id.pid, live] as const));
    const out = new Map<number, Usage>();
    const { clockTicks, pageSize } = sysconf();
    const trees = this.liveTrees(ids);
    const uptime = uptimeSeconds();
    const wanted = new Set<number>();
    for (const [id, live] of trees) {
      wanted.add(id.pid);
      let prev = this.samples.get(id.pid);
      if (prev && prev.startTime !== id.startTime) prev = undefined;
      const procs = new Map<number, { start: number; total: number; ppid: number }>();
      let deltaTicks = 0;
      let lifetimePercent = 0;
      let rssPages = 0;
      for (const s of live) {
        const total = s.cpuTicks + s.childTicks;
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
      this.samples.set(id.pid, { startTime: id.startTime, uptime, procs });
      out.set(id.pid, { cpuPercent: Math.round(cpuPercent * 10) / 10, rssBytes: rssPages * pageSize, processes: live.length });
    }
    for (const pid of this.samples.keys()) if (!wanted.has(pid)) this.samples.delete(pid);
    return out;
  }

  /**
   * The same, waiting for fresh readings on the portable backend (one pidusage call; a first
   * reading of a process is its lifetime average). On linux-proc: sample().
   */
  async sampleNow(ids: ProcessIdentity[]): Promise<Map<number, Usage>> {
    if (this.portable) return this.portable.usageNow(this.liveTrees(ids).map(([id, live]) => [id.pid, live] as const));
    return this.sample(ids);
  }

  openFdCount(): number {
    return openFdCount();
  }
}
