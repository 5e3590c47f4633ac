/**
 * The one import of the chaos and benchmark scripts (and load.ts, fallback-cost.ts): it re-exports
 * common.ts (paths, sleep, temp dirs, commands, /proc readers), which the vitest suites share with
 * the scripts, and the scripts' own plumbing, one module per concern:
 *
 * - harness.ts: the temp dir and every process a script starts, killed at the end (ProcScanner,
 *   Harness, the KS_HARNESS_MARK environment mark);
 * - sup.ts: a real supervisor process and its JSON log (Sup), the board file (openBoard, openSql,
 *   integrity) and the workers' record files (readRecords);
 * - results.ts: numbers (rand, quantile, median, fmt), result rows, the table and JSON file, the
 *   machine and commit, runParts;
 * - flags.ts: --short, --keep, --only, --help, --pg (parseFlags).
 *
 * pg-server.ts (a PostgreSQL server for `--pg`, and plain clients) is imported on its own, so that
 * the SQLite runs never load the PostgreSQL driver.
 */
export * from './common.js';
export * from './harness.js';
export * from './sup.js';
export * from './results.js';
export * from './flags.js';

export { closeSync, openSync } from 'node:fs';
