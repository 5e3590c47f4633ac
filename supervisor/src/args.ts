/** A small, strict argv parser: unknown flags and missing values are usage errors that name the flag. */
import { ConfigError } from '@kanban-supervisor/policies';

export class UsageError extends ConfigError {
  override name = 'UsageError';
}

export interface FlagSpec {
  /** 'value' takes the next argument (or --flag=value), 'bool' takes none, 'multi' repeats. */
  kind: 'value' | 'bool' | 'multi';
}

export interface Parsed {
  positionals: string[];
  values: Record<string, string>;
  bools: Set<string>;
  multi: Record<string, string[]>;
  /** Everything after a bare `--`. */
  rest: string[] | null;
}

export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, context: string): Parsed {
  const out: Parsed = { positionals: [], values: {}, bools: new Set(), multi: {}, rest: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq === -1 ? a : a.slice(0, eq);
      const s = spec[name];
      if (!s) throw new UsageError(`${context}: unknown option ${name}`);
      if (s.kind === 'bool') {
        if (eq !== -1) throw new UsageError(`${context}: option ${name} takes no value`);
        out.bools.add(name);
        continue;
      }
      let value: string;
      if (eq !== -1) value = a.slice(eq + 1);
      else {
        if (i + 1 >= argv.length) throw new UsageError(`${context}: option ${name} needs a value`);
        value = argv[++i]!;
      }
      if (s.kind === 'value') out.values[name] = value;
      else (out.multi[name] ??= []).push(value);
      continue;
    }
    out.positionals.push(a);
  }
  return out;
}

export function parseJsonArg(flag: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw new UsageError(`${flag} must be valid JSON, got ${JSON.stringify(raw.length > 80 ? raw.slice(0, 80) + '…' : raw)}: ${(e as Error).message}`);
  }
}

export function parseNumberArg(flag: string, raw: string, opts: { integer?: boolean; min?: number } = {}): number {
  const n = Number(raw);
  const ok = raw.trim() !== '' && Number.isFinite(n) && (!opts.integer || Number.isInteger(n)) && (opts.min === undefined || n >= opts.min);
  if (!ok) {
    throw new UsageError(
      `${flag} must be ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` of at least ${opts.min}` : ''}, got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}
