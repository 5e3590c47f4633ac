/**
 * The change feed of a PostgreSQL board (`ChangeFeed`): LISTEN on the board's channel over one
 * connection of its own, opened at the first `changeVersion()` call (a board object that never asks,
 * a worker or the CLI, never opens it). Writes that make work appear notify the channel (task
 * added, ready again, cancelled: Q.notify); each notification bumps the counter. Unlike SQLite's
 * `data_version`, this board's own notifications count too (a spare wake-up, never a missed one).
 * When the connection is lost the counter is bumped too (the caller looks at the board once more)
 * and the next call, at most once a second, opens a new one: the periodic tick stays the safety net.
 */
import type pg from 'pg';
import type { PgConn } from './connection.js';

export class PgChangeFeed {
  private version = 0;
  private client: pg.Client | null = null;
  private starting = false;
  private lastAttempt = 0;
  private closed = false;
  private listeners: Array<() => void> = [];

  constructor(private readonly c: PgConn) {}

  /** Called at each bump: a supervisor wakes at the notification instead of at its next poll. */
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  private bump(): void {
    this.version++;
    for (const fn of this.listeners) fn();
  }

  changeVersion(): number {
    if (!this.client && !this.starting && !this.closed && Date.now() - this.lastAttempt >= 1000) void this.start();
    return this.version;
  }

  private async start(): Promise<void> {
    this.starting = true;
    this.lastAttempt = Date.now();
    const client = this.c.newClient();
    try {
      await client.connect();
      client.on('notification', (n) => {
        if (n.channel === this.c.channel) this.bump();
      });
      const lost = () => {
        if (this.client === client) {
          this.client = null;
          this.bump();
        }
      };
      client.on('error', lost);
      client.on('end', lost);
      await client.query(`LISTEN ${this.c.channel}`);
      if (this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
      // What was committed before LISTEN took effect is not notified: look once.
      this.bump();
    } catch {
      await client.end().catch(() => undefined);
    } finally {
      this.starting = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
