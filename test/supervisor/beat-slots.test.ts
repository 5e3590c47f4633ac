/**
 * Heartbeat slots, the supervisor's side (supervisor/src/services/beat-slots.ts) and the file
 * primitives both sides use (reaper beat-slot.ts), on real files: a changed beat is handed on and
 * acknowledged once, only while the supervisor vouches and the run is not fenced; a slot is made
 * exclusively (a symlink planted at its name is an error, never followed); an adopted worker's slot
 * is reopened only when it is one (a FIFO, a symlink, a short file are refused without blocking);
 * a slot's name is removed only while it is still that file; the sweep removes only old slots
 * nobody holds. And with a real report batch and SQLite board: a beat read in a slot reaches the
 * board with the next transaction, and one refused as fenced stops the acknowledgements.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readFileSync, renameSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { SqliteBoard, type RunCredentials } from '@kanban-supervisor/board';
import { MEMORY_BEAT_WRITE_MS, slotBeatValue, slotTrusted } from '@kanban-supervisor/policies';
import { openSlot, readAck, writeBeat } from '@kanban-supervisor/reaper/beat-slot';
import { BeatSlots, SLOT_STALE_MS } from '../../supervisor/dist/services/beat-slots.js';
import { ReportBatch } from '../../supervisor/dist/channel/batch.js';
import { Cleanups, waitFor } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const cred = (runId: string): RunCredentials => ({ runId, taskId: `t-${runId}`, token: `tok-${runId}` });

function slots(opts: { vouch?: (runId: string) => boolean } = {}) {
  const dir = join(cleanups.tempDir('ks-slots-'), 'beats');
  const beats: Array<{ runId: string; at: number }> = [];
  const s = new BeatSlots({ dir, log: pino({ level: 'silent' }), vouch: opts.vouch ?? (() => true), beat: (c, at) => beats.push({ runId: c.runId, at }) });
  cleanups.push(() => s.stop());
  return { s, dir, beats };
}

/** The worker's side: its own descriptor on the slot. */
function workerFd(path: string): number {
  const r = openSlot(path);
  if (r.fd === null) throw new Error(r.why);
  cleanups.push(() => closeSync(r.fd));
  return r.fd;
}

