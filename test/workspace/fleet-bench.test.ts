/**
 * The fleet bench (test/src/bench/fleet.ts): its workers' records are counted right — a beat sent
 * and never answered, answered "not recorded", or a 1 Hz slot missed is lost; a beat in flight at the
 * window's end is not; beats written directly are counted apart — and a wrong BENCH_FLEET exits 2
 * naming the variable before anything starts.
 */
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, ROOT, run } from '../src/common.js';
import { beatWindow, readFleetRecords } from '../src/bench/fleet-records.js';

describe('bench fleet', () => {
  it('counts the beats lost and the beats written directly from the workers’ records', async () => {
    const c = new Cleanups();
    try {
      const file = join(c.tempDir(), 'rec.txt');
      writeFileSync(
        file,
        [
          'start ta 10 1000 1500',
          'send ta 2000',
          'hb ta 2000 3.5 channel',
          'send ta 3000',
          'hb ta 3000 1200 direct',
          'miss ta 4000',
          'send ta 5000', // never answered
          'send tb 6000',
          'hb tb 6000 10 failed', // answered, not recorded
          'send tb 9500', // in flight when the window ends
          'hb tb 99999 1 channel', // outside the window
          'torn line without its newline',
        ].join('\n'),
      );
      const r = readFleetRecords(file);
      expect(r.starts).toEqual([{ task: 'ta', pid: 10, scriptMs: 1000, handlerMs: 1500 }]);
      const w = beatWindow(r, 1000, 10_000, 1000);
      expect(w).toMatchObject({ sent: 5, unanswered: 1, failed: 1, direct: 1, missed: 1, lost: 3 });
      expect(w.latency).toEqual({ n: 3, p50: 10, p99: 1200, max: 1200 });
      // A later window: only what was sent in it.
      expect(beatWindow(r, 5500, 10_000, 1000)).toMatchObject({ sent: 2, unanswered: 0, failed: 1, missed: 0, lost: 1 });
    } finally {
      await c.run();
    }
  });

  it.each(['node', 'python:0', 'ruby:5', 'python:64,node:x'])('BENCH_FLEET=%s exits 2 naming the variable', async (value) => {
    const r = await run(process.execPath, [join(ROOT, 'test/dist/bench.js'), '--short', '--only', 'fleet'], { env: { ...process.env, BENCH_FLEET: value }, timeoutMs: 30_000 });
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^BENCH_FLEET: ".*" is not kind:N/m);
  });
});
