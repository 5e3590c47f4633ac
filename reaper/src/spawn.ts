// Starting workers, each in its own session and process group (pgid = pid), and collecting their
// exits: posix_spawn through the native addon (exits collected by waitpid on exactly those pids at
// SIGCHLD), or Node's child_process.spawn (exits from Node's 'exit' event). Both return the
// worker's identity, read from /proc before control returns to the event loop.
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { DEFAULT_PATH, lookupExecutable } from './exec.js';
import type { ProcessIdentity } from './identity.js';
import { loadNative } from './native.js';
import { bootId, lastAllocatedPid, readRawStat, type RawStat } from './platform.js';
import { UnsafeFileError, openSafe } from './safe-fs.js';
import { newTracked, ownChildren, SIGNAL_NAMES, type ReaperState } from './state.js';
import type { ExitRecord, SpawnFault, SpawnRequest, SpawnResult } from './types.js';

/** errno codes of a spawn that say the supervisor (not the skill) is short of something. */
const SUPERVISOR_SPAWN_ERRORS = new Set(['EAGAIN', 'ENOMEM', 'EMFILE', 'ENFILE', 'ENOSPC', 'EDQUOT']);

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/**
 * Children started with the native posix_spawn, and the Reaper that collects each one's exit.
 * Node does not know them: we waitpid() exactly these pids at SIGCHLD (and, as a safety net, from
 * drainExits() at most every 500 ms).
 */
const nativeChildren = new Map<number, ReaperState>();
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
    childExited(owner, pid, code >= 0 ? code : null, sig > 0 ? (SIGNAL_NAMES.get(sig) ?? `SIG${sig}`) : null, notify);
  }
}

export async function spawn(state: ReaperState, req: SpawnRequest): Promise<SpawnResult> {
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
  if (state.nativeSpawn && (cwd === undefined || state.native!.spawnCanChdir)) return spawnNative(state, req, lookup.file, fd);
  let child: ChildProcess;
  const began = performance.now();
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
  const durationMs = performance.now() - began;
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
  ownChildren.add(pid);
  child.once('exit', (code, signal) => childExited(state, pid, code, signal, true));
  child.unref(); // the supervisor's own timers decide its lifetime, not the workers
  await new Promise<void>((resolve) => {
    child.once('spawn', resolve);
    child.once('error', () => resolve());
  });
  return trackSpawned(state, pid, raw, durationMs);
}

/** Start tracking a child we just spawned (its own group leader), from its /proc stat. */
function trackSpawned(state: ReaperState, pid: number, raw: RawStat | null, durationMs: number): SpawnResult {
  if (!raw) return { ok: false, code: 'ESRCH', message: `spawned pid ${pid} vanished before it could be identified`, fault: 'skill' };
  const identity: ProcessIdentity = { pid, pgid: pid, startTime: raw.startTime, bootId: bootId() };
  const t = newTracked(identity);
  t.known.set(pid, raw.startTime);
  t.cursor = lastAllocatedPid();
  t.everProven = true;
  state.tracked.set(pid, t);
  return { ok: true, identity, durationMs };
}

/**
 * posix_spawn through the addon: no fork of this (large) process, so the cost of a spawn stays
 * flat; same contract as Node's path (own session, exact env, log fd, nothing piped to us).
 */
function spawnNative(state: ReaperState, req: SpawnRequest, file: string, fd: number): SpawnResult {
  const envp: string[] = [];
  for (const [k, v] of Object.entries(req.env)) {
    if (k === '' || k.includes('=') || k.includes('\0') || String(v).includes('\0')) {
      fs.closeSync(fd);
      return { ok: false, code: 'EINVAL', message: `environment variable ${JSON.stringify(k)} has an invalid name or value`, fault: 'skill' };
    }
    envp.push(`${k}=${v}`);
  }
  let rc: number;
  const began = performance.now();
  try {
    // Synchronous on purpose: measured faster end to end than the same call on a pool thread
    // (the tick waits for its spawns either way), and no child exists unknown to us meanwhile.
    rc = state.native!.spawn!(file, req.argv, envp, req.cwd ?? null, fd);
  } catch (err) {
    return { ok: false, code: 'EINVAL', message: `${req.argv[0]}: ${(err as Error).message}`, fault: 'skill' };
  } finally {
    fs.closeSync(fd); // the child has its own copies on 1 and 2
  }
  const durationMs = performance.now() - began;
  if (rc < 0) {
    const code = errnoName(-rc);
    const why = code === 'ENOEXEC' ? 'not an executable format (a script needs a #! line)' : code;
    return { ok: false, code, message: `${req.argv[0]}: cannot execute ${file}: ${why}`, fault: SUPERVISOR_SPAWN_ERRORS.has(code) ? 'supervisor' : 'skill' };
  }
  const pid = rc;
  // Not reaped until we waitpid() it, so /proc/PID/stat is there (a zombie at worst).
  const raw = readRawStat(pid);
  ownChildren.add(pid);
  nativeChildren.set(pid, state);
  if (!sigchldListening) {
    sigchldListening = true;
    // A signal listener does not keep the event loop alive (Node unrefs it).
    process.on('SIGCHLD', () => collectNativeExits());
  }
  return trackSpawned(state, pid, raw, durationMs);
}

/** An own child exited (Node's exit event, or the SIGCHLD collector for native children). */
export function childExited(state: ReaperState, pid: number, exitCode: number | null, signal: string | null, notify: boolean): void {
  state.exits.push({ pid, exitCode, signal, at: Date.now() });
  ownChildren.delete(pid);
  if (notify) state.onExit?.();
}

export function drainExits(state: ReaperState): ExitRecord[] {
  // SIGCHLD collects native children's exits as they happen; this is only a safety net (a
  // waitpid per child, so not at every call: the supervisor drains every 25 ms).
  const now = Date.now();
  if (nativeChildren.size && now - lastNativePoll >= 500) {
    lastNativePoll = now;
    collectNativeExits(false);
  }
  const out = state.exits;
  state.exits = [];
  return out;
}
