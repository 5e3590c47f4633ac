/**
 * The board CLI's arguments, read by `node:util` `parseArgs` and checked strictly here: an unknown
 * flag, a flag missing its value and a value given to a flag that takes none are usage errors
 * (exit 2) that name the flag.
 *
 * `parseArgs` (every command but three): node's own strict mode is not used, as it refuses a value
 * that starts with a dash (`--priority -5`, `--title -x`) and its messages do not say which command.
 * Its tokens are checked here instead:
 * - `--flag value` and `--flag=value`; a flag that takes a value takes the next argument whatever
 *   it is (`--title --x` is the title "--x");
 * - an argument with a single dash (`-5`, `-x`) is a positional, not an option;
 * - a bare `--` ends the options: everything after it is `rest`, untouched (`skill add NAME -- CMD
 *   ARGS...` keeps the command's own flags).
 * `parseOptions` (`runs`, `logs`, `status`): node's strict mode, with its short aliases (`logs -f`);
 * a negative number after an option that takes a value is that option's value (`--tail -1`).
 */
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';
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
  /** A 'value' flag given twice: the last one. */
  values: Record<string, string>;
  bools: Set<string>;
  multi: Record<string, string[]>;
  /** Everything after a bare `--`. */
  rest: string[] | null;
}

/** The tokens of `argv` (node:util parseArgs, not strict): options as written, with their values. */
export function argvTokens(argv: string[], options: NonNullable<ParseArgsConfig['options']>) {
  return nodeParseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true }).tokens;
}

/** The flag as written: `--name` of `--name` or `--name=value`. */
export function flagName(arg: string): string {
  const eq = arg.indexOf('=');
  return eq === -1 ? arg : arg.slice(0, eq);
}

/** Parse `argv` by `spec` (keys are the flags, `--name`); errors are UsageErrors starting with `context`. */
export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, context: string): Parsed {
  const out: Parsed = { positionals: [], values: {}, bools: new Set(), multi: {}, rest: null };
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [flag, s] of Object.entries(spec)) options[flag.slice(2)] = { type: s.kind === 'bool' ? 'boolean' : 'string', multiple: s.kind === 'multi' };
  let lastShort = -1;
  for (const t of argvTokens(argv, options)) {
    if (t.kind === 'option-terminator') {
      out.rest = argv.slice(t.index + 1);
      break;
    }
    if (t.kind === 'positional') {
      out.positionals.push(t.value);
      continue;
    }
    const arg = argv[t.index]!;
    if (!arg.startsWith('--')) {
      // `-x` (node splits `-xyz` into one token per letter, all with this index): a positional.
      if (t.index !== lastShort) out.positionals.push(arg);
      lastShort = t.index;
      continue;
    }
    const name = flagName(arg);
    const s = spec[name];
    if (!s) throw new UsageError(`${context}: unknown option ${name}`);
    if (s.kind === 'bool') {
      if (t.value !== undefined) throw new UsageError(`${context}: option ${name} takes no value`);
      out.bools.add(name);
      continue;
    }
    if (t.value === undefined) throw new UsageError(`${context}: option ${name} needs a value`);
    if (s.kind === 'value') out.values[name] = t.value;
    else (out.multi[name] ??= []).push(t.value);
  }
  return out;
}

/**
 * The options of `runs`, `logs` and `status`, by node:util parseArgs in its strict mode (short
 * aliases such as `logs -f`; a value may not start with a dash): its errors become usage errors
 * (exit 2) naming the command and the option.
 */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  cmd: string,
): ReturnType<typeof nodeParseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>> {
  // node refuses `--tail -1` as ambiguous (a value that starts with a dash): a negative number is
  // given to its option (`--tail=-1`), whose own check then names it and its range.
  const given: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      given.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (a.startsWith('--') && !a.includes('=') && options[a.slice(2)]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      given.push(`${a}=${next}`);
      i++;
    } else given.push(a);
  }
  try {
    return nodeParseArgs({ args: given, options, allowPositionals: true, strict: true });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const opt = /'([^']+)'/.exec((e as Error).message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`${cmd}: unknown option ${opt ?? ''} (see ${cmd} --help)`);
    const flag = opt?.split(' ')[0];
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /argument missing/.test((e as Error).message) && flag) throw new UsageError(`${cmd}: option ${flag} needs a value`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /ambiguous/.test((e as Error).message) && opt) {
      throw new UsageError(`${cmd}: option ${opt} needs a value, and the next argument starts with a dash (for such a value write ${opt}=VALUE)`);
    }
    throw new UsageError(`${cmd}: ${(e as Error).message.split('\n')[0]}`);
  }
}

export function parseJsonArg(flag: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw new UsageError(`${flag} must be valid JSON, got ${JSON.stringify(raw.length > 80 ? raw.slice(0, 80) + '…' : raw)}: ${(e as Error).message}`);
  }
}
