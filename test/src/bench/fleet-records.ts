/**
 * The fleet workers' records (test/fixtures/bench/py-fleet.py and fleet-worker.mjs write them; the
 * format is there), read into the heartbeat figures of a window: latencies measured by the workers,
 * and the beats lost — sent and never answered, answered "not recorded", or 1 Hz slots that passed
 * while the previous beat was in flight.
 */
import { quantile, readRecords } from '../lib.js';

export interface Beat {
  task: string;
  sent: number;
  latencyMs: number;
  via: string;
}

export interface FleetRecords {
  /** Per worker process: task, pid, when its script began and when its handler got the task (epoch ms). */
  starts: Array<{ task: string; pid: number; scriptMs: number; handlerMs: number }>;
  sends: Array<{ task: string; sent: number }>;
  beats: Beat[];
  misses: Array<{ task: string; slot: number }>;
}

export function readFleetRecords(path: string): FleetRecords {
  const out: FleetRecords = { starts: [], sends: [], beats: [], misses: [] };
  for (const r of readRecords(path)) {
    switch (r[0]) {
      case 'start':
        out.starts.push({ task: r[1]!, pid: Number(r[2]), scriptMs: Number(r[3]), handlerMs: Number(r[4]) });
        break;
      case 'send':
        out.sends.push({ task: r[1]!, sent: Number(r[2]) });
        break;
      case 'hb':
        out.beats.push({ task: r[1]!, sent: Number(r[2]), latencyMs: Number(r[3]), via: r[4] ?? '-' });
        break;
      case 'miss':
        out.misses.push({ task: r[1]!, slot: Number(r[2]) });
        break;
    }
  }
  return out;
}

export interface Spread {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export function spread(xs: number[]): Spread {
  let max = -Infinity;
  for (const x of xs) if (x > max) max = x;
  return { n: xs.length, p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: xs.length ? max : NaN };
}

export interface BeatWindow {
  latency: Spread;
  /** Beats sent in the window. */
  sent: number;
  /** Sent in the window, more than `inFlightMs` before its end, and never answered. */
  unanswered: number;
  /** Answered, but the runtime could not record them (neither channel nor board). */
  failed: number;
  /** Recorded on the board directly: the channel did not answer them (Python workers only say it). */
  direct: number;
  /** 1 Hz slots of the window skipped because the previous beat was still in flight. */
  missed: number;
  /** unanswered + failed + missed. */
  lost: number;
}

/**
 * The beats sent in [from, to] (epoch ms). A beat sent within `inFlightMs` of `to` and not
 * answered was in flight when the window closed (the supervisor stopping): not counted lost.
 */
export function beatWindow(r: FleetRecords, from: number, to: number, inFlightMs: number): BeatWindow {
  const inWin = (t: number) => t >= from && t <= to;
  const beats = r.beats.filter((b) => inWin(b.sent));
  const answered = new Set(r.beats.map((b) => `${b.task} ${b.sent}`));
  const sends = r.sends.filter((s) => inWin(s.sent));
  const unanswered = sends.filter((s) => s.sent < to - inFlightMs && !answered.has(`${s.task} ${s.sent}`)).length;
  const failed = beats.filter((b) => b.via === 'failed').length;
  const missed = r.misses.filter((m) => inWin(m.slot)).length;
  return {
    latency: spread(beats.map((b) => b.latencyMs)),
    sent: sends.length,
    unanswered,
    failed,
    direct: beats.filter((b) => b.via === 'direct').length,
    missed,
    lost: unanswered + failed + missed,
  };
}
