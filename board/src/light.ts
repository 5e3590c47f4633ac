/**
 * `@kanban-supervisor/board/light`: what a process that may never open the board needs (a worker
 * reporting through the supervisor's channel, a CLI call that only prints): the error classes, the
 * types and their narrowing helpers, the board's file names and the PostgreSQL location parser.
 * It loads neither better-sqlite3 nor pg nor any backend; the full entry (`@kanban-supervisor/board`)
 * re-exports the same modules, so a class from either is the same class.
 */
export * from './errors.js';
export * from './types.js';
export { isPgLocation, pgLocationLabel, DEFAULT_PG_SCHEMA } from './pg/location.js';
export { boardFiles, ensureStateDir, pgStateId, pgStateRoot, type BoardFiles } from './board-files.js';
