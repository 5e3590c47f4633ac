/** `kanban-supervisor status`: the owner, the pool, and each running worker with its resource use. */
import { readFileSync } from 'node:fs';
import { OwnerLock, SqliteBoard } from '@kanban-supervisor/board';
import { Reaper, alive, findByEnv, type ProcessIdentity } from '@kanban-supervisor/reaper';

export interface StatusReport {
  board: string;
  owner: { pid: number; host: string; since: number; state: string; live: boolean } | null;
  pool: { live: number; max: number | null };
  quarantine: unknown;
  counts: Record<string, number>;
  workers: Array<{
    task: string;
    run: string;
    pid: number | null;
    status: string;
    stopReason: string | null;
    ageMs: number;
    heartbeatAgeMs: number | null;
    alive: boolean;
    cpuPercent: number | null;
    rssBytes: number | null;
  }>;
}

/** The supervisor's own status file next to the board (readable even when the board is not). */
function readStatusFile(boardPath: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(`${boardPath}.supervisor.json`, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export async function statusReport(db: string): Promise<StatusReport> {
  const path = SqliteBoard.resolvePath(db);
  const file = readStatusFile(path);
  let board: SqliteBoard;
  try {
    board = SqliteBoard.openReadonly(db);
  } catch (e) {
    // The board cannot be read (damaged?): report what the owner says about it.
    const probe = OwnerLock.tryAcquire(path);
    const ownerLive = !probe.ok;
    if (probe.ok) probe.lock.release();
    return {
      board: path,
      owner: file ? { pid: Number(file.pid), host: String(file.host), since: Number(file.startedAt), state: ownerLive ? String(file.state) : 'not running', live: ownerLive } : null,
      pool: { live: Number(file?.liveWorkers ?? 0), max: typeof file?.maxConcurrentWorkers === 'number' ? file.maxConcurrentWorkers : null },
      quarantine: file?.quarantine ?? { reason: `board unreadable: ${(e as Error).message}` },
      counts: {},
      workers: [],
    };
  }
  try {
    const owner = await board.getOwner();
    // The lock is free iff no supervisor runs: try it without waiting, release at once.
    const probe = OwnerLock.tryAcquire(board.path);
    const ownerLive = !probe.ok;
    if (probe.ok) probe.lock.release();
    const live = await board.liveRuns();
    const counts = await board.counts();
    const now = Date.now();
    const ids = new Map<string, ProcessIdentity>();
    for (const r of live) {
      if (r.pid !== null && r.procStartTime !== null && r.bootId !== null) {
        ids.set(r.id, { pid: r.pid, pgid: r.pgid ?? r.pid, startTime: r.procStartTime, bootId: r.bootId });
      } else if (r.status === 'starting') {
        // Spawned in the supervisor's last tick: its pid reaches the board with the next one.
        const found = findByEnv('KANBAN_RUN_ID', r.id)[0];
        if (found) ids.set(r.id, found);
      }
    }
    const reaper = new Reaper({ subreaper: false });
    const list = [...ids.values()];
    reaper.sample(list);
    await new Promise((r) => setTimeout(r, 250));
    const usage = reaper.sample(list);
    let detail: Record<string, unknown> = {};
    try {
      detail = owner?.detail ? (JSON.parse(owner.detail) as Record<string, unknown>) : {};
    } catch {
      detail = {};
    }
    return {
      board: board.path,
      // A live owner writes its status file at start; a quarantined one cannot write the board.
      owner:
        ownerLive && file && file.state !== 'stopped'
          ? { pid: Number(file.pid), host: String(file.host), since: Number(file.startedAt), state: String(file.state), live: true }
          : owner
            ? { pid: owner.pid, host: owner.host, since: owner.startedAt, state: ownerLive ? owner.state : 'not running', live: ownerLive }
            : null,
      pool: { live: live.filter((r) => ids.has(r.id) && alive(ids.get(r.id)!)).length, max: typeof detail.maxConcurrentWorkers === 'number' ? detail.maxConcurrentWorkers : null },
      quarantine: (ownerLive ? (file?.quarantine ?? detail.quarantine) : null) ?? null,
      counts: { ...counts.tasks },
      workers: live.map((r) => {
        const id = ids.get(r.id);
        const u = id ? usage.get(id.pid) : undefined;
        return {
          task: r.taskId,
          run: r.id,
          pid: r.pid ?? ids.get(r.id)?.pid ?? null,
          status: r.status,
          stopReason: r.stopReason,
          ageMs: now - r.startedAt,
          heartbeatAgeMs: r.heartbeatAt !== null ? now - r.heartbeatAt : null,
          alive: id ? alive(id) : false,
          cpuPercent: u ? Math.round(u.cpuPercent * 10) / 10 : null,
          rssBytes: u ? u.rssBytes : null,
        };
      }),
    };
  } finally {
    board.closeSync();
  }
}

const secs = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(1)}s`);

export function printStatus(r: StatusReport): void {
  const lines = [
    `board ${r.board}`,
    r.owner
      ? `owner: pid ${r.owner.pid} on ${r.owner.host} since ${new Date(r.owner.since).toISOString()} (${r.owner.state})`
      : 'owner: none has run on this board',
    `pool: ${r.pool.live} live / ${r.pool.max ?? '?'} max`,
    `tasks: ${Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    r.quarantine ? `quarantine: ${JSON.stringify(r.quarantine)}` : '',
    r.workers.length ? 'workers:' : 'workers: none',
    ...r.workers.map(
      (w) =>
        `  task ${w.task} run ${w.run} pid ${w.pid ?? '-'} ${w.status}${w.stopReason ? ` (reclaiming: ${w.stopReason})` : ''} age ${secs(w.ageMs)} heartbeat ${secs(w.heartbeatAgeMs)} cpu ${w.cpuPercent ?? '-'}% rss ${w.rssBytes !== null ? (w.rssBytes / 1048576).toFixed(1) + 'MB' : '-'}${w.alive ? '' : ' (not alive)'}`,
    ),
  ].filter(Boolean);
  process.stdout.write(lines.join('\n') + '\n');
}
