/** Small file helpers shared by the recovery phases (all synchronous, all through `fs`). */
import { readSync, statSync, unlinkSync } from 'node:fs';

export function readAll(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return buf; // zero-filled past EOF, as SQLite reads a short page
}

export interface FileStat {
  size: number;
  mtimeMs: number;
  ino: number;
}

export function statOrNull(p: string): FileStat | null {
  try {
    const s = statSync(p);
    return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
  } catch {
    return null;
  }
}

export function removeQuiet(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    /* absent */
  }
}
