/**
 * `migrate --from PATH.db --to postgres://… [--dry-run]`: move a SQLite board to PostgreSQL
 * (issue 14). The copy itself is the board package's (migrateBoard: the SQLite board only read, one
 * PostgreSQL transaction, an empty target only); this command keeps supervisors and workers away:
 *
 * - the SQLite board's owner lock is held from its snapshot to the end of the copy, so no
 *   supervisor starts on it meanwhile; a live owner is refused (exit 4) and named, as a second
 *   `run` names it;
 * - a run whose worker is still alive (a supervisor stopped with --detach-on-exit, or killed) is
 *   refused (exit 4): that worker writes to the SQLite board, and a supervisor of the PostgreSQL
 *   board would adopt it there and lose what it reports;
 * - a PostgreSQL board with a live supervisor (lease or host lock) is refused by the board (exit 4).
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { BoardOwnedError, BoardPathError, COPY_TABLES, OwnerLock, isPgLocation, migrateBoard, pgLocationLabel, resolveBoardPath, type CopyCounts, type UnexitedRun } from '@kanban-supervisor/board';
import { EXIT } from '@kanban-supervisor/policies';
import { alive, scanEnv } from '@kanban-supervisor/reaper';
import { parseArgs, UsageError } from '../args.js';
import { liveOwnerText } from '../owner.js';
import { printable as safe } from '../text.js';
import type { Globals } from './board.js';
import { out } from './output.js';

const countsText = (c: CopyCounts) => COPY_TABLES.map((t) => `${t} ${c[t]}`).join(', ');

/**
 * Refuse (BoardOwnedError) when a worker of one of these runs is alive: its leader (same pid,
 * start time and boot id), or any process that carries the run's KANBAN_RUN_ID (a worker's
 * children outlive it).
 */
function refuseLiveWorkers(abs: string, runs: UnexitedRun[]): void {
  if (runs.length === 0) return;
  const byId = new Map(runs.map((r) => [r.id, r]));
  let found: { run: UnexitedRun; pid: number } | null = null;
  for (const r of runs) {
    if (r.pid !== null && r.procStartTime !== null && r.bootId !== null && alive({ pid: r.pid, pgid: r.pid, startTime: r.procStartTime, bootId: r.bootId })) {
      found = { run: r, pid: r.pid };
      break;
    }
  }
  if (!found) {
    for (const { id, env } of scanEnv(['KANBAN_RUN_ID'])) {
      const r = byId.get(env.KANBAN_RUN_ID!);
      if (r) {
        found = { run: r, pid: id.pid };
        break;
      }
    }
  }
  if (!found) return;
  throw new BoardOwnedError(
    abs,
    `the worker of run ${found.run.id} (task ${found.run.taskId}, pid ${found.pid}), still alive: run the supervisor on this board until its runs end ` +
      `(\`kanban-supervisor --db ${abs} run --until-idle\`, or stop it without --detach-on-exit), then migrate`,
  );
}

export async function cmdMigrate(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--from': { kind: 'value' }, '--to': { kind: 'value' }, '--dry-run': { kind: 'bool' } }, 'migrate');
  if (p.positionals.length) throw new UsageError(`migrate: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const from = p.values['--from'];
  const to = p.values['--to'];
  if (from === undefined || from.trim() === '') throw new UsageError('migrate: --from PATH (the SQLite board to copy) is required');
  if (to === undefined || to.trim() === '') throw new UsageError('migrate: --to URL (the PostgreSQL board to copy into, postgres://…) is required');
  if (isPgLocation(from)) throw new BoardPathError(pgLocationLabel(from), 'is a PostgreSQL URL: --from names the SQLite board file to copy (--to names the PostgreSQL board)');
  if (!isPgLocation(to)) throw new BoardPathError(pgLocationLabel(to), 'is not a PostgreSQL URL: --to must be a postgres:// or postgresql:// URL');
  if (existsSync(from) && statSync(from).isDirectory()) throw new BoardPathError(resolve(from), 'is a directory: --from must name the SQLite board file');
  const abs = resolveBoardPath(from);
  if (!existsSync(abs)) throw new BoardPathError(abs, 'does not exist (--from names the SQLite board to copy)');
  const dryRun = p.bools.has('--dry-run');

  let lock: OwnerLock | null = null;
  // No supervisor may start on the SQLite board from its snapshot to the end of the copy.
  const takeOwnerLock = async () => {
    const attempt = OwnerLock.tryAcquire(abs);
    if (attempt.ok) lock = attempt.lock;
    else throw new BoardOwnedError(abs, `${await liveOwnerText(abs)}; stop it before moving the board`);
  };
  try {
    const progress =
      g.json || !process.stderr.isTTY || dryRun
        ? undefined
        : (table: string, done: number, total: number) => {
            if (done === total || done % 10_000 === 0) process.stderr.write(`  ${table} ${done}/${total}\n`);
          };
    const r = await migrateBoard(abs, to, { dryRun, beforeSnapshot: takeOwnerLock, checkSource: (s) => refuseLiveWorkers(abs, s.unexitedRuns), progress });
    const human = r.dryRun
      ? `dry run: would copy ${countsText(r.counts)} from ${safe(r.from)} to ${safe(r.to)} (${r.targetExisted ? 'an empty board' : 'a board created there'}); nothing was written`
      : `copied ${countsText(r.counts)} from ${safe(r.from)} to ${safe(r.to)}`;
    out(g, human, { from: r.from, to: r.to, schema: r.schema, dry_run: r.dryRun, target_existed: r.targetExisted, counts: r.counts });
    return EXIT.ok;
  } finally {
    (lock as OwnerLock | null)?.release();
  }
}
