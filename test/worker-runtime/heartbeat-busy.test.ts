/**
 * A worker's run never fails because of lock contention (issue 11, item 11): a heartbeat is not a
 * result. One that cannot get the board's write lock within the worker's busy timeout and retries
 * (2 s × 10, ~22 s) is skipped, said once on stderr, and tried again at the next one; the run goes
 * on and its final report lands when the lock is free. (This test waits those ~22 s out.)
 */
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WORKER_BUSY_RETRIES, WORKER_BUSY_TIMEOUT_MS } from '@kanban-supervisor/worker-runtime';
import { waitFor } from '../src/common.js';
import { boardSetup, claimRun, spawnWorker } from '../fixtures/worker/harness.js';

const setup = boardSetup('ks-hb-busy-');

// Waits for $GO, then one explicit heartbeat, timed; writes its duration to $AFTER and completes.
const SKILL = `
import { existsSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { runWorker } from '@kanban-supervisor/worker-runtime';
runWorker(async (ctx) => {
  writeFileSync(process.env.READY, 'ready');
  while (!existsSync(process.env.GO)) await delay(20);
  const t = Date.now();
  await ctx.heartbeat({ step: 1 });
  writeFileSync(process.env.AFTER, String(Date.now() - t));
  return { done: true };
}, { autoHeartbeat: false });
`;

describe('heartbeats under lock contention', () => {
  it('a heartbeat that cannot get the write lock is skipped: ctx.heartbeat resolves, the run completes, nothing is counted', async () => {
    const { dir, board } = await setup();
    const run = await claimRun(board, null);
    const env = { READY: join(dir, 'ready'), GO: join(dir, 'go'), AFTER: join(dir, 'after') };
    const w = await spawnWorker(board, run, [process.execPath, '--input-type=module', '-e', SKILL], env);
    await waitFor(() => existsSync(env.READY), 20_000, 20);
    // Another writer holds the board's write lock for longer than the worker's whole busy budget.
    const holder = new Database(board.location, { timeout: 5000 });
    holder.exec('BEGIN IMMEDIATE');
    try {
      writeFileSync(env.GO, '');
      const budget = WORKER_BUSY_TIMEOUT_MS * (WORKER_BUSY_RETRIES + 1) + 30_000;
      await waitFor(() => existsSync(env.AFTER) || w.exitCode !== null, budget, 100).catch(() => undefined);
      expect(existsSync(env.AFTER), `the handler did not get past the heartbeat:\n${w.output()}`).toBe(true);
      // It did wait for the lock (the busy timeout, retried), then gave up on this heartbeat.
      expect(Number(readFileSync(env.AFTER, 'utf8'))).toBeGreaterThanOrEqual(WORKER_BUSY_TIMEOUT_MS * WORKER_BUSY_RETRIES * 0.9);
      expect(w.output()).toMatch(/heartbeat not recorded \(will keep trying\).*database is locked/);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    // The lock is free again: the final report lands on the board.
    const done = await w.done;
    expect(done.code, w.output()).toBe(0);
    const detail = (await board.showTask(run.taskId))!;
    expect(detail.runs[0]!.outcome).toBe('completed');
    expect(detail.runs[0]!.heartbeatAt).toBeNull(); // the skipped heartbeat never landed
    expect(detail.task.consecutiveFailures).toBe(0);
  }, 120_000);
});
