/**
 * Heartbeat slots with a real supervisor and real workers (policies beat-slot.ts): a worker's
 * automatic heartbeats (Node and Python runtimes) go in its slot, not through the channel, and still reach the board; a worker
 * whose beats stop is reclaimed as stalled; a supervisor SIGKILLed and started again reopens its
 * adopted workers' slots (their beats go on reaching the board without a report each); a FIFO or a
 * symlink planted at a slot's name blocks and steers nothing (that worker reports its beats); and
 * every slot is gone once its run ended.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { boardFiles, openBoard } from '@kanban-supervisor/board';
import { MEMORY_BEAT_WRITE_MS } from '@kanban-supervisor/policies';
import { Cleanups, FIXTURES, cli, exited, logEvents, sleep, waitFor } from '../src/common.js';
import { startHttpSup, type HttpSup } from '../src/http-client.js';
import { RUNTIMES } from '../fixtures/runtimes/runtimes.js';

const SKILL = join(FIXTURES, 'worker', 'skill.mjs');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const ENV = { TICK_INTERVAL_MS: '200', LOG_LEVEL: 'info', RECLAIM_GRACE_SECONDS: '1', CRASH_GRACE_SECONDS: '1' };

async function runOf(db: string, id: string) {
  const b = await openBoard(db);
  try {
    return (await b.showTask(id))?.runs[0] ?? null;
  } finally {
    await b.close();
  }
}

/** A counter of the supervisor's /metrics (summed over its labels that match `labels`). */
async function metric(s: HttpSup, name: string, labels = ''): Promise<number> {
  const text = (await s.get('/metrics')).body;
  let n = 0;
  for (const line of text.split('\n')) if (line.startsWith(name) && line.includes(labels) && !line.startsWith('#')) n += Number(line.split(' ').at(-1));
  return n;
}

/** Heartbeat times the board shows for a run, sampled every 300 ms for `ms`; and the oldest it showed (age at a sample, ms). */
async function beatsSeen(db: string, id: string, ms: number): Promise<{ times: number[]; oldest: number; stopped: boolean }> {
  const seen = new Set<number>();
  const end = Date.now() + ms;
  let oldest = 0;
  let stopped = false;
  while (Date.now() < end) {
    const r = await runOf(db, id);
    const at = r?.heartbeatAt;
    if (at) seen.add(at);
    if (at) oldest = Math.max(oldest, Date.now() - at);
    stopped ||= r?.stopReason != null;
    await sleep(300);
  }
  return { times: [...seen].sort((a, b) => a - b), oldest, stopped };
}

async function startSup(cl: Cleanups, db: string): Promise<HttpSup> {
  const s = await startHttpSup(db, ENV);
  cl.push(async () => {
    if (s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill('SIGTERM');
      await exited(s.child);
    }
  });
  return s;
}

