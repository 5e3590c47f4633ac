/**
 * `kanban-supervisor status [--watch]`: the owner, the pool, dispatch (storm, quarantine), the task
 * counts, and each live worker with its resource use.
 *
 * Reads only: the board through a read-only connection, the owner's status file, /proc. It takes
 * no lock of any kind (not even the owner lock for a probe: a supervisor starting at that moment
 * would find the board owned and refuse to start). Whether the owner lives is read from the status
 * file it writes right after taking the owner lock: its pid, checked to be the same process.
 */
import { hostname } from 'node:os';
import { BoardPathError, classifyError, isPgLocation, openBoard, pgLocationLabel, resolveBoardPath, supervisorRegistryOf, type Board, type RunListing } from '@kanban-supervisor/board';
import { EXIT } from '@kanban-supervisor/policies';
import { Reaper, alive, findByEnv, type ProcessIdentity } from '@kanban-supervisor/reaper';
import { printable } from './text.js';
import { ownerFromRow, ownerFromStatusFile, readStatusFile, type OwnerView } from './owner.js';

export interface WorkerRow {
  task: string;
  run: string;
  skill: string;
  title: string;
  /** The run's place among its task's runs, from 1. */
  attempt: number;
  pid: number | null;
  status: string;
  stopReason: string | null;
  /** Reclaim state in words (null: not being reclaimed). */
  reclaim: string | null;
  ageMs: number;
  heartbeatAgeMs: number | null;
  alive: boolean;
  cpuPercent: number | null;
  rssBytes: number | null;
}

export interface StatusReport {
  board: string;
  /** When this report was taken (ms since the epoch). */
  at: number;
  owner: { pid: number; host: string; since: number; state: string; live: boolean } | null;
  pool: { live: number; max: number | null };
  quarantine: unknown;
  /** Dispatch paused by the storm breaker: until when, and why (null: not paused). */
  storm: { pausedUntil: number; trips: number; reason: string } | null;
  /** The owner's last view of whether workers can reach the board by path: `{ ok: false, path, code, error, since }` when not. */
  boardAccess: unknown;
  counts: Record<string, number>;
  /** A board several supervisors share (PostgreSQL): each one not stopped, with its lease; absent on SQLite. */
  supervisors?: Array<{ hostId: string; host: string; pid: number; since: number; leaseExpiresAt: number; leaseOk: boolean }>;
  workers: WorkerRow[];
  /** The live owner's HTTP server (its page), without the token; null: none. */
  http: { url: string } | null;
  /** The live owner's report channel (its socket); null: off, or no live owner. */
  reportSocket: string | null;
}

/**
 * CPU use needs two samples: a sampler kept across the refreshes of `status --watch` compares each
 * with the previous one; a one-shot `status` samples twice, 250 ms apart.
 */
export class UsageSampler {
  private readonly reaper = new Reaper({ subreaper: false });
  private sampled = false;

  async sample(ids: ProcessIdentity[]): Promise<ReturnType<Reaper['sample']>> {
    if (!this.sampled) {
      this.sampled = true;
      this.reaper.sample(ids);
      await new Promise((r) => setTimeout(r, 250));
    }
    return this.reaper.sample(ids);
  }
}

function liveOwner(o: OwnerView): StatusReport['owner'] {
  // On another host the process cannot be checked: trust what it wrote.
  const live = o.live ?? o.state !== 'stopped';
  return { pid: o.pid, host: o.host, since: o.since, state: live ? o.state : 'not running', live };
}

function stormOf(file: Record<string, unknown> | null, now: number): StatusReport['storm'] {
  const s = file?.storm as { pausedUntil?: unknown; trips?: unknown; reason?: unknown } | null | undefined;
  if (!s || typeof s.pausedUntil !== 'number' || s.pausedUntil <= now) return null;
  return { pausedUntil: s.pausedUntil, trips: Number(s.trips ?? 0), reason: String(s.reason ?? '') };
}

/**
 * A live run's heartbeat age: from its board time, or from the latest beat its supervisor heard when
 * it answers itself (the board's time of beats answered from memory lags up to MEMORY_BEAT_WRITE_MS).
 */
function heartbeatAge(boardAt: number | null, heardAt: number | null, now: number): number | null {
  const last = Math.max(boardAt ?? -Infinity, heardAt ?? -Infinity);
  return Number.isFinite(last) ? Math.max(0, now - last) : null;
}

