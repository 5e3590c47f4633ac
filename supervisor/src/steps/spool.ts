/**
 * Step: spool. Reports that workers left in the spool while the board could not take them are
 * applied fenced by their run token (so at most once) and deleted only once on the board.
 *
 * A spooled report is a worker's write: it goes through the board's own fenced operation
 * (`report`), each entry its own transaction, committed when it returns, before its file is
 * deleted. So this step runs before the tick's transaction begins (while one is open, the board
 * refuses writes of its own). The tick accounts only after this step succeeded: an exit written
 * first would book a run crashed whose result sits in the spool.
 */
import { lstatSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { BoardInputError, NotCurrentError, classifyError, type Board } from '@kanban-supervisor/board';
import { readSpool, removeSpoolEntry } from '@kanban-supervisor/worker-runtime';
import type { TickContext } from '../state.js';

export async function spool(ctx: TickContext, board: Board): Promise<void> {
  const { log } = ctx;
  // Every entry on its own: one that cannot be applied is set aside (logged once) and never
  // keeps the others from being read. Only a board-level error (busy, I/O, damage) stops the
  // pass, and the next tick reads the spool again.
  for (const item of readSpool(ctx.boardPath, ctx.files.spoolDir)) {
    if (ctx.state.spoolSetAside.has(item.path)) continue;
    if ('error' in item) {
      setSpoolAside(ctx, item.path, 'rejected', { event: 'spool_rejected', path: item.path, error: item.error }, 'unreadable spool file set aside');
      continue;
    }
    const e = item.entry;
    const cred = { taskId: e.taskId, runId: e.runId, token: e.token };
    const fields = { task: e.taskId, run: e.runId, workerPid: e.pid, outcome: e.report.outcome };
    try {
      // committed when it returns; with its seq, a report already on the board (its channel answer
      // was lost, then the board refused the worker's direct write) is a duplicate, applied once.
      if ((await board.report(cred, e.report, e.at, e.seq ?? null)) === 'duplicate') {
        log.info({ event: 'spool_already_applied', ...fields }, 'spooled result was already on the board');
      } else {
        ctx.metrics.spool('applied');
        log.info({ event: 'spool_applied', ...fields }, 'spooled result applied');
      }
    } catch (err) {
      if (!(err instanceof NotCurrentError)) {
        if (!(err instanceof BoardInputError) && classifyError(err) !== 'other') throw err;
        setSpoolAside(ctx, item.path, 'rejected', { event: 'spool_rejected', ...fields, path: item.path, error: (err as Error).message }, 'invalid spooled report set aside');
        continue;
      }
      if (!(await board.reportApplied(cred, e.report.outcome))) {
        // The run was reclaimed meanwhile, or the damage destroyed it: never delete a result
        // that is not on the board. Keep it aside for the operator.
        setSpoolAside(ctx, item.path, 'unapplied', { event: 'spool_unapplied', ...fields }, 'spooled result could not be applied (its run is not current); kept in spool/unapplied');
        continue;
      }
      // Applied by an earlier ingestion that died before deleting the file.
      log.info({ event: 'spool_already_applied', ...fields }, 'spooled result was already on the board');
    }
    removeSpoolEntry(item.path); // on the board: the file goes
  }
}

/**
 * Move a spool entry into spool/<sub>/ (a real folder of ours, never a symlink a worker planted),
 * logging why once. If it cannot be moved, it is remembered and skipped from then on.
 */
function setSpoolAside(ctx: TickContext, path: string, sub: 'rejected' | 'unapplied', fields: Record<string, unknown>, msg: string): void {
  const dir = join(ctx.files.spoolDir, sub);
  let keptAt: string | null = null;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    if (!st.isDirectory() || (process.getuid && st.uid !== process.getuid())) throw new Error(`${dir} is not a folder owned by this user`);
    const to = join(dir, path.split('/').pop()!);
    renameSync(path, to);
    keptAt = to;
  } catch (err) {
    ctx.state.spoolSetAside.add(path);
    fields = { ...fields, moveError: (err as Error).message };
  }
  ctx.metrics.spool(sub);
  ctx.log.error({ ...fields, keptAt: keptAt ?? path }, msg);
}