describe('heartbeat slots (real supervisor)', () => {
  it.each(RUNTIMES)("automatic heartbeats go in the slot, reach the board without a report each; a worker whose beats stop is reclaimed as stalled; the slot is gone after the run ($name runtime)", async (rt) => {
    const { dir, db } = cleanups.boardDir('ks-slotrun-');
    const ready = join(dir, 'ready');
    const env = Object.entries({ ...rt.env, MODE: 'wait', READY: ready, REASON: join(dir, 'reason') }).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
    // heartbeat timeout 3 s: a beat every second
    expect((await cli(db, ['skill', 'add', 'w', '--heartbeat-timeout', '3', ...env, '--', ...rt.argv])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'w'])).stdout.trim();
    const s = await startSup(cleanups, db);
    await waitFor(() => existsSync(ready));
    const run = await waitFor(() => runOf(db, id).then((r) => (r?.pid ? r : null)));
    const slot = join(boardFiles(db).beatDir, `${run.id}.beat`);
    expect(existsSync(slot)).toBe(true);
    // The board gets the beats' times every MEMORY_BEAT_WRITE_MS (5 s), not at every beat: its time
    // gets older than the 3 s timeout between two writes, and the worker is not reclaimed for it (the
    // supervisor judges by the beats it heard).
    const seen = await beatsSeen(db, id, 11_500);
    const say = `heartbeat times on the board: ${seen.times.join(' ')}; oldest seen ${seen.oldest} ms`;
    expect(seen.times.length, say).toBeGreaterThanOrEqual(2);
    // Not one a second (eleven or so): a round every 5 s, and the run's first beats (reported, committed).
    expect(seen.times.length, say).toBeLessThanOrEqual(5);
    expect(seen.oldest, say).toBeGreaterThan(3000);
    expect(seen.oldest, say).toBeLessThan(MEMORY_BEAT_WRITE_MS + 2500);
    expect(seen.stopped, 'a live worker beating every second was reclaimed').toBe(false);
    // The supervisor's own status answers from the beats it heard: a second old at most, not five.
    const st = (await s.get('/api/status')).json;
    const w = st.workers.find((x: { run: string }) => x.run === run.id);
    expect(w.heartbeatAgeMs, JSON.stringify(w)).toBeLessThan(2500);
    const fromSlot = await metric(s, 'kanban_heartbeat_slot_beats_total');
    const reported = await metric(s, 'kanban_channel_reports_total', 'op="heartbeat"');
    expect(fromSlot, 'beats read in the slot').toBeGreaterThanOrEqual(3);
    // The first beat is reported (nothing acknowledged yet); a late timer may send one more.
    expect(reported, 'beats reported through the channel').toBeLessThanOrEqual(2);
    // Its beats stop (SIGSTOP): it is reclaimed as stalled after the timeout.
    process.kill(run.pid!, 'SIGSTOP');
    cleanups.push(() => {
      try {
        process.kill(run.pid!, 'SIGCONT');
      } catch {
        /* gone */
      }
    });
    const ended = await waitFor(async () => {
      const r = await runOf(db, id);
      return r?.endedAt ? r : null;
    }, 20_000);
    expect(ended.stopReason).toBe('stalled');
    await waitFor(() => !existsSync(slot), 10_000);
  }, 60_000);

  it("a supervisor SIGKILLed and started again reopens its adopted workers' slots; a FIFO or a symlink at a slot's name blocks nothing and the worker reports its beats", async () => {
    const { dir, db } = cleanups.boardDir('ks-slotadopt-');
    expect((await cli(db, ['skill', 'add', 'w', '--heartbeat-timeout', '3', '--env', 'MODE=idle', '--env', `READY=${join(dir, 'ready')}`, '--env', `REASON=${join(dir, 'reason')}`, '--', process.execPath, SKILL])).code).toBe(0);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await cli(db, ['add', '--skill', 'w', '--title', `w${i}`])).stdout.trim());
    const first = await startSup(cleanups, db);
    const runs = await waitFor(async () => {
      const rs = await Promise.all(ids.map((id) => runOf(db, id)));
      return rs.every((r) => r?.pid) ? rs.map((r) => r!) : null;
    });
    for (const r of runs) {
      cleanups.push(() => {
        try {
          process.kill(-r.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      });
    }
    await sleep(2500); // beats acknowledged in the slots
    first.child.kill('SIGKILL');
    await exited(first.child);
    // Replace two slots' names while no supervisor runs: a FIFO and a symlink (their workers keep
    // their own descriptors on the real slots, which the next supervisor no longer finds).
    const beatDir = boardFiles(db).beatDir;
    const slotOf = (runId: string) => join(beatDir, `${runId}.beat`);
    rmSync(slotOf(runs[1]!.id));
    execFileSync('mkfifo', ['-m', '600', slotOf(runs[1]!.id)]);
    rmSync(slotOf(runs[2]!.id));
    writeFileSync(join(dir, 'target'), Buffer.alloc(16));
    symlinkSync(join(dir, 'target'), slotOf(runs[2]!.id));
    const second = await startSup(cleanups, db);
    await waitFor(() => logEvents(second.child.output(), 'adopted').length >= 3, 15_000);
    // Every worker stays alive and current past several heartbeat timeouts: none is judged stalled.
    // (Their times reach the board every MEMORY_BEAT_WRITE_MS: two writes or more in 11 s.)
    const seen = await Promise.all(runs.map((r, i) => beatsSeen(db, ids[i]!, 11_000)));
    for (const [i, s] of seen.entries()) {
      expect(s.times.length, `run ${i}: heartbeat times ${s.times.join(' ')}`).toBeGreaterThanOrEqual(2);
      expect(s.stopped, `run ${i} reclaimed`).toBe(false);
    }
    for (const id of ids) expect((await runOf(db, id))!.endedAt, 'still running').toBeNull();
    // The first through its reopened slot, the others by reports (their slots refused).
    expect(await metric(second, 'kanban_heartbeat_slot_beats_total')).toBeGreaterThanOrEqual(3);
    const refused = logEvents(second.child.output(), 'beat_slot_refused').map((e) => String(e.error));
    expect(refused.some((e) => /FIFO/.test(e)), refused.join('\n')).toBe(true);
    expect(refused.some((e) => /symbolic link/.test(e)), refused.join('\n')).toBe(true);
    expect(await metric(second, 'kanban_channel_reports_total', 'op="heartbeat"')).toBeGreaterThanOrEqual(4);
    // The target of the symlink was never written.
    expect(execFileSync('od', ['-An', '-tx1', join(dir, 'target')]).toString().replace(/[\s0]/g, '')).toBe('');
    // Cancelled: every run ends, and the slot files with them (the planted ones are not its slots: left).
    for (const id of ids) expect((await cli(db, ['cancel', id])).code).toBe(0);
    await waitFor(async () => (await Promise.all(ids.map((id) => runOf(db, id)))).every((r) => r?.exitedAt), 20_000);
    await waitFor(() => !existsSync(slotOf(runs[0]!.id)), 5000);
    expect(readdirSync(beatDir).sort()).toEqual([`${runs[1]!.id}.beat`, `${runs[2]!.id}.beat`].sort());
  }, 90_000);
});
