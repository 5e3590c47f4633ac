/**
 * Shared plumbing of the chaos and benchmark scripts: real supervisor processes with their JSON
 * logs, a registry that kills everything we started (even on failure), result rows, the printed
 * table and the JSON file. It re-exports common.ts (paths, sleep, temp dirs, commands, /proc
 * readers), which the vitest suites share with the scripts, so that a script imports from here alone.
 *
 * Every process the scripts start carries KS_HARNESS_MARK=<uuid> in its environment; supervisors
 * pass it through to their workers (`--pass-env`), and workers' descendants inherit it. The final
 * cleanup and the leak check find every process of this run by that mark, whatever its parent,
 * group or session.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { openBoard as openBoardAt, openDatabase, type Board, type Db } from '@kanban-supervisor/board';
import { CLI, ROOT, listPids, readCmdline, readEnviron, readStat, sleep, type Stat } from './common.js';

export * from './common.js';

export const MARK_VAR = 'KS_HARNESS_MARK';

export const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

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
    return { ...process.env, [MARK_VAR]: this.mark, ...extra };
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

  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.killEverything();
    for (let i = 0; i < 50 && this.leftovers().length > 0; i++) {
      await sleep(100);
      this.killEverything();
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

// ---------------------------------------------------------------------------- supervisor

export interface LogLine {
  event?: string;
  time?: number;
  level?: number;
  msg?: string;
  [k: string]: unknown;
}

/** A real `kanban-supervisor run` process, its JSON log lines parsed as they come. */
export class Sup {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly lines: LogLine[] = [];
  readonly startedAt = Date.now();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private buf = '';
  private waiters: Array<() => void> = [];

  constructor(
    readonly h: Harness,
    readonly db: string,
    /**
     * direct: the supervisor writes its log straight into `logFile`, as a deployed one writes to a
     * file or journald, and this process reads nothing (no lines, no waitFor): for measurements,
     * where parsing the log here would take CPU from the machine being measured.
     */
    opts: { args?: string[]; env?: Record<string, string>; logFile: string; direct?: boolean },
  ) {
    const args = [CLI, '--db', db, 'run', '--pass-env', MARK_VAR, ...(opts.args ?? [])];
    const file = opts.logFile;
    mkdirSync(dirname(file), { recursive: true });
    const fd = opts.direct ? openSync(file, 'a') : undefined;
    this.proc = h.spawn(process.execPath, args, { env: { LOG_LEVEL: 'info', ...opts.env }, stdio: fd ?? 'pipe' });
    if (fd !== undefined) closeSync(fd);
    this.pid = this.proc.pid!;
    const onData = (d: Buffer) => {
      const text = String(d);
      appendFileSync(file, text);
      this.buf += text;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.trim()) continue;
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ msg: line });
        }
      }
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    };
    this.proc.stdout?.on('data', onData);
    this.proc.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) resolve({ code: this.proc.exitCode, signal: this.proc.signalCode });
      else this.proc.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.event === name);
  }

  /** Wait for a log line matching `pred`; null on timeout or when the process exits first. */
  async waitFor(pred: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine | null> {
    const end = Date.now() + timeoutMs;
    let from = 0;
    for (;;) {
      for (; from < this.lines.length; from++) if (pred(this.lines[from]!)) return this.lines[from]!;
      if (!this.running || Date.now() >= end) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(200, Math.max(1, end - Date.now())));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async waitStarted(timeoutMs = 20_000): Promise<boolean> {
    return (await this.waitFor((l) => l.event === 'started', timeoutMs)) !== null;
  }

  kill(sig: NodeJS.Signals): void {
    try {
      this.proc.kill(sig);
    } catch {
      /* gone */
    }
  }

  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL. Returns the exit code (null if killed). */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (!this.running) return this.proc.exitCode;
    this.kill('SIGTERM');
    const r = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
    if (r) return r.code;
    this.kill('SIGKILL');
    await this.exited;
    return null;
  }

  /** Wait for the process to exit by itself (e.g. --until-idle), SIGKILL at the timeout. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    const r = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
    if (r) return { ...r, timedOut: false };
    this.kill('SIGKILL');
    return { ...(await this.exited), timedOut: true };
  }

  errors(): LogLine[] {
    return this.lines.filter((l) => (l.level ?? 0) >= 50);
  }
}

// ---------------------------------------------------------------------------- board helpers

/** The board the scripts drive, opened as every consumer opens one (the `Board` interface). */
export function openBoard(path: string): Promise<Board> {
  return openBoardAt(path, { busyTimeoutMs: 5000, busyRetries: 50 });
}

/**
 * A plain SQLite connection to the board file (the board's own hardened open), for what the
 * scripts read or change below the interface: raw counts, injected faults, checkpoints, integrity.
 * The caller closes it.
 */
export function openSql(path: string, opts: { readonly?: boolean; busyTimeoutMs?: number } = {}): Db {
  return openDatabase(path, { readonly: opts.readonly, busyTimeoutMs: opts.busyTimeoutMs ?? 5000 });
}

/** PRAGMA integrity_check on a fresh read-only connection (works while others write). */
export function integrity(path: string): string {
  const db = openSql(path, { readonly: true, busyTimeoutMs: 1000 });
  try {
    db.pragma('busy_timeout = 10000');
    const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const fk = db.pragma('foreign_key_check') as unknown[];
    const msg = rows.map((r) => r.integrity_check).join('; ');
    return fk.length ? `${msg}; foreign_key_check: ${fk.length} violations` : msg;
  } catch (e) {
    return `integrity_check failed: ${(e as Error).message}`;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------- statistics

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i]!;
}

export const median = (xs: number[]) => quantile(xs, 0.5);

export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n) && Math.abs(n) >= 1000) return n.toLocaleString('en-US');
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

