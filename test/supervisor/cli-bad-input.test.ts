// Bad input to the board CLI (a hostile review): each is refused naming the thing at fault, with
// exit 2 for usage and configuration errors, and leaves nothing lost or half-written.
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CLI, Cleanups, cli, memory } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** The most a refused `add --from` may hold: the 64 MiB limit, one chunk, and node itself. */
const RSS_BOUND = 400 * 1024 * 1024;

/**
 * Run the CLI with `stdin` as its standard input, watching its memory: killed (SIGKILL) past
 * 1 GiB or after `timeoutMs`, so that a CLI that reads without bound cannot eat the machine.
 */
function watched(db: string, args: string[], stdin: 'ignore' | NodeJS.ReadableStream = 'ignore', timeoutMs = 30_000) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; peakRss: number; ms: number }>((resolve) => {
    const t0 = Date.now();
    const child: ChildProcess = cleanups.killAtEnd(spawn(process.execPath, [CLI, '--db', db, ...args], { stdio: [stdin as 'ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    let peakRss = 0;
    child.stderr!.on('data', (d) => (stderr += String(d)));
    const watch = setInterval(() => {
      const m = child.pid ? memory(child.pid) : null;
      if (m) peakRss = Math.max(peakRss, m.hwm || 0, m.rss || 0);
      if (peakRss > 1024 * 1024 * 1024 || Date.now() - t0 > timeoutMs) child.kill('SIGKILL');
    }, 20);
    child.on('exit', (code, signal) => {
      clearInterval(watch);
      resolve({ code, signal, stderr, peakRss, ms: Date.now() - t0 });
    });
  });
}

describe('add --from reads at most its limit', () => {
  it('an endless input (/dev/zero, a FIFO, stdin) is refused past 64 MiB, exit 2 naming --from and the limit, in bounded memory; a FIFO still works', async () => {
    const { dir, db } = cleanups.boardDir('ks-from-bound-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);

    const zero = await watched(db, ['add', '--from', '/dev/zero']);
    expect(zero.code, zero.stderr).toBe(2);
    expect(zero.stderr).toContain('--from "/dev/zero": larger than 64 MiB');
    expect(zero.peakRss).toBeLessThan(RSS_BOUND);

    // A FIFO with a writer that never stops.
    const fifo = join(dir, 'endless.fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = cleanups.killAtEnd(spawn('sh', ['-c', `exec yes '{"skill":"echo"}' > "$1"`, 'sh', fifo], { stdio: 'ignore' }));
    const endless = await watched(db, ['add', '--from', fifo]);
    expect(endless.code, endless.stderr).toBe(2);
    expect(endless.stderr).toContain(`--from ${JSON.stringify(fifo)}: larger than 64 MiB`);
    expect(endless.peakRss).toBeLessThan(RSS_BOUND);
    writer.kill('SIGKILL');

    // stdin: `yes … | kanban-supervisor add --from -`.
    const yes = cleanups.killAtEnd(spawn('yes', ['{"skill":"echo"}'], { stdio: ['ignore', 'pipe', 'ignore'] }));
    const piped = await watched(db, ['add', '--from', '-'], yes.stdout!);
    expect(piped.code, piped.stderr).toBe(2);
    expect(piped.stderr).toContain('--from stdin: larger than 64 MiB');
    expect(piped.peakRss).toBeLessThan(RSS_BOUND);
    yes.kill('SIGKILL');

    // Nothing was added by any of them; a FIFO that ends (`--from <(…)`) still adds its tasks.
    expect(JSON.parse((await cli(db, ['--json', 'list'])).stdout)).toEqual([]);
    const small = join(dir, 'small.fifo');
    execFileSync('mkfifo', [small]);
    const w = cleanups.killAtEnd(spawn('sh', ['-c', `printf '{"skill":"echo","title":"a"}\\n{"skill":"echo","title":"b"}\\n' > "$1"`, 'sh', small], { stdio: 'ignore' }));
    const ok = await cli(db, ['add', '--from', small]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.trim().split('\n')).toHaveLength(2);
    w.kill('SIGKILL');
  }, 120_000);
});
