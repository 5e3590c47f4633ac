/**
 * Opening the board at start, once the supervisor owns it.
 * - SQLite: a board this user may not read or write is refused (never quarantined); an existing
 *   board gets its header and quick_check before our first connection; damage found here starts
 *   the supervisor quarantined (its workers are still supervised).
 * - PostgreSQL: the board is already open (host ownership is taken on it, host-owner.ts, after
 *   waiting for a server that could not be reached yet: start-retry.ts): this supervisor's row is
 *   recorded, and the connection budget of every live host checked (a warning). A connection error
 *   here is never damage: it fails the start (the caller releases what it holds and reports it).
 */
import { existsSync } from 'node:fs';
import { BoardDamagedError, BoardPathError, NotABoardError, checkBoard, classifyError } from '@kanban-supervisor/board';
import { boardAccessProblem } from './board-access.js';
import { checkConnectionBudget, registerSelf } from './host-owner.js';
import { enterQuarantine } from './quarantine.js';
import { openSupervisorBoard, type TickContext } from './state.js';

/** Open (SQLite) or register on (PostgreSQL) the board. Throws what is not damage; damage quarantines. */
export async function openAtStart(ctx: TickContext): Promise<void> {
  const s = ctx.state;
  if (ctx.kind === 'postgres') {
    s.supervisorId = await registerSelf(ctx, s.board!);
    await checkConnectionBudget(ctx, s.board!).catch((e: unknown) => ctx.log.warn({ event: 'connection_budget_unknown', err: e }, 'could not check the connection budget'));
    return;
  }
  const path = ctx.boardPath;
  try {
    const denied = existsSync(path) ? boardAccessProblem(path) : null;
    if (denied) throw new BoardPathError(path, `is not usable by this user (uid ${process.getuid?.() ?? '?'}): ${denied.error}`);
    const pre = existsSync(path) ? checkBoard(path) : null;
    if (pre && !pre.healthy) throw new BoardDamagedError(path, pre.problems.join('; '));
    s.board = await openSupervisorBoard(path);
  } catch (e) {
    // Another application's database is not a damaged board: refused at start (exit 2), not quarantined.
    if (classifyError(e) !== 'damaged' || e instanceof NotABoardError) throw e;
    await enterQuarantine(ctx, e instanceof BoardDamagedError ? e.detail : (e as Error).message, false);
  }
}
