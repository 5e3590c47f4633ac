/**
 * What every benchmark shares. Importing this module parses the flags (--help and a wrong flag exit
 * here, before anything is started), then creates the run's Harness (its temp dir, the kill of
 * everything at the end) and Results. Here too: the sizes of each benchmark (P, full and --short),
 * the fixtures' folder, whether the sqlite3 command exists, and whether a measurement failed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FIXTURES, Harness, Results, Sup, parseFlags } from '../lib.js';

const FLAGS = parseFlags(process.argv.slice(2));
export const SHORT = FLAGS.short;
/** --pg: the PostgreSQL figures only (pg-*.ts), instead of the SQLite ones. */
export const PG = FLAGS.pg;
export const BENCH = join(FIXTURES, 'bench');
export const HAVE_SQLITE3 = spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;

export const P = SHORT
  ? { conc: 4, rounds: 3, nativeN: 200, nodeN: 40, latN: 60, smallRows: 1_000, bigRows: 1_000_000, bigQueue: 100_000, flatIters: 120, hbWorkers: 64, hbWindowS: 12, reclaimN: 8, churnS: 15, restarts: 3, waveMs: 6000, otherProcs: 600 }
  : { conc: 4, rounds: 5, nativeN: 800, nodeN: 160, latN: 300, smallRows: 1_000, bigRows: 1_000_000, bigQueue: 100_000, flatIters: 400, hbWorkers: 64, hbWindowS: 40, reclaimN: 24, churnS: 60, restarts: 10, waveMs: 8000, otherProcs: 1000 };

/** The sizes of the PostgreSQL figures (--pg). */
export const PGP = SHORT
  ? { latN: 20, smallRows: 1_000, bigRows: 100_000, flatIters: 120, tpN: 300, tpRounds: 1, tpConc: 4, tpSups: 3 }
  : { latN: 100, smallRows: 1_000, bigRows: 1_000_000, flatIters: 400, tpN: 600, tpRounds: 3, tpConc: 4, tpSups: 3 };

export const h = new Harness({ prefix: 'ks-bench-', keep: FLAGS.keep, deadlineMs: (PG ? (SHORT ? 15 : 45) : SHORT ? 10 : 40) * 60_000 });
export const res = new Results();
export const want = (name: string) => !FLAGS.only || FLAGS.only.has(name);
/** Set when a measurement could not be made: the run then exits 1. */
export const status = { failed: false };

export function tail(sup: Sup, n = 15): string {
  return sup.lines
    .slice(-n)
    .map((l) => JSON.stringify(l))
    .join('\n');
}
