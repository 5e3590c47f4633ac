/**
 * The flags of the chaos and benchmark scripts (--short, --keep, --only, --help, --pg), parsed by
 * node:util parseArgs; a wrong one exits 2 naming it.
 */
import { parseArgs } from 'node:util';

const SCRIPT_FLAGS = { short: { type: 'boolean' }, keep: { type: 'boolean' }, only: { type: 'string' }, pg: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

/**
 * The chaos and bench scripts' flags, by node:util parseArgs: --short, --keep, --only a,b (or
 * --only=a,b; a value may start with a dash), --help / -h, and --pg where the script takes it
 * (`allow.pg`: its PostgreSQL variant; elsewhere --pg is an unknown option). Anything else, and
 * --only without its value, exits 2 naming it.
 */
export function parseFlags(argv: string[], allow: { pg?: boolean } = {}): { short: boolean; keep: boolean; only: Set<string> | null; pg: boolean } {
  const usage = (msg: string): never => {
    process.stderr.write(`${msg} (try --help)\n`);
    process.exit(2);
  };
  let short = false;
  let keep = false;
  let only: Set<string> | null = null;
  let pg = false;
  const { tokens } = parseArgs({ args: argv, options: SCRIPT_FLAGS, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    // The argument as written: a positional, `--`, `--short=1`, `-x` (node splits `-xy` into letters).
    const a = t.kind === 'positional' ? t.value : argv[t.index]!;
    if (t.kind !== 'option' || (t.name !== 'only' && a !== t.rawName)) return usage(`unknown option ${a}`);
    if (t.name === 'short') short = true;
    else if (t.name === 'keep') keep = true;
    else if (t.name === 'pg' && allow.pg) pg = true;
    else if (t.name === 'only') only = new Set((t.value ?? usage('option --only needs a value')).split(',').filter(Boolean));
    else if (t.name === 'help') {
      const pgHelp = allow.pg ? ', --pg (the PostgreSQL figures: a server from KANBAN_BENCH_PG_URL or KANBAN_TEST_PG_URL, else an embedded one)' : '';
      process.stdout.write(`options: --short (quick run), --only a,b (scenarios), --keep (keep the temp dir)${pgHelp}\n`);
      process.exit(0);
    } else return usage(`unknown option ${a}`);
  }
  return { short, keep, only, pg };
}
