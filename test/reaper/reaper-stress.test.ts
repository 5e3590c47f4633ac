// 2,000 short runs through the Reaper: no zombie children, no fd growth, no state growth.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Reaper, type ExitRecord, type ProcessIdentity } from '@kanban-supervisor/reaper';
import { sleep, tempDir, zombieChildren } from '../src/common.js';

const LINUX = process.platform === 'linux';
const RUNS = 2000;
const CONCURRENCY = 8;

describe.skipIf(!LINUX)('reaper under many short runs', () => {
  it(`${RUNS} runs of \`true\`: no zombies, fd count flat, nothing left tracked`, async () => {
    const { dir, cleanup } = tempDir('ks-reaper-stress-');
    const reaper = new Reaper({ logger: { warn: () => {}, info: () => {} } });
    const waiters = new Map<number, (e: ExitRecord) => void>();
    const early = new Map<number, ExitRecord>();
    // the "tick": drain exits every few ms, like the supervisor's loop does
    const tick = setInterval(() => {
      for (const e of reaper.drainExits()) {
        const w = waiters.get(e.pid);
        if (w) {
          waiters.delete(e.pid);
          w(e);
        } else early.set(e.pid, e);
      }
    }, 2);
    const exitOf = (pid: number) =>
      new Promise<ExitRecord>((resolve) => {
        const e = early.get(pid);
        if (e) {
          early.delete(pid);
          resolve(e);
        } else waiters.set(pid, resolve);
      });

    let failures = 0;
    let notGone = 0;
    const oneRun = async (i: number) => {
      const res = await reaper.spawn({ argv: ['true'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, logPath: join(dir, `run-${i % 16}.log`) });
      if (!res.ok) {
        failures++;
        return;
      }
      const id: ProcessIdentity = res.identity;
      const exit = await exitOf(id.pid);
      if (exit.exitCode !== 0) failures++;
      if (reaper.cleanupAfterExit(id, 1000).phase !== 'gone') notGone++;
      reaper.untrack(id.pid);
    };
    const runBatch = async (from: number, to: number) => {
      let next = from;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < to) {
            const i = next++;
            await oneRun(i);
            if (i % 100 === 0) reaper.reapOrphans(new Set());
          }
        }),
      );
    };

    try {
      const started = Date.now();
      await runBatch(0, 50); // warm-up: lazily created fds (signal pipes, etc.)
      const fdBefore = reaper.openFdCount();
      await runBatch(50, RUNS);
      await sleep(50);
      reaper.reapOrphans(new Set());
      const fdAfter = reaper.openFdCount();
      const elapsed = Date.now() - started;
      console.log(`[reaper-stress] ${RUNS} runs in ${elapsed} ms; fds ${fdBefore} -> ${fdAfter}`);
      expect(failures).toBe(0);
      expect(notGone).toBe(0);
      expect(zombieChildren(process.pid)).toEqual([]);
      expect(Math.abs(fdAfter - fdBefore)).toBeLessThanOrEqual(3);
      expect(reaper.trackedPids()).toEqual([]);
      expect(reaper.drainExits()).toEqual([]);
    } finally {
      clearInterval(tick);
      cleanup();
    }
  });
});
