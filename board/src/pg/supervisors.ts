/**
 * The supervisors of a PostgreSQL board (schema v2): one row per supervisor that ran (host id, pid,
 * boot id, start, lease expiry), its lease renewed in every tick's transaction, marked stopped on
 * a clean exit. A row is a record, not the ownership: that is the host's advisory lock
 * (host-lock.ts), which the server releases when its connection dies.
 */
import { randomBytes } from 'node:crypto';
import { stopOutcome, isStopReason } from '@kanban-supervisor/policies';
import type { AccountAction, LiveRun, Run, SupervisorIdentity, SupervisorRow, Task, TakenOverRun, TakenOverSupervisor } from '../types.js';
import { accountOne } from './accounting.js';
import { PG_HOT_SQL } from './hot-sql.js';
import { toLiveRun, toRun, toTask, type Row } from './rows.js';
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
    takenOverBy: (r.taken_over_by as string | null) ?? null,
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

/**
 * Take over the supervisors of other hosts whose lease expired before `now` (see
 * LeaseRenewal.takeOverExpired), in ONE write: for each (locked, skipping one a transaction holds:
 * it is renewing its lease), its row is marked stopped and taken over by `myId`; each of its live
 * runs is fenced: ended (`abandoned`, or what its reclaim was for) unless it had ended, its stop
 * reason `lease_lost` unless a reclaim had begun, and accounted with `decide`'s action, a requeue
 * not before `requeueNotBefore(run)`. The row, then each run, then its task are locked in that
 * order (a worker's fence locks run then task; a supervisor renewing its lease locks its row first).
 */
export async function takeOverExpired(
  w: Writer,
  myId: string,
  myHostId: string,
  now: number,
  decide: (run: Run, task: Task) => AccountAction,
  requeueNotBefore: (run: LiveRun) => number,
): Promise<TakenOverSupervisor[]> {
  return w.write(async (q) => {
    const out: TakenOverSupervisor[] = [];
    for (const row of await q.all(PG_HOT_SQL.expiredSupervisors, [now, myHostId])) {
      const sup = toSupervisor(row);
      await q.run('UPDATE supervisors SET stopped_at = $2, taken_over_by = $3 WHERE id = $1', [sup.id, now, myId]);
      const runs: TakenOverRun[] = [];
      for (const arr of await q.arrays(PG_HOT_SQL.liveRunsOfSupervisor, [sup.id])) {
        const live = toLiveRun(arr);
        const why = `its supervisor (pid ${sup.pid} on host ${sup.host}, host id ${sup.hostId}) lost its lease at ${new Date(sup.leaseExpiresAt).toISOString()}; taken over by supervisor ${myId}`;
        if (live.status !== 'ended') {
          const outcome = live.stopReason !== null && isStopReason(live.stopReason) ? stopOutcome(live.stopReason) : 'abandoned';
          await q.run(
            `UPDATE runs SET status = 'ended', outcome = $2, error = $3, ended_at = $4, stop_reason = COALESCE(stop_reason, 'lease_lost') WHERE id = $1`,
            [live.id, outcome, why, now],
          );
          await q.event(live.taskId, live.id, 'ended', { outcome, error: why }, now);
        } else {
          await q.run(`UPDATE runs SET stop_reason = COALESCE(stop_reason, 'lease_lost') WHERE id = $1`, [live.id]);
        }
        await q.event(live.taskId, live.id, 'taken_over', { supervisor: sup.id, host_id: sup.hostId, pid: live.pid, by: myId }, now);
        const run = toRun((await q.get('SELECT * FROM runs WHERE id = $1', [live.id]))!);
        const t = await q.get('SELECT * FROM tasks WHERE id = $1 FOR UPDATE', [live.taskId]);
        let action: AccountAction = { action: 'leave' };
        if (run.accountedAt === null && t) {
          action = decide(run, toTask(t));
          if (action.action === 'requeue') action = { ...action, notBefore: Math.max(action.notBefore, requeueNotBefore(live)) };
          await accountOne(q, run.id, action, now);
        }
        runs.push({ runId: run.id, taskId: run.taskId, pid: run.pid, outcome: run.outcome ?? 'abandoned', action });
      }
      out.push({ id: sup.id, hostId: sup.hostId, host: sup.host, pid: sup.pid, leaseExpiresAt: sup.leaseExpiresAt, runs });
    }
    return out;
  });
}
