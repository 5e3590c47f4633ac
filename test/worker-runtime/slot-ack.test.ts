/**
 * The runtimes' heartbeat slot (Node and Python; policies beat-slot.ts), against a stand-in supervisor: the
 * test acknowledges the beats it reads in the slot (as the supervisor does while it vouches), and a
 * scripted report channel records the heartbeats sent as reports. A beat that went in the slot
 * only must itself be acknowledged within SLOT_ACK_WAIT_MS, else it is reported then. (Found by a
 * review: the runtime trusted the slot for a beat because the PREVIOUS one was acknowledged, an
 * acknowledgement one interval old; once the supervisor stopped acknowledging, that beat went
 * nowhere and only the one after was reported: a worker whose supervisor got stuck, or whose run
 * was fenced, stayed unaware one whole interval longer than takeoverRequeueDelayMs allows for.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SLOT_ACK_WAIT_MS } from '@kanban-supervisor/policies';
import { createSlot, readBeat, writeAck } from '@kanban-supervisor/reaper/beat-slot';
import { Cleanups, sleep, waitFor } from '../src/common.js';
import { scriptedServer } from '../src/scripted-server.js';
import { boardSetup, claimRun, spawnWorker } from '../fixtures/worker/harness.js';
import { PY_PATH, RUNTIMES } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const setup = boardSetup('ks-slotack-');

describe('the runtime and its heartbeat slot', () => {
  it.each(RUNTIMES)('a beat put in the slot only is reported when its own acknowledgement does not come within SLOT_ACK_WAIT_MS ($name runtime)', async (rt) => {
    const { dir, board } = await setup();
    const g = await claimRun(board);
    const task = { id: g.taskId, title: 'test', skill: 'test', payload: null };
    const { got } = await scriptedServer(join(dir, 'sup.sock'), cleanups, (r) => (r.op === 'payload' ? { ok: true, task, parentIds: [] } : null));
    const beatReports = () => got.filter((r) => r.op === 'heartbeat').length;
    const slotPath = join(dir, 'run.beat');
    const fd = createSlot(slotPath);
    // The stand-in supervisor: reads the slot every 100 ms and acknowledges each new beat while `acking`.
    let acking = true;
    const seen: Array<{ v: bigint; at: number; acked: boolean }> = [];
    const reader = setInterval(() => {
      const v = readBeat(fd);
      if (v === null || v === 0n || v === seen.at(-1)?.v) return;
      seen.push({ v, at: Date.now(), acked: acking });
      if (acking) writeAck(fd, v);
    }, 100);
    cleanups.push(() => clearInterval(reader));
    // Heartbeat timeout 9 s: a beat every 3 s (longer than SLOT_ACK_WAIT_MS).
    const ready = join(dir, 'ready');
    const w = await spawnWorker(board, g, rt.argv, {
      ...rt.env,
      MODE: 'wait',
      READY: ready,
      REASON: join(dir, 'reason'),
      KANBAN_SOCKET: join(dir, 'sup.sock'),
      KANBAN_HEARTBEAT_SLOT: slotPath,
      KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '9',
    });
    cleanups.push(() => {
      w.kill('SIGKILL');
    });
    await waitFor(() => existsSync(ready));
    // The first beat is reported (nothing acknowledged yet); the second, acknowledged, is not.
    await waitFor(() => seen.length >= 2, 15_000);
    await sleep(SLOT_ACK_WAIT_MS + 500);
    expect(beatReports(), `beats seen: ${seen.length}; ${w.output()}`).toBe(1);
    // The supervisor stops acknowledging (stuck, or no longer vouching) right after the second beat.
    acking = false;
    const last = seen.at(-1)!;
    await waitFor(() => beatReports() >= 2, 15_000, 20);
    const after = Date.now() - last.at;
    // The next beat comes one interval after the last acknowledged one; it must be reported within
    // SLOT_ACK_WAIT_MS of it (before the fix: only the beat after it, one more interval later).
    expect(after, `the first report came ${after} ms after the last acknowledged beat (beats every 3000 ms)`).toBeLessThan(3000 + SLOT_ACK_WAIT_MS + 1000);
    expect(seen.length).toBeGreaterThanOrEqual(3);
  }, 40_000);

  it("the Python runtime's wait is policies' SLOT_ACK_WAIT_MS", () => {
    const py = readFileSync(join(PY_PATH, 'kanban_worker', '_runtime.py'), 'utf8');
    expect(py).toMatch(new RegExp(`^SLOT_ACK_WAIT_S = ${(SLOT_ACK_WAIT_MS / 1000).toFixed(1).replace('.', '\\.')}$`, 'm'));
  });
});
