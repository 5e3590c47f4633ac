// The sd_notify(3) protocol for running under systemd (Type=notify), without libsystemd: one
// AF_UNIX datagram per message to $NOTIFY_SOCKET, sent by the native addon (Node cannot send
// AF_UNIX datagrams). Nothing here can block: the socket is non-blocking and a full queue is an
// error, never a wait. Without the addon, one warning and nothing is sent.
import { constants } from 'node:os';
import { loadNative } from './native.js';
import type { ReaperLogger } from './reaper.js';

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

export type SdNotifyResult = { ok: true } | { ok: false; errno: number | null; error: string };

/**
 * Send one notification (`READY=1`, `WATCHDOG=1`, `STATUS=...`, several lines in one message) to
 * `socketPath`: an absolute path, or `@name` for an abstract socket.
 */
export function sdNotify(socketPath: string, message: string): SdNotifyResult {
  const { addon, error } = loadNative();
  if (!addon || typeof addon.sdNotify !== 'function') {
    return { ok: false, errno: null, error: addon ? 'the native addon predates sdNotify (run `npm rebuild @kanban-supervisor/reaper`)' : (error ?? 'native addon unavailable') };
  }
  const rc = addon.sdNotify(socketPath, message);
  if (rc === 0) return { ok: true };
  const name = ERRNO_NAMES.get(-rc) ?? `errno ${-rc}`;
  return { ok: false, errno: -rc, error: `sending to NOTIFY_SOCKET ${JSON.stringify(socketPath)} failed: ${name}` };
}

/** A STATUS= line that changes only in its counts is sent at most this often. */
export const STATUS_MIN_INTERVAL_MS = 2000;

/** STATUS= text: one line, bounded (a quarantine reason can be long). */
function statusLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  const one = text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return one.length > 400 ? one.slice(0, 399) + '…' : one;
}

export interface NotifierOptions {
  logger: ReaperLogger;
  /** Remove NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from `env` once read (default true), so no helper process inherits them. */
  unsetEnvironment?: boolean;
  /** For tests: the sender (default sdNotify) and the addon loader it uses (default loadNative). */
  send?: (socketPath: string, message: string) => SdNotifyResult;
  native?: typeof loadNative;
  pid?: number;
}

/**
 * The daemon's side of Type=notify. Read once from the environment systemd gives the main process:
 * NOTIFY_SOCKET (no socket: every call is a no-op), WATCHDOG_USEC and WATCHDOG_PID (the watchdog
 * is ours only if WATCHDOG_PID is unset or our pid, as sd_watchdog_enabled(3) says).
 *
 * The caller pings from its own work loop (watchdog(now) after each round, and waits no longer than
 * msUntilWatchdog(now)): a stuck loop then stops the pings and systemd restarts the service. Never
 * from a timer of its own: that would keep pinging for a loop stuck on an await.
 */
export class SystemdNotifier {
  readonly socket: string | null;
  /** Half of WATCHDOG_USEC, in ms; null when no watchdog is asked of this process. */
  readonly watchdogIntervalMs: number | null;
  private readonly log: ReaperLogger;
  private readonly send: (socketPath: string, message: string) => SdNotifyResult;
  private readyAt: number | null = null;
  private stoppingSent = false;
  private lastPingAt = -Infinity;
  private lastStatus: { text: string; state: string; at: number } | null = null;
  private lastError: string | null = null;
  private disabled = false;

  static fromEnv(env: NodeJS.ProcessEnv, opts: NotifierOptions): SystemdNotifier {
    const n = new SystemdNotifier(env, opts);
    if (opts.unsetEnvironment ?? true) {
      delete env.NOTIFY_SOCKET;
      delete env.WATCHDOG_USEC;
      delete env.WATCHDOG_PID;
    }
    return n;
  }

