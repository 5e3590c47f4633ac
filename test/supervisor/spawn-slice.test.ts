/**
 * Spawn slices (policies spawnSlice): a tick claims only what it can spawn without holding the
 * event loop long, and the next tick follows at once while slots are free, not at the next
 * periodic tick. 60 ready tasks, 60 slots, a 30 s tick interval: all 60 start within seconds, in
 * several dispatches, each no larger than a slice. A dispatch whose claims cannot commit (a full
 * disk) does not tick again at once: the loop keeps its interval (found by a review: it spun).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { SPAWN_SLICE } from '@kanban-supervisor/policies';
import { Cleanups, cli, logEvents, sleep, waitFor } from '../src/common.js';

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, 100 Hz clock
}

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('spawn slices', () => {
  it('60 tasks, 60 slots, ticks 30 s apart: every worker starts within seconds, a slice per tick', async () => {
    const { dir, db } = cleanups.boardDir('ks-slice-');
    expect((await cli(db, ['skill', 'add', 'nap', '--', '/bin/sleep', '30'])).code).toBe(0);
    writeFileSync(join(dir, 't.jsonl'), Array.from({ length: 60 }, (_, i) => JSON.stringify({ skill: 'nap', title: `nap ${i}` })).join('\n') + '\n');
    expect((await cli(db, ['add', '--from', join(dir, 't.jsonl')])).code).toBe(0);
    const p = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '30000', MAX_CONCURRENT_WORKERS: '60', LOG_LEVEL: 'info', KANBAN_HTTP: 'off' });
    const b = await openBoard(db);
    cleanups.push(() => b.close());
    await waitFor(async () => (await b.counts()).liveRuns === 60, 20_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${p.output()}`);
    });
    // Several dispatches, each a slice at most: group the spawns by their run's claim time.
    const runs = await b.listRuns({ limit: 100 });
    const byClaim = new Map<number, number>();
    for (const r of runs) byClaim.set(r.startedAt, (byClaim.get(r.startedAt) ?? 0) + 1);
    expect(byClaim.size, 'more than one dispatch').toBeGreaterThan(1);
    expect(Math.max(...byClaim.values())).toBeLessThanOrEqual(Math.max(SPAWN_SLICE.first, Math.floor(SPAWN_SLICE.budgetMs / 0.1)));
    expect(Math.max(...byClaim.values())).toBeLessThan(60);
  }, 40_000);

  it('a full disk (root: a 3 MiB tmpfs): the claims cannot commit, and the loop keeps its tick interval (no loop of ticks as fast as they fail)', async (t) => {
    const mnt = cleanups.tempDir('ks-rfull-');
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]).status !== 0) return t.skip();
    cleanups.push(() => void spawnSync('umount', ['-l', mnt]));
    mkdirSync(join(mnt, 'board'));
    const db = join(mnt, 'board', 'kanban.db');
    expect((await cli(db, ['skill', 'add', 'nap', '--', '/bin/sleep', '30'])).code).toBe(0);
    writeFileSync(join(mnt, 't.jsonl'), Array.from({ length: 40 }, (_, i) => JSON.stringify({ skill: 'nap', title: `nap ${i}`, delay: '8s', payload: { pad: 'x'.repeat(2000) } })).join('\n') + '\n');
    expect((await cli(db, ['add', '--from', join(mnt, 't.jsonl')])).code).toBe(0);
    const sup = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '1000', MAX_CONCURRENT_WORKERS: '40', LOG_LEVEL: 'info', KANBAN_HTTP: 'off' });
    await waitFor(() => logEvents(sup.output(), 'started').length > 0 || logEvents(sup.output(), 'channel_listening').length > 0, 20_000);
    await sleep(1000);
    // The disk fills up (another process's files): every byte left taken.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
    } catch {
      /* ENOSPC: full */
    }
    // The tasks fall due: let the loop run 5 s.
    await sleep(8000);
    const before = logEvents(sup.output(), 'tick_step_failed').length;
    const cpu0 = cpuMs(sup.pid!);
    await sleep(5000);
    const failed = logEvents(sup.output(), 'tick_step_failed').length - before;
    const cpu = cpuMs(sup.pid!) - cpu0;
    const steps = logEvents(sup.output(), 'tick_step_failed').slice(-3).map((e) => `${String(e.step)}: ${String((e.err as { message?: string } | undefined)?.message ?? '')}`);
    // At a 1 s tick interval: about 5 laps in 5 s (each failing once or twice), not hundreds.
    expect(failed, `${failed} failed steps and ${cpu} ms CPU in 5 s; last: ${steps.join(' | ')}`).toBeLessThan(30);
  }, 90_000);
});
