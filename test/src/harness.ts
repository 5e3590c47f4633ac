/**
 * Process control of the chaos and benchmark scripts: the Harness owns the temp dir and every
 * process a script starts, and kills them all (even on failure, a signal or the deadline); the
 * ProcScanner finds the processes of this run in /proc.
 *
 * Every process the scripts start carries KS_HARNESS_MARK=<uuid> in its environment; supervisors
 * pass it through to their workers (`--pass-env`), and workers' descendants inherit it. The final
 * cleanup and the leak check find every process of this run by that mark, whatever its parent,
 * group or session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listPids, readCmdline, readEnviron, readStat, sleep, type Stat } from './common.js';

export const MARK_VAR = 'KS_HARNESS_MARK';

// ---------------------------------------------------------------------------- processes of this run

export interface MarkedProc {
  pid: number;
  stat: Stat;
  env: Map<string, string>;
  cmd: string[];
}

/**
 * Finds the processes of this run (by the mark in their environment). environ and cmdline are
 * read once per process (pid + start time), so a scan costs one stat read per process.
 */
export class ProcScanner {
  private readonly cache = new Map<string, { env: Map<string, string> | null; cmd: string[] }>();
  constructor(private readonly mark: string) {}

  scan(filter?: (p: MarkedProc) => boolean): MarkedProc[] {
    const out: MarkedProc[] = [];
    const seen = new Set<string>();
    for (const pid of listPids()) {
      if (pid === process.pid) continue;
      const stat = readStat(pid);
      if (!stat) continue;
      const key = `${pid}:${stat.startTime}`;
      seen.add(key);
      let c = this.cache.get(key);
      if (!c) {
        const env = readEnviron(pid);
        // A zombie has no environ left: remember nothing, look again next time.
        if (env === null || env.size === 0) {
          if (stat.state === 'Z') continue;
        }
        c = { env, cmd: readCmdline(pid) };
        this.cache.set(key, c);
      }
      if (!c.env || c.env.get(MARK_VAR) !== this.mark) continue;
      const p = { pid, stat, env: c.env, cmd: c.cmd };
      if (!filter || filter(p)) out.push(p);
    }
    if (this.cache.size > 4 * seen.size + 1000) {
      for (const k of this.cache.keys()) if (!seen.has(k)) this.cache.delete(k);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------- harness

export interface HarnessOptions {
  prefix: string;
  keep?: boolean;
  /** Hard wall-clock limit of the whole script; on expiry everything is killed and we exit 3. */
  deadlineMs: number;
}

/**
 * Owns the temp dir and every process the script starts. `cleanup()` kills them all (process
 * groups first, then anything still carrying the mark) and removes the temp dir; it runs on
 * normal exit, on errors, on SIGINT/SIGTERM and when the deadline passes.
 */
export class Harness {
  readonly mark = randomUUID();
  readonly root: string;
  readonly startedAt = Date.now();
  readonly scanner: ProcScanner;
  private readonly children = new Set<ChildProcess>();
  private readonly hooks: Array<() => Promise<void>> = [];
  private cleaning: Promise<void> | null = null;
  private cleaned = false;
  private readonly deadline: NodeJS.Timeout;

  constructor(readonly opts: HarnessOptions) {
    this.root = mkdtempSync(join(tmpdir(), opts.prefix));
    this.scanner = new ProcScanner(this.mark);
    const onSignal = (sig: NodeJS.Signals) => {
      process.stderr.write(`\n${sig}: killing everything this run started\n`);
      void this.cleanup().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('exit', () => this.cleanupSync());
    this.deadline = setTimeout(() => {
      process.stderr.write(`\nthe run exceeded its hard limit of ${Math.round(opts.deadlineMs / 1000)} s: killing everything\n`);
      void this.cleanup().finally(() => process.exit(3));
    }, opts.deadlineMs);
    this.deadline.unref();
  }

  dir(name: string): string {
    const d = join(this.root, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Environment for a process we start: ours, the mark, and overrides. */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    // No HTTP server unless a test asks for one: parallel supervisors would all race for port 7433.
    return { ...process.env, KANBAN_HTTP: process.env.KANBAN_HTTP ?? 'off', [MARK_VAR]: this.mark, ...extra };
  }

  /** Start a process in its own process group (killed with its group at cleanup). */
  spawn(cmd: string, args: string[], opts: { env?: Record<string, string>; stdio?: 'pipe' | 'ignore' | number; cwd?: string; exactEnv?: boolean } = {}): ChildProcess {
    const stdio = opts.stdio ?? 'ignore';
    const child = spawn(cmd, args, {
      // exactEnv: only the given variables (and the mark), like a supervisor's worker gets.
      env: opts.exactEnv ? { ...opts.env, [MARK_VAR]: this.mark } : this.env(opts.env),
      cwd: opts.cwd,
      detached: true,
      stdio: stdio === 'pipe' ? ['ignore', 'pipe', 'pipe'] : stdio === 'ignore' ? 'ignore' : ['ignore', stdio, stdio],
    });
    child.on('error', () => {});
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Processes of this run still alive, other than our own direct children we still track. */
  leftovers(exclude: Set<number> = new Set()): MarkedProc[] {
    return this.scanner.scan((p) => p.stat.state !== 'Z' && !exclude.has(p.pid));
  }

  private killEverything(): void {
    for (const c of this.children) {
      if (c.pid && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(-c.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const p of this.scanner.scan()) {
      if (p.stat.state === 'Z') continue;
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      if (p.stat.pgid > 1 && p.stat.pgid !== process.pid && p.stat.pgid === p.pid) {
        try {
          process.kill(-p.stat.pgid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }

  /**
   * Asynchronous work for `cleanup()`, after every process of the run is gone and before the temp
   * dir goes (e.g. stop a server this run started), last registered first, each bounded by 30 s.
   * The synchronous exit path does not run it.
   */
  atCleanup(fn: () => Promise<void>): void {
    this.hooks.push(fn);
  }

  /** Kill everything, run the atCleanup work, remove the temp dir; every call waits for the same one. */
  cleanup(): Promise<void> {
    return (this.cleaning ??= this.cleanupOnce());
  }

  private async cleanupOnce(): Promise<void> {
    if (this.cleaned) return;
    this.killEverything();
    for (let i = 0; i < 50 && this.leftovers().length > 0; i++) {
      await sleep(100);
      this.killEverything();
    }
    for (const fn of this.hooks.splice(0).reverse()) {
      try {
        await Promise.race([fn(), sleep(30_000)]);
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
    this.cleanupSync();
  }

  private cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    clearTimeout(this.deadline);
    this.killEverything();
    if (!this.opts.keep) {
      try {
        rmSync(this.root, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    } else {
      process.stderr.write(`kept ${this.root}\n`);
    }
  }
}
