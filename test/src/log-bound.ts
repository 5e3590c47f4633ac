/**
 * Measure how far a run's log can exceed LOG_MAX_BYTES: a real supervisor runs one worker that
 * floods its log (test/fixtures/logs/flood.mjs) and records, after each 64 KiB write, the size its
 * log reached. Prints, per rate: the writer's actual rate, the largest size the log reached, the
 * overshoot above the bound, and the log's size once the run ended.
 *
 *   npm run build --silent && node test/dist/log-bound.js [TOTAL_MB=1000] [RATES_MBPS=0,100] [RUNS=3]
 *
 * Rate 0 is full speed (the same 64 KiB written again and again). The overshoot is what the run's processes write in one check interval
 * (LOG_CHECK_INTERVAL_MS in supervisor/src/services/log-bound.ts) plus any stall of the supervisor's event loop.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'supervisor/dist/cli.js');
const FLOOD = join(ROOT, 'test/fixtures/logs/flood.mjs');
const MiB = 1024 * 1024;
const BOUND = MiB;

const totalMb = Number(process.argv[2] ?? 1000);
const rates = (process.argv[3] ?? '0,100').split(',').map(Number);
const runs = Number(process.argv[4] ?? 3);

async function once(rate: number): Promise<{ mbps: number; peak: number; final: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ks-logbound-'));
  try {
    const db = join(dir, 'board', 'kanban.db');
    const stats = join(dir, 'stats.jsonl');
    const cli = (args: string[]) => execFileSync(process.execPath, [CLI, '--db', db, ...args], { encoding: 'utf8' });
    cli(['skill', 'add', 'flood', '--', process.execPath, FLOOD, stats, String(totalMb), String(rate), '600', ...(rate === 0 ? ['raw'] : [])]);
    cli(['add', '--skill', 'flood']);
    const sup = spawn(process.execPath, [CLI, '--db', db, 'run', '--until-idle'], {
      env: { ...process.env, LOG_MAX_BYTES: String(BOUND), TICK_INTERVAL_MS: '100', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await new Promise((r) => sup.once('exit', r));
    const s = JSON.parse(readFileSync(stats, 'utf8').trim()) as { peak: number; mbps: number };
    const logs = join(dir, 'board', 'logs');
    const final = statSync(join(logs, readdirSync(logs)[0]!)).size;
    return { mbps: s.mbps, peak: s.peak, final };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mb = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
console.log(`LOG_MAX_BYTES=${BOUND} (${mb(BOUND)}), ${totalMb} MiB written per run`);
for (const rate of rates) {
  for (let i = 0; i < runs; i++) {
    const r = await once(rate);
    console.log(
      `rate ${rate === 0 ? 'full speed' : `${rate} MiB/s`}: wrote at ${r.mbps.toFixed(0)} MiB/s, log peak ${mb(r.peak)}, overshoot ${mb(r.peak - BOUND)}` +
        ` (= ${((r.peak - BOUND) / MiB / r.mbps * 1000).toFixed(0)} ms of writing), final ${mb(r.final)}`,
    );
  }
}
