/**
 * What the chaos and benchmark scripts report: the numbers (random draws, quantiles, formatting),
 * result rows with their targets and verdicts, the printed markdown table and the JSON file, the
 * machine and commit they ran on, and runParts, which runs the selected parts in order and turns an
 * error in one into a failed row.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './common.js';

// ---------------------------------------------------------------------------- numbers

export const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i]!;
}

export const median = (xs: number[]) => quantile(xs, 0.5);

export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n) && Math.abs(n) >= 1000) return n.toLocaleString('en-US');
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

// ---------------------------------------------------------------------------- results

export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'SKIP';

export interface Row {
  scenario: string;
  figure: string;
  value: string;
  /** The number behind `value` (for JSON), if any. */
  number?: number | null;
  target: string;
  verdict: Verdict;
  /** A hard invariant (integrity, lost writes, double workers, leaks): a MISS fails the run. */
  hard: boolean;
  note?: string;
}

export class Results {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  readonly extra: Record<string, unknown> = {};

  add(r: Omit<Row, 'hard' | 'verdict'> & { hard?: boolean; pass?: boolean | null; verdict?: Verdict }): Row {
    const verdict: Verdict = r.verdict ?? (r.pass === null || r.pass === undefined ? 'INFO' : r.pass ? 'PASS' : 'MISS');
    const row: Row = { scenario: r.scenario, figure: r.figure, value: r.value, number: r.number ?? null, target: r.target, verdict, hard: r.hard ?? false };
    if (r.note) row.note = r.note;
    this.rows.push(row);
    const tag = verdict === 'MISS' && row.hard ? 'MISS (hard)' : verdict;
    process.stdout.write(`  ${tag.padEnd(11)} ${row.scenario}: ${row.figure} = ${row.value} (target ${row.target})${row.note ? ` — ${row.note}` : ''}\n`);
    return row;
  }

  hardFailures(): Row[] {
    return this.rows.filter((r) => r.hard && r.verdict === 'MISS');
  }

  misses(): Row[] {
    return this.rows.filter((r) => r.verdict === 'MISS');
  }

  /** A markdown table a user can paste into an issue. */
  table(title: string, meta: string[]): string {
    const esc = (s: string) => s.replace(/\|/g, '\\|');
    const out = [`### ${title}`, '', ...meta.map((m) => `- ${m}`), '', '| scenario | figure | value | target | result |', '|---|---|---|---|---|'];
    for (const r of this.rows) {
      const tag = r.verdict === 'MISS' && r.hard ? '**MISS (hard)**' : r.verdict === 'MISS' ? '**MISS**' : r.verdict;
      out.push(`| ${esc(r.scenario)} | ${esc(r.figure)} | ${esc(r.value)} | ${esc(r.target)} | ${tag} |`);
    }
    const notes = this.rows.filter((r) => r.note).map((r) => `- ${r.scenario} / ${r.figure}: ${r.note}`);
    if (notes.length || this.notes.length) out.push('', 'Notes:', ...notes, ...this.notes.map((n) => `- ${n}`));
    return out.join('\n') + '\n';
  }

  writeJson(dir: string, kind: string, meta: Record<string, unknown>): string {
    mkdirSync(dir, { recursive: true });
    const ts = new Date().toISOString().replace(/[:.]/g, '-');
    const file = join(dir, `${kind}-${ts}.json`);
    writeFileSync(file, JSON.stringify({ ...meta, rows: this.rows, notes: this.notes, details: this.extra }, null, 2) + '\n');
    return file;
  }
}

export function machine(): Record<string, unknown> {
  let kernel = '';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    /* not Linux */
  }
  return {
    host: hostname(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    kernel,
  };
}

export function machineLine(): string {
  const m = machine();
  return `${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}`;
}

export function gitRev(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
  const d = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' });
  return `${String(r.stdout ?? '').trim() || '?'}${String(d.stdout ?? '').trim() ? ' (with uncommitted changes)' : ''}`;
}

// ---------------------------------------------------------------------------- parts of a run

/**
 * Run the named parts in order (those `want` selects), each guarded: an error becomes a failed row
 * (`figure`, hard or not) instead of ending the run. Prints a heading and the time of each part.
 */
export async function runParts(
  res: Results,
  parts: Array<[key: string, title: string, fn: () => Promise<void>]>,
  want: (key: string) => boolean,
  onError: { figure: string; hard: boolean },
): Promise<{ timing: Record<string, number>; failed: boolean }> {
  const timing: Record<string, number> = {};
  let failed = false;
  for (const [key, title, fn] of parts) {
    if (!want(key)) continue;
    const s0 = Date.now();
    process.stdout.write(`\n== ${title}\n`);
    try {
      await fn();
    } catch (e) {
      failed = true;
      res.add({ scenario: title, figure: onError.figure, value: `error: ${(e as Error).message.split('\n')[0]}`, target: 'no error', pass: false, hard: onError.hard });
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    }
    timing[key] = (Date.now() - s0) / 1000;
    process.stdout.write(`   (${fmt(timing[key]!)} s)\n`);
  }
  return { timing, failed };
}
