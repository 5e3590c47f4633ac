/**
 * What the orchestrator shares: the run's context, a series' round result, and running one of this
 * bench's worker processes (limit-worker, bullmq-worker, graphile-worker) with its CPU read from
 * /proc while it runs.
 */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, sleep, type Harness } from '../../../test/dist/lib.js';
import type { WorkerConfig, WorkerResult } from './task.js';

/** This build's folder (the worker scripts are next to this module). */
export const DIST = dirname(fileURLToPath(import.meta.url));

export interface Ctx {
  h: Harness;
  /** Tasks per round. */
  n: number;
  conc: number;
}

/** One round of one series. */
export interface RoundResult {
  /** Tasks per second, first task's start to the last durable completion. */
  tps: number;
  seconds: number;
  /**
   * The system's own CPU in the round, seconds, and its parts (process → seconds): from the first
   * task's start to the last completion (start-up and shutdown left out).
   */
  cpu: number;
  cpuParts: Record<string, number>;
  /** The same with the worker's or supervisor's whole life (start-up and shutdown included). */
  lifetimeCpu: number;
  /** The series' label and durability when the round found out something about them (channel or direct). */
  label?: string;
  durability?: string;
}

/**
 * Reads a process's utime + stime every `everyMs` while it lives, with the time of each reading.
 * `between(t0, t1)` is its CPU in that window (epoch ms; interpolated between the readings), so a
 * figure can leave out the process's start-up and shutdown; `stop()` ends the readings and gives
 * the last one (its whole life but its last few ms: at most `everyMs`).
 */
export class CpuPoll {
  private readonly samples: Array<{ at: number; cpu: number }> = [];
  private readonly timer: NodeJS.Timeout;
  constructor(
    private readonly pid: number,
    everyMs = 20,
  ) {
    this.read();
    this.timer = setInterval(() => this.read(), everyMs);
  }
  private read(): void {
    const c = cpuSeconds(this.pid);
    const last = this.samples[this.samples.length - 1];
    if (c !== null && (!last || c >= last.cpu)) this.samples.push({ at: Date.now(), cpu: c });
  }
  stop(): number {
    this.read();
    clearInterval(this.timer);
    return this.samples[this.samples.length - 1]?.cpu ?? 0;
  }
  /** CPU seconds at `t` (epoch ms), interpolated; 0 before the first reading, the last one after it. */
  at(t: number): number {
    const s = this.samples;
    if (!s.length || t <= s[0]!.at) return 0;
    for (let i = 1; i < s.length; i++) {
      const a = s[i - 1]!;
      const b = s[i]!;
      if (t <= b.at) return a.cpu + ((b.cpu - a.cpu) * (t - a.at)) / Math.max(1, b.at - a.at);
    }
    return s[s.length - 1]!.cpu;
  }
  between(t0: number, t1: number): number {
    return this.at(t1) - this.at(t0);
  }
}

/** The last lines of a file, for an error. */
export function tailOf(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

/**
 * Run `script` (a worker of this bench) for `ctx.n` tasks: its result and its own CPU (seconds).
 * Throws with the tail of its output when it fails or outlives `n × 500 ms + 60 s`.
 */
export async function runWorkerProcess(
  ctx: Ctx,
  script: string,
  name: string,
  cfg: Omit<WorkerConfig, 'n' | 'conc' | 'result'>,
  env: Record<string, string> = {},
): Promise<{ result: WorkerResult; cpu: number; lifetimeCpu: number }> {
  const dir = ctx.h.dir(name);
  const result = join(dir, 'result.json');
  const log = join(dir, 'worker.log');
  const full: WorkerConfig = { ...cfg, n: ctx.n, conc: ctx.conc, result };
  const fd = openSync(log, 'a');
  const child = ctx.h.spawn(process.execPath, [join(DIST, script), JSON.stringify(full)], { stdio: fd, env });
  closeSync(fd);
  const poll = new CpuPoll(child.pid!);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const timeoutMs = ctx.n * 500 + 60_000;
  const fin = await Promise.race([exited, sleep(timeoutMs).then(() => null)]);
  const lifetimeCpu = poll.stop();
  if (!fin) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${script} did not finish ${ctx.n} tasks within ${timeoutMs / 1000} s; its output:\n${tailOf(log)}`);
  }
  if (fin.code !== 0 || !existsSync(result)) {
    throw new Error(`${script} exited ${fin.signal ?? fin.code} without its result; its output:\n${tailOf(log)}`);
  }
  const r = JSON.parse(readFileSync(result, 'utf8')) as WorkerResult;
  if (r.error || r.done !== ctx.n) throw new Error(`${script}: ${r.done} of ${ctx.n} tasks done, ${r.failed} failed${r.error ? `: ${r.error}` : ''}`);
  return { result: r, cpu: poll.between(r.t0, r.t1), lifetimeCpu };
}

/** The plain limit: a Node spawn loop of the same tasks, in a process of its own. */
export async function limitRound(ctx: Ctx, name: string): Promise<RoundResult> {
  const { result: r, cpu, lifetimeCpu } = await runWorkerProcess(ctx, 'limit-worker.js', name, {});
  const seconds = (r.t1 - r.t0) / 1000;
  return { tps: ctx.n / seconds, seconds, cpu, cpuParts: { 'node spawn loop': cpu }, lifetimeCpu };
}
