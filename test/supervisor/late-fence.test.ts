/**
 * A worker whose supervisor is stuck (alive, its socket open, answering nothing: here SIGSTOP; in
 * production a tick blocked on a hung PostgreSQL connection, exactly when its lease expires and
 * another host takes its runs over) learns that its run was fenced out within the takeover requeue
 * delay (policies takeoverRequeueDelayMs), before the task can start elsewhere: a late heartbeat is
 * dropped, and the next one goes to the board directly, which refuses it. (Found by a review: when
 * every late heartbeat was only dropped, the worker ran on unaware.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { boardFiles, openBoard } from '@kanban-supervisor/board';
import { takeoverRequeueDelayMs } from '@kanban-supervisor/policies';
import { Cleanups, FIXTURES, cli, logEvents, sleep, waitFor } from '../src/common.js';
import { runCred } from '../src/channel-client.js';
import Database from 'better-sqlite3';

/**
 * SIGSTOP the supervisor between two of its transactions: stopped inside one, it would hold the
 * board's write lock for good and the test's own fence could never be written (a test race, seen
 * once under a full suite). Resumed and stopped again until the lock is free.
 */
async function stopOutsideWrite(pid: number, db: string): Promise<void> {
  const c = new Database(db);
  c.pragma('busy_timeout = 200');
  try {
    for (;;) {
      process.kill(pid, 'SIGSTOP');
      try {
        c.exec('BEGIN IMMEDIATE');
        c.exec('ROLLBACK');
        return;
      } catch {
        process.kill(pid, 'SIGCONT');
        await sleep(30);
      }
    }
  } finally {
    c.close();
  }
}

/** The worker's pid, from the board (recorded by the tick after the spawn). */
async function workerPid(db: string, id: string): Promise<number | null> {
  const b = await openBoard(db);
  try {
    return (await b.showTask(id))?.runs[0]?.pid ?? null;
  } finally {
    await b.close();
  }
}

