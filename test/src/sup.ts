/**
 * A real `kanban-supervisor run` process started by a script (Sup, its JSON log lines parsed as they
 * come), and what a run leaves to read: the board file (opened through the Board interface, or as
 * a plain SQLite connection, and its integrity check) and the workers' record files.
 */
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { openBoard as openBoardAt, openDatabase, type Board, type Db } from '@kanban-supervisor/board';
import { CLI, cpuSeconds, sleep } from './common.js';
import { MARK_VAR, type Harness } from './harness.js';

// ---------------------------------------------------------------------------- supervisor

export interface LogLine {
  event?: string;
  time?: number;
  level?: number;
  msg?: string;
  [k: string]: unknown;
}

/** A real `kanban-supervisor run` process, its JSON log lines parsed as they come. */
/** The Node flags the daemon runs with (supervisor/bin/kanban-supervisor.js's #! line, `npm start`). */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2'];

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
    const args = [...DAEMON_NODE_FLAGS, CLI, '--db', db, 'run', '--pass-env', MARK_VAR, ...(opts.args ?? [])];
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
  /** waitExit, sampling the supervisor's own CPU seconds every 100 ms: `cpu` is the last sample before it exited. */
  async waitExitWithCpu(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; cpu: number }> {
    let cpu = 0;
    const poll = setInterval(() => {
      const c = cpuSeconds(this.pid);
      if (c !== null) cpu = c;
    }, 100);
    try {
      return { ...(await this.waitExit(timeoutMs)), cpu };
    } finally {
      clearInterval(poll);
    }
  }

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

// ---------------------------------------------------------------------------- record files

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
