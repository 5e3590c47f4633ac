/**
 * What each process backend costs, measured side by side on this machine (Linux: the portable path
 * is forced with the Reaper's `fallback` option, exactly as KANBAN_REAPER_FALLBACK=1 does):
 *
 *  - sampling 64 workers: the /proc sample vs the portable sample() (never blocks: it answers from
 *    pidusage's readings) and the pidusage refresh behind it, under /proc and through `ps` (the
 *    path macOS takes);
 *  - the identity table: one /proc scan vs one `ps` through execa (the source where /proc is missing);
 *  - terminating a tree of 64 processes outside the worker's group (a wide one and a 16-deep chain):
 *    the /proc walk with pidfd signals vs tree-kill, from the terminate() call until nothing is left;
 *  - a helper process through execa vs child_process.execFile.
 *
 *   npm run build && node test/dist/fallback-cost.js [--rounds N]
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Reaper, processTable, psProcessTable, runHelper, runHelperSync, type ProcessIdentity } from '@kanban-supervisor/reaper';
import { ROOT, fmt, machineLine, median, sleep } from './lib.js';

// The reaper's own copies of its dependencies, measured directly.
const reaperRequire = createRequire(join(ROOT, 'reaper/package.json'));
const pidusage = reaperRequire('pidusage') as ((pids: number[], opts?: { maxage?: number; usePs?: boolean }) => Promise<unknown>) & { clear(): void };
const treeKill = reaperRequire('tree-kill') as (pid: number, signal: string, cb: (err?: Error) => void) => void;

/** A bad argument: the message (naming the flag) and exit 2. */
function usage(msg: string): never {
  process.stderr.write(`fallback-cost: ${msg}\n`);
  process.exit(2);
}
let roundsArg: string | undefined;
try {
  roundsArg = parseArgs({ options: { rounds: { type: 'string' } } }).values.rounds;
} catch (e) {
  usage((e as Error).message.split('\n')[0]!);
}
const ROUNDS = roundsArg !== undefined ? Number(roundsArg) : 7;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) usage(`--rounds must be a positive whole number, got ${JSON.stringify(roundsArg)}`);
if (process.platform !== 'linux') throw new Error('this comparison needs /proc (Linux): it measures both backends on one machine');

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
const quiet = { warn: () => {}, info: () => {} };
const tmpDir = mkdtempSync(join(tmpdir(), 'ks-fallback-cost-'));
const log = join(tmpDir, 'w.log');
const fast = new Reaper({ logger: quiet });
const portable = new Reaper({ logger: quiet, fallback: true });
if (fast.procBackend !== 'linux-proc') throw new Error(`the fast path is not available here (${fast.procBackendReason})`);
const rows: Array<[string, string]> = [];
const row = (what: string, value: string) => {
  rows.push([what, value]);
  console.log(`${what.padEnd(72)} ${value}`);
};
const ms = (xs: number[]) => `${fmt(median(xs), 2)} ms (median of ${xs.length}; max ${fmt(Math.max(...xs), 2)})`;

function live(pid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const st = s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
    return st !== 'Z' && st !== 'X';
  } catch {
    return false;
  }
}
async function spawnWorker(r: Reaper, script: string): Promise<ProcessIdentity> {
  const res = await r.spawn({ argv: ['bash', '-c', script], env: ENV, logPath: log });
  if (!res.ok) throw new Error(`${res.code}: ${res.message}`);
  return res.identity;
}
/** Every process of the host whose ancestry leads to `root` (by /proc), root included. */
function treeOf(root: number): number[] {
  const t = processTable();
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const s of t.values()) if (s.ppid === out[i] && s.state !== 'Z') out.push(s.pid);
  return out;
}
async function waitFor(fn: () => boolean, timeoutMs = 20_000, what = 'a condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

console.log(`fallback-cost: ${machineLine()}, ${readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length} processes on the host, ${ROUNDS} rounds\n`);

// ------------------------------------------------------------------ sampling 64 workers
{
  const ids: ProcessIdentity[] = [];
  for (let i = 0; i < 64; i++) ids.push(await spawnWorker(fast, 'exec sleep 600'));
  const pids = ids.map((i) => i.pid);
  await sleep(300);
  const t = (fn: () => void) => {
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  };
  fast.sample(ids);
  const procSample = Array.from({ length: ROUNDS * 3 }, () => t(() => fast.sample(ids)));
  row('sample 64 workers, linux-proc: sample() (blocks: /proc scan + stats)', ms(procSample));
  await portable.sampleNow(ids);
  const portSync = Array.from({ length: ROUNDS * 3 }, () => t(() => portable.sample(ids)));
  row('sample 64 workers, portable: sample() (blocks: table scan, no pidusage)', ms(portSync));
  pidusage.clear(); // (leaks the descriptors of the history it drops: measurement only)
  const first: number[] = [];
  const steady: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    pidusage.clear();
    let t0 = performance.now();
    await pidusage(pids, { maxage: 15_000 });
    first.push(performance.now() - t0);
    t0 = performance.now();
    await pidusage(pids, { maxage: 15_000 });
    steady.push(performance.now() - t0);
  }
  row('  pidusage refresh of 64 pids under /proc: first reading (opens 64 fds)', ms(first));
  row('  pidusage refresh of 64 pids under /proc: later readings (async, wall)', ms(steady));
  const viaPs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    await pidusage(pids, { usePs: true, maxage: 15_000 });
    viaPs.push(performance.now() - t0);
  }
  row('  pidusage refresh of 64 pids through one `ps` (the macOS path)', ms(viaPs));
  const procScan = Array.from({ length: ROUNDS * 3 }, () => t(() => processTable()));
  row('identity table: one /proc scan (linux-proc and portable on Linux)', ms(procScan));
  const psScan = Array.from({ length: ROUNDS * 3 }, () => t(() => psProcessTable()));
  row('identity table: one `ps -A` through execa (where /proc is missing)', ms(psScan));
  for (const id of ids) fast.terminate(id, 0, 0);
  await waitFor(() => pids.every((p) => !live(p)));
  for (const id of ids) fast.terminate(id, 0);
  fast.drainExits();
  portable.sample([]);
}

