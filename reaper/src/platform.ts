// Low-level, synchronous and cheap OS readers. Linux reads /proc directly (small files,
// fs.readFileSync); where /proc is missing (macOS, BSD) the process table comes from one `ps`
// (a helper run through execa: argv only, no shell, a timeout). Either way it is the table that
// identity (pid + start time), group membership and the tree walk are read from; CPU and memory
// figures of the portable backend come from pidusage (fallback.ts), not from here.
import * as fs from 'node:fs';
import { runHelperSync } from './helper.js';

export const IS_LINUX = process.platform === 'linux';

/**
 * /proc is there to read (Linux with /proc mounted). Identity is read from /proc whenever it is
 * there, whatever process backend is in use, so that the start times recorded on the board keep
 * their unit (clock ticks since boot) across supervisors with and without the fallback.
 */
export const HAVE_PROC = IS_LINUX && fs.existsSync('/proc/self/stat');

/** Full parse of one /proc/PID/stat line (Linux) or the `ps` equivalent (where /proc is missing). */
export interface RawStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** field 22: clock ticks since boot (/proc); seconds since the epoch from `ps` (no /proc) */
  startTime: number;
  /** utime + stime (ticks; 0 from `ps`) */
  cpuTicks: number;
  /** cutime + cstime (ticks): CPU of reaped children (0 from `ps`) */
  childTicks: number;
  /** resident set size in pages (0 from `ps`) */
  rssPages: number;
}

/** Parse the text of /proc/PID/stat. Fields are read after the LAST ')' since comm may contain anything. */
export function parseStat(text: string): RawStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  const f = text.slice(close + 2).trim().split(' ');
  // f[0] is field 3 (state); field N is f[N - 3].
  if (f.length < 22 || !Number.isInteger(pid)) return null;
  return {
    pid,
    comm,
    state: f[0]!,
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    sid: Number(f[3]),
    startTime: Number(f[19]),
    cpuTicks: Number(f[11]) + Number(f[12]),
    childTicks: Number(f[13]) + Number(f[14]),
    rssPages: Number(f[21]),
  };
}

export function isDeadState(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

/** One buffer for every /proc read (they are synchronous): no allocation per file. */
const procBuf = Buffer.allocUnsafe(4096);

/**
 * A /proc file's text (latin1), read through one shared buffer: open, read to the end, close (half
 * the cost of fs.readFileSync, which also stats the file and allocates per read: the process
 * scan reads one per process). Throws as readFileSync does (ENOENT: the process is gone).
 */
export function readProcText(path: string): string {
  const fd = fs.openSync(path, 'r');
  try {
    let n = fs.readSync(fd, procBuf, 0, procBuf.length, null);
    let text = procBuf.toString('latin1', 0, n);
    while (n > 0) {
      n = fs.readSync(fd, procBuf, 0, procBuf.length, null);
      if (n > 0) text += procBuf.toString('latin1', 0, n);
    }
    return text;
  } finally {
    fs.closeSync(fd);
  }
}

/** Read one process; null when gone (or unreadable). */
export function readRawStat(pid: number): RawStat | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  if (!HAVE_PROC) return psProcessTable([pid]).get(pid) ?? null;
  let text: string;
  try {
    text = readProcText(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  return parseStat(text);
}

/** One snapshot of every process on the host, keyed by pid. */
export function scanProcesses(): Map<number, RawStat> {
  if (!HAVE_PROC) return psProcessTable();
  const out = new Map<number, RawStat>();
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    let text: string;
    try {
      text = readProcText(`/proc/${name}/stat`);
    } catch {
      continue; // exited between readdir and read
    }
    const s = parseStat(text);
    if (s) out.set(s.pid, s);
  }
  return out;
}

let cachedBootId: string | null = null;
export function bootId(): string {
  if (cachedBootId !== null) return cachedBootId;
  let id = '';
  if (IS_LINUX) {
    try {
      id = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
    } catch {
      id = '';
    }
  } else {
    // macOS: a UUID per boot; else the boot time.
    for (const name of ['kern.bootsessionuuid', 'kern.boottime']) {
      const r = runHelperSync('sysctl', ['-n', name], { timeoutMs: 5000 });
      if (r.ok && r.stdout.trim()) {
        id = r.stdout.trim();
        break;
      }
    }
  }
  cachedBootId = id || 'unknown-boot';
  return cachedBootId;
}

/** Last pid allocated in our pid namespace (Linux), or null when unavailable. */
export function lastAllocatedPid(): number | null {
  if (!IS_LINUX) return null;
  try {
    const v = Number(fs.readFileSync('/proc/sys/kernel/ns_last_pid', 'latin1').trim());
    return Number.isInteger(v) && v > 0 ? v : null;
  } catch {
    return null;
  }
}

let auxv: { pageSize: number; clockTicks: number } | null = null;
/** Page size and USER_HZ from the ELF auxiliary vector (AT_PAGESZ=6, AT_CLKTCK=17). */
export function sysconf(): { pageSize: number; clockTicks: number } {
  if (auxv) return auxv;
  let pageSize = 4096;
  let clockTicks = 100;
  if (IS_LINUX) {
    try {
      const buf = fs.readFileSync('/proc/self/auxv');
      const wide = process.arch.endsWith('64');
      const step = wide ? 16 : 8;
      const le = (process.arch as string) !== 's390x' && (process.arch as string) !== 'ppc64';
      for (let off = 0; off + step <= buf.length; off += step) {
        const key = wide
          ? Number(le ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off))
          : le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
        const val = wide
          ? Number(le ? buf.readBigUInt64LE(off + 8) : buf.readBigUInt64BE(off + 8))
          : le ? buf.readUInt32LE(off + 4) : buf.readUInt32BE(off + 4);
        if (key === 0) break;
        if (key === 6 && val > 0) pageSize = val;
        if (key === 17 && val > 0) clockTicks = val;
      }
    } catch {
      /* keep defaults */
    }
  }
  auxv = { pageSize, clockTicks };
  return auxv;
}

