/**
 * The snapshot's -wal, parsed the way SQLite's own recovery does: frames count while their salts
 * and running checksums are valid, and only those up to the last commit frame are applied. The
 * page scan lays these committed frames over the file; bytes after the last commit (a torn or
 * uncommitted tail) are ignored by SQLite, and so by recovery.
 */
import { closeSync, openSync, statSync } from 'node:fs';
import { readAll } from './io.js';
import type { RecoverReport, WalInfo } from './report.js';

export interface WalParse {
  info: WalInfo;
  pageSize: number;
  /** Page number -> file offset of its newest committed frame's data. */
  frames: Map<number, number>;
  /** Database size in pages after the last commit, or 0. */
  dbPages: number;
}

function walChecksum(big: boolean, buf: Buffer, start: number, end: number, s: [number, number]): [number, number] {
  let s0 = s[0];
  let s1 = s[1];
  for (let i = start; i < end; i += 8) {
    const x0 = big ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const x1 = big ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  return [s0, s1];
}

/** Parse a -wal the way SQLite's recovery does: valid frames up to the last commit frame count. */
export function parseWal(path: string): WalParse | null {
  const bytes = statSync(path).size;
  if (bytes < 32) return null;
  const fd = openSync(path, 'r');
  try {
    const hdr = readAll(fd, 0, 32);
    const magic = hdr.readUInt32BE(0);
    if (magic !== 0x377f0682 && magic !== 0x377f0683) return null;
    const big = (magic & 1) === 1;
    const pageSize = hdr.readUInt32BE(8);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
    const [h0, h1] = walChecksum(big, hdr, 0, 24, [0, 0]);
    if (h0 !== hdr.readUInt32BE(24) || h1 !== hdr.readUInt32BE(28)) return null;
    const salt1 = hdr.readUInt32BE(16);
    const salt2 = hdr.readUInt32BE(20);
    const frameSize = 24 + pageSize;
    let sum: [number, number] = [h0, h1];
    const pending = new Map<number, number>();
    const frames = new Map<number, number>();
    let valid = 0;
    let committed = 0;
    let dbPages = 0;
    for (let off = 32; off + frameSize <= bytes; off += frameSize) {
      const frame = readAll(fd, off, frameSize);
      const pgno = frame.readUInt32BE(0);
      const commit = frame.readUInt32BE(4);
      if (pgno === 0 || frame.readUInt32BE(8) !== salt1 || frame.readUInt32BE(12) !== salt2) break;
      let s = walChecksum(big, frame, 0, 8, sum);
      s = walChecksum(big, frame, 24, frameSize, s);
      if (s[0] !== frame.readUInt32BE(16) || s[1] !== frame.readUInt32BE(20)) break;
      sum = s;
      valid++;
      pending.set(pgno, off + 24);
      if (commit !== 0) {
        for (const [p, o] of pending) frames.set(p, o);
        pending.clear();
        committed = valid;
        dbPages = commit;
      }
    }
    const end = 32 + committed * frameSize;
    return { info: { bytes, validFrames: valid, committedFrames: committed, tailBytes: bytes - end }, pageSize, frames, dbPages };
  } finally {
    closeSync(fd);
  }
}

/** Phase: parse the snapshot's -wal (if any) and report what SQLite will and will not apply of it. */
export function readSnapshotWal(walPath: string | null, report: RecoverReport): WalParse | null {
  const wal = walPath ? parseWal(walPath) : null;
  if (walPath) {
    if (wal) {
      report.wal = wal.info;
      if (wal.info.tailBytes > 0) {
        report.notes.push(`the -wal has ${wal.info.tailBytes} bytes after its last committed frame (a torn or uncommitted tail, or frames left from an earlier WAL cycle); SQLite ignores them, and so does recovery`);
      }
    } else report.notes.push('the -wal has no valid header; SQLite ignores it, and so does recovery');
  }
  return wal;
}
