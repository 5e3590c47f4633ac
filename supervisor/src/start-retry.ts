/**
 * Reaching a PostgreSQL board at start (issue 14). A server that is not there yet (refused, timed
 * out, starting up, too many connections…) is waited for: attempts 0.5 s apart, doubling up to 10 s
 * (policies boardConnectDelayMs), with one `board_unreachable` warning at the first failure and at
 * most one per 30 s after it (the masked URL, the error's class and code), and `board_reachable`
 * once an attempt succeeds. SIGTERM/SIGINT while waiting ends the wait at once (even during an
 * attempt that has not answered yet). What waiting cannot fix (board classifyStartFailure: a bad
 * URL, authentication, an unknown database, a missing privilege, a TLS setting) is a ConfigError
 * naming the masked URL (exit 2); anything else (a schema newer than this build…) is thrown as it is.
 */
import { classifyError, classifyStartFailure } from '@kanban-supervisor/board';
import { ConfigError, boardConnectDelayMs, warnUnreachable } from '@kanban-supervisor/policies';
import type { TickContext } from './state.js';

/** How often the wait looks at `isStopping` (ms). */
const STOP_POLL_MS = 50;

/** `text` without the URL's password (the driver's errors are scrubbed already: this is a second guard). */
function masked(text: string, url: string): string {
  let secret = '';
  try {
    secret = decodeURIComponent(new URL(url).password);
  } catch {
    /* no password to hide */
  }
  return secret === '' ? text : text.split(secret).join('***').split(encodeURIComponent(secret)).join('***');
}

/** Resolves true after `ms`, or false as soon as `isStopping()` says so. */
async function waitUnlessStopping(ms: number, isStopping: () => boolean): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (isStopping()) return false;
    await new Promise((r) => setTimeout(r, Math.min(STOP_POLL_MS, until - Date.now())));
  }
  return !isStopping();
}

/** Resolves to 'stopped' once `isStopping()` says so (checked every STOP_POLL_MS), or never before `done` settles. */
function stopped(isStopping: () => boolean, done: Promise<unknown>): Promise<'stopped'> {
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (isStopping()) {
        clearInterval(t);
        resolve('stopped');
      }
    }, STOP_POLL_MS);
    void done.finally(() => clearInterval(t)).catch(() => undefined);
  });
}

/**
 * Run `attempt` until it succeeds (its value), the supervisor is asked to stop while waiting
 * (undefined; what a late attempt still brings is handed to `discard`), or it fails for a reason
 * that is not transient (thrown). A value of null (the ownership held elsewhere) is returned as it is.
 */
export async function untilReachable<T>(
  ctx: TickContext,
  attempt: () => Promise<T>,
  isStopping: () => boolean,
  discard: (value: T) => Promise<void>,
): Promise<T | undefined> {
  let failures = 0;
  let firstFailureAt = 0;
  let lastWarnAt: number | null = null;
  for (;;) {
    if (isStopping()) return undefined;
    const pending = attempt();
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | 'stopped';
    const settled = pending.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    outcome = await Promise.race([settled, stopped(isStopping, settled)]);
    if (outcome === 'stopped') {
      // Never left open: what the attempt still opens is closed again.
      void settled.then((o) => (o.ok ? discard(o.value) : undefined)).catch(() => undefined);
      return undefined;
    }
    if (outcome.ok) {
      if (failures > 0) {
        ctx.log.info(
          { event: 'board_reachable', board: ctx.boardLabel, attempts: failures + 1, waitedMs: Date.now() - firstFailureAt },
          `board ${ctx.boardLabel} reached after ${failures} failed attempt(s)`,
        );
      }
      return outcome.value;
    }
    const e = outcome.error;
    const kind = classifyStartFailure(e);
    const message = masked(e instanceof Error ? e.message : String(e), ctx.boardPath);
    const code = String((e as { code?: unknown } | null)?.code ?? '');
    if (kind === 'config') {
      const shown = message.includes(ctx.boardLabel) ? message : `board ${ctx.boardLabel}: ${message}`;
      throw new ConfigError(`${shown}${code !== '' ? ` (${code})` : ''}: not retried (check the URL, the user and its password, the database and its privileges)`, { cause: e });
    }
    if (kind !== 'transient') {
      if (e instanceof Error && !e.message.includes(ctx.boardLabel)) e.message = `board ${ctx.boardLabel}: ${message}`;
      throw e;
    }
    const now = Date.now();
    failures++;
    if (failures === 1) firstFailureAt = now;
    const delay = boardConnectDelayMs(failures);
    if (warnUnreachable(lastWarnAt, now)) {
      lastWarnAt = now;
      ctx.log.warn(
        {
          event: 'board_unreachable',
          board: ctx.boardLabel,
          errorClass: classifyError(e),
          errorName: e instanceof Error ? e.name : typeof e,
          code: code !== '' ? code : null,
          error: message,
          attempts: failures,
          retryInMs: delay,
        },
        `board ${ctx.boardLabel} cannot be reached (${code !== '' ? code : message}): retrying (backoff up to 10 s; warned again at most every 30 s)`,
      );
    }
    if (!(await waitUnlessStopping(delay, isStopping))) return undefined;
  }
}