// ---------------------------------------------------------------------------- results

export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'SKIP';

export interface Row {
  scenario: string;
  figure: string;
  value: string;
  /** The number behind `value` (for JSON), if any. */
  number?: number | null;
  target: string;
  verdict: Verdict;
  /** A hard invariant (integrity, lost writes, double workers, leaks): a MISS fails the run. */
  hard: boolean;
  note?: string;
}

export class Results {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  readonly extra: Record<string, unknown> = {};

  add(r: Omit<Row, 'hard' | 'verdict'> & { hard?: boolean; pass?: boolean | null; verdict?: Verdict }): Row {
    const verdict: Verdict = r.verdict ?? (r.pass === null || r.pass === undefined ? 'INFO' : r.pass ? 'PASS' : 'MISS');
    const row: Row = { scenario: r.scenario, figure: r.figure, value: r.value, number: r.number ?? null, target: r.target, verdict, hard: r.hard ?? false };
    if (r.note) row.note = r.note;
    this.rows.push(row);
    const tag = verdict === 'MISS' && row.hard ? 'MISS (hard)' : verdict;
    process.stdout.write(`  ${tag.padEnd(11)} ${row.scenario}: ${row.figure} = ${row.value} (target ${row.target})${row.note ? ` — ${row.note}` : ''}\n`);
    return row;
  }

  hardFailures(): Row[] {
    return this.rows.filter((r) => r.hard && r.verdict === 'MISS');
  }

  misses(): Row[] {
    return this.rows.filter((r) => r.verdict === 'MISS');
  }

  /** A markdown table a user can paste into an issue. */
  table(title: string, meta: string[]): string {
    const esc = (s: string) => s.replace(/\|/g, '\\|');
    const out = [`### ${title}`, '', ...meta.map((m) => `- ${m}`), '', '| scenario | figure | value | target | result |', '|---|---|---|---|---|'];
    for (const r of this.rows) {
      const tag = r.verdict === 'MISS' && r.hard ? '**MISS (hard)**' : r.verdict === 'MISS' ? '**MISS**' : r.verdict;
      out.push(`| ${esc(r.scenario)} | ${esc(r.figure)} | ${esc(r.value)} | ${esc(r.target)} | ${tag} |`);
    }
    const notes = this.rows.filter((r) => r.note).map((r) => `- ${r.scenario} / ${r.figure}: ${r.note}`);
    if (notes.length || this.notes.length) out.push('', 'Notes:', ...notes, ...this.notes.map((n) => `- ${n}`));
    return out.join('\n') + '\n';
  }

