/**
 * What the vitest suites (test/<package>/*.test.ts) and the chaos and benchmark scripts (test/src)
 * share: the repository's paths, sleep and waits, temp dirs, running commands and the CLI, the
 * environments given to child processes, /proc readers, and the things a test undoes when it ends.
 *
 * The suites import this file as TypeScript source (vitest); the scripts get its build through
 * lib.ts, which re-exports it. It does not import vitest, so that the scripts can load it.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_VARS } from '@kanban-supervisor/policies';

// ---------------------------------------------------------------------------- paths

/** The repository root (from test/src, and from test/dist once built). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'supervisor/dist/cli.js');
export const FIXTURES = join(ROOT, 'test/fixtures');
export const EXAMPLES = join(ROOT, 'examples/dist');

// ---------------------------------------------------------------------------- time

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** Poll `fn` until it returns a truthy value (which it returns) or the time runs out. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 20_000, everyMs = 50): Promise<Exclude<T, null | undefined | false | 0 | ''>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as Exclude<T, null | undefined | false | 0 | ''>;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------- temp dirs, undo after each test

export function tempDir(prefix = 'ks-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * What a test leaves behind, undone when it ends, last added first: temp dirs, processes still
 * running, pids its workers wrote down. A test file makes one at its top level and runs it after
 * each test:
 *
 *     const cleanups = new Cleanups();
 *     afterEach(() => cleanups.run());
 */
export class Cleanups {
  private readonly undo: Array<() => unknown> = [];

  /** Run `fn` (and wait for it, if it returns a promise) when the test ends. */
  push(fn: () => unknown): void {
    this.undo.push(fn);
  }

  /** A fresh temp dir, removed when the test ends. */
  tempDir(prefix?: string): string {
    const t = tempDir(prefix);
    this.push(t.cleanup);
    return t.dir;
  }

  /** A fresh temp dir, and the path of a board in its folder board/ (which `init` or `run` creates). */
  boardDir(prefix?: string): { dir: string; db: string } {
    const dir = this.tempDir(prefix);
    return { dir, db: join(dir, 'board', 'kanban.db') };
  }

  /** `child`, killed (SIGKILL) when the test ends if it is still running. */
  killAtEnd<T extends ChildProcess>(child: T): T {
    this.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    return child;
  }

  /** The kanban-supervisor CLI on `db` as a process (see startProcess), killed when the test ends if still running. */
  startCli(db: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => string } {
    return this.killAtEnd(startProcess(process.execPath, [CLI, '--db', db, ...args], env));
  }

  /** SIGKILL the pids listed in `file` (one a line, as the sup fixtures write them) when the test ends, whatever happened. */
  killPidsAtEnd(file: string): void {
    this.push(() => {
      for (const pid of pidsIn(file)) killQuietly(pid);
    });
  }

  /** Undo everything pushed so far, last first. */
  async run(): Promise<void> {
    while (this.undo.length) await this.undo.pop()!();
  }
}

// ---------------------------------------------------------------------------- commands

export interface CmdResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command (argv array, no shell) and collect its output. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<CmdResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, cwd: opts.cwd, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr),
        });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Run the kanban-supervisor CLI against a board. */
export function cli(db: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CmdResult> {
  return run(process.execPath, [CLI, '--db', db, ...args], { env: { ...process.env, ...env } });
}

/** `show --json` of a task, parsed (typed loosely: each test reads the fields it checks). */
export async function show(db: string, id: string): Promise<any> {
  return JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
}

/** Start a process (our environment plus `env`) that collects its stdout and stderr, together, in `output()`. */
export function startProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => string } {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (out += String(d)));
  return Object.assign(child, { output: () => out });
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
}

/** The supervisor's log events (its JSON lines) in `output`, those named `name` if given; other lines are passed over. */
export function logEvents(output: string, name?: string): Array<Record<string, unknown>> {
  return output.split('\n').flatMap((l) => {
    if (!l.startsWith('{')) return [];
    try {
      const o = JSON.parse(l) as Record<string, unknown>;
      return typeof o.event === 'string' && (name === undefined || o.event === name) ? [o] : [];
    } catch {
      return [];
    }
  });
}

