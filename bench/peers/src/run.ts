/**
 * The run of `npm run bench:peers`: start what the chosen series need, then rounds; in each round
 * every series runs once (in an order rotated from round to round), each right after a run of the
 * plain limit, so that both see the same moment of this shared machine. Prints the table, writes
 * the JSON, stops every server and process it started (also on ^C, an error or the deadline: the
 * Harness).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname, loadavg } from 'node:os';
import { join } from 'node:path';
import { Harness, ROOT, fmt, gitRev, machine, machineLine } from '../../../test/dist/lib.js';
import { SERIES, type PeersFlags } from './flags.js';
import { ksFeatures, ksSeries } from './ks.js';
import { bullmqSeries, graphileSeries, type Series } from './peers.js';
import { DIST, limitRound, type Ctx } from './proc.js';
import { summarize, table, writeJson, type SeriesOutcome } from './report.js';

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(DIST, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

function nproc(): string {
  try {
    return execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

const loadLine = () => loadavg().map((x) => x.toFixed(1)).join(' ');

export async function runPeers(flags: PeersFlags): Promise<number> {
  const t0 = Date.now();
  const load0 = loadLine();
  const h = new Harness({ prefix: 'ks-peers-', keep: flags.keep, deadlineMs: (flags.short ? 15 : 60) * 60_000 });
  const ctx: Ctx = { h, n: flags.short ? 100 : 400, conc: 4 };
  const rounds = flags.short ? 1 : 3;
  const at = new Date().toISOString();
  process.stdout.write(
    `kanban-supervisor bench:peers${flags.short ? ' --short' : ''} · host ${hostname()} (nproc ${nproc()}) · ${machineLine()} · commit ${gitRev()} · ${at}\n` +
      `  ${ctx.n} tasks per round, concurrency ${ctx.conc}, ${rounds} round(s); temp ${h.root}\n`,
  );
  const bullmq = pkgVersion('bullmq');
  const graphile = pkgVersion('graphile-worker');
  const outcomes: SeriesOutcome[] = [];
  const active: Array<{ series: Series; out: SeriesOutcome }> = [];
  let failed = false;
  try {
    for (const key of flags.series) {
      const info = SERIES.find((s) => s.key === key)!;
      const series = key.startsWith('bullmq-')
        ? bullmqSeries(ctx, key, key === 'bullmq-always' ? 'always' : 'everysec')
        : key === 'graphile'
          ? graphileSeries(ctx, key)
          : ksSeries(ctx, key);
      const out: SeriesOutcome = { key, label: info.label, durability: info.durability, rounds: [] };
      outcomes.push(out);
      let why: string | null;
      try {
        why = await series.prepare();
      } catch (e) {
        why = null;
        out.error = (e as Error).message;
        failed = true;
        process.stdout.write(`  FAILED ${key}: ${out.error}\n`);
        continue;
      }
      if (why) {
        out.skipped = why;
        process.stdout.write(`  skipped ${key}: ${why}\n`);
        continue;
      }
      const about = series.about();
      if (key.startsWith('bullmq-')) out.label = `BullMQ ${bullmq} + ${about.split(' (')[0]}, appendfsync ${key === 'bullmq-always' ? 'always' : 'everysec'}`;
      if (key === 'graphile') out.label = `graphile-worker ${graphile} + ${/PostgreSQL [\d.]+/.exec(about)?.[0] ?? 'PostgreSQL'}`;
      active.push({ series, out });
    }
    // The binaries in the page cache before the first measured run.
    await limitRound({ ...ctx, n: Math.min(20, ctx.n) }, 'limit-warm');
    for (let round = 0; round < rounds; round++) {
      const order = active.map((_, i) => active[(i + round) % active.length]!);
      for (const { series, out } of order) {
        if (out.error) continue;
        try {
          const limit = await limitRound(ctx, `limit-${series.key}-${round}`);
          const sys = await series.round(round);
          if (sys.label) out.label = sys.label;
          if (sys.durability) out.durability = sys.durability;
          out.rounds.push({ limit, sys, ratio: sys.tps / limit.tps });
          process.stdout.write(
            `  round ${round + 1}/${rounds} ${series.key.padEnd(16)} ${fmt(sys.tps, 0).padStart(5)} tasks/s ÷ limit ${fmt(limit.tps, 0)} = ${fmt(sys.tps / limit.tps, 2)}; own CPU ${fmt((sys.cpu / ctx.n) * 1000, 2)} ms/task\n`,
          );
        } catch (e) {
          out.error = (e as Error).message;
          failed = true;
          process.stdout.write(`  FAILED ${series.key} (round ${round + 1}): ${out.error}\n`);
        }
      }
    }
    const abouts = active.map((a) => a.series.about()).filter(Boolean);
    const seconds = (Date.now() - t0) / 1000;
    const features = ksFeatures();
    const meta = [
      `command: \`npm run bench:peers${flags.short ? ' -- --short' : ''}\` · ${fmt(seconds, 0)} s · commit ${gitRev()} · ${at}`,
      `host ${hostname()}, nproc ${nproc()}: ${machineLine()}; load average ${load0} at the start, ${loadLine()} at the end`,
      `${ctx.n} tasks per round, each one process running \`sh -c 'exit 0'\`, concurrency ${ctx.conc}; median of ${rounds} round(s), each series right after its own run of the limit (a plain Node spawn loop of the same tasks in a process of its own)`,
      'own CPU: the system\'s own processes only (BullMQ: the node worker + redis-server; graphile-worker: the node worker + every postgres process; kanban-supervisor: the supervisor process; the tasks\' processes are not counted), from the first task\'s start to the last completion (/proc utime + stime, read every 20 ms); the notes give it with the start-up and shutdown of the worker or supervisor process',
      ...[...new Set(abouts)].map((a) => `server: ${a}`),
      `this build: exit-code skills ${features.exitSkills ? 'yes' : 'no'}, report channel ${features.channel ? 'yes' : 'no'}`,
    ];
    const rows = summarize(outcomes, ctx.n);
    process.stdout.write(`\n${table(`kanban-supervisor and its peers${flags.short ? ' (--short)' : ''}`, meta, rows)}`);
    const file = writeJson(join(ROOT, 'bench-results'), { short: flags.short, n: ctx.n, conc: ctx.conc, rounds, seconds, machine: { ...machine(), nproc: nproc() }, commit: gitRev(), at, meta }, rows, outcomes);
    process.stdout.write(`\nJSON: ${file}\n`);
  } catch (e) {
    failed = true;
    process.stderr.write(`bench:peers: ${(e as Error).stack ?? String(e)}\n`);
  } finally {
    await h.cleanup();
  }
  return failed ? 1 : 0;
}
