import { isDeadState, scanProcesses } from './platform.js';

/** Zombie processes whose parent is `parentPid` (default: this process), from one /proc scan. */
export function zombieChildren(parentPid: number = process.pid): number[] {
  const out: number[] = [];
  for (const s of scanProcesses().values()) if (s.ppid === parentPid && isDeadState(s.state)) out.push(s.pid);
  return out;
}
