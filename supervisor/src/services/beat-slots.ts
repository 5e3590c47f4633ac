/**
 * The supervisor's side of the heartbeat slots (policies beat-slot.ts for the protocol): one
 * 16-byte file per run of a reporting skill, made in the socket's folder (0700, ours) before the
 * spawn and held open. Every SLOT_READ_MS (a timer that runs only while there are slots), each
 * slot's beat is read through the descriptor the supervisor holds (one pread: never a path a worker
 * could swap, never a blocking open); a changed value is a heartbeat, acknowledged in the slot and
 * handed to the report batch, which writes it with the other beats answered from memory every
 * MEMORY_BEAT_WRITE_MS (policies; the supervisor's stall verdicts use the beat it heard meanwhile)
 * fenced with the run's token, only while the supervisor vouches for the worker (the rules of a
 * heartbeat answered from memory). A beat the board refuses as
 * fenced stops the acknowledgements for that run: its worker's next beat goes the reporting way
 * and is refused there, which stops it.
 *
 * A supervisor that restarts reopens an adopted worker's slot by its path (a regular file of ours
 * with one link, never a symlink or a FIFO: reaper openSlot); a slot it cannot open leaves that
 * worker's beats to the reporting way. A run's slot is closed and removed when the run is
 * forgotten; slots of runs nobody supervises (a supervisor SIGKILLed) are removed by the sweep.
 */
