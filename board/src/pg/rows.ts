/**
 * Row mapping for PostgreSQL rows. The PostgreSQL schema keeps the SQLite board's column names, its
 * JSON as text (the same texts JSON.stringify wrote, byte for byte) and its integers (bigint read
 * as numbers, see connection.ts), so the SQLite board's mappers apply unchanged: one mapping, one
 * `Task`, whatever the backend.
 */
export { num, parseJson, toEvent, toLiveRun, toOwner, toRun, toSkill, toTask, type Row } from '../sqlite/rows.js';
import type { Row } from '../sqlite/rows.js';

/** The columns of `r` named `prefix…`, without the prefix (a joined row's second table). */
export function unprefix(r: Row, prefix: string): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}
