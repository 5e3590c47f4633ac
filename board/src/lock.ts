/**
 * Single-owner lock released by the kernel: a BEGIN IMMEDIATE transaction held open on a small
 * separate SQLite database next to the board. When the holder dies, the kernel drops its POSIX
 * locks and the next claimant gets in. The holder never touches the lock file through `fs`.
 */
import { resolve } from 'node:path';
import { isBusy } from './errors.js';
import { openLockDatabase, type Db } from './open.js';

export function ownerLockPath(boardPath: string): string {
  return resolve(boardPath) + '.owner-lock';
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
    const db = openLockDatabase(path, 0);
    try {
      db.exec('BEGIN IMMEDIATE');
      return { ok: true, lock: new OwnerLock(path, db) };
    } catch (e) {
      db.close();
      if (isBusy(e)) return { ok: false };
      throw e;
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