import { closeSync, lstatSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { SLOT_READ_MS } from '@kanban-supervisor/policies';
import { closeSlot, createSlot, openSlot, readBeat, writeAck } from '@kanban-supervisor/reaper/beat-slot';
import { ensurePrivateDir } from '@kanban-supervisor/reaper/safe-fs';
import type { RunCredentials } from '@kanban-supervisor/board';
import type { Logger } from '../logger.js';

/** A slot file nobody holds, left longer than this, is removed by the sweep, ms. */
export const SLOT_STALE_MS = 10 * 60_000;
/** The sweep runs at most this often, ms. */
const SWEEP_EVERY_MS = 10 * 60_000;

interface Slot {
  fd: number;
  path: string;
  cred: RunCredentials;
  /** The last beat value read (0n: none yet). */
  last: bigint;
  /** The board refused one of its beats as fenced: no more acknowledgements. */
  fenced: boolean;
}

export interface BeatSlotDeps {
  dir: string;
  log: Logger;
  /** Whether the supervisor vouches for this run's worker now (the rules of a heartbeat answered from memory). */
  vouch: (runId: string) => boolean;
  /** A heartbeat read from a slot: written by the batch with the beats answered from memory (within MEMORY_BEAT_WRITE_MS). */
  beat: (cred: RunCredentials, at: number) => void;
}

export class BeatSlots {
  private readonly slots = new Map<string, Slot>();
  private timer: NodeJS.Timeout | null = null;
  /** Whether the folder was usable at its last check (null: never checked); a change is said. */
  private ready: boolean | null = null;
  private lastSweep = 0;

  constructor(private readonly deps: BeatSlotDeps) {}

  get size(): number {
    return this.slots.size;
  }

  /** The slot's path of a run (a run id is the board's: no separator). */
  pathOf(runId: string): string {
    return join(this.deps.dir, `${runId}.beat`);
  }

  /**
   * The folder is usable now: a folder of ours (made when missing, 0700), never through a symbolic
   * link. Checked at every use (a make, an adoption, a sweep), not once: a worker of the same user
   * can remove it or put a symlink to a folder of its choice in its place (review: slots were then
   * off for good, or made in, and swept from, that folder). Said when it changes.
   */
  private folder(): boolean {
    const dir = this.deps.dir;
    let why: string | null = null;
    try {
      ensurePrivateDir(dir);
    } catch (e) {
      why = (e as Error).message;
    }
    const ready = why === null;
    if (ready !== this.ready) {
      if (!ready) this.deps.log.warn({ event: 'beat_slots_off', dir, error: why }, `heartbeat slots off (${why}): workers send every heartbeat through the channel`);
      else if (this.ready === false) this.deps.log.info({ event: 'beat_slots_on', dir }, 'heartbeat slots usable again');
      this.ready = ready;
    }
    return ready;
  }

  /** Make a run's slot before its worker is spawned. Returns its path for KANBAN_HEARTBEAT_SLOT, or null (no slot: the worker reports its beats). */
  create(cred: RunCredentials): string | null {
    if (!this.folder()) return null;
    const path = this.pathOf(cred.runId);
    try {
      const fd = createSlot(path);
      this.add({ fd, path, cred, last: 0n, fenced: false });
      return path;
    } catch (e) {
      this.deps.log.warn({ event: 'beat_slot_failed', run: cred.runId, task: cred.taskId, error: (e as Error).message }, 'heartbeat slot not made: the worker reports its beats');
      return null;
    }
  }

  /** An adopted worker's slot (a supervisor that restarted): reopened by its path when it is one. */
  adopt(cred: RunCredentials): void {
    if (this.slots.has(cred.runId) || !this.folder()) return;
    const path = this.pathOf(cred.runId);
    const r = openSlot(path);
    if (r.fd === null) {
      // Missing (a worker spawned without one) is normal; anything else is said.
      if (!r.why.endsWith('ENOENT')) this.deps.log.warn({ event: 'beat_slot_refused', run: cred.runId, task: cred.taskId, error: r.why }, 'heartbeat slot not reopened: the worker reports its beats');
      return;
    }
    const fd = r.fd;
    const v = readBeat(fd) ?? 0n;
    this.add({ fd, path, cred, last: v, fenced: false });
  }

  private add(slot: Slot): void {
    this.slots.set(slot.cred.runId, slot);
    if (!this.timer) {
      this.timer = setInterval(() => this.read(Date.now()), SLOT_READ_MS);
      this.timer.unref();
    }
  }

  /** The board refused a beat of this run as fenced. */
  fenced(runId: string, token: string): void {
    const s = this.slots.get(runId);
    if (s && s.cred.token === token) s.fenced = true;
  }

  /** Read every slot: each changed beat that the supervisor vouches for is acknowledged and handed on. */
  read(now: number): void {
    for (const s of this.slots.values()) {
      if (s.fenced) continue;
      let v: bigint | null;
      try {
        v = readBeat(s.fd);
      } catch {
        continue;
      }
      if (v === null || v === 0n || v === s.last) continue;
      // Seen now, whether vouched for or not: a beat read while not vouching is never counted later
      // (it gets no acknowledgement, so the worker reports it); counted at a later read, it would
      // be a heartbeat at that read's time of a worker that may have been frozen since.
      s.last = v;
      if (!this.deps.vouch(s.cred.runId)) continue;
      try {
        writeAck(s.fd, v);
      } catch {
        continue; // not acknowledged: the worker reports its next beat
      }
      this.deps.beat(s.cred, now);
    }
  }

  /** A run is no longer supervised: its slot is closed and removed (its name only if it is still this file). */
  close(runId: string): void {
    const s = this.slots.get(runId);
    if (!s) return;
    this.slots.delete(runId);
    closeSlot(s.fd, s.path);
    if (this.slots.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Stop reading (the supervisor stops); the files stay for a supervisor that adopts the workers. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const s of this.slots.values()) closeSync(s.fd);
    this.slots.clear();
  }

  /**
   * Remove slot files of runs this supervisor does not hold, untouched for SLOT_STALE_MS (a
   * supervisor SIGKILLed before its runs ended; another supervisor's live slot is written by its
   * worker at every beat, so it is never that old). At most every SWEEP_EVERY_MS.
   */
  sweep(now: number): number {
    if (now - this.lastSweep < SWEEP_EVERY_MS || !this.folder()) return 0;
    this.lastSweep = now;
    let removed = 0;
    let names: string[];
    try {
      names = readdirSync(this.deps.dir);
    } catch {
      return 0;
    }
    for (const name of names) {
      if (!name.endsWith('.beat') || this.slots.has(name.slice(0, -5))) continue;
      const p = join(this.deps.dir, name);
      try {
        const st = lstatSync(p);
        if (now - st.mtimeMs < SLOT_STALE_MS) continue;
        unlinkSync(p);
        removed++;
      } catch {
        /* gone */
      }
    }
    return removed;
  }
}
