// Finding a worker whose pid was never recorded (its supervisor died between spawn and record):
// every worker carries KANBAN_RUN_ID in its environment, readable in /proc/PID/environ.
import * as fs from 'node:fs';
import { bootId, IS_LINUX, isDeadState, readProcText, scanProcesses } from './platform.js';
import type { ProcessIdentity } from './identity.js';

/**
 * Live processes whose environment holds `name=value`; the group leader (pid === pgid) first.
 * Linux only (elsewhere: empty). Cost: one /proc scan plus one small read per process.
 */
export function findByEnv(name: string, value: string): ProcessIdentity[] {
  if (!IS_LINUX) return [];
  const needle = Buffer.from(`${name}=${value}\0`, 'latin1');
  const found: ProcessIdentity[] = [];
  for (const s of scanProcesses().values()) {
    if (isDeadState(s.state) || s.pid === process.pid) continue;
    let env: Buffer;
    try {
      env = fs.readFileSync(`/proc/${s.pid}/environ`);
    } catch {
      continue; // gone, or not ours to read
    }
    const at = env.indexOf(needle);
    if (at === 0 || (at > 0 && env[at - 1] === 0)) {
      found.push({ pid: s.pid, pgid: s.pgid, startTime: s.startTime, bootId: bootId() });
    }
  }
  return found.sort((a, b) => Number(b.pid === b.pgid) - Number(a.pid === a.pgid) || a.startTime - b.startTime || a.pid - b.pid);
}

function envValue(env: Buffer, name: string): string | undefined {
  const prefix = Buffer.from(`${name}=`, 'latin1');
  let at = env.indexOf(prefix);
  while (at > 0 && env[at - 1] !== 0) at = env.indexOf(prefix, at + 1);
  if (at < 0) return undefined;
  let end = env.indexOf(0, at);
  if (end < 0) end = env.length;
  return env.toString('latin1', at + prefix.length, end);
}

/**
 * Every live process (not this one) that has at least one of these variables in its environment,
 * with their values: one /proc scan and one small read per process. Linux only (elsewhere: empty).
 */
export function scanEnv(names: string[]): Array<{ id: ProcessIdentity; env: Record<string, string> }> {
  const out: Array<{ id: ProcessIdentity; env: Record<string, string> }> = [];
  if (!IS_LINUX || names.length === 0) return out;
  const boot = bootId();
  for (const s of scanProcesses().values()) {
    if (isDeadState(s.state) || s.pid === process.pid) continue;
    let raw: Buffer;
    try {
      raw = fs.readFileSync(`/proc/${s.pid}/environ`);
    } catch {
      continue; // gone, or not ours to read
    }
    const env: Record<string, string> = {};
    let any = false;
    for (const n of names) {
      const v = envValue(raw, n);
      if (v !== undefined) {
        env[n] = v;
        any = true;
      }
    }
    if (any) out.push({ id: { pid: s.pid, pgid: s.pgid, startTime: s.startTime, bootId: boot }, env });
  }
  return out;
}

/**
 * Live processes whose environment holds `name=V` for any V in `values`, grouped by V (the group
 * leader first in each list): one scan for any number of values, so a supervisor that restarts
 * finds every process of every run it inherits in one pass.
 */
export function findAllByEnv(name: string, values: Iterable<string>): Map<string, ProcessIdentity[]> {
  const out = new Map<string, ProcessIdentity[]>();
  const wanted = new Set(values);
  if (wanted.size === 0) return out;
  for (const { id, env } of scanEnv([name])) {
    const v = env[name]!;
    if (!wanted.has(v)) continue;
    let list = out.get(v);
    if (!list) out.set(v, (list = []));
    list.push(id);
  }
  for (const list of out.values()) list.sort((a, b) => Number(b.pid === b.pgid) - Number(a.pid === a.pgid) || a.startTime - b.startTime || a.pid - b.pid);
  return out;
}

/**
 * Direct children of this process, from /proc/self/task/PID/children: the main thread's, one small
 * file (far cheaper than a full /proc scan, or than one file per thread: a Node process has ten).
 * The main thread is the parent of every child this process spawns (posix_spawn and libuv's spawn
 * run on it) and the one the kernel re-parents orphans to (a subreaper's first live thread, its
 * leader while it runs); a child of another thread is found by the full scans (reapOrphans reads
 * every process's parent). null when the kernel does not provide the file.
 */
export function childPids(): number[] | null {
  if (!IS_LINUX) return null;
  try {
    const text = readProcText(`/proc/self/task/${process.pid}/children`).trim();
    return text ? text.split(' ').map(Number) : [];
  } catch {
    return null;
  }
}

/**
 * True when no process at all is left in the group `pgid` (kill(-pgid, 0) answers ESRCH).
 * A cheap first answer before a /proc walk; any other answer means "look closer".
 */
export function groupEmpty(pgid: number): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
