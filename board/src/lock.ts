/**
 * Single-owner lock released by the kernel: a BEGIN IMMEDIATE transaction held open on a small
 * separate SQLite database next to the board. When the holder dies, the kernel drops its POSIX
 * locks and the next claimant gets in. The holder never touches the lock file through `fs`.
 *
 * One board, one lock file, whatever path names the board: the lock is next to the board's
 * resolved path (a symlinked board file is followed to its target; a symlinked folder holds the
 * same lock file anyway), and a board file with more than one hard link is refused
 * (resolveBoardPath), since each of its names would get a lock of its own.
 */
import { dirname } from 'node:path';
import { BoardPathError, isBusy } from './errors.js';
import { openLockDatabase, resolveBoardPath, type Db } from './open.js';

/** The owner lock of the board at `boardPath`. Throws BoardPathError for a path that cannot be a board. */
export function ownerLockPath(boardPath: string): string {
  return resolveBoardPath(boardPath) + '.owner-lock';
}

export type LockAttempt = { ok: true; lock: OwnerLock } | { ok: false };

export class OwnerLock {
  private constructor(
    readonly path: string,
    private db: Db | null,
  ) {}

  /** Try once, without waiting. */
  static tryAcquire(boardPath: string): LockAttempt {
    const path = ownerLockPath(boardPath);
    const cannot = (e: unknown) =>
      new BoardPathError(
        path.slice(0, -'.owner-lock'.length),
        `cannot get its owner lock ${path} (${(e as Error).message}); this user must be able to create and write files in ${dirname(path)}`,
        { cause: e },
      );
    let db: Db;
    try {
      db = openLockDatabase(path, 0);
    } catch (e) {
      throw cannot(e);
    }
    try {
      db.exec('BEGIN IMMEDIATE');
      return { ok: true, lock: new OwnerLock(path, db) };
    } catch (e) {
      db.close();
      if (isBusy(e)) return { ok: false };
      throw cannot(e);
    }
  }

  get held(): boolean {
    return this.db !== null && this.db.open && this.db.inTransaction;
  }

  release(): void {
    const db = this.db;
    this.db = null;
    if (!db || !db.open) return;
    try {
      if (db.inTransaction) db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  }
}
