import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { openDatabase } from '@kanban-supervisor/board';
import { Cleanups, sleep, waitFor } from '../src/common.js';
import { SKILL, claimRun, integrity, openTestBoard, spawnWorker, type ClaimedRun } from '../fixtures/worker/harness.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

function ledgerSeqs(path: string): number[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.split(' ')[1]));
}

describe('workers SIGKILLed mid-write', () => {
  it('200 SIGKILLs leave the board intact with every acknowledged write present', async () => {
    const dir = cleanups.tempDir('ks-worker-kill-');
    const TOTAL = 200;
    const PARALLEL = 8;
    const started = Date.now();
    const board = await openTestBoard(dir);
    mkdirSync(join(dir, 'ledger'));
    // Claim every run up front, as a supervisor would one by one.
    const runs: ClaimedRun[] = [];
    for (let i = 0; i < TOTAL; i++) {
      const task = await board.createTask({ skill: 'test', payload: { i } });
      const c = (await board.claimBatch(1, Date.now(), () => '/dev/null'))[0]!;
      expect(c.task.id).toBe(task.id);
      runs.push({
        taskId: task.id,
        runId: c.run.id,
        token: c.token,
        env: { KANBAN_DB: board.location, KANBAN_TASK_ID: task.id, KANBAN_RUN_ID: c.run.id, KANBAN_RUN_TOKEN: c.token, KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '0.3' },
      });
    }
    let next = 0;
    let killedWithWrites = 0;
    const exits: Array<{ code: number | null; signal: NodeJS.Signals | null }> = [];
    const lane = async () => {
      while (next < runs.length) {
        const i = next++;
        const run = runs[i]!;
        const ledger = join(dir, 'ledger', run.runId);
        const w = await spawnWorker(board, run, [process.execPath, SKILL], { MODE: 'write-loop', LEDGER: ledger });
        try {
          // A random moment. Every other worker: anywhere from start-up and opening the board to the
          // loop of writes; the others: a random moment after their first acknowledged write.
          if (i % 2 === 0) await sleep(Math.random() * 600);
          else {
            await waitFor(() => ledgerSeqs(ledger).length > 0 || w.exitCode !== null, 10_000, 10);
            await sleep(Math.random() * 250);
          }
          if (ledgerSeqs(ledger).length > 0) killedWithWrites++;
        } finally {
          // Killed whatever happened above (a wait that timed out must not leave it writing on).
          w.kill('SIGKILL');
        }
        const e = await w.done;
        exits.push({ code: e.code, signal: e.signal });
        if (e.signal !== 'SIGKILL') throw new Error(`worker ${run.runId} ended on its own (${e.code}): ${w.output()}`);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, lane));
    await board.close();
    expect(exits).toHaveLength(TOTAL);
    expect(exits.every((e) => e.signal === 'SIGKILL')).toBe(true);

    // A fresh connection, opened as the next supervisor opens the board (the hardened open: WAL, migrations).
    const after = openDatabase(join(dir, 'kanban.db'));
    try {
      expect(integrity(join(dir, 'kanban.db'))).toBe('ok');
      expect(after.pragma('foreign_key_check')).toEqual([]);
      const rows = after
        .prepare(`SELECT run_id, json_extract(data, '$.n') AS n FROM events WHERE kind = 'seq' ORDER BY id`)
        .all() as Array<{ run_id: string; n: number }>;
      const onBoard = new Map<string, number[]>();
      for (const r of rows) {
        const list = onBoard.get(r.run_id) ?? [];
        list.push(r.n);
        onBoard.set(r.run_id, list);
      }
      let acknowledged = 0;
      for (const run of runs) {
        const ledger = ledgerSeqs(join(dir, 'ledger', run.runId));
        const committed = onBoard.get(run.runId) ?? [];
        acknowledged += ledger.length;
        // Each run's writes are a gap-free prefix 0..k, and every ledgered (acknowledged) write is in it;
        // at most one write committed without reaching the ledger before the kill.
        expect(committed, run.runId).toEqual(committed.map((_, i) => i));
        expect(committed.length, run.runId).toBeGreaterThanOrEqual(ledger.length);
        expect(committed.length - ledger.length, run.runId).toBeLessThanOrEqual(1);
        expect(ledger, run.runId).toEqual(ledger.map((_, i) => i));
      }
      // The test means something only if most workers were killed inside their loop of writes.
      expect(killedWithWrites).toBeGreaterThanOrEqual(TOTAL / 2);
      expect(acknowledged).toBeGreaterThan(1000);
      console.log(`200 SIGKILLs: ${killedWithWrites} mid-loop, ${acknowledged} acknowledged writes, all present; ${Date.now() - started} ms`);
    } finally {
      after.close();
    }
  }, 120_000);
});

describe('a worker outlives its supervisor', () => {
  it('keeps running when its parent dies and its output pipes break, and finishes its task', async () => {
    const dir = cleanups.tempDir('ks-worker-orphan-');
    const board = await openTestBoard(dir);
    try {
      const run = await claimRun(board, null);
      const ready = join(dir, 'ready');
      const go = join(dir, 'go');
      // A stand-in supervisor: spawns the worker with pipes to itself (the worst case), then is SIGKILLed.
      const parentScript = `
        const { spawn } = require('node:child_process');
        const c = spawn(process.execPath, [${JSON.stringify(SKILL)}], { stdio: ['ignore', 'pipe', 'pipe'], detached: true,
          env: { ...process.env, MODE: 'wait-go', CHATTY: '1', READY: ${JSON.stringify(ready)}, GO: ${JSON.stringify(go)} } });
        c.stdout.on('data', () => {}); c.stderr.on('data', () => {});
        setInterval(() => {}, 1000);`;
      const env = { ...process.env, ...run.env };
      const parent = spawn(process.execPath, ['-e', parentScript], { env, stdio: 'ignore' });
      const pid = Number(await waitFor(() => (existsSync(ready) ? readFileSync(ready, 'utf8') : '')));
      parent.kill('SIGKILL');
      await new Promise((r) => parent.once('exit', r));
      await sleep(300); // the worker now writes into broken pipes (EPIPE)
      expect(() => process.kill(pid, 0)).not.toThrow();
      writeFileSync(go, '');
      await waitFor(async () => (await board.getTask(run.taskId))!.status === 'done', 10_000);
      expect((await board.getTask(run.taskId))!.result).toEqual({ late: true });
      await waitFor(() => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      });
    } finally {
      await board.close();
    }
  });
});
