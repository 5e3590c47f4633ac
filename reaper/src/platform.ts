// Low-level, synchronous and cheap OS readers. Linux reads /proc directly (small files,
// fs.readFileSync); other platforms fall back to `ps` (argv only, no shell) and are
// marked "degraded" — the supervisor targets Linux.
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

export const IS_LINUX = process.platform === 'linux';

/** Full parse of one /proc/PID/stat line (Linux) or the ps equivalent (elsewhere). */
export interface RawStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** field 22: clock ticks since boot (Linux); seconds since the epoch elsewhere */
  startTime: number;
  /** utime + stime (ticks) */
  cpuTicks: number;
  /** cutime + cstime (ticks): CPU of reaped children */
  childTicks: number;
  /** resident set size in pages (Linux) */
  rssPages: number;
  /** percent of one core as reported by ps (non-Linux only, else -1) */
  psCpu: number;
  /** rss in bytes as reported by ps (non-Linux only, else -1) */
  psRssBytes: number;
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
    psCpu: -1,
    psRssBytes: -1,
  };
}

export function isDeadState(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

/** Read one process; null when gone (or unreadable). */
export function readRawStat(pid: number): RawStat | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  if (!IS_LINUX) return psTable([String(pid)]).get(pid) ?? null;
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  return parseStat(text);
}

/** One snapshot of every process on the host, keyed by pid. */
export function scanProcesses(): Map<number, RawStat> {
  if (!IS_LINUX) return psTable(null);
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
      text = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
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
    try {
      // macOS: a UUID per boot; fall back to the boot time.
      id = execFileSync('sysctl', ['-n', 'kern.bootsessionuuid'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      try {
        id = execFileSync('sysctl', ['-n', 'kern.boottime'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      } catch {
        id = 'unknown-boot';
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

// ---------------------------------------------------------------- non-Linux fallback (degraded)

const PS_FIELDS = 'pid=,ppid=,pgid=,sess=,state=,%cpu=,rss=,lstart=,comm=';

/** `ps` based table (macOS/BSD). Blocking (~10 ms); only used where /proc does not exist. */
function psTable(pids: string[] | null): Map<number, RawStat> {
  const out = new Map<number, RawStat>();
  let text = '';
  try {
    const args = pids ? ['-o', PS_FIELDS, '-p', pids.join(',')] : ['-A', '-o', PS_FIELDS];
    text = execFileSync('ps', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20 });
  } catch (err) {
    // ps exits 1 when none of the -p pids exist
    const e = err as { stdout?: string };
    text = typeof e.stdout === 'string' ? e.stdout : '';
  }
  for (const line of text.split('\n')) {
    const t = line.trim().split(/\s+/);
    if (t.length < 13) continue;
    const [pid, ppid, pgid, sid, state, cpu, rss] = t;
    // lstart is 5 tokens: "Mon Nov 23 12:50:01 2026"
    const start = Date.parse(t.slice(7, 12).join(' '));
    const s: RawStat = {
      pid: Number(pid),
      ppid: Number(ppid),
      pgid: Number(pgid),
      sid: Number(sid),
      state: (state ?? '?').charAt(0),
      comm: t.slice(12).join(' '),
      startTime: Number.isFinite(start) ? Math.floor(start / 1000) : 0,
      cpuTicks: 0,
      childTicks: 0,
      rssPages: 0,
      psCpu: Number(cpu),
      psRssBytes: Number(rss) * 1024,
    };
    if (Number.isInteger(s.pid)) out.set(s.pid, s);
  }
  return out;
}
