/**
 * The supervisor's Prometheus metrics (prom-client), in a Registry of its own (never prom-client's
 * global one: two supervisors in one process, or a library that registers there, never mix).
 * One `SupervisorMetrics` per tick context (state.ts createContext: `ctx.metrics`).
 *
 * Two kinds of metrics:
 * - moved by the steps as things happen (counters, histograms): each through a method here, and a
 *   counter only once what it counts is committed (the steps call them from TickTx.logCommitted,
 *   the list of what a tick emits after its commit and drops with a rollback);
 * - read at scrape time (gauges of the tasks on the board, the workers, the pool, quarantine and
 *   the storm breaker, the board's files): set by render.ts just before the registry is rendered.
 *
 * Names follow Prometheus conventions: prefix `kanban_`, base units (`_seconds`, `_bytes`),
 * counters end in `_total`. The README's "### Metrics" table lists them.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { countsAsFailure, type RunOutcome, type StopReason } from '@kanban-supervisor/policies';
import { MinuteHistory } from './history.js';

/**
 * How often the event loop's delay is sampled for the `nodejs_eventloop_lag_*` gauges, ms
 * (prom-client's default is 10 ms: 100 wake-ups a second; see enableDefaults).
 */
export const EVENT_LOOP_SAMPLE_MS = 1000;

/** prom-client's event loop gauges read from its delay histogram, replaced by ours (enableDefaults). */
const LAG_GAUGES = { min: 'min', max: 'max', mean: 'mean', stddev: 'stddev', p50: 50, p90: 90, p99: 99 } as const;

/** Latency buckets, seconds: 1 ms … 60 s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Tick and lock-hold buckets, seconds: 0.5 ms … 10 s. */
const TICK_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Reports per transaction that carried reports of the report channel: 1 … 4096. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

export type SpoolResult = 'applied' | 'rejected' | 'unapplied';
/** How a report of the channel was answered. */
export type ChannelOutcome = 'applied' | 'duplicate' | 'fenced' | 'invalid' | 'unavailable';
/** Why the channel closed a client's connection. */
export type ChannelDrop = 'peer' | 'oversized' | 'malformed' | 'slow_reader';

export class SupervisorMetrics {
  readonly registry = new Registry();
  /** Per-minute points of the last hour (the page's plots). */
  readonly history = new MinuteHistory();

