/**
 * Processes that are no worker's: orphans re-parented to us (the child subreaper) and strays
 * (processes of runs that already ended, found once at start-up). Called from the reap and
 * detect steps, each scan on its own cadence: zombies among our children at every tick, the full
 * orphan scan at most every 250 ms when a stranger is among them (every 30 s otherwise, a safety
 * net), the stray sweep once.
 */
import { childPids, scanEnv } from '@kanban-supervisor/reaper';
import type { LiveRun } from '@kanban-supervisor/board';
import type { TickContext } from '../state.js';

const ORPHAN_SCAN_MIN_INTERVAL_MS = 250;
const ORPHAN_SCAN_SAFETY_INTERVAL_MS = 30_000;

/**
 * Orphans re-parented to us. Our direct children are cheap to list; the full /proc scan of
 * reapOrphans runs only when one of them is not a known worker (or every 30 s). `exits`: how many
 * exits this tick's reap collected (a stranger right after an exit is scanned for at once).
 */
export function scanOrphans(ctx: TickContext, exits: number, now: number): void {
  const s = ctx.state;
  const { reaper, log } = ctx;
  const known = new Set<number>([...s.workers.values()].map((w) => w.identity.pid));
  const children = childPids();
  const strangerPids = children?.filter((pid) => !known.has(pid)) ?? [];
  const strangers = children === null || strangerPids.length > 0;
  // Zombies among them are reaped at every tick (one /proc read each); the full scan that also
  // terminates live orphans runs at most every 250 ms.
  if (strangerPids.length) {
    const reaped = reaper.reapZombieChildren(strangerPids);
    if (reaped.length) log.info({ event: 'orphans', terminated: [], reaped }, 'reaped orphaned zombies');
  }
  if (!strangers && now - s.lastOrphanScanAt < ORPHAN_SCAN_SAFETY_INTERVAL_MS) return;
  if (strangers && exits === 0 && now - s.lastOrphanScanAt < ORPHAN_SCAN_MIN_INTERVAL_MS) return;
  s.lastOrphanScanAt = now;
  const orphans = reaper.reapOrphans(known);
  if (orphans.terminated.length || orphans.reaped.length) {
    log.info({ event: 'orphans', terminated: orphans.terminated, reaped: orphans.reaped }, 'cleaned up orphaned descendants');
  }
}

/**
 * Once, at start-up: processes that carry this board's KANBAN_DB and the id of a run that has
 * already ended (escapees of a worker whose group was gone when the previous supervisor died,
 * while it was still terminating them as orphans) become strays, terminated like orphans.
 */
export function sweepStrays(ctx: TickContext, live: LiveRun[]): void {
  const s = ctx.state;
  if (s.swept) return;
  s.swept = true;
  const liveIds = new Set(live.map((r) => r.id));
  for (const w of s.workers.values()) liveIds.add(w.runId);
  for (const { id, env } of scanEnv(['KANBAN_DB', 'KANBAN_RUN_ID', 'KANBAN_HOST_ID'])) {
    const runId = env.KANBAN_RUN_ID;
    if (env.KANBAN_DB !== ctx.boardPath || !runId || liveIds.has(runId)) continue;
    // A shared board: another host id's workers (simulated hosts on one machine) are never ours.
    if (ctx.hostId !== null && env.KANBAN_HOST_ID !== ctx.hostId) continue;
    s.strays.set(`${id.pid}:${id.startTime}`, { id, runId });
    ctx.log.warn({ event: 'stray_found', run: runId, workerPid: id.pid }, 'a process of an ended run outlived its supervisor: terminating it');
  }
}

/** Strays: SIGTERM, the cleanup grace, SIGKILL; forgotten once gone. */
export function reapStrays(ctx: TickContext, graceMs: number, now: number): void {
  for (const [key, st] of ctx.state.strays) {
    const t = ctx.reaper.terminate(st.id, graceMs, now);
    if (t.phase === 'gone') {
      ctx.state.strays.delete(key);
      ctx.reaper.untrack(st.id.pid);
    }
  }
}