/** Seconds since boot (Linux). */
export function uptimeSeconds(): number {
  try {
    return Number(fs.readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
  } catch {
    return 0;
  }
}

export function openFdCount(): number {
  const dir = IS_LINUX ? '/proc/self/fd' : '/dev/fd';
  try {
    // readdir itself holds one fd while listing; that constant does not matter for deltas.
    return fs.readdirSync(dir).length;
  } catch {
    return -1;
  }
}

// ---------------------------------------------------------------- no /proc: the table from `ps`

/**
 * Only what identity, groups and the tree need; `comm` last (it may contain spaces). Known to BSD
 * ps (macOS) and procps alike; `lstart` is printed in the C locale and UTC (set in the helper's
 * environment), so its parse does not depend on the host's locale or time zone.
 */
const PS_FIELDS = 'pid=,ppid=,pgid=,stat=,lstart=,comm=';
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** One line of PS_FIELDS output ("  41  1  41 Ss  Mon Nov 23 12:50:01 2026 /usr/bin/foo"); null when malformed. */
export function parsePsLine(line: string): RawStat | null {
  const t = line.trim().split(/\s+/);
  if (t.length < 10) return null;
  const [pid, ppid, pgid, stat, , mon, day, hms, year] = t;
  const [h, m, sec] = hms!.split(':').map(Number);
  const month = MONTHS.indexOf(mon!);
  const ms = Date.UTC(Number(year), month, Number(day), h!, m!, sec!);
  const s: RawStat = {
    pid: Number(pid),
    ppid: Number(ppid),
    pgid: Number(pgid),
    // the session id is not portable (BSD ps prints a kernel address for `sess`): unknown
    sid: -1,
    state: stat!.charAt(0),
    comm: t.slice(9).join(' '),
    startTime: Math.floor(ms / 1000),
    cpuTicks: 0,
    childTicks: 0,
    rssPages: 0,
  };
  if (!Number.isInteger(s.pid) || s.pid <= 0 || !Number.isInteger(s.ppid) || !Number.isInteger(s.pgid) || month < 0 || !Number.isFinite(ms)) return null;
  return s;
}

/** `ps` could not be run or failed: the table is unknown (which is not the same as empty). */
export class ProcessTableError extends Error {
  override readonly name = 'ProcessTableError';
}

/**
 * The process table from one `ps` (every process, or only `pids`), the source of identity where
 * /proc is missing. Blocking (~10-20 ms). Throws ProcessTableError when ps fails: an empty table
 * would say every worker is gone.
 */
export function psProcessTable(pids?: number[]): Map<number, RawStat> {
  const out = new Map<number, RawStat>();
  const args = pids ? ['-o', PS_FIELDS, '-p', pids.join(',')] : ['-A', '-o', PS_FIELDS];
  const r = runHelperSync('ps', args, {
    timeoutMs: 10_000,
    maxBuffer: 64 << 20,
    env: { PATH: process.env.PATH || '/bin:/usr/bin', LC_ALL: 'C', TZ: 'UTC' },
  });
  // ps exits 1 when none of the -p pids exist: an empty answer, not an error
  if (!r.ok && !(pids && r.exitCode === 1 && !r.stderr.trim())) throw new ProcessTableError(`cannot read the process table: ${r.error}`);
  for (const line of r.stdout.split('\n')) {
    const s = parsePsLine(line);
    if (s) out.set(s.pid, s);
  }
  return out;
}
