// Finding a worker whose pid was never recorded (its supervisor died between spawn and record):
// every worker carries KANBAN_RUN_ID in its environment, readable in /proc/PID/environ.
import * as fs from 'node:fs';
import { bootId, IS_LINUX, isDeadState, scanProcesses } from './platform.js';
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
  return found.sort((a, b) => Number(b.pid === b.pgid) - Number(a.pid === a.pgid) || a.startTime - b.startTime);
}

/**
 * Direct children of this process, from /proc/self/task/TID/children (one small file per thread,
 * far cheaper than a full /proc scan). null when the kernel does not provide the file.
 */
export function childPids(): number[] | null {
  if (!IS_LINUX) return null;
  try {
    const out: number[] = [];
    for (const tid of fs.readdirSync('/proc/self/task')) {
      const text = fs.readFileSync(`/proc/self/task/${tid}/children`, 'latin1').trim();
      if (text) for (const p of text.split(' ')) out.push(Number(p));
    }
    return out;
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