// ------------------------------------------------------------------ terminating a tree of 64
/**
 * A worker (TERM-ignoring) with a tree of 64 processes outside its group: a setsid'd root with
 * `fan` children, each with `per` grandchildren (wide), or a chain 16 deep whose links each hold 3
 * sleeps (deep). Everything in it dies on SIGTERM.
 */
function treeScript(shape: 'wide' | 'deep'): { script: string; size: number } {
  if (shape === 'wide') {
    // 1 root + 7 children + 7 × 8 grandchildren = 64
    const child = `bash -c 'for j in 1 2 3 4 5 6 7 8; do sleep 600 & done; wait'`;
    const root = `for i in 1 2 3 4 5 6 7; do ${child.replace(/'/g, `'\\''`)} & done; wait`;
    return { script: `setsid bash -c '${root}' & trap "" TERM; while :; do sleep 0.05; done`, size: 64 };
  }
  // a chain of 16 bash links, each with 3 sleeps: 16 × 4 = 64
  const chain = join(tmpDir, 'chain.sh');
  writeFileSync(chain, '#!/bin/bash\nif [ "$1" -gt 1 ]; then "$0" $(($1 - 1)) & fi\nsleep 600 & sleep 600 & sleep 600 & wait\n', { mode: 0o755 });
  return { script: `setsid ${chain} 16 & trap "" TERM; while :; do sleep 0.05; done`, size: 64 };
}

for (const shape of ['wide', 'deep'] as const) {
  const { script, size } = treeScript(shape);
  for (const [name, r] of [
    ['linux-proc (/proc walk, pidfd signals)', fast],
    ['portable (group kill, then tree-kill)', portable],
  ] as const) {
    const call: number[] = [];
    const gone: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const id = await spawnWorker(r, script);
      let tree: number[] = [];
      await waitFor(() => (tree = treeOf(id.pid)).length >= size + 1, 30_000);
      const outside = tree.filter((p) => p !== id.pid);
      r.sample([id]); // a sample sees the tree (what the supervisor does every 5 s)
      const t0 = performance.now();
      r.terminate(id, 60_000);
      call.push(performance.now() - t0);
      await waitFor(() => outside.every((p) => !live(p)), 30_000, `${name}: the end of ${outside.filter(live).map((p) => `${p} ${processTable().get(p)?.comm}`).join(', ')}`);
      gone.push(performance.now() - t0);
      r.terminate(id, 0); // past the grace: SIGKILL for the TERM-ignoring leader
      await waitFor(() => !live(id.pid));
      await waitFor(() => r.terminate(id, 0).phase === 'gone');
      r.drainExits();
    }
    row(`terminate ${size} outside the group (${shape}), ${name}: the call`, ms(call));
    row(`terminate ${size} outside the group (${shape}), ${name}: until all gone`, ms(gone));
  }
  // tree-kill alone, from the root, for scale
  const alone: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const id = await spawnWorker(fast, script);
    let tree: number[] = [];
    await waitFor(() => (tree = treeOf(id.pid)).length >= size + 1, 30_000);
    const root = tree.find((p) => p !== id.pid && processTable().get(p)?.ppid === id.pid && processTable().get(p)?.pgid !== id.pgid)!;
    const t0 = performance.now();
    await new Promise<void>((resolve) => treeKill(root, 'SIGTERM', () => resolve()));
    alone.push(performance.now() - t0);
    fast.terminate(id, 0, 0);
    await waitFor(() => fast.terminate(id, 0).phase === 'gone');
    fast.drainExits();
  }
  row(`  tree-kill of that tree alone (${shape}: its ps walk and the kills, wall)`, ms(alone));
}

// ------------------------------------------------------------------ helpers: execa vs execFile
{
  const viaExecFile: number[] = [];
  const viaExeca: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = performance.now();
    await new Promise<void>((resolve, reject) => execFile(process.execPath, ['-e', ''], (err) => (err ? reject(err) : resolve())));
    viaExecFile.push(performance.now() - t0);
    t0 = performance.now();
    const res = await runHelper(process.execPath, ['-e', ''], { timeoutMs: 60_000 });
    if (!res.ok) throw new Error(res.error);
    viaExeca.push(performance.now() - t0);
  }
  row('helper `node -e ""`: child_process.execFile', ms(viaExecFile));
  row('helper `node -e ""`: runHelper (execa)', ms(viaExeca));
  const syncExecFile: number[] = [];
  const syncExeca: number[] = [];
  for (let r = 0; r < ROUNDS * 3; r++) {
    let t0 = performance.now();
    execFileSync('ps', ['-o', 'pid=', '-p', '1']);
    syncExecFile.push(performance.now() - t0);
    t0 = performance.now();
    runHelperSync('ps', ['-o', 'pid=', '-p', '1'], { timeoutMs: 10_000 });
    syncExeca.push(performance.now() - t0);
  }
  row('helper `ps -o pid= -p 1`: execFileSync', ms(syncExecFile));
  row('helper `ps -o pid= -p 1`: runHelperSync (execaSync)', ms(syncExeca));
}

portable.sample([]);
rmSync(tmpDir, { recursive: true, force: true });
console.log('\n| measured | figure |\n| --- | --- |');
for (const [what, value] of rows) console.log(`| ${what.trim()} | ${value} |`);
process.exit(0);
