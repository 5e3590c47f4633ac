/** Events the supervisor appends to a task's history, and the owner row (who runs the board). */
import type { Json, OwnerInfo } from '../types.js';
import { toOwner } from './rows.js';
import type { Writer } from './tx.js';

export async function appendEvent(w: Writer, taskId: string, runId: string | null, kind: string, data: Json | null, now: number): Promise<void> {
  await w.write((q) => q.event(taskId, runId, kind, data, now));
}

/** Write the owner row (one row, id 1): the supervisor's pid, host, start, state; seen now. */
export async function setOwner(w: Writer, info: { pid: number; host: string; startedAt: number; state?: string; detail?: string | null }): Promise<void> {
  const now = Date.now();
  await w.write((q) =>
    q.run(
      `INSERT INTO owner (id, pid, host, started_at, seen_at, state, detail) VALUES (1, $1, $2, $3, $4, $5, $6)
       ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, started_at = excluded.started_at,
         seen_at = excluded.seen_at, state = excluded.state, detail = excluded.detail`,
      [info.pid, info.host, info.startedAt, now, info.state ?? 'running', info.detail ?? null],
    ),
  );
}

export async function getOwner(w: Writer): Promise<OwnerInfo | null> {
  return w.read(async (q) => {
    const r = await q.get('SELECT * FROM owner WHERE id = 1');
    return r ? toOwner(r) : null;
  });
}
