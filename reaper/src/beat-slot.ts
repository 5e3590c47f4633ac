/**
 * Heartbeat slot files (the layout and the rules: policies beat-slot.ts). Both sides are here: the
 * supervisor makes a slot (exclusive create in its own folder), reads beats and writes
 * acknowledgements through the descriptor it holds; the worker runtime opens the slot it was given
 * (never following a symlink, never blocking on a FIFO, only a regular file of its user of the
 * slot's size), writes its beats and reads the acknowledgement. Every read and write is one pread or
 * pwrite of 8 bytes at a fixed offset: nothing a worker writes elsewhere in the file, nor a
 * truncated or grown file, is read as more than a changed value.
 *
 * This module imports nothing but Node and safe-fs: the worker runtime uses it through the
 * `@kanban-supervisor/reaper/beat-slot` subpath.
 */
import * as fs from 'node:fs';
import { UnsafeFileError, openSafe } from './safe-fs.js';

/** The slot's size and its two fields' offsets (little-endian unsigned 64-bit): the file format's one definition. */
export const BEAT_SLOT = { bytes: 16, beat: 0, ack: 8 } as const;
const SLOT_BYTES = BEAT_SLOT.bytes;
const BEAT_AT = BEAT_SLOT.beat;
const ACK_AT = BEAT_SLOT.ack;

/**
 * Make the slot at `path` (exclusive: an existing file, a planted symlink or FIFO there is an
 * error, never opened), 0600, zero-filled. Returns its descriptor (read-write), held by the caller.
 */
export function createSlot(path: string): number {
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | (fs.constants.O_NOFOLLOW ?? 0), 0o600);
  try {
    fs.writeSync(fd, Buffer.alloc(SLOT_BYTES), 0, SLOT_BYTES, 0);
    return fd;
  } catch (e) {
    fs.closeSync(fd);
    try {
      fs.unlinkSync(path);
    } catch {
      /* gone */
    }
    throw e;
  }
}

/**
 * Open an existing slot (a worker's own, or an adopted worker's for a supervisor that restarted):
 * a regular file of this user with one link, at least the slot's size, never a symlink or a FIFO.
 * Returns the descriptor (read-write), or null with why when it is missing or refused.
 */
export function openSlot(path: string): { fd: number } | { fd: null; why: string } {
  let opened: { fd: number; stat: fs.Stats };
  try {
    opened = openSafe(path, fs.constants.O_RDWR, { owner: true, singleLink: true });
  } catch (e) {
    const why = e instanceof UnsafeFileError ? e.message : `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
    return { fd: null, why };
  }
  if (opened.stat.size < SLOT_BYTES) {
    fs.closeSync(opened.fd);
    return { fd: null, why: `${path} is ${opened.stat.size} bytes, not a heartbeat slot (${SLOT_BYTES})` };
  }
  return { fd: opened.fd };
}

/** One buffer for every read and write (they are synchronous): no allocation per beat. */
const word = Buffer.alloc(8);

function read64(fd: number, at: number): bigint | null {
  const n = fs.readSync(fd, word, 0, 8, at);
  return n === 8 ? word.readBigUInt64LE(0) : null;
}

function write64(fd: number, at: number, v: bigint): void {
  word.writeBigUInt64LE(BigInt.asUintN(64, v));
  fs.writeSync(fd, word, 0, 8, at);
}

/** The worker's last beat value (null: the file was cut short). */
export function readBeat(fd: number): bigint | null {
  return read64(fd, BEAT_AT);
}

/** The supervisor's acknowledgement (null: the file was cut short). */
export function readAck(fd: number): bigint | null {
  return read64(fd, ACK_AT);
}

export function writeBeat(fd: number, v: bigint): void {
  write64(fd, BEAT_AT, v);
}

export function writeAck(fd: number, v: bigint): void {
  write64(fd, ACK_AT, v);
}

/**
 * Close a slot the supervisor holds and remove its name, only while the name is still this file
 * (one put in its place, or a slot moved there, is left alone).
 */
export function closeSlot(fd: number, path: string): void {
  try {
    if (fs.lstatSync(path).ino === fs.fstatSync(fd).ino) fs.unlinkSync(path);
  } catch {
    /* gone already */
  }
  fs.closeSync(fd);
}