  private constructor(env: NodeJS.ProcessEnv, opts: NotifierOptions) {
    this.log = opts.logger;
    this.send = opts.send ?? sdNotify;
    const pid = opts.pid ?? process.pid;
    const socket = env.NOTIFY_SOCKET || null;
    if (socket !== null && !(socket.length > 1 && (socket.startsWith('/') || socket.startsWith('@')))) {
      this.log.warn({ event: 'sd_notify_unavailable', notifySocket: socket }, `NOTIFY_SOCKET=${JSON.stringify(socket)} is not an absolute path or an @abstract name: systemd notification disabled`);
      this.socket = null;
    } else {
      this.socket = socket;
    }
    let interval: number | null = null;
    const usec = env.WATCHDOG_USEC;
    const forPid = env.WATCHDOG_PID;
    if (this.socket && usec !== undefined && usec !== '') {
      const n = /^\d{1,15}$/.test(usec) ? Number(usec) : NaN;
      const pidOk = forPid === undefined || forPid === '' || (/^\d+$/.test(forPid) && Number(forPid) === pid);
      if (!(n > 0)) {
        this.log.warn({ event: 'sd_watchdog_invalid', WATCHDOG_USEC: usec }, `WATCHDOG_USEC=${JSON.stringify(usec)} is not a positive integer (microseconds): no watchdog pings`);
      } else if (pidOk) {
        interval = Math.max(1, Math.floor(n / 2000));
      }
    }
    this.watchdogIntervalMs = interval;
    if (this.socket && !opts.send) {
      const { addon, error } = (opts.native ?? loadNative)();
      if (!addon || typeof addon.sdNotify !== 'function') {
        this.disabled = true;
        this.log.warn(
          { event: 'sd_notify_unavailable', notifySocket: this.socket, error: addon ? 'addon lacks sdNotify' : error },
          'NOTIFY_SOCKET is set but the native addon is unavailable: systemd notification (READY, WATCHDOG, STATUS) is off; a Type=notify unit will time out',
        );
      }
    }
  }

  /** Whether messages go anywhere (NOTIFY_SOCKET set and the addon can send). */
  get enabled(): boolean {
    return this.socket !== null && !this.disabled;
  }

  get ready(): boolean {
    return this.readyAt !== null;
  }

  private emit(message: string): boolean {
    if (!this.enabled) return false;
    const r = this.send(this.socket!, message);
    if (r.ok) {
      if (this.lastError !== null) this.log.info({ event: 'sd_notify_recovered' }, 'systemd notification works again');
      this.lastError = null;
      return true;
    }
    // One line per distinct failure, not one per tick.
    if (r.error !== this.lastError) this.log.warn({ event: 'sd_notify_failed', notifySocket: this.socket, error: r.error, message: message.split('\n')[0] }, 'systemd notification failed');
    this.lastError = r.error;
    return false;
  }

  /** READY=1 (once) with the first STATUS=. */
  notifyReady(status: string, now = Date.now()): void {
    if (this.readyAt !== null) return;
    this.readyAt = now;
    const text = statusLine(status);
    if (this.emit(`READY=1\nSTATUS=${text}`)) this.lastStatus = { text, state: stateOf(text), at: now };
  }

  /** Milliseconds until the next WATCHDOG=1 is due (Infinity without a watchdog): the loop waits no longer. */
  msUntilWatchdog(now = Date.now()): number {
    if (this.watchdogIntervalMs === null || !this.enabled) return Infinity;
    return Math.max(0, this.lastPingAt + this.watchdogIntervalMs - now);
  }

  /** WATCHDOG=1 if half of WATCHDOG_USEC has passed since the last one. Call from the loop only. */
  watchdog(now = Date.now()): void {
    if (this.watchdogIntervalMs === null || !this.enabled) return;
    if (now - this.lastPingAt < this.watchdogIntervalMs) return;
    this.lastPingAt = now;
    this.emit('WATCHDOG=1');
  }

  /**
   * STATUS=text when it changed: at once when its state (the text before the first ':') changed,
   * otherwise at most every STATUS_MIN_INTERVAL_MS (a pool filling and draining is not a stream).
   */
  status(text: string, now = Date.now()): void {
    const line = statusLine(text);
    const last = this.lastStatus;
    if (last && last.text === line) return;
    const state = stateOf(line);
    if (last && last.state === state && now - last.at < STATUS_MIN_INTERVAL_MS) return;
    if (this.emit(`STATUS=${line}`)) this.lastStatus = { text: line, state, at: now };
  }

  /** STOPPING=1 (once) with a last STATUS=. */
  stopping(status: string, now = Date.now()): void {
    if (this.stoppingSent) return;
    this.stoppingSent = true;
    const text = statusLine(status);
    if (this.emit(`STOPPING=1\nSTATUS=${text}`)) this.lastStatus = { text, state: stateOf(text), at: now };
  }
}

function stateOf(text: string): string {
  const i = text.indexOf(':');
  return i < 0 ? text : text.slice(0, i);
}
