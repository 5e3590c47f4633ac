/**
 * Whether this user can still read and write the board by path, as every new worker must (our
 * own connection keeps working regardless, so spooled results are still applied). Run by
 * housekeeping every ACCESS_PROBE_INTERVAL_MS, by dispatch before it claims, and before a
 * suspected damage is checked. access(2) only: a few µs.
 */
import { boardAccessProblem } from '../board-access.js';
import type { TickContext } from '../state.js';
import { writeStatusFile } from '../status-file.js';

/** How often housekeeping probes (dispatch also probes before it claims). */
export const ACCESS_PROBE_INTERVAL_MS = 5000;

/**
 * Probe now. One error event when access turns bad, one info event when it is back; the status
 * file says which. Returns whether workers can use the board.
 */
export function probeAccess(ctx: TickContext, now: number): boolean {
  const s = ctx.state;
  s.lastAccessProbeAt = now;
  // A PostgreSQL board is reached over the network, not by path: nothing to probe here.
  if (ctx.kind !== 'sqlite') return true;
  const problem = boardAccessProblem(ctx.boardPath);
  const ok = problem === null;
  if (ok === s.access.ok) {
    const moved = problem?.path !== s.access.problem?.path || problem?.code !== s.access.problem?.code;
    s.access.problem = problem;
    if (moved) writeStatusFile(ctx); // still bad, for another reason: the status file says which
    return ok;
  }
  const was = s.access;
  s.access = { ok, since: now, problem };
  if (problem) {
    ctx.log.error(
      { event: 'board_inaccessible', board: ctx.boardPath, path: problem.path, code: problem.code, workers: s.workers.size },
      `workers cannot use the board: ${problem.error}; dispatch held, running workers still supervised and spooled results still applied`,
    );
  } else {
    ctx.log.info({ event: 'board_accessible', board: ctx.boardPath, since: was.since, path: was.problem?.path, code: was.problem?.code }, 'the board is readable and writable again: dispatch resumes');
  }
  writeStatusFile(ctx);
  return ok;
}
