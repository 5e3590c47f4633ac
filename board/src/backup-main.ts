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
import { backupDamaged, type BackupOptions } from './backup.js';

function usage(msg: string): never {
  process.stdout.write(JSON.stringify({ error: `${msg}; usage: backup-main.js BOARD_PATH [--backups-dir DIR] [--keep N] [--max-bytes N]` }) + '\n');
  process.exit(2);
}

function main(argv: string[]): void {
  const opts: BackupOptions = {};
  let board: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const int = (v: string): number => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 1) usage(`${a} needs a positive whole number, got ${JSON.stringify(v)}`);
      return n;
    };
    if (a === '--backups-dir') opts.backupsDir = value();
    else if (a === '--keep') opts.keep = int(value());
    else if (a === '--max-bytes') opts.maxBytes = int(value());
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (board === undefined) board = a;
    else usage(`unexpected argument ${JSON.stringify(a)}`);
  }
  if (board === undefined) usage('the board path is missing');
  try {
    const r = backupDamaged(board, opts);
    process.stdout.write(JSON.stringify(r) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
    process.exitCode = 1;
  }
}

main(process.argv.slice(2));