const SKILL = join(FIXTURES, 'worker', 'skill.mjs');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('late heartbeats and the fence', () => {
  // MODE=watch: explicit heartbeats through the channel; MODE=idle: only the automatic ones, which
  // go in the heartbeat slot while the supervisor acknowledges them (policies beat-slot.ts).
  it.each([
    ['explicit heartbeats through the channel', 'watch'],
    ['automatic heartbeats in its heartbeat slot', 'idle'],
  ])('a fenced worker whose supervisor is stuck learns it within the takeover requeue delay (%s)', async (_what, mode) => {
    const { dir, db } = cleanups.boardDir('ks-rlate-');
    const ready = join(dir, 'ready');
    // heartbeat timeout 3 s: a beat every 1 s; grace 1 s
    expect((await cli(db, ['skill', 'add', 'w', '--heartbeat-timeout', '3', '--env', `MODE=${mode}`, '--env', `READY=${ready}`, '--env', `REASON=${join(dir, 'reason')}`, '--', process.execPath, SKILL])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'w'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '100', LOG_LEVEL: 'info', KANBAN_HTTP: 'off', RECLAIM_GRACE_SECONDS: '1' });
    await waitFor(() => existsSync(ready));
    const wpid = await waitFor(() => workerPid(db, id));
    cleanups.push(() => {
      try { process.kill(wpid, 'SIGKILL'); } catch { /* gone */ }
    });
    await waitFor(() => logEvents(sup.output(), 'channel_listening').length > 0);
    const cred = await waitFor(() => runCred(db, id));
    await sleep(1500); // a few beats went through the channel
    // The supervisor is stuck (alive, socket open, answering nothing).
    await stopOutsideWrite(sup.pid!, db);
    cleanups.push(() => {
      try { process.kill(sup.pid!, 'SIGCONT'); } catch { /* gone */ }
    });
    // The run is fenced on the board (as another supervisor's takeover, or an operator, does).
    const b = await openBoard(db);
    cleanups.push(() => b.close());
    expect(await b.beginReclaim(cred.run, 'timed_out', Date.now())).toBe(true);
    const fencedAt = Date.now();
    // The delay already counts the channel's answer timeout; a little slack for a loaded machine.
    const budget = takeoverRequeueDelayMs(3, 1) + 2000;
    const reasonFile = join(dir, 'reason');
    // The worker learns it was fenced: its ctx.signal aborts with NotCurrentError (MODE=watch writes the reason).
    while (Date.now() - fencedAt < budget && !existsSync(reasonFile)) await sleep(200);
    const lp = (await b.showTask(id))!.runs[0]!.logPath;
    const logText = lp ? readFileSync(lp, 'utf8') : '';
    expect(existsSync(reasonFile) ? readFileSync(reasonFile, 'utf8') : 'still running, unaware', `worker ${wpid}, ${budget} ms after its fence closed (takeover requeue delay ${takeoverRequeueDelayMs(3, 1)} ms); its log:\n${logText}`).toBe('NotCurrentError');
  }, 60_000);

  // Found by a review of the heartbeat slots: a worker trusted its slot for a beat because the
  // supervisor had acknowledged the PREVIOUS one (an acknowledgement one interval old), so after
  // the supervisor got stuck right after an acknowledgement its next beat went nowhere, the one
  // after waited for the stuck channel, and only the third reached the board: three intervals
  // unaware instead of two, past the requeue delay once an interval is over ~8 s (two live
  // workers on a shared board). Beats 15 s apart here; the supervisor stops right after it
  // acknowledged one.
  it('automatic heartbeats 15 s apart in the slot: a supervisor stuck right after acknowledging one still leaves the worker within the takeover requeue delay', async () => {
    const { dir, db } = cleanups.boardDir('ks-rlate-');
    const ready = join(dir, 'ready');
    const reasonFile = join(dir, 'reason');
    expect((await cli(db, ['skill', 'add', 'w', '--heartbeat-timeout', '45', '--env', 'MODE=idle', '--env', `READY=${ready}`, '--env', `REASON=${reasonFile}`, '--', process.execPath, SKILL])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'w'])).stdout.trim();
    const sup = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '100', LOG_LEVEL: 'info', KANBAN_HTTP: 'off', RECLAIM_GRACE_SECONDS: '1' });
    await waitFor(() => existsSync(ready));
    const wpid = await waitFor(() => workerPid(db, id));
    cleanups.push(() => {
      try { process.kill(wpid, 'SIGKILL'); } catch { /* gone */ }
    });
    const cred = await waitFor(() => runCred(db, id));
    const slot = join(boardFiles(db).beatDir, `${cred.run}.beat`);
    const ack = () => readFileSync(slot).readBigUInt64LE(8);
    // The first automatic beat (15 s after the start) is acknowledged: the supervisor is stuck right then.
    await waitFor(() => ack() !== 0n, 30_000, 10);
    await stopOutsideWrite(sup.pid!, db);
    cleanups.push(() => {
      try { process.kill(sup.pid!, 'SIGCONT'); } catch { /* gone */ }
    });
    const b = await openBoard(db);
    cleanups.push(() => b.close());
    expect(await b.beginReclaim(cred.run, 'timed_out', Date.now())).toBe(true);
    const fencedAt = Date.now();
    const budget = takeoverRequeueDelayMs(45, 1) + 2000;
    while (Date.now() - fencedAt < budget && !existsSync(reasonFile)) await sleep(200);
    const learnt = existsSync(reasonFile) ? `${readFileSync(reasonFile, 'utf8')} after ${Date.now() - fencedAt} ms` : 'still running, unaware';
    expect(learnt, `worker ${wpid}, ${budget} ms after its fence closed (takeover requeue delay ${takeoverRequeueDelayMs(45, 1)} ms)`).toMatch(/^NotCurrentError/);
  }, 120_000);
});
