// The Reaper's public value types (re-exported by reaper.ts and index.ts).
import type { ProcessIdentity } from './identity.js';

export interface SpawnRequest {
  argv: string[];
  cwd?: string;
  env: Record<string, string>;
  logPath: string;
}
/**
 * A failed spawn says whose fault it is: `skill` (its command, working directory or arguments) or
 * `supervisor` (the supervisor's own resources: the log file or folder, file descriptors, processes,
 * memory). The supervisor's faults must never count against a task.
 */
export type SpawnFault = 'skill' | 'supervisor';
/**
 * `durationMs`: how long the spawn held the caller's thread (fork/posix_spawn until the child
 * exec'd), measured around that synchronous call alone: what sizes the supervisor's spawn slices.
 */
export type SpawnResult = { ok: true; identity: ProcessIdentity; durationMs: number } | { ok: false; code: string; message: string; fault: SpawnFault };

export interface ExitRecord {
  pid: number;
  exitCode: number | null;
  signal: string | null;
  /** ms epoch */
  at: number;
}
export interface TerminationState {
  pid: number;
  phase: 'term' | 'kill' | 'gone';
  sigtermAt: number;
  sigkillAt: number | null;
  remaining: number[];
}
export interface Usage {
  /** percent of one core, summed over the worker's group/tree */
  cpuPercent: number;
  rssBytes: number;
  processes: number;
  /** CPU seconds used so far by the live processes of the group/tree (with their reaped children); linux-proc only. */
  cpuSeconds?: number;
}
export interface ReaperLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}
