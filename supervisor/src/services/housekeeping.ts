/**
 * Housekeeping, after every tick, each on its own cadence: the board-access probe (5 s), the
 * status file, a PASSIVE checkpoint and the owner row (30 s), run log pruning (10 min). Writes
 * go to the board directly: the tick's transaction is closed by then.
 */
import { lstatSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointingOf } from '@kanban-supervisor/board';
import { isOwnDirectory } from '@kanban-supervisor/reaper';
import { PAYLOAD_SUFFIX, removePayloadFile } from '../exit-skills.js';
import type { TickContext } from '../state.js';
import { ownerRow, writeStatusFile } from '../status-file.js';
import { ACCESS_PROBE_INTERVAL_MS, probeAccess } from './access-probe.js';

const CHECKPOINT_INTERVAL_MS = 30_000;
const PRUNE_INTERVAL_MS = 10 * 60_000;
/** How many run logs are kept (the newest). */
const KEEP_LOGS = 1000;

export async function housekeeping(ctx: TickContext, now: number): Promise<void> {
  const s = ctx.state;
  if (now - s.lastAccessProbeAt >= ACCESS_PROBE_INTERVAL_MS) probeAccess(ctx, now);
  if (now - s.lastCheckpointAt > CHECKPOINT_INTERVAL_MS) {
    s.lastCheckpointAt = now;
    writeStatusFile(ctx);
    const board = s.board!;
    await checkpointingOf(board)?.checkpoint('PASSIVE');
    await board.setOwner(ownerRow(ctx, s.stopping ? 'stopping' : 'running'));
  }
  // Heartbeat slots nobody holds (runs of a supervisor that died), at most every ten minutes.
  s.slots?.sweep(now);
  if (now - s.lastPruneAt > PRUNE_INTERVAL_MS) {
    s.lastPruneAt = now;
    pruneLogs(ctx);
  }
}

/**
 * Keep the newest KEEP_LOGS run logs; never a live worker's. Payload files of exit-code workers
 * whose run is not live (left by a supervisor that died) are removed. Entries are looked at with lstat (a
 * symlink is removed as itself, never followed; one that vanished or dangles does not stop the
 * pruning), and a logs folder that is a symlink or not ours is not pruned at all.
 */
export function pruneLogs(ctx: TickContext): void {
  const liveLogs = new Set([...ctx.state.workers.values()].map((w) => w.logPath));
  if (!isOwnDirectory(ctx.logDir)) return;
  const files: Array<{ path: string; mtime: number }> = [];
  try {
    for (const f of readdirSync(ctx.logDir)) {
      if (f.endsWith(PAYLOAD_SUFFIX)) {
        // An exit-code worker's payload file left by a supervisor that died: its run is over.
        if (!ctx.state.workers.has(f.slice(0, -PAYLOAD_SUFFIX.length))) removePayloadFile(ctx, f.slice(0, -PAYLOAD_SUFFIX.length));
        continue;
      }
      if (!f.endsWith('.log')) continue;
      const path = join(ctx.logDir, f);
      try {
        const st = lstatSync(path);
        if (!st.isDirectory()) files.push({ path, mtime: st.mtimeMs });
      } catch {
        /* gone meanwhile */
      }
    }
  } catch {
    return;
  }
  files.sort((a, b) => b.mtime - a.mtime);
  for (const f of files.slice(KEEP_LOGS)) {
    if (liveLogs.has(f.path)) continue;
    try {
      unlinkSync(f.path);
    } catch {
      /* already gone */
    }
  }
}