function reclaimText(r: RunListing, now: number): string | null {
  if (r.stopReason !== null) {
    if (r.sigkillAt !== null) return `${r.stopReason}: SIGKILL sent ${fmtAge(now - r.sigkillAt)} ago`;
    return `${r.stopReason}: SIGTERM sent ${r.sigtermAt !== null ? `${fmtAge(now - r.sigtermAt)} ago` : ''}`.trim();
  }
  if (r.status === 'ended') return `reported ${r.outcome ?? ''}, exiting`;
  return null;
}

/**
 * How the supervisor itself answers `status` (its HTTP /api/status): through its HTTP side's read
 * connection (kept open, never closed here), and with what it knows of its own workers (the last
 * 5 s sample of each) instead of a /proc scan per call.
 */
export interface InProcessStatus {
  board: Board;
  /** A supervised worker's last sample by run id; null: not one of ours (not alive here). */
  workerOf(runId: string): { pid: number; cpuPercent: number | null; rssBytes: number | null; heardAt?: number | null } | null;
}

export async function statusReport(db: string, sampler: UsageSampler = new UsageSampler(), own?: InProcessStatus): Promise<StatusReport> {
  // A PostgreSQL board's status file is in its local state folder (this host's supervisor's).
  const path = isPgLocation(db) ? db : resolveBoardPath(db);
  const file = readStatusFile(path);
  const fromFile = ownerFromStatusFile(file);
  const now = Date.now();
  let board: Board;
  try {
    board = own ? own.board : await openBoard(db, { readonly: true });
  } catch (e) {
    // The board cannot be read (damaged? not ours?): report what the owner says about it.
    const owner = fromFile ? liveOwner(fromFile) : null;
    const ownerLive = owner?.live === true;
    // No owner to say anything, and the path holds no board (an empty file, a database without
    // the board's schema) or this user may not read it: refused naming the path, as every other
    // command does (exit 2). (With a live owner, its status file says what it knows, and whether
    // its workers can reach the board.)
    if (!ownerLive && e instanceof BoardPathError) throw e;
    if (!ownerLive && classifyError(e) === 'access') {
      const label = isPgLocation(path) ? pgLocationLabel(path) : path;
      throw new BoardPathError(label, `cannot be read by this user (uid ${process.getuid?.() ?? '?'}): ${(e as Error).message}`, { cause: e });
    }
    return {
      board: isPgLocation(path) ? pgLocationLabel(path) : path,
      at: now,
      owner,
      pool: { live: Number(file?.liveWorkers ?? 0), max: typeof file?.maxConcurrentWorkers === 'number' ? file.maxConcurrentWorkers : null },
      // Not readable by this user is not damage: no quarantine to report for it.
      quarantine: (ownerLive ? file?.quarantine : null) ?? (classifyError(e) === 'access' ? null : { reason: `board unreadable: ${(e as Error).message}` }),
      storm: ownerLive ? stormOf(file, now) : null,
      boardAccess: (ownerLive ? file?.boardAccess : null) ?? (classifyError(e) === 'access' ? { ok: false, error: (e as Error).message } : null),
      counts: {},
      workers: [],
      http: ownerLive && typeof file?.httpUrl === 'string' ? { url: file.httpUrl } : null,
      reportSocket: ownerLive && typeof file?.reportSocket === 'string' ? file.reportSocket : null,
    };
  }
  try {
    const row = await board.getOwner();
    const live = await board.listRuns({ live: true, limit: 100_000 });
    const counts = await board.counts();
    const registry = supervisorRegistryOf(board);
    const sups = registry ? await registry.liveSupervisors() : null;
    const ids = new Map<string, ProcessIdentity>();
    if (own) {
      // The supervisor's own answer: its workers as it supervises them, no /proc scan.
      for (const r of live) {
        const w = own.workerOf(r.id);
        if (w) ids.set(r.id, { pid: w.pid, pgid: w.pid, startTime: 0, bootId: '' });
      }
    } else for (const r of live) {
      if (r.pid !== null && r.procStartTime !== null && r.bootId !== null) {
        ids.set(r.id, { pid: r.pid, pgid: r.pgid ?? r.pid, startTime: r.procStartTime, bootId: r.bootId });
      } else if (r.status === 'starting') {
        // Spawned in the supervisor's last tick: its pid reaches the board with the next one.
        const found = findByEnv('KANBAN_RUN_ID', r.id)[0];
        if (found) ids.set(r.id, found);
      }
    }
    const list = [...ids.values()];
    const usage = own ? new Map<number, { cpuPercent: number; rssBytes: number }>() : await sampler.sample(list);
    if (own) {
      for (const r of live) {
        const w = own.workerOf(r.id);
        if (w && w.cpuPercent !== null && w.rssBytes !== null) usage.set(w.pid, { cpuPercent: w.cpuPercent, rssBytes: w.rssBytes });
      }
    }
    const isAlive = (runId: string): boolean => (own ? own.workerOf(runId) !== null : alive(ids.get(runId)!));
    let detail: Record<string, unknown> = {};
    try {
      detail = row?.detail ? (JSON.parse(row.detail) as Record<string, unknown>) : {};
    } catch {
      detail = {};
    }
    // The status file is written right after the owner lock is taken; the board's row later (and
    // not at all while the board is quarantined).
    const fromRow = ownerFromRow(row);
    const owner = fromFile && (fromFile.live !== false || !fromRow || fromRow.live === false) ? liveOwner(fromFile) : fromRow ? liveOwner(fromRow) : null;
    const ownerLive = owner?.live === true;
    const at = Date.now();
    return {
      board: board.location,
      at,
      owner,
      pool: {
        live: live.filter((r) => ids.has(r.id) && isAlive(r.id)).length,
        max: ownerLive && typeof file?.maxConcurrentWorkers === 'number' ? file.maxConcurrentWorkers : typeof detail.maxConcurrentWorkers === 'number' ? detail.maxConcurrentWorkers : null,
      },
      quarantine: (ownerLive ? (file?.quarantine ?? detail.quarantine) : null) ?? null,
      storm: ownerLive ? stormOf(file, at) : null,
      boardAccess: (ownerLive ? file?.boardAccess : null) ?? null,
      counts: { ...counts.tasks },
      ...(sups
        ? { supervisors: sups.map((v) => ({ hostId: v.hostId, host: v.host, pid: v.pid, since: v.startedAt, leaseExpiresAt: v.leaseExpiresAt, leaseOk: v.leaseExpiresAt > at })) }
        : {}),
      http: ownerLive && typeof file?.httpUrl === 'string' ? { url: file.httpUrl } : null,
      reportSocket: ownerLive && typeof file?.reportSocket === 'string' ? file.reportSocket : null,
      workers: [...live].reverse().map((r) => {
        const id = ids.get(r.id);
        const u = id ? usage.get(id.pid) : undefined;
        return {
          task: r.taskId,
          run: r.id,
          skill: r.skill,
          title: r.taskTitle,
          attempt: r.attempt,
          pid: r.pid ?? id?.pid ?? null,
          status: r.status,
          stopReason: r.stopReason,
          reclaim: reclaimText(r, at),
          ageMs: at - r.startedAt,
          heartbeatAgeMs: heartbeatAge(r.heartbeatAt, own?.workerOf(r.id)?.heardAt ?? null, at),
          alive: id ? isAlive(r.id) : false,
          cpuPercent: u ? Math.round(u.cpuPercent * 10) / 10 : null,
          rssBytes: u ? u.rssBytes : null,
        };
      }),
    };
  } finally {
    if (!own) await board.close();
  }
}

