/**
 * The outcome of a run: per series, its rounds next to the limit measured right before each; the
 * medians; the markdown table (system, durability, tasks/s, ratio to the limit, own CPU per task)
 * and the JSON file in bench-results/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median } from '../../../test/dist/lib.js';
import type { RoundResult } from './proc.js';

export interface SeriesOutcome {
  key: string;
  label: string;
  durability: string;
  /** Why it did not run (not available here), or why it failed. */
  skipped?: string;
  error?: string;
  rounds: Array<{ limit: RoundResult; sys: RoundResult; ratio: number }>;
}

export interface Summary {
  key: string;
  label: string;
  durability: string;
  tps: number | null;
  ratio: number | null;
  /** From the first task's start to the last completion; and over the processes' whole life. */
  cpuMsPerTask: number | null;
  lifetimeCpuMsPerTask: number | null;
  cpuParts: Record<string, number>;
  roundRatios: number[];
  note?: string;
}

const perTask = (s: number, n: number) => (s / n) * 1000;
const fixed = (x: number, d: number) => x.toFixed(d);

export function summarize(outcomes: SeriesOutcome[], n: number): Summary[] {
  const limits = outcomes.flatMap((o) => o.rounds.map((r) => r.limit));
  const out: Summary[] = [];
  if (limits.length) {
    out.push({
      key: 'limit',
      label: 'plain Node spawn loop (the limit)',
      durability: 'none: no record at all',
      tps: median(limits.map((l) => l.tps)),
      ratio: 1,
      cpuMsPerTask: perTask(median(limits.map((l) => l.cpu)), n),
      lifetimeCpuMsPerTask: perTask(median(limits.map((l) => l.lifetimeCpu)), n),
      cpuParts: { 'node spawn loop': perTask(median(limits.map((l) => l.cpu)), n) },
      roundRatios: [],
      note: `${limits.length} runs, one right before each round of each series: ${fixed(Math.min(...limits.map((l) => l.tps)), 0)}–${fixed(Math.max(...limits.map((l) => l.tps)), 0)} tasks/s`,
    });
  }
  for (const o of outcomes) {
    if (o.skipped || o.error || !o.rounds.length) {
      out.push({ key: o.key, label: o.label, durability: o.durability, tps: null, ratio: null, cpuMsPerTask: null, lifetimeCpuMsPerTask: null, cpuParts: {}, roundRatios: [], note: o.skipped ? `skipped: ${o.skipped}` : `failed: ${o.error}` });
      continue;
    }
    const parts: Record<string, number> = {};
    for (const k of Object.keys(o.rounds[0]!.sys.cpuParts)) parts[k] = perTask(median(o.rounds.map((r) => r.sys.cpuParts[k] ?? 0)), n);
    out.push({
      key: o.key,
      label: o.label,
      durability: o.durability,
      tps: median(o.rounds.map((r) => r.sys.tps)),
      ratio: median(o.rounds.map((r) => r.ratio)),
      cpuMsPerTask: perTask(median(o.rounds.map((r) => r.sys.cpu)), n),
      lifetimeCpuMsPerTask: perTask(median(o.rounds.map((r) => r.sys.lifetimeCpu)), n),
      cpuParts: parts,
      roundRatios: o.rounds.map((r) => r.ratio),
    });
  }
  return out;
}

export function table(title: string, meta: string[], rows: Summary[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`### ${title}`, '', ...meta.map((m) => `- ${m}`), '', '| system | durability of the completion record | tasks/s | ÷ limit | own CPU ms/task |', '|---|---|---|---|---|'];
  for (const r of rows) {
    if (r.tps === null) {
      lines.push(`| ${esc(r.label)} | ${esc(r.durability)} | — | — | — |`);
      continue;
    }
    const split = Object.keys(r.cpuParts).length > 1 ? ` (${Object.entries(r.cpuParts).map(([k, v]) => `${k} ${fixed(v, 2)}`).join(' + ')})` : '';
    lines.push(`| ${esc(r.label)} | ${esc(r.durability)} | ${fixed(r.tps, 0)} | ${fixed(r.ratio!, 2)} | ${fixed(r.cpuMsPerTask!, 2)}${esc(split)} |`);
  }
  const notes = rows.map((r) =>
    [
      r.roundRatios.length > 1 ? `ratios per round ${r.roundRatios.map((x) => fixed(x, 2)).join(', ')}` : '',
      r.lifetimeCpuMsPerTask !== null ? `own CPU with start-up and shutdown ${fixed(r.lifetimeCpuMsPerTask, 2)} ms/task` : '',
      r.note ?? '',
    ].filter(Boolean),
  ).map((parts, i) => (parts.length ? `- ${rows[i]!.label}: ${parts.join('; ')}` : '')).filter(Boolean);
  if (notes.length) lines.push('', 'Notes:', ...notes);
  return `${lines.join('\n')}\n`;
}

export function writeJson(dir: string, meta: Record<string, unknown>, rows: Summary[], outcomes: SeriesOutcome[]): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `peers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ kind: 'bench-peers', ...meta, rows, rounds: outcomes }, null, 2)}\n`);
  return file;
}
