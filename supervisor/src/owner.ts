/**
 * Who owns a board, found without taking any lock: the owner writes its identity (pid, host,
 * process start time, boot id) to `<board>.supervisor.json` right after it takes the owner lock,
 * before it opens the board; the board's owner row is written later. A reader checks that the pid
 * named there is alive and is the same process (start time and boot id), so a dead previous owner,
 * or an unrelated process that got its pid, is never named.
 *
 * The status file lies in the board's folder, which workers can write: it is read without following
 * a symlink or blocking on a FIFO, regular and bounded; what it says is only ever displayed.
 */
import { hostname } from 'node:os';
import { OwnerLock, boardFiles, readOwner, type OwnerInfo } from '@kanban-supervisor/board';
import { alive, bootId, identify, readFileBounded } from '@kanban-supervisor/reaper';
import type { TickContext } from './state.js';

export type StatusFile = Record<string, unknown>;

/** The status file of the board at `location` (see boardFiles), or null when missing, unreadable or not JSON. */
export function readStatusFile(location: string): StatusFile | null {
  try {
    const v = JSON.parse(readFileBounded(boardFiles(location).statusFile, 256 * 1024, { owner: false }).toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as StatusFile) : null;
  } catch {
    return null;
  }
}

const posInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;

/**
 * Whether the process a status file (or owner row) names is alive now. `true`/`false` when it can
 * be checked on this host, `null` when not (another host).
 */
export function ownerProcessAlive(o: { pid: unknown; host?: unknown; procStartTime?: unknown; bootId?: unknown }): boolean | null {
  if (!posInt(o.pid)) return false;
  if (typeof o.host === 'string' && o.host !== hostname()) return null;
  if (posInt(o.procStartTime) && typeof o.bootId === 'string' && o.bootId !== '') {
    return alive({ pid: o.pid, pgid: o.pid, startTime: o.procStartTime, bootId: o.bootId });
  }
  // Written without its start time (an older supervisor): the pid alone.
  try {
    process.kill(o.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface OwnerView {
  pid: number;
  host: string;
  since: number;
  state: string;
  /** Alive and the same process (null: on another host, not checkable). */
  live: boolean | null;
  /** Where it was read: the status file (written at lock time) or the board's owner row. */
  source: 'status-file' | 'board';
}

/** The owner a status file names, checked for liveness. */
export function ownerFromStatusFile(file: StatusFile | null): OwnerView | null {
  if (!file || !posInt(file.pid)) return null;
  const live = file.state === 'stopped' ? false : ownerProcessAlive({ pid: file.pid, host: file.host, procStartTime: file.procStartTime, bootId: file.bootId });
  return {
    pid: file.pid,
    host: typeof file.host === 'string' ? file.host : '?',
    since: typeof file.startedAt === 'number' ? file.startedAt : 0,
    state: typeof file.state === 'string' ? file.state : '?',
    live,
    source: 'status-file',
  };
}

export function ownerFromRow(row: OwnerInfo | null): OwnerView | null {
  if (!row) return null;
  return { pid: row.pid, host: row.host, since: row.startedAt, state: row.state, live: ownerProcessAlive({ pid: row.pid, host: row.host }), source: 'board' };
}

export function describeOwner(o: OwnerView): string {
  return `supervisor pid ${o.pid} on host ${o.host} since ${o.since ? new Date(o.since).toISOString() : '?'}`;
}

/**
 * The live owner of a board whose owner lock another process holds: the status file's process when
 * alive, else the board's owner row when alive. A new owner writes the status file a moment after
 * it takes the lock: until then both may name a dead previous owner, so this waits up to `waitMs`
 * for a live one, and otherwise says the owner is starting rather than name a dead one.
 */
export async function liveOwnerText(boardPath: string, waitMs = 2000): Promise<string> {
  const end = Date.now() + waitMs;
  for (;;) {
    const file = ownerFromStatusFile(readStatusFile(boardPath));
    if (file && file.live !== false) return describeOwner(file);
    const row = ownerFromRow(await readOwner(boardPath));
    if (row && row.live !== false && (!file || row.pid !== file.pid)) return describeOwner(row);
    if (Date.now() >= end) return 'another supervisor (starting up: it has not recorded its identity yet)';
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** This process's identity for the status file: its start time and boot id make a pid unambiguous. */
export function selfIdentity(): { procStartTime: number | null; bootId: string | null } {
  try {
    const id = identify(process.pid);
    return { procStartTime: id?.startTime ?? null, bootId: id ? bootId() : null };
  } catch {
    return { procStartTime: null, bootId: null };
  }
}

/**
 * Take a SQLite board's owner lock: the lock, or null after printing who owns it (without
 * --standby), or null when stopped while waiting (--standby, polled every 200 ms).
 */
export async function acquireOwnerLock(ctx: TickContext, isStopping: () => boolean): Promise<OwnerLock | null> {
  for (;;) {
    const attempt = OwnerLock.tryAcquire(ctx.boardPath);
    if (attempt.ok) return attempt.lock;
    if (!ctx.opts.standby) {
      // The live owner (its status file, written right after it took the lock), never a dead one.
      const who = await liveOwnerText(ctx.boardPath);
      process.stderr.write(`kanban-supervisor: board ${ctx.boardPath} is owned by ${who}; not starting (use --standby to wait)\n`);
      return null;
    }
    if (isStopping()) return null;
    await new Promise((r) => setTimeout(r, 200));
  }
}