  writeJson(dir: string, kind: string, meta: Record<string, unknown>): string {
    mkdirSync(dir, { recursive: true });
    const ts = new Date().toISOString().replace(/[:.]/g, '-');
    const file = join(dir, `${kind}-${ts}.json`);
    writeFileSync(file, JSON.stringify({ ...meta, rows: this.rows, notes: this.notes, details: this.extra }, null, 2) + '\n');
    return file;
  }
}

export function machine(): Record<string, unknown> {
  let kernel = '';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    /* not Linux */
  }
  return {
    host: hostname(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    kernel,
  };
}

export function machineLine(): string {
  const m = machine();
  return `${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}`;
}

export function gitRev(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
  const d = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' });
  return `${String(r.stdout ?? '').trim() || '?'}${String(d.stdout ?? '').trim() ? ' (with uncommitted changes)' : ''}`;
}

/** Read a file of whitespace-separated records, ignoring a torn last line. */
export function readRecords(path: string): string[][] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const lines = text.split('\n');
  if (!text.endsWith('\n')) lines.pop();
  return lines.filter((l) => l.trim()).map((l) => l.trim().split(/\s+/));
}

const SCRIPT_FLAGS = { short: { type: 'boolean' }, keep: { type: 'boolean' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/**
 * The chaos and bench scripts' flags, by node:util parseArgs: --short, --keep, --only a,b (or
 * --only=a,b; a value may start with a dash), --help / -h. Anything else, and --only without its
 * value, exits 2 naming it.
 */
export function parseFlags(argv: string[]): { short: boolean; keep: boolean; only: Set<string> | null } {
  const usage = (msg: string): never => {
    process.stderr.write(`${msg} (try --help)\n`);
    process.exit(2);
  };
  let short = false;
  let keep = false;
  let only: Set<string> | null = null;
  const { tokens } = parseArgs({ args: argv, options: SCRIPT_FLAGS, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    // The argument as written: a positional, `--`, `--short=1`, `-x` (node splits `-xy` into letters).
    const a = t.kind === 'positional' ? t.value : argv[t.index]!;
    if (t.kind !== 'option' || (t.name !== 'only' && a !== t.rawName)) return usage(`unknown option ${a}`);
    if (t.name === 'short') short = true;
    else if (t.name === 'keep') keep = true;
    else if (t.name === 'only') only = new Set((t.value ?? usage('option --only needs a value')).split(',').filter(Boolean));
    else if (t.name === 'help') {
      process.stdout.write('options: --short (quick run), --only a,b (scenarios), --keep (keep the temp dir)\n');
      process.exit(0);
    } else return usage(`unknown option ${a}`);
  }
  return { short, keep, only };
}

export { closeSync, openSync };

/**
 * Run the named parts in order (those `want` selects), each guarded: an error becomes a failed row
 * (`figure`, hard or not) instead of ending the run. Prints a heading and the time of each part.
 */
export async function runParts(
  res: Results,
  parts: Array<[key: string, title: string, fn: () => Promise<void>]>,
  want: (key: string) => boolean,
  onError: { figure: string; hard: boolean },
): Promise<{ timing: Record<string, number>; failed: boolean }> {
  const timing: Record<string, number> = {};
  let failed = false;
  for (const [key, title, fn] of parts) {
    if (!want(key)) continue;
    const s0 = Date.now();
    process.stdout.write(`\n== ${title}\n`);
    try {
      await fn();
    } catch (e) {
      failed = true;
      res.add({ scenario: title, figure: onError.figure, value: `error: ${(e as Error).message.split('\n')[0]}`, target: 'no error', pass: false, hard: onError.hard });
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    }
    timing[key] = (Date.now() - s0) / 1000;
    process.stdout.write(`   (${fmt(timing[key]!)} s)\n`);
  }
  return { timing, failed };
}
