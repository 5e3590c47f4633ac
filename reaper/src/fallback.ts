// The portable process backend: where the Linux fast paths are missing (no /proc, e.g. macOS; or
// the native addon did not build), or when KANBAN_REAPER_FALLBACK=1 forces it.
//
//   what                    linux-proc (fast path)                     portable
//   starting workers        posix_spawn in the addon                   Node's spawn (detached: own session, log on 1 and 2)
//   CPU / RSS sampling      /proc/PID/stat of the whole tree           pidusage, asynchronous (this file)
//   group termination       kill(-pgid) after the ownership proof      the same
//   the rest of the tree    pidfd signal per verified process          tree-kill from each verified root (this file)
//   re-parented orphans     child subreaper: they come back to us      not caught unless seen in the tree before
//   identity (pid + start)  /proc                                      /proc where mounted, else one `ps`
//
// Invariants kept as far as the platform allows: every signal still goes to a process whose pid and
// start time were checked just before (the group only after its ownership proof); tree-kill is used
// only for what lies outside the group, after the group kill, and only from a root whose identity
// was checked (it then signals what its own `ps` walk finds below that root: processes born since
// our table included, processes re-parented before its walk not).
import { createRequire } from 'node:module';
import type TreeKill from 'tree-kill';
import type Pidusage from 'pidusage';
import { resolveExecutable } from './exec.js';
import { runHelperSync } from './helper.js';
import { isDeadState, readRawStat, type RawStat } from './platform.js';

// Both are loaded when the portable backend is chosen (they are CommonJS: a synchronous require): a
// supervisor on the Linux fast path, and every CLI call, never load them.
const requireHere = createRequire(import.meta.url);
let treeKillFn: typeof TreeKill | undefined;
let pidusageFn: typeof Pidusage | undefined;
const treeKill = (pid: number, signal: string | number, callback: (error?: Error) => void): void =>
  (treeKillFn ??= requireHere('tree-kill') as typeof TreeKill)(pid, signal, callback);
/**
 * Load both now: the portable backend calls it when it is chosen, so a broken install (either
 * package missing) fails the supervisor's start naming it, not silently at the first sample or kill.
 */
function loadPortableDeps(): void {
  pidusageFn ??= requireHere('pidusage') as typeof Pidusage;
  treeKillFn ??= requireHere('tree-kill') as typeof TreeKill;
}
/** (async: a failed load rejects like a failed sampling, never throws at the caller) */
const pidusage = async (pids: number[], options: Pidusage.Options): Promise<Record<string, Pidusage.Status | undefined>> =>
  (pidusageFn ??= requireHere('pidusage') as typeof Pidusage)(pids, options);

export const FALLBACK_ENV = 'KANBAN_REAPER_FALLBACK';

/** Which process backend a Reaper uses (logged by the supervisor at start). */
export type ProcBackend = 'linux-proc' | 'portable';

