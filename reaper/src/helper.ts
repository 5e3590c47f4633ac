// Short-lived helper processes that the supervisor (or the CLI) starts and waits for: the backup
// helper of a damaged board, `ps` and `sysctl` where /proc is missing. They run through execa: an
// argv array and never a shell, a timeout (SIGTERM, then SIGKILL), bounded output, nothing on stdin,
// and errors that name the command line. Workers are not helpers: they go through Reaper.spawn.
import { createRequire } from 'node:module';

/**
 * execa, loaded at the first helper (Node >= 20.19 requires an ES module synchronously): a
 * supervisor on Linux may never start one, and loading it costs ~16 MB of resident memory.
 */
let execaModule: typeof import('execa') | null = null;
const loadExeca = (): typeof import('execa') => (execaModule ??= createRequire(import.meta.url)('execa') as typeof import('execa'));

export interface HelperOptions {
  /** ms before the helper is stopped: SIGTERM, then SIGKILL `forceKillAfterMs` later (sync: SIGKILL at once) */
  timeoutMs: number;
  /** ms between the timeout's SIGTERM and the SIGKILL (async only; default 2000) */
  forceKillAfterMs?: number;
  /** most characters of stdout and of stderr kept; more is an error (default 1 MiB) */
  maxBuffer?: number;
  /** exactly this environment (nothing inherited) when given; else this process's */
  env?: Record<string, string>;
  cwd?: string;
}

export type HelperResult =
  | { ok: true; stdout: string; stderr: string }
  | {
      ok: false;
      /** one line: what failed (the command line, quoted), how, and the end of its stderr */
      error: string;
      exitCode: number | null;
      signal: string | null;
      timedOut: boolean;
      stdout: string;
      stderr: string;
    };

const DEFAULT_MAX_BUFFER = 1 << 20;
/** how much of a failed helper's stderr its error quotes */
const STDERR_QUOTE = 500;

interface ExecaOutcome {
  failed: boolean;
  timedOut: boolean;
  isMaxBuffer: boolean;
  exitCode?: number;
  signal?: string;
  shortMessage?: string;
  stdout: unknown;
  stderr: unknown;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : v == null ? '' : String(v);
}

function toResult(r: ExecaOutcome, file: string): HelperResult {
  const stdout = text(r.stdout);
  const stderr = text(r.stderr);
  if (!r.failed) return { ok: true, stdout, stderr };
  // execa's short message names the command line ("Command failed with exit code 1: ps -o …",
  // "Command timed out after 200 milliseconds: …", "Command failed with ENOENT: …").
  let error = (r.shortMessage ?? `${file} failed`).split('\n')[0]!;
  const tail = stderr.trim();
  if (tail) error += `: ${tail.length > STDERR_QUOTE ? `…${tail.slice(-STDERR_QUOTE)}` : tail}`.replace(/\s*\n\s*/g, ' | ');
  return { ok: false, error, exitCode: r.exitCode ?? null, signal: r.signal ?? null, timedOut: r.timedOut, stdout, stderr };
}

function baseOptions(opts: HelperOptions) {
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number of ms, got ${opts.timeoutMs}`);
  return {
    timeout: opts.timeoutMs,
    maxBuffer: opts.maxBuffer ?? DEFAULT_MAX_BUFFER,
    stdin: 'ignore' as const,
    shell: false,
    reject: false,
    windowsHide: true,
    ...(opts.env ? { env: opts.env, extendEnv: false } : {}),
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  };
}

/** Run a helper to its end (never throws; a failure comes back as `{ ok: false, error }`). */
export async function runHelper(file: string, args: readonly string[], opts: HelperOptions): Promise<HelperResult> {
  const r = await loadExeca().execa(file, args, {
    ...baseOptions(opts),
    forceKillAfterDelay: opts.forceKillAfterMs ?? 2000,
    // no exit hooks (signal-exit) in the supervisor: its own SIGTERM handling stays its own
    cleanup: false,
  });
  return toResult(r as unknown as ExecaOutcome, file);
}

/** The same, blocking: only for helpers that answer in milliseconds (`ps`, `sysctl`). */
export function runHelperSync(file: string, args: readonly string[], opts: HelperOptions): HelperResult {
  const r = loadExeca().execaSync(file, args, { ...baseOptions(opts), killSignal: 'SIGKILL' });
  return toResult(r as unknown as ExecaOutcome, file);
}
