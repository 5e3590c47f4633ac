/**
 * Ownership of a board shared by several hosts (PostgreSQL, issue 14): at most one supervisor per
 * (board, host id). The host's ownership is a session advisory lock on a connection of its own
 * (the board's SupervisorRegistry), which the server releases when that connection dies; the
 * supervisor's row (host id, pid, boot id, start, lease) is recorded once it holds it, and its
 * lease is renewed in every tick's transaction (supervisor.ts).
 *
 * - The host id: KANBAN_HOST_ID, else /etc/machine-id (tests simulate hosts with KANBAN_HOST_ID).
 * - The lease: SUPERVISOR_LEASE_SECONDS (default 30).
 * - A second supervisor with the same host id is refused, naming the owner from its row (pid,
 *   host, start); with --standby it waits and takes over when the owner's connection ends.
 * - The holder's connection lost (a server restart, the network): dispatch is held and each tick
 *   tries to take the ownership again (keepHost); running workers stay supervised. When another
 *   supervisor of this host took it meanwhile (a standby), this one leaves (exit 4) without
 *   touching its workers: the new owner adopts them, as after `run --detach-on-exit`.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ensureStateDir, supervisorRegistryOf, type Board, type HostHold, type SupervisorRegistry } from '@kanban-supervisor/board';
import { ConfigError } from '@kanban-supervisor/policies';
import { ownerProcessAlive } from './owner.js';
import { openSupervisorBoard, type TickContext } from './state.js';

export const DEFAULT_LEASE_SECONDS = 30;
const HOST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** This host's id: KANBAN_HOST_ID, else /etc/machine-id. Throws ConfigError (exit 2, naming KANBAN_HOST_ID) when there is none or it is not an id. */
export function hostIdOf(env: NodeJS.ProcessEnv, label: string): string {
  let id = (env.KANBAN_HOST_ID ?? '').trim();
  let from = 'KANBAN_HOST_ID';
  if (id === '') {
    from = '/etc/machine-id';
    try {
      id = readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      id = '';
    }
  }
  if (!HOST_ID.test(id)) {
    const got = from === 'KANBAN_HOST_ID' ? `got ${JSON.stringify(id)}` : `it is unset and /etc/machine-id ${id === '' ? 'is empty or missing' : `holds ${JSON.stringify(id.slice(0, 40))}`}`;
    throw new ConfigError(`KANBAN_HOST_ID must be 1-128 letters, digits or . _ : - (board ${label} needs this host's id): ${got}`);
  }
  return id;
}

/** The lease length, ms: SUPERVISOR_LEASE_SECONDS (1-86400), default 30 s. */
export function leaseMsOf(env: NodeJS.ProcessEnv): number {
  const raw = (env.SUPERVISOR_LEASE_SECONDS ?? '').trim();
  if (raw === '') return DEFAULT_LEASE_SECONDS * 1000;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1 || n > 86_400) throw new ConfigError(`SUPERVISOR_LEASE_SECONDS must be a number of seconds from 1 to 86400, got ${JSON.stringify(raw)}`);
  return Math.round(n * 1000);
}

function registryOf(board: Board): SupervisorRegistry {
  const r = supervisorRegistryOf(board);
  if (!r) throw new Error(`board ${board.location} has no supervisor registry`);
  return r;
}

/** Who holds this host's ownership, from its row: "supervisor pid P on host H since T". */
export async function hostOwnerText(board: Board, hostId: string): Promise<string> {
  try {
    // The newest row of this host whose process lives (a dead predecessor's row may still be there
    // until the new owner registers; one on another machine cannot be checked and is believed).
    const rows = await registryOf(board).liveSupervisors(hostId);
    const o = rows.find((r) => ownerProcessAlive({ pid: r.pid, host: r.host, procStartTime: r.procStartTime, bootId: r.bootId }) !== false);
    if (o) return `supervisor pid ${o.pid} on host ${o.host} (host id ${hostId}) since ${new Date(o.startedAt).toISOString()}`;
  } catch {
    /* said below */
  }
  return `another supervisor of host id ${hostId} (starting up: it has not recorded its row yet)`;
}

/**
 * Take this host's ownership of the board. Returns the hold, or null after printing who owns it
 * (without --standby), or null when stopped while waiting (--standby).
 */