/** A reaper setting from the environment is invalid; `variable` names it. */
export class ReaperConfigError extends Error {
  override readonly name = 'ReaperConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}

let forced: { value: boolean } | { error: ReaperConfigError } | null = null;

/**
 * KANBAN_REAPER_FALLBACK, read and validated once per process: `1` forces the portable backend
 * (as if /proc and the addon were missing), `0` or unset lets the reaper choose. Anything else
 * throws (every time) an error naming the variable.
 */
export function fallbackForced(): boolean {
  if (!forced) {
    const raw = process.env[FALLBACK_ENV];
    if (raw === undefined || raw === '' || raw === '0') forced = { value: false };
    else if (raw === '1') forced = { value: true };
    else {
      forced = {
        error: new ReaperConfigError(FALLBACK_ENV, `${FALLBACK_ENV} must be 1 (force the portable process backend) or 0 / unset (automatic), got ${JSON.stringify(raw)}`),
      };
    }
  }
  if ('error' in forced) throw forced.error;
  return forced.value;
}

/** The backend for this process: the fast path needs /proc and the native addon, and no forcing. */
export function chooseBackend(opts: { forced: boolean; haveProc: boolean; addon: boolean; addonError: string | null }): { backend: ProcBackend; reason: string } {
  if (opts.forced) return { backend: 'portable', reason: `forced by ${FALLBACK_ENV}=1` };
  if (!opts.haveProc) return { backend: 'portable', reason: '/proc is not available on this platform' };
  if (!opts.addon) return { backend: 'portable', reason: opts.addonError ?? 'the native addon is not available' };
  return { backend: 'linux-proc', reason: '/proc and the native addon are available' };
}

// ------------------------------------------------------------------ sampling: pidusage

export interface PortableUsage {
  cpuPercent: number;
  rssBytes: number;
  processes: number;
}

export interface PortableSamplerOptions {
  /**
   * ms pidusage keeps a pid's history after its last reading (default 15,000). Under /proc it
   * keeps an open descriptor on /proc/PID/stat with it: that descriptor is closed when the history
   * expires, so this bounds how long the descriptors of exited processes stay open.
   */
  historyMaxAgeMs?: number;
  /** ms between background refreshes until the caller's own cadence is known (default 1000) */
  refreshMs?: number;
}

interface Reading {
  start: number;
  cpu: number;
  memory: number;
  at: number;
}

/**
 * CPU and RSS from pidusage, without ever blocking the caller: usage() answers from the latest
 * readings at once and keeps them fresh from a background refresh (an unref'd timer at half the
 * caller's cadence, between 250 ms and 5 s), so a reading is never older than that period.
 *
 * pidusage behaviours this works around (pidusage 4.1, measured):
 * - Under /proc its first reading of a pid is always cpu 0 (it reads twice with the same uptime);
 *   the ps path returns the lifetime average. A first reading here is always the lifetime average
 *   (ctime / elapsed), as the /proc backend does for a process it sees for the first time.
 * - Under /proc it keeps one open descriptor per pid, closed only when the pid's history expires
 *   (`maxage` after its last reading). pidusage.clear() drops the history WITHOUT closing those
 *   descriptors (each clear leaks one per pid), so it is never called: the history expires instead.
 * - A descriptor held for an exited pid keeps answering ESRCH, also for a new process that got the
 *   same pid, and each query extends its life. A pid without an answer is therefore not asked
 *   again until its history has expired and its descriptor is closed.
 * Not counted (unlike the /proc backend): CPU of children already reaped inside the tree.
 */
export class PortableSampler {
  private readonly maxAgeMs: number;
  private readonly defaultRefreshMs: number;
  private readonly readings = new Map<number, Reading>();
  /** pid -> ms epoch before which it is not asked again */
  private readonly avoid = new Map<number, number>();
  /** pid -> start time of the processes of the latest usage() call */
  private wanted = new Map<number, number>();
  private inflight: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastUse = 0;
  private cadenceMs = 0;

  constructor(opts: PortableSamplerOptions = {}) {
    loadPortableDeps();
    this.maxAgeMs = opts.historyMaxAgeMs ?? 15_000;
    this.defaultRefreshMs = opts.refreshMs ?? 1000;
  }

  /** Usage per worker (summed over its live processes) from the latest readings; never blocks. */
  usage(trees: ReadonlyArray<readonly [number, RawStat[]]>): Map<number, PortableUsage> {
    const now = Date.now();
    if (this.lastUse) this.cadenceMs = now - this.lastUse;
    this.lastUse = now;
    const { out, missing } = this.fromReadings(trees, now);
    if (missing) void this.refresh();
    this.arm();
    return out;
  }

  /** The same after one refresh (for one-shot callers and tests). */
  async usageNow(trees: ReadonlyArray<readonly [number, RawStat[]]>): Promise<Map<number, PortableUsage>> {
    this.fromReadings(trees, Date.now());
    await this.inflight;
    await this.refresh();
    return this.usage(trees);
  }

  private fromReadings(trees: ReadonlyArray<readonly [number, RawStat[]]>, now: number): { out: Map<number, PortableUsage>; missing: boolean } {
    this.wanted = new Map();
    const out = new Map<number, PortableUsage>();
    let missing = false;
    for (const [workerPid, live] of trees) {
      let cpu = 0;
      let rss = 0;
      for (const s of live) {
        this.wanted.set(s.pid, s.startTime);
        const r = this.readings.get(s.pid);
        if (r && r.start === s.startTime) {
          cpu += r.cpu;
          rss += r.memory;
        } else if ((this.avoid.get(s.pid) ?? 0) <= now) {
          missing = true;
        }
      }
      out.set(workerPid, { cpuPercent: Math.round(cpu * 10) / 10, rssBytes: rss, processes: live.length });
    }
    return { out, missing };
  }

  /** One pidusage call over the wanted processes (at most one in flight). Never rejects. */
  refresh(): Promise<void> {
    if (this.inflight) return this.inflight;
    const now = Date.now();
    for (const [pid, until] of this.avoid) if (until <= now) this.avoid.delete(pid);
    for (const pid of this.readings.keys()) if (!this.wanted.has(pid)) this.readings.delete(pid);
    const ask = [...this.wanted].filter(([pid]) => !this.avoid.has(pid));
    if (ask.length === 0) return Promise.resolve();
    const p: Promise<void> = pidusage(
      ask.map(([pid]) => pid),
      { maxage: this.maxAgeMs },
    )
      // rejected as a whole only when no pid answered (or ps itself failed): nothing to record
      .catch(() => ({}) as Record<string, Pidusage.Status | undefined>)
      .then((stats) => this.record(ask, stats))
      .finally(() => {
        if (this.inflight === p) this.inflight = null;
      });
    this.inflight = p;
    return p;
  }