  readonly tasks = this.gauge('kanban_tasks', 'Tasks on the board by status and skill (read at scrape, cached up to 1 s).', ['status', 'skill']);
  readonly runsEnded = new Counter({
    name: 'kanban_runs_ended_total',
    help: 'Runs ended and accounted by this supervisor, by outcome and skill (moves when the accounting commits).',
    labelNames: ['outcome', 'skill'] as const,
    registers: [this.registry],
  });
  readonly workers = this.gauge('kanban_workers', 'Live worker processes supervised by this supervisor, by skill.', ['skill']);
  readonly poolCapacity = this.gauge('kanban_pool_capacity', 'Most workers this supervisor runs at once (MAX_CONCURRENT_WORKERS).', []);
  readonly poolInUse = this.gauge('kanban_pool_in_use', 'Pool slots in use: workers supervised now (including ones being reclaimed).', []);
  readonly dispatchLatency = new Histogram({
    name: 'kanban_dispatch_latency_seconds',
    help: 'Time from a task becoming runnable (created, requeued, retried, backoff over) to its worker spawned.',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly spawnDuration = new Histogram({
    name: 'kanban_spawn_duration_seconds',
    help: 'Time to start one worker process (fork/exec, log file, process identity).',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly tickDuration = new Histogram({
    name: 'kanban_tick_duration_seconds',
    help: 'Duration of one supervisor tick (reap, spool, detect, sample, reclaim, account, dispatch, commit).',
    buckets: TICK_BUCKETS,
    registers: [this.registry],
  });
  readonly writeLockHold = new Histogram({
    name: 'kanban_write_lock_hold_seconds',
    help: "Longest time one tick held the board's write lock (ticks that wrote).",
    buckets: TICK_BUCKETS,
    registers: [this.registry],
  });
  readonly reclaims = new Counter({
    name: 'kanban_reclaims_total',
    help: 'Workers reclaimed (fence committed, then SIGTERM), by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly quarantined = this.gauge('kanban_quarantined', '1 while the board is quarantined (damage suspected: nothing is claimed or written), else 0.', []);
  readonly stormPaused = this.gauge('kanban_storm_paused', '1 while the storm breaker pauses dispatch (many different tasks failing), else 0.', []);
  readonly spoolFiles = new Counter({
    name: 'kanban_spool_files_total',
    help: 'Spooled worker reports read from the spool, by result (applied to the board, rejected as invalid, unapplied: run no longer current).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly workerCpu = new Counter({
    name: 'kanban_worker_cpu_seconds_total',
    help: "CPU time of this supervisor's workers (group and tree) by skill, from the periodic samples (CPU % × interval).",
    labelNames: ['skill'] as const,
    registers: [this.registry],
  });
  readonly workerRss = this.gauge('kanban_worker_rss_bytes', "Resident memory of this supervisor's live workers (group and tree) by skill, at the last sample.", ['skill']);
  readonly boardSize = this.gauge('kanban_board_size_bytes', 'Size of the SQLite board files: file="db" (the board) and file="wal" (its write-ahead log).', ['file']);
  readonly slotBeats = new Counter({
    name: 'kanban_heartbeat_slot_beats_total',
    help: "Workers' automatic heartbeats read in their heartbeat slots (no report sent), acknowledged and written on the board within 5 s (MEMORY_BEAT_WRITE_MS, all runs' together).",
    registers: [this.registry],
  });
  readonly channelReports = new Counter({
    name: 'kanban_channel_reports_total',
    help: 'Reports answered on the report channel, by op and outcome (applied and duplicate only once their transaction committed; unavailable: the worker writes it directly).',
    labelNames: ['op', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly channelBatchSize = new Histogram({
    name: 'kanban_channel_batch_size',
    help: "Reports answered per committed transaction that carried reports of the channel, by commit (report: a report commit of the channel's own; tick: the tick's transaction).",
    labelNames: ['commit'] as const,
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });
  readonly channelCommitDuration = new Histogram({
    name: 'kanban_channel_commit_duration_seconds',
    help: "Duration of one report commit of the channel's own (begin, apply the queued reports, commit).",
    buckets: TICK_BUCKETS,
    registers: [this.registry],
  });
  readonly channelConnections = this.gauge('kanban_channel_connections', 'Workers connected to the report channel now.', []);
  readonly channelDropped = new Counter({
    name: 'kanban_channel_clients_dropped_total',
    help: 'Report channel connections closed by the supervisor, by reason (peer: another uid; oversized or malformed frame; slow_reader: answers left unread).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly scrapeReadErrors = new Counter({
    name: 'kanban_metrics_board_read_errors_total',
    help: 'Scrapes whose read of the task counts failed (kanban_tasks is then absent from that scrape).',
    registers: [this.registry],
  });

  private defaultsOn = false;
  /** CPU accounting: each worker's last sample (ms) and CPU seconds then, by run id. */
  private readonly cpuSampled = new Map<string, { at: number; cpuSeconds: number }>();

  private gauge<L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> {
    return new Gauge<L>({ name, help, labelNames, registers: [this.registry] });
  }

  /**
   * Node's process metrics (CPU, memory, event loop lag, GC…) on this registry, from the first
   * scrape on. The event loop's delay is sampled every EVENT_LOOP_SAMPLE_MS, not prom-client's
   * default 10 ms: that is a timer waking the loop 100 times a second for as long as the process
   * lives, which cost the supervisor of 64 quiet workers 0.7-1.0 % of a core (half its CPU) once
   * anything had scraped it. Node's delay histogram records the whole time between two of its
   * timer's callbacks, sampling period included, so prom-client's `nodejs_eventloop_lag_{min,max,
   * mean,stddev,p50,p90,p99}_seconds` would read ~1 s at this period: they are replaced by gauges of
   * the same names over our own histogram with the period taken off (how late the timer fired;
   * prom-client's own histogram is left to a timer an hour long). `nodejs_eventloop_lag_seconds`
   * (a setImmediate at the scrape) is prom-client's. How long the loop was held by a tick is measured
   * directly by the tick and write-lock histograms.
   */
  enableDefaults(): void {
    if (this.defaultsOn) return;
    this.defaultsOn = true;
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 3_600_000 });
    const delay = monitorEventLoopDelay({ resolution: EVENT_LOOP_SAMPLE_MS });
    delay.enable();
    const period = EVENT_LOOP_SAMPLE_MS * 1e6; // ns
    const late = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns - period) / 1e9 : 0);
    const gauges: Array<[Gauge, (typeof LAG_GAUGES)[keyof typeof LAG_GAUGES]]> = [];
    for (const [name, what] of Object.entries(LAG_GAUGES)) {
      const full = `nodejs_eventloop_lag_${name}_seconds`;
      this.registry.removeSingleMetric(full);
      const help = `Event loop delay: ${typeof what === 'number' ? `the ${what}th percentile of` : `the ${what} of`} how late a ${EVENT_LOOP_SAMPLE_MS} ms timer fired since the last scrape, seconds.`;
      // The first gauge's collect sets them all from the histogram, then resets it for the next scrape.
      const g: Gauge = new Gauge({
        name: full,
        help,
        registers: [this.registry],
        collect: gauges.length === 0 ? () => {
          const any = delay.count > 0;
          for (const [gauge, w] of gauges) {
            const ns = !any ? 0 : w === 'stddev' ? delay.stddev : typeof w === 'number' ? delay.percentile(w) : delay[w];
            gauge.set(w === 'stddev' ? (any ? ns / 1e9 : 0) : late(ns));
          }
          delay.reset();
        } : undefined,
      });
      gauges.push([g, what]);
    }
  }

  // ------------------------------------------------------------------ hooks, called by the steps

  /** Runs accounted: call after their accounting committed. */
  runsAccounted(runs: Array<{ outcome: RunOutcome | null; skill: string }>, now = Date.now()): void {
    let done = 0;
    let failed = 0;
    for (const r of runs) {
      const outcome = r.outcome ?? 'unknown';
      this.runsEnded.inc({ outcome, skill: r.skill });
      if (r.outcome === 'completed') done++;
      else if (r.outcome && countsAsFailure(r.outcome)) failed++;
    }
    this.history.addRuns(done, failed, now);
  }

  /** A worker spawned: the task was runnable since `readyAt`, the spawn took `spawnMs`. */
  spawned(readyAt: number, spawnedAt: number, spawnMs: number): void {
    const latencyMs = Math.max(0, spawnedAt - readyAt);
    this.dispatchLatency.observe(latencyMs / 1000);
    this.spawnDuration.observe(Math.max(0, spawnMs) / 1000);
    this.history.addDispatch(latencyMs, spawnedAt);
  }

  /** A reclaim's fence committed. */
  reclaimed(reason: StopReason): void {
    this.reclaims.inc({ reason });
  }

  /** A spool file's fate (applied: its report committed). */
  spool(result: SpoolResult): void {
    this.spoolFiles.inc({ result });
  }

  /** `n` reports of the channel answered (applied and duplicate: their transaction committed). */
  channelAnswered(op: string, outcome: ChannelOutcome, n = 1): void {
    this.channelReports.inc({ op, outcome }, n);
  }

  /** A transaction carrying `reports` reports committed: a report commit that took `commitMs`, or a tick's (null). */
  channelCommitted(reports: number, commitMs: number | null): void {
    this.channelBatchSize.observe({ commit: commitMs === null ? 'tick' : 'report' }, reports);
    if (commitMs !== null) this.channelCommitDuration.observe(commitMs / 1000);
  }

  /** A connection to the channel opened (+1) or closed (-1). */
  channelConnection(delta: 1 | -1): void {
    this.channelConnections.inc(delta);
  }

  /** The channel closed a client's connection. */
  channelDrop(reason: ChannelDrop): void {
    this.channelDropped.inc({ reason });
  }

  /** One tick ended: its duration, its longest write-lock hold (0: it wrote nothing), the pool. */
  tickDone(tickMs: number, holdMs: number, poolUsed: number, poolSize: number, now = Date.now()): void {
    this.tickDuration.observe(tickMs / 1000);
    if (holdMs > 0) this.writeLockHold.observe(holdMs / 1000);
    this.history.addPool(poolUsed, poolSize, now);
  }

  /**
   * The sampling service read the workers' usage. CPU seconds accrue from each worker's cumulative
   * CPU time (linux-proc: its first sample counts its whole life so far); without it (the portable
   * backend) from CPU % × the time since the worker's previous sample (its first sample counts
   * nothing). Workers no longer listed are forgotten.
   */
  sampledCpu(workers: Array<{ runId: string; skill: string; cpuPercent: number | null; cpuSeconds: number | null }>, now: number): void {
    const seen = new Set<string>();
    for (const w of workers) {
      seen.add(w.runId);
      const last = this.cpuSampled.get(w.runId);
      this.cpuSampled.set(w.runId, { at: now, cpuSeconds: w.cpuSeconds ?? last?.cpuSeconds ?? 0 });
      let add = 0;
      if (w.cpuSeconds !== null) add = w.cpuSeconds - (last?.cpuSeconds ?? 0);
      else if (last && w.cpuPercent !== null) add = (w.cpuPercent / 100) * (Math.max(0, now - last.at) / 1000);
      if (add > 0) this.workerCpu.inc({ skill: w.skill }, add);
    }
    for (const id of this.cpuSampled.keys()) if (!seen.has(id)) this.cpuSampled.delete(id);
  }
}