/** A duration for people: 850ms, 12.3s, 4m05s, 3h12m, 2d04h. */
export function fmtAge(ms: number | null): string {
  if (ms === null) return '-';
  const a = Math.max(0, ms);
  if (a < 1000) return `${Math.round(a)}ms`;
  if (a < 60_000) return `${(a / 1000).toFixed(1)}s`;
  const s = Math.floor(a / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

const mb = (b: number | null) => (b === null ? '-' : `${(b / 1048576).toFixed(1)}MB`);

/** One line when workers cannot reach the board by path (nothing when they can). */
function accessLine(a: unknown): string {
  const x = a as { ok?: unknown; error?: unknown; since?: unknown } | null;
  if (!x || x.ok !== false) return '';
  const since = typeof x.since === 'number' ? ` since ${new Date(x.since).toISOString()}` : '';
  return `board access: NOT readable/writable by workers${since}: ${String(x.error)} (dispatch held; fix the permissions)`;
}

function quarantineLine(q: unknown): string {
  if (!q) return 'quarantine: none';
  const x = q as { since?: unknown; reason?: unknown; backup?: unknown; nextProbeAt?: unknown };
  const since = typeof x.since === 'number' ? ` since ${new Date(x.since).toISOString()}` : '';
  const backup = typeof x.backup === 'string' ? `; backup ${x.backup}` : '';
  const probe = typeof x.nextProbeAt === 'number' ? `; next probe ${new Date(x.nextProbeAt).toISOString()}` : '';
  return `quarantine: QUARANTINED${since}: ${String(x.reason ?? JSON.stringify(q))}${backup}${probe}`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => '  ' + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

/** The human report, one string per line (every line escaped: it quotes board and status-file text). */
export function formatStatus(r: StatusReport): string[] {
  const o = r.owner;
  const lines = [
    `board ${r.board}`,
    o
      ? `owner: pid ${o.pid} on ${o.host} since ${new Date(o.since).toISOString()} (${o.state}${o.live ? `, up ${fmtAge(r.at - o.since)}` : ''})`
      : 'owner: none has run on this board',
    `pool: ${r.pool.live} live / ${r.pool.max ?? '?'} max`,
    r.storm
      ? `dispatch: PAUSED by the storm breaker until ${new Date(r.storm.pausedUntil).toISOString()} (${r.storm.reason}; trip ${r.storm.trips})`
      : `dispatch: ${o?.live ? (r.quarantine ? 'held (quarantine)' : 'running') : 'no supervisor'}`,
    quarantineLine(r.quarantine),
    accessLine(r.boardAccess),
    r.supervisors
      ? `supervisors: ${r.supervisors.map((v) => `${v.hostId} (pid ${v.pid} on ${v.host}, lease ${v.leaseOk ? `${fmtAge(v.leaseExpiresAt - r.at)} left` : `EXPIRED ${fmtAge(r.at - v.leaseExpiresAt)} ago`})`).join(', ') || 'none'}`
      : '',
    `tasks: ${Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(', ') || '-'}`,
    r.workers.length ? 'workers:' : 'workers: none',
  ].filter(Boolean);
  if (r.workers.length) {
    lines.push(
      ...table([
        ['TASK', 'SKILL', 'ATTEMPT', 'PID', 'AGE', 'HEARTBEAT', 'CPU%', 'RSS', 'STATE'],
        ...r.workers.map((w) => [
          w.task,
          w.skill,
          String(w.attempt),
          String(w.pid ?? '-'),
          fmtAge(w.ageMs),
          w.heartbeatAgeMs === null ? '-' : `${fmtAge(w.heartbeatAgeMs)} ago`,
          w.cpuPercent === null ? '-' : w.cpuPercent.toFixed(1),
          mb(w.rssBytes),
          `${w.reclaim ? `reclaiming: ${w.reclaim}` : w.status}${w.alive ? '' : ' (not alive)'}`,
        ]),
      ]),
    );
  }
  return lines.map(printable);
}

export function printStatus(r: StatusReport): void {
  process.stdout.write(formatStatus(r).join('\n') + '\n');
}

/**
 * `status --watch`: on a terminal, the report redrawn in place every `intervalMs` (alternate
 * screen, like top; restored on exit); otherwise one plain block per refresh, each headed by its
 * time, so that it can be piped. Ends with exit 0 on Ctrl-C (SIGINT), SIGTERM, or a closed pipe.
 */
export async function watchStatus(db: string, intervalMs: number, json: boolean): Promise<number> {
  const out = process.stdout;
  const tty = out.isTTY === true && !json;
  const sampler = new UsageSampler();
  let stop: (() => void) | null = null;
  let stopped = false;
  const stopNow = () => {
    stopped = true;
    stop?.();
  };
  const restore = () => {
    if (tty) out.write('\x1b[?25h\x1b[?1049l');
  };
  process.on('SIGINT', stopNow);
  process.on('SIGTERM', stopNow);
  out.on('error', stopNow); // EPIPE: the reader went away
  if (tty) out.write('\x1b[?1049h\x1b[?25l');
  let first = true;
  try {
    while (!stopped) {
      let lines: string[];
      try {
        const r = await statusReport(db, sampler);
        if (json) lines = [JSON.stringify(r)];
        else lines = [`${printable(hostname())}  ${new Date(r.at).toISOString()}${tty ? `  (every ${intervalMs / 1000}s; Ctrl-C to quit)` : ''}`, ...formatStatus(r)];
      } catch (e) {
        // A path that holds no board at the start is refused as `status` refuses it (exit 2);
        // later, a failed refresh is shown and the next one tried.
        if (first && e instanceof BoardPathError) throw e;
        lines = [`${new Date().toISOString()}  status failed: ${printable((e as Error).message ?? String(e))}`];
      }
      first = false;
      if (stopped) break;
      if (tty) {
        const cols = out.columns || 80;
        const rows = out.rows || 24;
        const shown = lines.slice(0, rows).map((l) => (l.length > cols ? l.slice(0, cols - 1) + '…' : l));
        out.write('\x1b[H' + shown.map((l) => l + '\x1b[K').join('\n') + '\x1b[J');
      } else {
        out.write(lines.join('\n') + (json ? '\n' : '\n\n'));
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs);
        stop = () => {
          clearTimeout(t);
          resolve();
        };
      });
      stop = null;
    }
  } finally {
    restore();
    process.off('SIGINT', stopNow);
    process.off('SIGTERM', stopNow);
  }
  return EXIT.ok;
}
