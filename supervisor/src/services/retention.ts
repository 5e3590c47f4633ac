/**
 * Retention as a periodic service (RETENTION_DAYS, issue 16): at most one small batch per tick,
 * run after the tick (its transaction is committed by then), never more often than every
 * RETENTION_INTERVAL_MS while there is nothing to prune. The batch is sized to hold the write lock
 * briefly (policies nextPruneBatchSize, from the last batch's hold), so a tick is never delayed by
 * more than one short batch. The removed runs' log files are deleted after the batch committed.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { nextPruneBatchSize, PRUNE_BATCH } from '@kanban-supervisor/policies';
import type { TickContext } from '../state.js';

/** How often the service looks for work once a look found nothing. */
const RETENTION_INTERVAL_MS = 60_000;
/** The size of the service's batches: small, one per tick at most. */
const SERVICE_MAX_BATCH = 500;

/** The service's state, kept across ticks. */
export interface RetentionState {
  nextAt: number;
  batch: number;
}

export function newRetentionState(): RetentionState {
  return { nextAt: 0, batch: PRUNE_BATCH.first };
}

export async function retention(ctx: TickContext, r: RetentionState, now: number): Promise<void> {
  const days = ctx.cfg.retentionDays;
  const board = ctx.state.board;
  if (days <= 0 || !board || ctx.state.quarantine || ctx.state.stopping || now < r.nextAt) return;
  const res = await board.pruneBatch({ before: now - days * 86_400_000, limit: r.batch });
  const logs = removeRunLogs(res.logPaths, ctx.logDir);
  if (res.tasks > 0) {
    ctx.log.info({ event: 'tasks_pruned', tasks: res.tasks, runs: res.runs, events: res.events, links: res.links, logs, holdMs: Math.round(res.holdMs * 10) / 10, retentionDays: days }, 'finished tasks pruned');
  }
  r.batch = Math.min(SERVICE_MAX_BATCH, nextPruneBatchSize(r.batch, res.holdMs));
  // More to do: the next tick takes another batch; else look again in a minute (sooner for a
  // retention of minutes: a hundredth of it, at least a second).
  r.nextAt = res.more ? now : now + Math.min(RETENTION_INTERVAL_MS, Math.max(1000, (days * 86_400_000) / 100));
}

/**
 * Delete the log files of pruned runs: only regular files (or symlinks, removed as themselves)
 * named `<run id>.log` directly in this host's run logs folder; a path elsewhere (another host's,
 * or a hostile row) is left alone. Returns how many were removed.
 */
export function removeRunLogs(paths: string[], logDir: string): number {
  const dir = resolve(logDir);
  let n = 0;
  for (const p of paths) {
    if (resolve(dirname(p)) !== dir || !/^[A-Za-z0-9_-]{1,100}\.log$/.test(basename(p))) continue;
    try {
      if (lstatSync(p).isDirectory()) continue;
      unlinkSync(p);
      n++;
    } catch {
      /* already gone */
    }
  }
  return n;
}
