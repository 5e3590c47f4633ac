// Log bounding between ticks (supervisor/src/services/log-bound.ts): a log being written is polled
// every LOG_CHECK_INTERVAL_MS, a quiet one is watched through the descriptor the supervisor holds
// (no timer runs while every log is quiet), and its next write, through any name or none, puts it
// back on polling and gets it bounded without a tick.
import { afterEach, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogBound, LOG_CHECK_INTERVAL_MS, LOG_QUIET_CHECKS, WATCHED_LOG_CHECK_MS } from '../../supervisor/dist/services/log-bound.js';
import type { TickContext } from '../../supervisor/dist/state.js';
import { sleep, waitFor } from '../src/common.js';

const MAX = 64 * 1024;
const dirs: string[] = [];
const bounds: Array<{ stop: () => void }> = [];
afterEach(() => {
  for (const b of bounds.splice(0)) b.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A LogBound over one fake live run whose log is `logPath`; `warnings` collects its log lines. */
function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'ks-logwatch-'));
  dirs.push(dir);
  const logPath = join(dir, 'r1.log');
  writeFileSync(logPath, 'HEAD\n', { mode: 0o600 });
  const warnings: string[] = [];
  const state = { workers: new Map([['r1', { runId: 'r1', taskId: 't1', identity: { pid: process.pid }, logPath }]]), stopped: false };
  const log = { warn: (o: { event: string }) => warnings.push(o.event), error: (o: { event: string }) => warnings.push(o.event), info: () => {}, debug: () => {} };
  const ctx = { state, cfg: { logMaxBytes: MAX }, log } as unknown as TickContext;
  const lb = new LogBound(ctx);
  const timer = () => (lb as unknown as { timer: NodeJS.Timeout | null }).timer;
  const stop = () => {
    state.stopped = true;
    lb.boundLogs();
  };
  bounds.push({ stop });
  return { dir, logPath, lb, warnings, timer, stop };
}

describe('log bounding between ticks', () => {
  it('polls a new log, watches it once quiet (no timer left running), and polls it again from its next write', async () => {
    const { logPath, lb, timer } = setup();
    lb.boundLogs(); // the tick
    expect(lb.mode('r1')).toBe('polled');
    expect(timer()).not.toBeNull();
    await waitFor(() => lb.mode('r1') === 'watched', 2000);
    expect(timer()).toBeNull(); // nothing wakes the supervisor for a quiet log
    const fd = openSync(logPath, 'a');
    try {
      writeSync(fd, 'one line\n');
      await waitFor(() => lb.mode('r1') === 'polled', 2000);
      expect(timer()).not.toBeNull();
      // Quiet again: watched again after LOG_QUIET_CHECKS checks.
      await sleep(LOG_CHECK_INTERVAL_MS * (LOG_QUIET_CHECKS + 2));
      await waitFor(() => lb.mode('r1') === 'watched', 2000);
    } finally {
      closeSync(fd);
    }
  });

  it('a watched log, renamed and replaced by a symlink, then written past the bound: truncated through the watch, without a tick; the symlink target untouched', async () => {
    const { dir, logPath, lb, warnings } = setup();
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'V'.repeat(4 * MAX));
    // The worker's own descriptor, as its stdout would be.
    const fd = openSync(logPath, 'a');
    try {
      lb.boundLogs();
      await waitFor(() => lb.mode('r1') === 'watched', 2000);
      renameSync(logPath, join(dir, 'elsewhere.log'));
      symlinkSync(victim, logPath);
      writeSync(fd, Buffer.alloc(3 * MAX, 0x61));
      // No boundLogs() (no tick) from here on: only the watch can see it.
      await waitFor(() => statSync(join(dir, 'elsewhere.log')).size <= MAX, 2000).catch(() => {
        throw new Error(`not truncated between ticks: ${statSync(join(dir, 'elsewhere.log')).size} bytes, mode ${lb.mode('r1')}, warnings ${warnings.join(', ')}`);
      });
      expect(warnings).toContain('log_truncated');
      expect(statSync(victim).size).toBe(4 * MAX);
    } finally {
      closeSync(fd);
    }
  });

  it('a watched log whose watch event is lost is still bounded by a tick, within WATCHED_LOG_CHECK_MS; ticks in between skip it', async () => {
    const { logPath, lb, warnings } = setup();
    const t0 = Date.now();
    lb.boundLogs(t0);
    await waitFor(() => lb.mode('r1') === 'watched', 2000);
    // Its watch goes deaf (an inotify queue overflow drops events): closed, left in place.
    const b = (lb as unknown as { bounds: Map<string, { watch: { close(): void } | null }> }).bounds.get('r1')!;
    b.watch!.close();
    b.watch = { close: () => undefined };
    const fd = openSync(logPath, 'a');
    try {
      writeSync(fd, Buffer.alloc(3 * MAX, 0x63));
      lb.boundLogs(t0 + 1000); // a tick soon after: watched logs are not looked at
      expect(statSync(logPath).size).toBe(5 + 3 * MAX);
      lb.boundLogs(t0 + WATCHED_LOG_CHECK_MS); // the tick that checks them too
      expect(statSync(logPath).size).toBeLessThanOrEqual(MAX);
      expect(warnings).toContain('log_truncated');
    } finally {
      closeSync(fd);
    }
  });

  it('a run that ended gets a last check and its watch and descriptor closed', async () => {
    const { logPath, lb, timer, stop } = setup();
    lb.boundLogs();
    await waitFor(() => lb.mode('r1') === 'watched', 2000);
    const fd = openSync(logPath, 'a');
    try {
      stop(); // the supervisor stopped: every run leaves
      writeSync(fd, Buffer.alloc(2 * MAX, 0x62)); // after the last check: nobody looks any more
      await sleep(100);
      expect(lb.mode('r1')).toBeNull();
      expect(timer()).toBeNull();
      expect(statSync(logPath).size).toBe(5 + 2 * MAX);
    } finally {
      closeSync(fd);
    }
  });
});
