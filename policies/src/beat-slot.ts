/**
 * The heartbeat slot: how a worker's automatic bare heartbeats reach its supervisor without a
 * message (no socket round trip, no wake-up of the supervisor per beat).
 *
 * The supervisor makes a 16-byte file per run in its own folder (0700) before it spawns the
 * worker, holds it open, and names it in KANBAN_HEARTBEAT_SLOT. Layout (reaper beat-slot.ts BEAT_SLOT), little-endian 64-bit:
 *   bytes 0-7   the worker's last beat: a value the worker never wrote before (pid × 2^32 + count)
 *   bytes 8-15  the supervisor's acknowledgement: the last beat value it read and vouched for
 * The supervisor reads every slot every SLOT_READ_MS; a value that changed is a heartbeat, which it
 * writes on the board (fenced, with the run's token) within MEMORY_BEAT_WRITE_MS, and acknowledges,
 * only while it vouches for the worker (the rules of a heartbeat answered from memory:
 * heartbeatFromMemory). The worker trusts the slot while its previous beat (SLOT_TRUSTED_BEATS) was
 * acknowledged; otherwise (the supervisor dead, stopped, slow, no longer vouching, the run
 * fenced) that beat goes the reporting way (the channel, else the board), whose answer tells it.
 * A beat that went in the slot only is answered by its own acknowledgement: one not there within
 * SLOT_ACK_WAIT_MS is reported then. So every beat is either vouched for by the supervisor within
 * SLOT_ACK_WAIT_MS of it or reported, as a heartbeat answered from memory is vouched for when it
 * is answered, and a worker whose supervisor died, stopped or got stuck still learns within two of
 * its heartbeat intervals (plus SLOT_ACK_WAIT_MS) that its run was fenced out (what
 * takeoverRequeueDelayMs counts on). (Trusting the previous beat's acknowledgement alone, an
 * acknowledgement one interval old, let a worker whose supervisor got stuck right after one run a
 * whole interval longer unaware: review.)
 */

/** How often the supervisor reads the slots, ms. */
export const SLOT_READ_MS = 500;

/**
 * How long a beat that went in the slot only waits for its acknowledgement before it is reported,
 * ms: the supervisor reads the slots every SLOT_READ_MS, so twice that (a timer of a busy
 * supervisor runs late; a beat reported for nothing costs one report answered from memory).
 */
export const SLOT_ACK_WAIT_MS = 2 * SLOT_READ_MS;

/** How many of its last beats a worker looks among for the supervisor's acknowledgement. */
export const SLOT_TRUSTED_BEATS = 1;

/** The beat value a worker writes: unique per process of the run (its pid) and per beat (its count, from 1). */
export function slotBeatValue(pid: number, count: number): bigint {
  return (BigInt(pid) << 32n) | BigInt(count >>> 0);
}

/**
 * Whether a worker's beat may go in its slot only: the supervisor acknowledged one of its last
 * beats (`recent`, the values it wrote, newest last). A slot never acknowledged (0), or holding
 * an older or foreign value, is not trusted.
 */
export function slotTrusted(ack: bigint, recent: readonly bigint[]): boolean {
  if (ack === 0n) return false;
  return recent.slice(-SLOT_TRUSTED_BEATS).includes(ack);
}
