import { closeSync, fsyncSync, openSync } from 'node:fs';

/** fsync a directory so that a rename inside it is durable; best effort (not every platform allows it). */
export function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not every platform lets a directory be fsynced */
  }
}
