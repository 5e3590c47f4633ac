/**
 * `npm run bench:peers`: kanban-supervisor side by side with BullMQ and graphile-worker on the same
 * workload (see flags.ts for the flags, run.ts for the run). The flags are parsed before anything
 * heavy is loaded, so --help and a wrong flag answer at once, without the peers' packages; then
 * the peers' packages are installed when needed (deps.ts).
 */
import { ensureDeps } from './deps.js';
import { parseFlags } from './flags.js';

const flags = parseFlags(process.argv.slice(2));
if (flags.series.some((k) => k.startsWith('bullmq') || k === 'graphile')) ensureDeps();
const { runPeers } = await import('./run.js');
process.exit(await runPeers(flags));