export async function acquireHost(ctx: TickContext, board: Board, isStopping: () => boolean): Promise<HostHold | null> {
  const hostId = ctx.hostId!;
  for (;;) {
    const hold = await registryOf(board).tryHoldHost(hostId);
    if (hold) return hold;
    if (!ctx.opts.standby) {
      // The owner writes its row right after it takes the lock: give it a moment to appear.
      let who = await hostOwnerText(board, hostId);
      for (let i = 0; i < 20 && who.startsWith('another supervisor'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        who = await hostOwnerText(board, hostId);
      }
      process.stderr.write(`kanban-supervisor: board ${ctx.boardLabel} is owned on this host by ${who}; not starting (use --standby to wait)\n`);
      return null;
    }
    if (isStopping()) return null;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Start on a shared board: its local state folder made and checked, the board opened (created or
 * migrated), this host's ownership taken (acquireHost). On success the board and the hold are in
 * the state; otherwise the board is closed again. Returns whether the ownership is held.
 */
export async function acquireSharedBoard(ctx: TickContext, isStopping: () => boolean): Promise<boolean> {
  ensureStateDir(ctx.files, ctx.boardLabel);
  const board = await openSupervisorBoard(ctx.boardPath).catch((e: unknown) => {
    throw namingBoard(ctx, e);
  });
  let hold: HostHold | null = null;
  try {
    hold = await acquireHost(ctx, board, isStopping).catch((e: unknown) => {
      throw namingBoard(ctx, e);
    });
  } finally {
    if (!hold) await board.close();
  }
  if (!hold) return false;
  ctx.state.board = board;
  ctx.state.host = { hold, lostLogged: false };
  return true;
}

/**
 * Connections a supervisor itself holds on a shared board: its pool (SUPERVISOR pool, 4), the host
 * lock's and the change feed's.
 */
export const SUPERVISOR_CONNECTIONS = 6;

/**
 * Warn (once, at start) when the hosts with a live supervisor, this one included, could together
 * open more connections than the server accepts: hosts × (MAX_CONCURRENT_WORKERS + the supervisor's
 * own). Each host's pool size is taken to be ours (the rows do not say theirs).
 */
export async function checkConnectionBudget(ctx: TickContext, board: Board): Promise<void> {
  const reg = registryOf(board);
  const now = Date.now();
  const hosts = new Set((await reg.liveSupervisors()).filter((r) => r.leaseExpiresAt > now).map((r) => r.hostId));
  hosts.add(ctx.hostId!);
  const need = hosts.size * (ctx.cfg.maxConcurrentWorkers + SUPERVISOR_CONNECTIONS);
  const limit = await reg.connectionLimit();
  if (need <= limit) return;
  ctx.log.warn(
    { event: 'connection_budget', hosts: hosts.size, maxConcurrentWorkers: ctx.cfg.maxConcurrentWorkers, supervisorConnections: SUPERVISOR_CONNECTIONS, need, maxConnections: limit },
    `${hosts.size} host(s) × (${ctx.cfg.maxConcurrentWorkers} workers + ${SUPERVISOR_CONNECTIONS} supervisor connections) = ${need} could exceed the server's ${limit} connections: workers would fail to connect (raise max_connections or lower MAX_CONCURRENT_WORKERS)`,
  );
}

/** A driver error (ECONNREFUSED, an authentication failure…) with the board's masked URL in its message; its class and code kept. */
function namingBoard(ctx: TickContext, e: unknown): unknown {
  if (e instanceof Error && !e.message.includes(ctx.boardLabel)) e.message = `board ${ctx.boardLabel}: ${e.message}`;
  return e;
}

/** Record this supervisor's row (its lease starts now); claims from now on record it on their runs. */
export async function registerSelf(ctx: TickContext, board: Board): Promise<string> {
  return registryOf(board).registerSupervisor(
    {
      hostId: ctx.hostId!,
      host: hostname(),
      pid: process.pid,
      bootId: ctx.identity.bootId ?? ctx.boot,
      procStartTime: ctx.identity.procStartTime,
      startedAt: ctx.startedAt,
    },
    ctx.leaseMs,
    Date.now(),
  );
}

/**
 * At every tick: whether this supervisor holds its host's ownership. When the holder's connection
 * was lost, try to take it again (once per tick); dispatch waits while it is not held.
 */
export async function keepHost(ctx: TickContext): Promise<boolean> {
  const s = ctx.state;
  if (!s.host) return true; // not a shared board
  if (!s.host.hold.lost) return true;
  if (!s.host.lostLogged) {
    s.host.lostLogged = true;
    ctx.log.error({ event: 'host_ownership_lost', board: ctx.boardLabel, hostId: ctx.hostId }, "the connection holding this host's ownership of the board was lost: dispatch held until it is taken again");
  }
  const hold = await registryOf(s.board!).tryHoldHost(ctx.hostId!);
  if (!hold) {
    // The server answered: another supervisor of this host holds it now.
    s.host.taken = true;
    ctx.log.error({ event: 'host_ownership_taken', board: ctx.boardLabel, hostId: ctx.hostId }, "another supervisor of this host took this host's ownership of the board: leaving, its workers left running for it");
    return false;
  }
  s.host = { hold, lostLogged: false };
  ctx.log.info({ event: 'host_ownership_regained', board: ctx.boardLabel, hostId: ctx.hostId }, "this host's ownership of the board is held again: dispatch resumes");
  return true;
}

/**
 * This supervisor's lease was found lost: another supervisor took it over while it was away (a
 * partition, a long SIGSTOP), closing its runs' fences and requeueing their tasks. Its workers of
 * those runs are terminated by the reclaim step (stop reason lease_lost); here it registers again
 * (a new row, a new lease) so that it renews and dispatches from the next tick on. Logged once per
 * loss, after the new row is committed.
 */
export async function reRegister(ctx: TickContext): Promise<void> {
  const old = ctx.state.supervisorId;
  const id = await registerSelf(ctx, ctx.state.board!);
  ctx.state.supervisorId = id;
  ctx.log.error(
    { event: 'lease_lost', supervisorId: old, newSupervisorId: id, hostId: ctx.hostId, workers: ctx.state.workers.size },
    "this supervisor's lease expired and another supervisor took its runs over: their workers are terminated; registered again",
  );
}