  private record(ask: Array<[number, number]>, stats: Record<string, Pidusage.Status | undefined>): void {
    const at = Date.now();
    for (const [pid, start] of ask) {
      const s = stats[pid];
      if (!s || !Number.isFinite(s.memory) || !Number.isFinite(s.ctime)) {
        // Gone since the table was read, or pidusage holds the descriptor of an earlier process
        // with this pid: left alone until its history has expired (and the descriptor is closed).
        this.readings.delete(pid);
        this.avoid.set(pid, at + Math.ceil(this.maxAgeMs * 1.5) + 1000);
        continue;
      }
      const prev = this.readings.get(pid);
      const first = !prev || prev.start !== start || at - prev.at > this.maxAgeMs;
      const cpu = first ? (s.elapsed > 0 ? (s.ctime / s.elapsed) * 100 : 0) : s.cpu;
      this.readings.set(pid, { start, cpu: Number.isFinite(cpu) ? Math.max(0, cpu) : 0, memory: Math.max(0, s.memory), at });
    }
  }

  /** Keep the readings fresh while someone asks for them; stops once nobody has for a while. */
  private arm(): void {
    if (this.timer || this.wanted.size === 0) return;
    const period = this.cadenceMs > 0 ? Math.min(5000, Math.max(250, this.cadenceMs / 2)) : this.defaultRefreshMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      const idleFor = Date.now() - this.lastUse;
      if (this.wanted.size === 0 || idleFor > Math.max(30_000, 3 * this.cadenceMs)) return;
      void this.refresh().then(() => this.arm());
    }, period);
    this.timer.unref();
  }

  /** Stop the background refresh (it also stops by itself once usage() is no longer called). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.wanted = new Map();
  }
}

// ------------------------------------------------------------------ termination: tree-kill

let walker: { ok: true } | { ok: false; why: string } | null = null;

/**
 * Can tree-kill walk the tree here? It spawns `ps -o pid --no-headers --ppid PID` (Linux) or
 * `pgrep -P PID` (macOS) without an 'error' listener, so a missing tool would throw out of the
 * event loop, and a `ps` without --ppid (busybox) would find no descendants. Probed once.
 */
export function treeKillUsable(): { ok: true } | { ok: false; why: string } {
  if (walker) return walker;
  const tool = process.platform === 'darwin' ? 'pgrep' : 'ps';
  // our parent has at least one child (us): the walk must find it
  const parent = String(process.ppid);
  const args = process.platform === 'darwin' ? ['-P', parent] : ['-o', 'pid', '--no-headers', '--ppid', parent];
  if (process.platform === 'win32') walker = { ok: false, why: 'not supported on Windows' };
  else if (!resolveExecutable(tool, process.env.PATH ?? '/bin:/usr/bin')) walker = { ok: false, why: `${tool} not found in PATH` };
  else {
    const r = runHelperSync(tool, args, { timeoutMs: 10_000, maxBuffer: 16 << 20 });
    walker = r.ok && /\d/.test(r.stdout) ? { ok: true } : { ok: false, why: `tree-kill's walk does not work here: ${r.ok ? `${tool} found no child of pid ${parent}` : r.error}` };
  }
  return walker;
}

const walking = new Set<string>();

/**
 * Signal the process (pid, start) and everything below it with tree-kill, after checking that pid
 * is still that process (alive, same start time). 'sent': the walk is under way; 'busy': one
 * started earlier for the same process is still walking; 'gone': not that process any more (nothing
 * sent). The check-then-kill window is tree-kill's walk (one `ps` per level: milliseconds).
 */
export function treeKillChecked(pid: number, start: number, signal: number, onError: (err: Error) => void): 'sent' | 'busy' | 'gone' {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return 'gone';
  const k = `${pid}:${start}:${signal}`;
  if (walking.has(k)) return 'busy';
  const s = readRawStat(pid);
  if (!s || s.startTime !== start || isDeadState(s.state)) return 'gone';
  walking.add(k);
  try {
    treeKill(pid, signal, (err) => {
      walking.delete(k);
      if (err) onError(err);
    });
  } catch (e) {
    // (tree-kill failed to load)
    walking.delete(k);
    onError(e as Error);
  }
  return 'sent';
}
