/**
 * The "two live workers for one task" watch of the PostgreSQL scenario: every ~20 ms, every live
 * process of this run (all simulated hosts: they are all on this machine) whose environment holds
 * KANBAN_TASK_ID, grouped by task. Two live pids with one task id in one sample is an incident. A
 * zombie (or a dead process) is not live; a stopped one (SIGSTOP) is.
 *
 * The environment of a process is read once per process (pid + start time), except while it is
 * young and does not show a task id yet: between fork and exec a worker still has its supervisor's
 * environment, and caching that would hide the worker for its whole life. A process known not to
 * be a worker (older than that) is not read again while its pid stays in /proc: the kernel hands
 * out pids in turn, so a pid freed between two samples (20 ms) is not reused within them.
 */
import { readFileSync } from 'node:fs';
import { MARK_VAR, clockTicks, listPids, readEnviron, readStat, sleep } from '../lib.js';

/** How long a process without a task id is looked at again (fork → exec can be slow on a loaded machine). */
const YOUNG_S = 10;

export interface LiveWorker {
  pid: number;
  startTime: number;
  task: string;
  run: string;
  /** Its parent: its supervisor, or the process that adopted it when that died. */
  ppid: number;
}

export interface Incident {
  task: string;
  pids: number[];
  runs: string[];
  first: number;
  last: number;
  samples: number;
}

/** Seconds since boot (/proc/uptime). */
function uptime(): number {
  try {
    return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

export class WorkerWatch {
  private readonly cache = new Map<string, { task: string; run: string } | null>();
  /** Pids of the last sample known not to be workers (not read again while they stay). */
  private others = new Set<number>();
  /** Time spent sampling (ms), for the average. */
  busyMs = 0;
  /** The live workers at the last sample. */
  live: LiveWorker[] = [];
  samples = 0;
  /** The longest gap between two samples (ms): what the watch could have missed. */
  maxGapMs = 0;
  readonly incidents = new Map<string, Incident>();
  /** The most workers of one task seen live at once. */
  maxPerTask = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(private readonly mark: string, private readonly everyMs = 20) {}

  /** One sample: the live workers of this run. */
  sample(): LiveWorker[] {
    const out: LiveWorker[] = [];
    const seen = new Set<string>();
    const others = new Set<number>();
    const now = uptime();
    const tck = clockTicks();
    for (const pid of listPids()) {
      if (pid === process.pid) continue;
      if (this.others.has(pid)) {
        others.add(pid);
        continue;
      }
      const s = readStat(pid);
      if (!s) continue;
      const young = now - s.startTime / tck < YOUNG_S;
      if (s.state === 'Z' || s.state === 'X') {
        if (!young) others.add(pid); // a zombie's pid is not reused before it is reaped
        continue;
      }
      const key = `${pid}:${s.startTime}`;
      seen.add(key);
      let c = this.cache.get(key);
      if (c === undefined || (c === null && young)) {
        // null: a kernel thread, or a process that just ended (an environment is readable from exec on).
        const env = readEnviron(pid) ?? new Map<string, string>();
        const task = env.get(MARK_VAR) === this.mark ? env.get('KANBAN_TASK_ID') : undefined;
        c = task ? { task, run: env.get('KANBAN_RUN_ID') ?? '?' } : null;
        this.cache.set(key, c);
      }
      if (c) out.push({ pid, startTime: s.startTime, task: c.task, run: c.run, ppid: s.ppid });
      else if (!young) others.add(pid);
    }
    this.others = others;
    if (this.cache.size > 4 * seen.size + 1000) {
      for (const k of this.cache.keys()) if (!seen.has(k)) this.cache.delete(k);
    }
    return out;
  }

  start(): void {
    let last = Date.now();
    this.loop = (async () => {
      while (!this.stopped) {
        const t = performance.now();
        const live = this.sample();
        this.busyMs += performance.now() - t;
        const now = Date.now();
        this.maxGapMs = Math.max(this.maxGapMs, now - last);
        last = now;
        this.live = live;
        this.samples++;
        const byTask = new Map<string, LiveWorker[]>();
        for (const w of live) byTask.set(w.task, [...(byTask.get(w.task) ?? []), w]);
        for (const [task, list] of byTask) {
          this.maxPerTask = Math.max(this.maxPerTask, list.length);
          if (list.length < 2) continue;
          const pids = list.map((x) => x.pid).sort((x, y) => x - y);
          const key = `${task} ${pids.join(',')}`;
          const inc = this.incidents.get(key);
          if (inc) {
            inc.last = now;
            inc.samples++;
          } else this.incidents.set(key, { task, pids, runs: list.map((x) => x.run), first: now, last: now, samples: 1 });
        }
        await sleep(this.everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}
