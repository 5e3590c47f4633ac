/**
 * Argument checks several commands share: one positional id or name, an optional limit flag in
 * the range the board accepts, and a --pass-env variable name (each refused with exit 2).
 */
import { parseLimit, type LimitRange } from '@kanban-supervisor/policies';
import { UsageError } from '../args.js';

/** An optional limit flag, checked against the range the board and the worker runtime accept (exit 2 naming the flag and the range). */
export function optLimit(values: Record<string, string>, flag: string, range: LimitRange): number | null {
  const raw = values[flag];
  return raw === undefined ? null : parseLimit(flag, raw, range);
}

/** The one positional argument (an id or a name) of `cmd` (exit 2 if there is none or more than one). */
export function one(p: { positionals: string[] }, what: string, cmd: string): string {
  if (p.positionals.length !== 1) throw new UsageError(`${cmd}: expected one ${what}, got ${p.positionals.length}`);
  return p.positionals[0]!;
}

/** A --pass-env NAME: a variable name, not one of the KANBAN_* the supervisor sets (exit 2). */
export function checkPassEnv(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--pass-env must name an environment variable, got ${JSON.stringify(name)}`);
  if (name.startsWith('KANBAN_')) throw new UsageError(`--pass-env ${name}: KANBAN_* variables are set by the supervisor`);
}
