/**
 * Spawn slices (policies spawnSlice): a tick claims only what it can spawn without holding the
 * event loop long, and the next tick follows at once while slots are free, not at the next
 * periodic tick. 60 ready tasks, 60 slots, a 30 s tick interval: all 60 start within seconds, in
 * several dispatches, each no larger than a slice.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { SPAWN_SLICE } from '@kanban-supervisor/policies';
import { Cleanups, cli, waitFor } from '../src/common.js';

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
});
