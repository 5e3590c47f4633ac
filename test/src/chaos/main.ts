/**
 * `npm run chaos` (about half an hour on 2 CPUs) and `npm run chaos -- --short` (about 3½ minutes,
 * CI); the entry is ../chaos.ts. `--pg` runs the PostgreSQL part alone (three hosts on one
 * PostgreSQL board, pg.ts: 20 minutes or more on 2 CPUs, its ~3,300 Node workers take ~0.4 s of CPU
 * each to start; with --short about 90 s).
 *
 * Real supervisors, real workers, real signals, in a temp folder. Each scenario prints its figures
 * with their targets as it goes; at the end a markdown table (paste it into an issue) and the same
 * figures as JSON in chaos-results/chaos-<timestamp>.json. Exit status 1 when a hard invariant
 * (board integrity, lost writes or tasks, two live workers, double completion, leaks) fails.
 *
 *   node test/dist/chaos.js [--short] [--pg] [--only storm,restart,channel,crash,tree,damage,load,pg] [--keep]
 *
 * This module holds the order of the scenarios (one module each in this folder), the final leak
 * check and the table; setup.ts holds the flags, the sizes and what the scenarios share.
 */
import { join } from 'node:path';
import { ROOT, fmt, gitRev, machine, machineLine, runParts, sleep } from '../lib.js';
import { scenarioChannel } from './channel.js';
import { scenarioCrash } from './crash.js';
import { scenarioDamage } from './damage.js';
import { finalLeaks } from './leaks.js';
import { scenarioLoad } from './load.js';
import { scenarioRestart } from './restart.js';
import { scenarioPg } from './pg.js';
import { PG_ONLY, SHORT, h, res, want } from './setup.js';
import { scenarioStorm } from './storm.js';
import { scenarioTree } from './tree.js';

async function main(): Promise<number> {
  const t0 = Date.now();
  const flags = `${SHORT ? '--short ' : ''}${PG_ONLY ? '--pg ' : ''}`;
  process.stdout.write(`kanban-supervisor chaos ${flags}· ${machineLine()} · temp ${h.root}\n`);
  const scenarios: Array<[string, string, () => Promise<void>]> = [
    ['storm', 'worker SIGKILL storm', scenarioStorm],
    ['restart', 'supervisor SIGKILL/restart', scenarioRestart],
    ['channel', 'supervisor SIGKILLed while workers report (report channel)', scenarioChannel],
    ['crash', 'spawn-crash loops', scenarioCrash],
    ['tree', 'leaks', scenarioTree],
    ['damage', 'damage', scenarioDamage],
    ['load', 'heartbeats and memory under load', scenarioLoad],
    ['pg', 'PostgreSQL board, 3 hosts', scenarioPg],
  ];
  const { timing } = await runParts(res, scenarios, want, { figure: 'scenario ran to the end', hard: true });
  await sleep(500);
  process.stdout.write('\n== leaks (after everything)\n');
  finalLeaks();
  const seconds = (Date.now() - t0) / 1000;
  const meta = [
    `command: \`npm run chaos${flags ? ` -- ${flags.trim()}` : ''}\` · ${fmt(seconds)} s · commit ${gitRev()} · ${new Date().toISOString()}`,
    `machine: ${machineLine()}`,
  ];
  const hard = res.hardFailures();
  const misses = res.misses();
  res.notes.push(
    hard.length
      ? `${hard.length} hard invariant(s) failed: ${hard.map((r) => `${r.scenario} / ${r.figure}`).join('; ')}`
      : `hard invariants: all held${misses.length ? `; ${misses.length} soft target(s) missed` : ''}`,
  );
  const table = res.table(`kanban-supervisor chaos${flags ? ` (${flags.trim()})` : ''}`, meta);
  process.stdout.write(`\n${table}`);
  const file = res.writeJson(join(ROOT, 'chaos-results'), 'chaos', { kind: 'chaos', short: SHORT, pg: PG_ONLY, seconds, scenarioSeconds: timing, machine: machine(), commit: gitRev(), at: new Date().toISOString() });
  process.stdout.write(`\nJSON: ${file}\n`);
  return hard.length ? 1 : 0;
}

const code = await main().catch((e: unknown) => {
  process.stderr.write(`chaos: ${(e as Error).stack ?? String(e)}\n`);
  return 1;
});
await h.cleanup();
process.exit(code);

