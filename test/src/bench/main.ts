/**
 * `npm run bench` and `npm run bench -- --short`: what the supervisor costs, side by side with the
 * physical limit measured in the same run; the entry is ../bench.ts. Prints each figure with its
 * target and PASS/MISS (a miss is printed, never hidden), then a markdown table, and writes the same
 * figures as JSON to bench-results/bench-<timestamp>.json. Exit status 0 unless a measurement could
 * not be made.
 *
 *   node test/dist/bench.js [--short] [--only throughput,latency,flat,overhead,load,reclaim] [--keep]
 *
 * This module holds the order of the benchmarks (one module each in this folder) and the table;
 * setup.ts holds the flags, the sizes and what the benchmarks share.
 */
import { join } from 'node:path';
import { ROOT, fmt, gitRev, machine, machineLine, runParts } from '../lib.js';
import { benchFlat } from './flat.js';
import { benchLatency } from './latency.js';
import { benchLoad } from './load.js';
import { benchOverhead } from './overhead.js';
import { benchReclaim } from './reclaim.js';
import { SHORT, h, res, status, want } from './setup.js';
import { benchThroughput } from './throughput.js';

async function main(): Promise<number> {
  const t0 = Date.now();
  process.stdout.write(`kanban-supervisor bench ${SHORT ? '--short ' : ''}· ${machineLine()} · temp ${h.root}\n`);
  const parts: Array<[string, string, () => Promise<void>]> = [
    ['throughput', 'throughput', benchThroughput],
    ['latency', 'dispatch latency', benchLatency],
    ['flat', 'flat cost in board size', benchFlat],
    ['overhead', 'supervisor overhead and heartbeat latency', benchOverhead],
    ['load', 'under load: churn, supervisor restarts', benchLoad],
    ['reclaim', 'reclaim precision', benchReclaim],
  ];
  const { timing, failed: partFailed } = await runParts(res, parts, want, { figure: 'measurement ran to the end', hard: false });
  if (partFailed) status.failed = true;
  const seconds = (Date.now() - t0) / 1000;
  const misses = res.misses();
  res.notes.push(misses.length ? `${misses.length} target(s) missed: ${misses.map((r) => `${r.scenario} / ${r.figure}`).join('; ')}` : 'every target met');
  const meta = [
    `command: \`npm run bench${SHORT ? ' -- --short' : ''}\` · ${fmt(seconds)} s · commit ${gitRev()} · ${new Date().toISOString()}`,
    `machine: ${machineLine()}; board and workers in ${h.root.split('/').slice(0, -1).join('/') || '/'} (synchronous=FULL)`,
  ];
  process.stdout.write(`\n${res.table(`kanban-supervisor bench${SHORT ? ' (--short)' : ''}`, meta)}`);
  const file = res.writeJson(join(ROOT, 'bench-results'), 'bench', { kind: 'bench', short: SHORT, seconds, partSeconds: timing, machine: machine(), commit: gitRev(), at: new Date().toISOString() });
  process.stdout.write(`\nJSON: ${file}\n`);
  return status.failed ? 1 : 0;
}

const code = await main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  return 1;
});
await h.cleanup();
process.exit(code);

