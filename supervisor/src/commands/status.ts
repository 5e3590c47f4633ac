/**
 * `status [--watch]`: the daemon's view, read-only (status.ts), and the line that says how to open
 * its page. It loads none of the daemon's modules (test/supervisor/cli-startup.test.ts).
 */
import { EXIT, parseLimit } from '@kanban-supervisor/policies';
import { boardFiles, isPgLocation, resolveBoardPath } from '@kanban-supervisor/board';
import { readTokenFile, tokenFilePath } from '@kanban-supervisor/web/token';
import { parseOptions, UsageError } from '../args.js';
import { statusReport, printStatus, watchStatus, type StatusReport } from '../status.js';
import { boardPath, type Globals } from './board.js';
import { out } from './output.js';

/** `status [--watch [--interval S]]`: owner, pool, dispatch and each live worker, once or until Ctrl-C. */
export async function cmdStatus(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { watch: { type: 'boolean', short: 'w' }, interval: { type: 'string' } }, 'status');
  if (positionals.length) throw new UsageError(`status: unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values.interval !== undefined && !values.watch) throw new UsageError('status: --interval goes with --watch');
  if (values.watch) {
    const seconds = values.interval !== undefined ? parseLimit('--interval', values.interval, { min: 0.2, max: 3600, integer: false, unit: 'seconds' }) : 2;
    return watchStatus(boardPath(g.db, 'existing'), Math.round(seconds * 1000), g.json);
  }
  const db = boardPath(g.db, 'existing');
  const r = await statusReport(db);
  if (g.json) out(g, '', r);
  else {
    printStatus(r);
    const page = pageLine(r, db);
    if (page) process.stdout.write(`${page}\n`);
    if (r.reportSocket) process.stdout.write(`report channel: ${r.reportSocket}\n`);
  }
  return EXIT.ok;
}

/**
 * How to open the live owner's page: its URL with the token in the fragment (never sent to a
 * server, never in a log) when this user can read the token file; else the URL alone.
 */
export function pageLine(r: StatusReport, db: string): string {
  if (!r.http) return '';
  const path = isPgLocation(db) ? db : resolveBoardPath(db);
  let token: string | null = null;
  try {
    token = readTokenFile(tokenFilePath(boardFiles(path), path));
  } catch {
    token = null;
  }
  return token !== null
    ? `page: ${r.http.url}#token=${token}`
    : `page: ${r.http.url} (actions need its token: KANBAN_HTTP_TOKEN, or the token file next to the board, not readable here)`;
}
