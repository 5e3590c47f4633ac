// Loader for the optional native addon (reaper/native/subreaper.c, built by node-gyp at
// install time into reaper/build/Release/subreaper.node). Everything in the reaper works
// without it, except becoming a child subreaper, reaping re-parented zombies and
// race-free pidfd signalling.
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  /** prctl(PR_SET_CHILD_SUBREAPER, 1): 0 or errno */
  setChildSubreaper(): number;
  isChildSubreaper(): boolean;
  /** waitpid(pid, &st, WNOHANG): 0 = not exited, <0 = -errno, [exitCode, signal] = reaped */
  waitNoHang(pid: number): number | [number, number];
  /** pidfd_open(pid, 0): fd or -errno */
  pidfdOpen(pid: number): number;
  /** pidfd_send_signal(fd, sig, NULL, 0): 0 or -errno */
  pidfdSendSignal(fd: number, sig: number): number;
  /**
   * posix_spawn(file) in a new session, stdin /dev/null, stdout and stderr on `logFd`, empty
   * signal mask, default dispositions, exactly `envp`: pid > 0 or -errno. Absent in addons built
   * before it existed (the reaper then spawns through Node).
   */
  spawn?(file: string, argv: string[], envp: string[], cwd: string | null, logFd: number): number;
  /** spawn() can set the child's working directory (glibc >= 2.29); if not, a cwd needs Node's spawn */
  spawnCanChdir?: boolean;
  /**
   * One sd_notify(3) datagram to `socketPath` (NOTIFY_SOCKET: a path, or `@name` for an abstract
   * socket) through a non-blocking AF_UNIX socket: 0 or -errno (-EAGAIN when the manager's queue
   * is full: never a wait). Absent in addons built before it existed.
   */
  sdNotify?(socketPath: string, message: string): number;
  /**
   * The uid of the peer of a connected AF_UNIX socket `fd` (getsockopt SO_PEERCRED): uid >= 0 or
   * -errno. Absent in addons built before it existed (see peerUidOf).
   */
  peerUid?(fd: number): number;
}

let loaded: { addon: NativeAddon | null; error: string | null } | null = null;

export function loadNative(): { addon: NativeAddon | null; error: string | null } {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const candidates = ['../build/Release/subreaper.node', '../build/Debug/subreaper.node'];
  let error = 'native addon not built (reaper/build/Release/subreaper.node missing; run `npm rebuild @kanban-supervisor/reaper`)';
  for (const rel of candidates) {
    const file = new URL(rel, import.meta.url);
    if (!fs.existsSync(file)) continue;
    try {
      const addon = require(fileURLToPath(file)) as NativeAddon;
      if (typeof addon.waitNoHang !== 'function') throw new Error('addon lacks waitNoHang');
      loaded = { addon, error: null };
      return loaded;
    } catch (err) {
      error = `native addon failed to load: ${(err as Error).message}`;
    }
  }
  loaded = { addon: null, error };
  return loaded;
}

/**
 * The user id of the process at the other end of a connected Unix socket (its file descriptor:
 * `socket._handle.fd` of an accepted net.Socket), from SO_PEERCRED through the addon. `null` when
 * it cannot be known here: no addon (or one built before peerUid), no such option on this system,
 * or no usable descriptor. Callers then rely on the socket's file mode and its 0700 folder.
 */
export function peerUidOf(fd: number | null | undefined): number | null {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) return null;
  const addon = loadNative().addon;
  if (!addon || typeof addon.peerUid !== 'function') return null;
  const r = addon.peerUid(fd);
  return r >= 0 ? r : null;
}

/** Whether peerUidOf can answer here (the addon is loaded and has peerUid). */
export function peerUidSupported(): boolean {
  return typeof loadNative().addon?.peerUid === 'function';
}