// ---------------------------------------------------------------------------- environments

/**
 * Our environment without its KANBAN_* variables (a test may run under a supervisor), plus `extra`.
 * KANBAN_HTTP is off unless `extra` sets it: parallel test supervisors would all race for port 7433.
 */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('KANBAN_')) delete env[k];
  return { ...env, KANBAN_HTTP: 'off', ...extra };
}

/**
 * The environment the README and pack tests give `npm` / `npx`: what a user's shell would have, not
 * what `npm test` leaves behind. Under `npm test`, PATH starts with the repository's
 * node_modules/.bin (where `kanban-supervisor` is the repository's own build) and npm_config_*
 * variables carry the outer npm's settings; both would let a broken install pass unnoticed.
 */
export function npmEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const drop = new Set(CONFIG_VARS.map((v) => v.env));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'INIT_CWD' || k === 'NODE_OPTIONS' || k.startsWith('KANBAN_') || drop.has(k) || k === 'LOG_FORMAT') continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(':')
    .filter((p) => p !== '' && !/[\\/]node_modules[\\/]/.test(`${p}/`))
    .join(':');
  // npx must use the project's own bin, never fetch a package of that name from the registry.
  env.npm_config_yes = 'false';
  env.npm_config_update_notifier = 'false';
  env.npm_config_fund = 'false';
  env.npm_config_audit = 'false';
  // No HTTP server unless asked for: parallel test supervisors would all race for port 7433.
  return { ...env, KANBAN_HTTP: 'off', ...extra };
}

// ---------------------------------------------------------------------------- /proc

let clkTck = 0;
/** Clock ticks per second (getconf CLK_TCK; 100 on every Linux we know). */
export function clockTicks(): number {
  if (clkTck) return clkTck;
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(String(r.stdout ?? '').trim());
  clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  return clkTck;
}

export interface Stat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  utime: number;
  stime: number;
  startTime: number;
}

export function readStat(pid: number): Stat | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = s.lastIndexOf(')');
  const f = s.slice(close + 2).split(' ');
  return {
    pid,
    comm: s.slice(s.indexOf('(') + 1, close),
    state: f[0]!,
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    sid: Number(f[3]),
    utime: Number(f[11]),
    stime: Number(f[12]),
    startTime: Number(f[19]),
  };
}

export function listPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    const c = d.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(d));
  }
  return out;
}

export function readEnviron(pid: number): Map<string, string> | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return null;
  }
  const m = new Map<string, string>();
  for (const kv of raw.split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

export function readCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

export function fdCount(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

export function fdTargets(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '?';
      }
    });
  } catch {
    return [];
  }
}

/** VmRSS and VmHWM in bytes. */
export function memory(pid: number): { rss: number; hwm: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

/** utime + stime of one process, seconds. */
export function cpuSeconds(pid: number): number | null {
  const s = readStat(pid);
  return s ? (s.utime + s.stime) / clockTicks() : null;
}

/** A process's CPU, seconds: its own (utime + stime) and its reaped children's (cutime + cstime). */
export function cpuTimes(pid: number): { own: number; children: number } | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const t = clockTicks();
  return { own: (Number(f[11]) + Number(f[12])) / t, children: (Number(f[13]) + Number(f[14])) / t };
}

export const isDead = (s: Stat | null) => !s || s.state === 'Z' || s.state === 'X';

/** Whether `pid` is alive (not a zombie) and, if given, still the process that started at `startTime`. */
export function pidAlive(pid: number, startTime?: number): boolean {
  const s = readStat(pid);
  if (isDead(s)) return false;
  return startTime === undefined || s!.startTime === startTime;
}

export function zombieChildren(ppid: number): number[] {
  const out: number[] = [];
  for (const pid of listPids()) {
    const s = readStat(pid);
    if (s && s.ppid === ppid && s.state === 'Z') out.push(pid);
  }
  return out;
}

/** The pids listed in `file`, one a line (none while it does not exist). */
export function pidsIn(file: string): number[] {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(Number) : [];
}

/** SIGKILL `pid`, if it is still there. */
export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}