describe('heartbeat slots', () => {
  it('a changed beat is handed on once and acknowledged; an unchanged or zero one is not', () => {
    const { s, dir, beats } = slots();
    const path = s.create(cred('r1'))!;
    expect(path).toBe(join(dir, 'r1.beat'));
    expect(lstatSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path)).toEqual(Buffer.alloc(16));
    s.read(1);
    expect(beats).toEqual([]); // nothing written yet
    const fd = workerFd(path);
    const v = slotBeatValue(process.pid, 1);
    writeBeat(fd, v);
    s.read(2);
    s.read(3);
    expect(beats).toEqual([{ runId: 'r1', at: 2 }]);
    expect(readAck(fd)).toBe(v);
    expect(slotTrusted(readAck(fd)!, [v])).toBe(true);
    writeBeat(fd, slotBeatValue(process.pid, 2));
    s.read(4);
    expect(beats.map((b) => b.at)).toEqual([2, 4]);
  });

  it('not vouched for (the worker being stopped, ticks not committing): neither handed on nor acknowledged, nor counted later; the next beat is', () => {
    let vouch = false;
    const { s, beats } = slots({ vouch: () => vouch });
    const fd = workerFd(s.create(cred('r1'))!);
    const v = slotBeatValue(process.pid, 1);
    writeBeat(fd, v);
    s.read(1);
    expect(beats).toEqual([]);
    expect(readAck(fd)).toBe(0n);
    expect(slotTrusted(readAck(fd)!, [v])).toBe(false);
    vouch = true;
    // A beat seen while not vouching is not a heartbeat later (the worker reports it: no
    // acknowledgement came): here nothing was written since, so nothing is handed on (review: it
    // was, at the time of this read, a heartbeat recorded for a worker that may have been frozen
    // since, e.g. for the whole of a quarantine).
    s.read(600_000);
    expect(beats).toEqual([]);
    expect(readAck(fd)).toBe(0n);
    const v2 = slotBeatValue(process.pid, 2);
    writeBeat(fd, v2);
    s.read(600_500);
    expect(beats).toEqual([{ runId: 'r1', at: 600_500 }]);
    expect(readAck(fd)).toBe(v2);
  });

  it('a fenced run is not acknowledged again (only for the token that was fenced)', () => {
    const { s, beats } = slots();
    const fd = workerFd(s.create(cred('r1'))!);
    s.fenced('r1', 'another token');
    writeBeat(fd, 5n);
    s.read(1);
    expect(beats).toHaveLength(1);
    s.fenced('r1', 'tok-r1');
    writeBeat(fd, 6n);
    s.read(2);
    expect(beats).toHaveLength(1);
    expect(readAck(fd)).toBe(5n);
  });

  it('made exclusively: a symlink or a file planted at its name is an error, never followed or reused', () => {
    const { s, dir } = slots();
    s.create(cred('r0')); // makes the folder
    const target = join(dir, '..', 'target');
    writeFileSync(target, 'precious');
    symlinkSync(target, join(dir, 'r1.beat'));
    expect(s.create(cred('r1'))).toBeNull();
    expect(readFileSync(target, 'utf8')).toBe('precious');
    writeFileSync(join(dir, 'r2.beat'), 'x');
    expect(s.create(cred('r2'))).toBeNull();
    expect(readFileSync(join(dir, 'r2.beat'), 'utf8')).toBe('x');
    expect(s.size).toBe(1);
  });

  it('the folder a symlink: slots are off, nothing is made through it', () => {
    const base = cleanups.tempDir('ks-slots-');
    const elsewhere = join(base, 'elsewhere');
    execFileSync('mkdir', [elsewhere]);
    symlinkSync(elsewhere, join(base, 'beats'));
    const s = new BeatSlots({ dir: join(base, 'beats'), log: pino({ level: 'silent' }), vouch: () => true, beat: () => undefined });
    cleanups.push(() => s.stop());
    expect(s.create(cred('r1'))).toBeNull();
    expect(existsSync(join(elsewhere, 'r1.beat'))).toBe(false);
  });

  it('the folder checked at every use: removed, it is made again; replaced by a symlink, nothing is made, removed or swept through it', () => {
    const { s, dir } = slots();
    expect(s.create(cred('r1'))).not.toBeNull();
    // A worker (same user) removes the folder: the next run's slot is made in a new one.
    execFileSync('rm', ['-rf', dir]);
    const p2 = s.create(cred('r2'));
    expect(p2, 'made again').toBe(join(dir, 'r2.beat'));
    expect(existsSync(p2!)).toBe(true);
    // It puts a symlink to a folder of its choice in its place: never followed.
    const elsewhere = join(dir, '..', 'elsewhere');
    execFileSync('mkdir', [elsewhere]);
    const old = (Date.now() - SLOT_STALE_MS - 60_000) / 1000;
    writeFileSync(join(elsewhere, 'victim.beat'), Buffer.alloc(16));
    utimesSync(join(elsewhere, 'victim.beat'), old, old);
    renameSync(dir, join(dir, '..', 'moved'));
    symlinkSync(elsewhere, dir);
    expect(s.create(cred('r3'))).toBeNull();
    expect(existsSync(join(elsewhere, 'r3.beat')), 'a slot made through the symlink').toBe(false);
    expect(s.sweep(Date.now())).toBe(0);
    expect(existsSync(join(elsewhere, 'victim.beat')), 'swept through the symlink').toBe(true);
  });

  it("an adopted worker's slot is reopened only when it is one: a FIFO, a symlink, a short file are refused at once", () => {
    const { s, dir, beats } = slots();
    s.create(cred('r0'));
    // A real slot left by a supervisor that died: reopened, and its current value is not a new beat.
    const first = slots();
    const path = first.s.create(cred('r1'))!;
    const fd = workerFd(path);
    writeBeat(fd, 7n);
    renameSync(path, join(dir, 'r1.beat'));
    s.adopt(cred('r1'));
    s.read(1);
    expect(beats).toEqual([]);
    writeBeat(fd, 8n);
    s.read(2);
    expect(beats).toEqual([{ runId: 'r1', at: 2 }]);
    expect(readAck(fd)).toBe(8n);
    // Hostile or broken files: refused without blocking (a FIFO opened without O_NONBLOCK would hang here).
    execFileSync('mkfifo', ['-m', '600', join(dir, 'r2.beat')]);
    const target = join(dir, '..', 'target');
    writeFileSync(target, Buffer.alloc(16));
    symlinkSync(target, join(dir, 'r3.beat'));
    writeFileSync(join(dir, 'r4.beat'), 'abc');
    for (const id of ['r2', 'r3', 'r4', 'r5']) s.adopt(cred(id));
    expect(s.size).toBe(2);
    expect(openSlot(join(dir, 'r2.beat'))).toMatchObject({ fd: null, why: expect.stringMatching(/FIFO/) });
    expect(openSlot(join(dir, 'r3.beat'))).toMatchObject({ fd: null, why: expect.stringMatching(/symbolic link/) });
    expect(openSlot(join(dir, 'r4.beat'))).toMatchObject({ fd: null, why: expect.stringMatching(/3 bytes/) });
  });

  it("closed: its name is removed while it is that file; a file put in its place is left alone", () => {
    const { s, dir } = slots();
    const a = s.create(cred('r1'))!;
    s.close('r1');
    expect(existsSync(a)).toBe(false);
    const b = s.create(cred('r2'))!;
    renameSync(b, join(dir, 'moved'));
    writeFileSync(b, 'someone else');
    s.close('r2');
    expect(readFileSync(b, 'utf8')).toBe('someone else');
    expect(s.size).toBe(0);
  });

  it('the sweep removes old slots nobody holds, and keeps held ones and recent ones', () => {
    const { s, dir } = slots();
    s.create(cred('held'));
    const now = Date.now();
    const old = (now - SLOT_STALE_MS - 60_000) / 1000;
    for (const name of ['old.beat', 'recent.beat', 'other.txt']) writeFileSync(join(dir, name), Buffer.alloc(16));
    utimesSync(join(dir, 'old.beat'), old, old);
    utimesSync(join(dir, 'other.txt'), old, old);
    utimesSync(join(dir, 'held.beat'), old, old);
    expect(s.sweep(now)).toBe(1);
    expect(existsSync(join(dir, 'old.beat'))).toBe(false);
    for (const name of ['recent.beat', 'other.txt', 'held.beat']) expect(existsSync(join(dir, name))).toBe(true);
    expect(s.sweep(now + 1000)).toBe(0); // not again so soon
  });

  it('with a report batch on a SQLite board: a slot beat reaches the board with the next transaction; one refused as fenced stops the acknowledgements', async () => {
    const dir = cleanups.tempDir('ks-slots-board-');
    const b = SqliteBoard.open(join(dir, 'kanban.db'));
    cleanups.push(() => b.close());
    await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
    await b.createTask({ skill: 'echo', title: 't' });
    const [claim] = await b.claimBatch(1, Date.now(), () => join(dir, 'x.log'));
    const c: RunCredentials = { taskId: claim!.task.id, runId: claim!.run.id, token: claim!.token };
    let slotsRef: BeatSlots | null = null;
    const batch = new ReportBatch({ board: () => b, log: pino({ level: 'silent' }), windowMs: 0, heartbeatWindowMs: 0, memoryBeat: () => true, fenced: (r, t) => slotsRef?.fenced(r, t) });
    const s = (slotsRef = new BeatSlots({ dir: join(dir, 'beats'), log: pino({ level: 'silent' }), vouch: () => true, beat: (cr, at) => batch.slotBeat(cr, at) }));
    cleanups.push(() => s.stop());
    const fd = workerFd(s.create(c)!);
    writeBeat(fd, 1n);
    s.read(5_000);
    expect(readAck(fd)).toBe(1n);
    // Written by a commit of its own (no tick here): the first of a round at once.
    await waitFor(async () => (await b.getRun(c.runId))!.heartbeatAt === 5_000, 5_000);
    // The run is fenced (reclaimed by someone else): the next slot beat is refused at its flush.
    expect(await b.beginReclaim(c.runId, 'timed_out', Date.now())).toBe(true);
    writeBeat(fd, 2n);
    s.read(6_000);
    expect(readAck(fd)).toBe(2n); // acknowledged when read (vouched); the board has not said yet
    // Written with the next round of beats answered from memory (MEMORY_BEAT_WRITE_MS after the last).
    await waitFor(() => batch.waiting === 0, MEMORY_BEAT_WRITE_MS + 3_000);
    await new Promise((r) => setTimeout(r, 50));
    expect((await b.getRun(c.runId))!.heartbeatAt).toBe(5_000);
    writeBeat(fd, 3n);
    s.read(7_000);
    expect(readAck(fd), 'no acknowledgement after the fence').toBe(2n);
    expect(slotTrusted(readAck(fd)!, [3n])).toBe(false);
  });
});
