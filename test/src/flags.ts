/**
 * The flags of the chaos and benchmark scripts (--short, --pg, --keep, --only, --help), parsed by
 * node:util parseArgs; a wrong one exits 2 naming it.
 */
import { parseArgs } from 'node:util';

const SCRIPT_FLAGS = { short: { type: 'boolean' }, pg: { type: 'boolean' }, keep: { type: 'boolean' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/**
 * The chaos and bench scripts' flags, by node:util parseArgs: --short, --pg (the PostgreSQL part
 * only), --keep, --only a,b (or --only=a,b; a value may start with a dash), --help / -h. Anything
 * else, and --only without its value, exits 2 naming it.
 */
export function parseFlags(argv: string[]): { short: boolean; pg: boolean; keep: boolean; only: Set<string> | null } {
  const usage = (msg: string): never => {
    process.stderr.write(`${msg} (try --help)\n`);
    process.exit(2);
  };
  let short = false;
  let pg = false;
  let keep = false;
  let only: Set<string> | null = null;
  const { tokens } = parseArgs({ args: argv, options: SCRIPT_FLAGS, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    // The argument as written: a positional, `--`, `--short=1`, `-x` (node splits `-xy` into letters).
    const a = t.kind === 'positional' ? t.value : argv[t.index]!;
    if (t.kind !== 'option' || (t.name !== 'only' && a !== t.rawName)) return usage(`unknown option ${a}`);
    if (t.name === 'short') short = true;
    else if (t.name === 'pg') pg = true;
    else if (t.name === 'keep') keep = true;
    else if (t.name === 'only') only = new Set((t.value ?? usage('option --only needs a value')).split(',').filter(Boolean));
    else if (t.name === 'help') {
      process.stdout.write('options: --short (quick run), --pg (the PostgreSQL part only), --only a,b (scenarios), --keep (keep the temp dir)\n');
      process.exit(0);
    } else return usage(`unknown option ${a}`);
  }
  return { short, pg, keep, only };
}
