/**
 * Quarantine: confirmed damage stops claiming and writing, closes our connection, backs the
 * board's files up once per damage fingerprint (from a helper process that holds no connection),
 * and re-probes with backoff until a full integrity check passes. Workers stay supervised from
 * memory and /proc meanwhile (the tick's quarantine mode: reap, reclaim, probe).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BoardDamagedError, changeFeedOf, checkBoard, classifyError, localConnectionOf } from '@kanban-supervisor/board';
import { quarantineProbeDelayMs } from '@kanban-supervisor/policies';
import { runHelper } from '@kanban-supervisor/reaper';
import { probeAccess } from './services/access-probe.js';
import { openSupervisorBoard, type TickContext } from './state.js';
import { ownerRow, writeStatusFile } from './status-file.js';

/** Enter quarantine (once). `close`: our connection is open and is closed now. */
export async function enterQuarantine(ctx: TickContext, reason: string, close = true): Promise<void> {
  const s = ctx.state;
  if (s.quarantine) return;
  const now = Date.now();
  if (close && s.board) {
    try {
      localConnectionOf(s.board)?.closeNow();
    } catch {
      /* the connection is going away anyway */
    }
  }
  s.quarantine = { since: now, reason, fingerprint: null, backup: null, probes: 0, nextProbeAt: now + quarantineProbeDelayMs(0, ctx.cfg.quarantineProbeSeconds) };
  await backupOnce(ctx, true);
  writeStatusFile(ctx);
}

/**
 * One backup per damage fingerprint, made by a helper process (which dedupes across processes).
 * One error line when the quarantine starts, and one more only if the damage changes.
 */
async function backupOnce(ctx: TickContext, first: boolean): Promise<void> {
  const q = ctx.state.quarantine!;
  const res = await runBackupHelper(ctx.boardPath);
  const changed = !first && res.fingerprint !== undefined && q.fingerprint !== null && res.fingerprint !== q.fingerprint;
  q.fingerprint = res.fingerprint ?? q.fingerprint;
  q.backup = res.dir ?? q.backup;
  const fields = { board: ctx.boardPath, reason: q.reason, fingerprint: q.fingerprint, backup: q.backup, backupCreated: res.created, backupError: res.error, workers: ctx.state.workers.size };
  if (first) {
    ctx.log.error({ event: 'board_quarantined', ...fields }, 'board damaged: dispatch stopped, workers still supervised; run `kanban-supervisor check` and `kanban-supervisor recover`');
  } else if (changed) {
    ctx.log.error({ event: 'board_damage_changed', ...fields }, 'the damage changed: backed up once more');
  }
}

/** A damaged-class or I/O error from a tick step: I/O is transient until a check confirms damage. */
export async function suspectDamage(ctx: TickContext, e: unknown): Promise<void> {
  if (ctx.state.quarantine) return;
  const cls = classifyError(e);
  if (cls === 'io') {
    // The check opens the board by path: one we may no longer open is not damaged.
    if (!probeAccess(ctx, Date.now())) return;
    const report = checkBoard(ctx.boardPath);
    if (report.healthy) {
      ctx.log.warn({ event: 'io_error_transient', err: e }, 'I/O error on the board; check says healthy: retrying next tick');
      return;
    }
    await enterQuarantine(ctx, report.problems.join('; '));
    return;
  }
  await enterQuarantine(ctx, e instanceof BoardDamagedError ? e.detail : (e as Error).message);
}

/** Quarantined: at the probe's time, check the board; healthy, reopen it and resume. */
export async function probeQuarantine(ctx: TickContext, now: number): Promise<void> {
  const s = ctx.state;
  const q = s.quarantine!;
  if (now < q.nextProbeAt) return;
  q.probes++;
  q.nextProbeAt = now + quarantineProbeDelayMs(q.probes, ctx.cfg.quarantineProbeSeconds);
  // A board we may not read is not more damaged: no check, no backup until it is readable again.
  if (existsSync(ctx.boardPath) && !probeAccess(ctx, now)) return;
  // integrity_check, not quick_check: index damage passes quick_check but fails writes.
  const report = checkBoard(ctx.boardPath, { full: true });
  // Being swapped by an operator (a `cp` over it empties it first): look again later. An empty file
  // is never reopened here, which would make a new board of it under the copy.
  if (!report.exists || report.fileSize === 0) return;
  if (!report.healthy) {
    await backupOnce(ctx, false); // a new fingerprint gets its own (single) backup and log line
    writeStatusFile(ctx);
    return;
  }
  try {
    s.board = await openSupervisorBoard(ctx.boardPath);
  } catch (e) {
    ctx.log.warn({ event: 'quarantine_reopen_failed', err: e }, 'board looked healthy but did not open');
    return;
  }
  s.quarantine = null;
  s.lastDataVersion = changeFeedOf(s.board)?.changeVersion() ?? -1;
  await s.board.setOwner(ownerRow(ctx));
  ctx.log.info({ event: 'quarantine_lifted', board: ctx.boardPath, since: q.since, probes: q.probes }, 'board healthy again: resuming');
  writeStatusFile(ctx);
}

const require = createRequire(import.meta.url);

/** The backup helper's own time limit: SIGTERM after 10 minutes, SIGKILL 2 s later. */
const BACKUP_HELPER_TIMEOUT_MS = 10 * 60_000;

/** Back the damaged board up from a separate process (it holds no connection to the file). */
async function runBackupHelper(boardPath: string): Promise<{ created?: boolean; dir?: string; fingerprint?: string; error?: string }> {
  let script: string;
  try {
    script = require.resolve('@kanban-supervisor/board/backup-main');
  } catch (e) {
    return { error: `backup helper not found: ${(e as Error).message}` };
  }
  // execa: argv only (no shell), the time limit, bounded output, an error naming the command line
  const r = await runHelper(process.execPath, [script, boardPath], { timeoutMs: BACKUP_HELPER_TIMEOUT_MS, maxBuffer: 1 << 20 });
  type Printed = { created?: boolean; dir?: string; fingerprint?: string; error?: unknown };
  let printed: Printed | null = null;
  try {
    const v: unknown = JSON.parse(r.stdout);
    if (v && typeof v === 'object' && !Array.isArray(v)) printed = v as Printed;
  } catch {
    printed = null;
  }
  // On a failure of its own it prints {"error": "..."} and exits 1.
  if (!r.ok) return { error: typeof printed?.error === 'string' ? `${printed.error} (${r.error})` : r.error };
  if (!printed) return { error: `backup helper ${script} printed ${JSON.stringify(r.stdout.slice(0, 200))}, not one JSON object` };
  return printed as { created?: boolean; dir?: string; fingerprint?: string; error?: string };
}
