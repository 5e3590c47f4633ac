#!/usr/bin/env node
/**
 * Helper process for backups of a damaged board. A process that holds a SQLite connection to the
 * board must not read it through `fs`, so the supervisor runs this script instead:
 *
 *   node backup-main.js BOARD_PATH [--backups-dir DIR] [--keep N] [--max-bytes N]
 *
 * Prints one line of JSON: {"created":bool,"dir":"...","fingerprint":"...","bytes":N,"pruned":[...],"raced":bool}
 * and exits 0; on failure prints {"error":"..."} and exits 1; on bad arguments exits 2.
 */
import { parseArgs } from 'node:util';
import { EXIT } from '@kanban-supervisor/policies';
import { backupDamaged, type BackupOptions } from './backup.js';

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { 'backups-dir': { type: 'string' }, keep: { type: 'string' }, 'max-bytes': { type: 'string' } },
  });
}

function usage(msg: string): never {
  process.stdout.write(JSON.stringify({ error: `${msg}; usage: backup-main.js BOARD_PATH [--backups-dir DIR] [--keep N] [--max-bytes N]` }) + '\n');
  process.exit(EXIT.usage);
}

function main(argv: string[]): void {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    // node:util's messages name the option ("Unknown option '--x'", "Option '--keep <value>' argument missing").
    usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  const int = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) usage(`${flag} needs a positive whole number, got ${JSON.stringify(v)}`);
    return n;
  };
  const opts: BackupOptions = {};
  if (values['backups-dir'] !== undefined) opts.backupsDir = values['backups-dir'];
  const keep = int('--keep', values.keep);
  if (keep !== undefined) opts.keep = keep;
  const maxBytes = int('--max-bytes', values['max-bytes']);
  if (maxBytes !== undefined) opts.maxBytes = maxBytes;
  if (positionals.length > 1) usage(`unexpected argument ${JSON.stringify(positionals[1])}`);
  const board = positionals[0];
  if (board === undefined) usage('the board path is missing');
  try {
    const r = backupDamaged(board, opts);
    process.stdout.write(JSON.stringify(r) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
    process.exitCode = EXIT.failed;
  }
}

main(process.argv.slice(2));
