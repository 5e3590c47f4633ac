/**
 * The supervisors of a PostgreSQL board (schema v2): one row per supervisor that ran (host id, pid,
 * boot id, start, lease expiry), its lease renewed in every tick's transaction, marked stopped on
 * a clean exit. A row is a record, not the ownership: that is the host's advisory lock
 * (host-lock.ts), which the server releases when its connection dies.
 */
import { randomBytes } from 'node:crypto';
import type { SupervisorIdentity, SupervisorRow } from '../types.js';
import type { Row } from './rows.js';
import type { Writer } from './tx.js';

export function newSupervisorId(): string {
  return `s${Date.now().toString(36)}${randomBytes(6).toString('hex')}`;
}

function toSupervisor(r: Row): SupervisorRow {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: String(r.id),
    hostId: String(r.host_id),
    host: String(r.host),
    pid: Number(r.pid),
    bootId: (r.boot_id as string | null) ?? null,
    procStartTime: n(r.proc_start_time),
    startedAt: Number(r.started_at),
    leaseExpiresAt: Number(r.lease_expires_at),
    stoppedAt: n(r.stopped_at),
  };
}

/**
 * Insert this supervisor's row, its lease running `leaseMs` from `now`. The caller holds its host's
 * ownership: any other row of that host not marked stopped is a dead predecessor's (SIGKILL, a
 * crash), marked stopped now, in the same transaction (its runs stay its host's).
 */
export async function registerSupervisor(w: Writer, id: string, me: SupervisorIdentity, leaseMs: number, now: number): Promise<void> {
  await w.write(async (q) => {
    await q.run('UPDATE supervisors SET stopped_at = $2, lease_expires_at = LEAST(lease_expires_at, $2) WHERE host_id = $1 AND stopped_at IS NULL', [me.hostId, now]);
    await q.run(
      `INSERT INTO supervisors (id, host_id, host, pid, boot_id, proc_start_time, started_at, lease_expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [id, me.hostId, me.host, me.pid, me.bootId, me.procStartTime, me.startedAt, now + leaseMs],
    );
  });
}

/** Push the lease of supervisor `id` to `now + leaseMs` (never back); false if its row is gone or stopped. */
export async function renewLease(w: Writer, id: string, leaseMs: number, now: number): Promise<boolean> {
  const n = await w.write((q) =>
    q.run('UPDATE supervisors SET lease_expires_at = GREATEST(lease_expires_at, $2) WHERE id = $1 AND stopped_at IS NULL', [id, now + leaseMs]),
  );
  return n === 1;
}

export async function markStopped(w: Writer, id: string, now: number): Promise<void> {
  await w.write((q) => q.run('UPDATE supervisors SET stopped_at = $2, lease_expires_at = LEAST(lease_expires_at, $2) WHERE id = $1 AND stopped_at IS NULL', [id, now]));
}

/** How many connections the server takes from users like us: max_connections less the superuser reserve. */
export async function connectionLimit(w: Writer): Promise<number> {
  return w.read(async (q) => {
    const r = await q.get(`SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS n`);
    return Number(r?.n ?? 0);
  });
}

/** The supervisors of the board not marked stopped, newest first (of one host with `hostId`). */
export async function liveSupervisors(w: Writer, hostId: string | null): Promise<SupervisorRow[]> {
  return w.read(async (q) =>
    (
      await q.all(
        `SELECT * FROM supervisors WHERE stopped_at IS NULL AND ($1::text IS NULL OR host_id = $1::text) ORDER BY started_at DESC, id DESC LIMIT 1000`,
        [hostId],
      )
    ).map(toSupervisor),
  );
}
