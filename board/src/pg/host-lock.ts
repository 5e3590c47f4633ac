/**
 * Ownership per host of a PostgreSQL board: at most one supervisor per (board, host id). It is a
 * session advisory lock (`pg_try_advisory_lock`) held on a connection of its own, outside the
 * pool: the server releases it when that connection ends, however the supervisor died (SIGKILL,
 * a lost network, a host gone), as the kernel releases SQLite's owner lock.
 *
 * The key is a 64-bit hash of the board's schema and the host id (the lock space is the
 * database's, shared by every schema in it). A hash collision between two hosts would only make
 * them wait for each other (never two owners for one host).
 */
import type pg from 'pg';
import type { HostHold } from '../types.js';
import type { PgConn } from './connection.js';

export function hostLockKey(schema: string, hostId: string): string {
  return `kanban-supervisor host ${schema} ${hostId}`;
}

export class PgHostLock implements HostHold {
  private lostFlag = false;
  private released = false;
  private readonly listeners: Array<(e: unknown) => void> = [];

  private constructor(private readonly client: pg.Client) {
    const lost = (e: unknown) => {
      if (this.released || this.lostFlag) return;
      this.lostFlag = true;
      for (const fn of this.listeners) fn(e);
    };
    client.on('error', lost);
    client.on('end', () => lost(new Error('the connection holding the host lock ended')));
  }

  /** Try once, without waiting: the lock, or null when another session holds it. Throws on connection errors. */
  static async tryAcquire(c: PgConn, hostId: string): Promise<PgHostLock | null> {
    const client = c.newClient();
    try {
      await client.connect();
      const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [hostLockKey(c.schema, hostId)]);
      if (r.rows[0]?.ok) return new PgHostLock(client);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw c.wrap(e);
    }
    await client.end().catch(() => undefined);
    return null;
  }

  /** Whether the connection holding the lock was lost (the server has released the lock). */
  get lost(): boolean {
    return this.lostFlag;
  }

  onLost(fn: (e: unknown) => void): void {
    this.listeners.push(fn);
  }

  /** Release the lock (ending its connection releases it too). Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.client.end().catch(() => undefined);
  }
}
