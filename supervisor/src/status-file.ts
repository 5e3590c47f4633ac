/**
 * The status file (`<board>.supervisor.json`, or `supervisor.json` in a PostgreSQL board's state
 * folder: see boardFiles): the owner's state, readable even when the board itself is not (read
 * by `status` and by a refused `run`, see owner.ts), and the owner row's detail on the board.
 */
import { hostname } from 'node:os';
import { DEFAULT_STORM } from '@kanban-supervisor/policies';
import { writeFileAtomic } from '@kanban-supervisor/reaper';
import type { TickContext } from './state.js';

/** Write the status file now; `state` overrides the state it would say (starting, stopped). Never throws. */
export function writeStatusFile(ctx: TickContext, state?: string): void {
  const s = ctx.state;
  const q = s.quarantine;
  const body = {
    pid: process.pid,
    host: hostname(),
    ...(ctx.hostId !== null ? { hostId: ctx.hostId, supervisorId: s.supervisorId } : {}),
    startedAt: ctx.startedAt,
    ...ctx.identity,
    updatedAt: Date.now(),
    state: state ?? (q ? 'quarantined' : s.stopping ? 'stopping' : 'running'),
    maxConcurrentWorkers: ctx.cfg.maxConcurrentWorkers,
    liveWorkers: s.workers.size,
    httpUrl: s.httpUrl,
    reportSocket: s.socketPath,
    quarantine: q ? { since: q.since, reason: q.reason, fingerprint: q.fingerprint, backup: q.backup, nextProbeAt: q.nextProbeAt } : null,
    boardAccess: s.access.ok ? { ok: true } : { ok: false, since: s.access.since, ...s.access.problem },
    storm:
      s.storm.pausedUntil > Date.now()
        ? { pausedUntil: s.storm.pausedUntil, trips: s.storm.trips, reason: `${ctx.cfg.stormDistinctTasks} different tasks failed within ${DEFAULT_STORM.windowMs / 1000} s` }
        : null,
  };
  try {
    // The board's folder is writable by workers: a temp file created exclusively (random name,
    // no symlink followed), renamed over the status file (a planted symlink there is replaced,
    // never written through); removed if the write fails. No fsync: informative only.
    writeFileAtomic(ctx.files.statusFile, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, fsync: false });
  } catch {
    /* status is informative only */
  }
}

/** The owner row the supervisor writes on the board (board.setOwner): who, and its state. */
export function ownerRow(ctx: TickContext, state?: string): { pid: number; host: string; startedAt: number; state?: string; detail: string } {
  const s = ctx.state;
  const detail = JSON.stringify({
    maxConcurrentWorkers: ctx.cfg.maxConcurrentWorkers,
    stopping: s.stopping !== null,
    stormPausedUntil: s.storm.pausedUntil || null,
    quarantine: s.quarantine ? { since: s.quarantine.since, reason: s.quarantine.reason } : null,
  });
  return { pid: process.pid, host: hostname(), startedAt: ctx.startedAt, ...(state !== undefined ? { state } : {}), detail };
}

/** One line for `systemctl status` (sd_notify STATUS=): the state first (a change is sent at once), then pool use. */
export function statusLine(ctx: TickContext): string {
  const s = ctx.state;
  const pool = `${s.workers.size}/${ctx.cfg.maxConcurrentWorkers} workers`;
  if (s.stopping) return `stopping: ${s.workers.size} worker(s) ${ctx.opts.detachOnExit ? 'left running (detach)' : 'being reclaimed'}`;
  const q = s.quarantine;
  if (q) return `quarantined: ${pool} supervised, no dispatch; since ${new Date(q.since).toISOString()}: ${q.reason}`;
  if (s.storm.pausedUntil > Date.now()) return `dispatch paused: ${pool}; failure storm, until ${new Date(s.storm.pausedUntil).toISOString()}`;
  if (!s.access.ok) return `dispatch held: ${pool}; board not usable by path: ${s.access.problem?.error ?? 'unknown'}`;
  if (s.host?.hold.lost) return `dispatch held: ${pool}; this host's ownership of the board is being taken again`;
  return `running: ${pool}; board ok, not quarantined`;
}
