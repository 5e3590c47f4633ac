/**
 * `npm run bench` and `npm run bench -- --short`: what the supervisor costs, side by side with the
 * physical limit measured in the same run; the entry is ../bench.ts. Prints each figure with its
 * target and PASS/MISS (a miss is printed, never hidden), then a markdown table, and writes the same
 * figures as JSON to bench-results/bench-<timestamp>.json. Exit status 0 unless a measurement could
 * not be made.
 *
 *   node test/dist/bench.js [--short] [--only throughput,exit-skill,latency,flat,overhead,channel,python,fleet,load,reclaim,metrics,web,retention] [--keep]
 *   node test/dist/bench.js --pg [--short] [--only latency,flat,throughput] [--keep]
 *
 * `--pg` runs the PostgreSQL figures instead (and only them: the SQLite run stays as it is without
 * it): dispatch latency across hosts, flat cost at 1,000,000 finished tasks, and 3 supervisors ÷ 1
 * (pg-*.ts, on a server from pg-setup.ts, loaded only for --pg). Their JSON file is
 * bench-results/bench-pg-<timestamp>.json.
 *
 * This module holds the order of the benchmarks (one module each in this folder) and the table;
 * setup.ts holds the flags, the sizes and what the benchmarks share.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { ROOT, fmt, gitRev, machine, machineLine, runParts } from '../lib.js';
import { benchExitSkill } from './exit-skill.js';
import { benchChannel } from './channel.js';
import { benchFlat } from './flat.js';
import { benchFleet } from './fleet.js';
import { benchLatency } from './latency.js';
import { benchLoad } from './load.js';
import { benchMetrics } from './metrics.js';
import { benchOverhead } from './overhead.js';
import { benchPython, benchPythonFleet } from './python.js';
import { benchReclaim } from './reclaim.js';
import { benchRetention } from './retention.js';
import { PG, SHORT, h, res, status, want } from './setup.js';
import { benchThroughput } from './throughput.js';
import { benchWeb } from './web.js';

const loadLine = () => loadavg().map((x) => x.toFixed(1)).join(' ');

async function main(): Promise<number> {
  const t0 = Date.now();
  const load0 = loadLine();
  const flags = [PG ? '--pg' : '', SHORT ? '--short' : ''].filter(Boolean).join(' ');
  process.stdout.write(`kanban-supervisor bench ${flags ? `${flags} ` : ''}· ${machineLine()} · temp ${h.root}\n`);
  const parts: Array<[string, string, () => Promise<void>]> = PG
    ? await pgParts()
    : [
        ['throughput', 'throughput', benchThroughput],
        ['exit-skill', 'exit-code skill throughput', benchExitSkill],
        ['latency', 'dispatch latency', benchLatency],
        ['flat', 'flat cost in board size', benchFlat],
        ['overhead', 'supervisor overhead and heartbeat latency', benchOverhead],
        ['channel', 'the report channel: throughput channel vs direct, heartbeats by batching window', benchChannel],
        ['python', 'the Python runtime: one heartbeat through the channel vs the worker CLI, a worker\'s memory', async () => {
          await benchPython();
          await benchPythonFleet();
        }],
        ['fleet', 'fleet scale: N workers heartbeating at 1 Hz through the channel, with churn, start-up included', benchFleet],
        ['load', 'under load: churn, supervisor restarts', benchLoad],
        ['reclaim', 'reclaim precision', benchReclaim],
        ['metrics', '/metrics scrape at 100,000 tasks', benchMetrics],
        ['web', 'web board first render', benchWeb],
        ['retention', 'retention: prune 1,000,000 finished tasks under 64 heartbeating workers', benchRetention],
      ];
  const { timing, failed: partFailed } = await runParts(res, parts, want, { figure: 'measurement ran to the end', hard: false });
  if (partFailed) status.failed = true;
  const seconds = (Date.now() - t0) / 1000;
  const misses = res.misses();
  res.notes.push(misses.length ? `${misses.length} target(s) missed: ${misses.map((r) => `${r.scenario} / ${r.figure}`).join('; ')}` : 'every target met');
  const server = PG ? await (await import('./pg-setup.js')).pgLabel() : null;
  const meta = [
    `command: \`npm run bench${flags ? ` -- ${flags}` : ''}\` · ${fmt(seconds)} s · commit ${gitRev()} · ${new Date().toISOString()}`,
    PG
      ? `machine: ${machineLine()}; load average ${load0} at the start, ${loadLine()} at the end; server: ${server ?? 'not started'}; supervisors' state folders and workers in ${h.root.split('/').slice(0, -1).join('/') || '/'}`
      : `machine: ${machineLine()}; board and workers in ${h.root.split('/').slice(0, -1).join('/') || '/'} (synchronous=FULL)`,
  ];
  process.stdout.write(`\n${res.table(`kanban-supervisor bench${PG ? ' --pg' : ''}${SHORT ? ' (--short)' : ''}`, meta)}`);
  const file = res.writeJson(join(ROOT, 'bench-results'), PG ? 'bench-pg' : 'bench', {
    kind: PG ? 'bench-pg' : 'bench',
    short: SHORT,
    ...(PG ? { server } : {}),
    seconds,
    partSeconds: timing,
    machine: machine(),
    commit: gitRev(),
    at: new Date().toISOString(),
  });
  process.stdout.write(`\nJSON: ${file}\n`);
  return status.failed ? 1 : 0;
}

/** The PostgreSQL parts (--pg), loaded only then: the SQLite run never loads the driver. */
async function pgParts(): Promise<Array<[string, string, () => Promise<void>]>> {
  const [{ benchPgLatency }, { benchPgFlat }, { benchPgThroughput }] = await Promise.all([import('./pg-latency.js'), import('./pg-flat.js'), import('./pg-throughput.js')]);
  return [
    ['latency', 'dispatch latency across hosts (PostgreSQL)', benchPgLatency],
    ['flat', 'flat cost in board size (PostgreSQL)', benchPgFlat],
    ['throughput', 'throughput, 3 supervisors vs 1 (PostgreSQL)', benchPgThroughput],
  ];
}

const code = await main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  return 1;
});
await h.cleanup();
process.exit(code);

