/**
 * The board's upkeep: `init` (create the board, idempotent), `check [--full]` (healthy: exit 0,
 * damaged: exit 1) and `recover --out NEW.db | --in-place` (salvage every readable row).
 */
import { checkBoard, formatRecoverReport, isPgLocation, recoverBoard, recoverInPlace } from '@kanban-supervisor/board';
import { existsSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT } from '@kanban-supervisor/policies';
import { parseArgs, UsageError } from '../args.js';
import { printable as safe, printableLines } from '../text.js';
import { boardLabel, boardPath, withBoard, type Globals } from './board.js';
import { out } from './output.js';

/** `init`: create the board and its folder if missing; prints its path (--json: path and counts). */
export async function cmdInit(g: Globals, args: string[]): Promise<number> {
  parseArgs(args, {}, 'init');
  const counts = await withBoard(g, (b) => b.counts(), 'build');
  out(g, `board ${safe(boardLabel(g.db))} ready`, { path: boardLabel(g.db), counts });
  return EXIT.ok;
}

/** `check` and `recover` read and repair a SQLite file: on a PostgreSQL board they say so in one line (exit 2). */
function sqliteOnly(g: Globals, command: string): number | null {
  if (!isPgLocation(g.db)) return null;
  process.stderr.write(`${command}: a SQLite file tool; board ${safe(boardLabel(g.db))} is a PostgreSQL board (its server checks and recovers it)\n`);
  return EXIT.usage;
}

/** `check [--full]`: header, journal mode, schema version and quick_check (or integrity_check). */
export async function cmdCheck(g: Globals, args: string[]): Promise<number> {
  const refused = sqliteOnly(g, 'check');
  if (refused !== null) return refused;
  const p = parseArgs(args, { '--full': { kind: 'bool' } }, 'check');
  const r = checkBoard(boardPath(g.db, 'existing'), { full: p.bools.has('--full') });
  const human = [
    `board ${safe(r.path)}: ${r.healthy ? 'healthy' : 'DAMAGED'}`,
    `  file ${r.fileSize ?? '-'} bytes, wal ${r.walSize ?? '-'} bytes, ${r.pageCount ?? '-'} pages of ${r.pageSize ?? '-'} bytes`,
    `  journal mode ${safe(String(r.journalMode ?? '-'))}, schema version ${r.schemaVersion ?? '-'} (supported ${r.supportedSchemaVersion})`,
    `  ${r.check}: ${r.checkResult.length ? safe(r.checkResult.slice(0, 10).join('; ')) : '-'}`,
    ...r.problems.map((x) => `  problem: ${safe(x)}`),
    ...r.warnings.map((x) => `  note: ${safe(x)}`),
    r.healthy ? '' : '  next: stop writers, keep the -wal and -shm files next to the board, and run `kanban-supervisor recover --out NEW.db`',
  ].filter(Boolean);
  out(g, human.join('\n'), r);
  return r.healthy ? EXIT.ok : EXIT.failed;
}

/** `recover --out NEW.db | --in-place`: progress on stderr (not with --json), the report on stdout. */
export async function cmdRecover(g: Globals, args: string[]): Promise<number> {
  const refused = sqliteOnly(g, 'recover');
  if (refused !== null) return refused;
  const p = parseArgs(args, { '--out': { kind: 'value' }, '--in-place': { kind: 'bool' } }, 'recover');
  if (p.positionals.length) throw new UsageError(`recover: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const outPath = p.values['--out'];
  const inPlace = p.bools.has('--in-place');
  if (!outPath === !inPlace) throw new UsageError('recover: give exactly one of --out NEW.db or --in-place');
  // The board as every command takes it (missing, a directory, hard links: exit 2), and a new
  // --out path: an existing file (the board itself among them) is never overwritten (exit 2).
  const src = boardPath(g.db, 'existing');
  if (outPath !== undefined) {
    const outAbs = resolve(outPath);
    if (existsSync(outAbs) || existsSync(outAbs + '-wal')) {
      if (existsSync(outAbs) && realpathSync(outAbs) === realpathSync(src)) throw new UsageError(`recover --out ${outAbs}: that is the board itself; use --in-place to replace it`);
      throw new UsageError(`recover --out ${outAbs}: it already exists; give a new path (nothing is overwritten)`);
    }
  }
  const log = g.json ? undefined : (line: string) => process.stderr.write(line + '\n');
  const report = inPlace ? recoverInPlace(src, { log }) : recoverBoard(src, outPath!, { log });
  out(g, printableLines(formatRecoverReport(report)), report);
  return EXIT.ok;
}
