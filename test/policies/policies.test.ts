import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../src/common.js';
import {
  accountInput,
  CONFIG_VARS,
  boardConnectDelayMs,
  BOARD_CONNECT_RETRY,
  ConfigError,
  countsAsFailure,
  decideAccounting,
  dispatchPaused,
  failureLimitFor,
  heartbeatIntervalMs,
  initialStorm,
  killDeadline,
  loadConfig,
  reclaimReason,
  recordFailure,
  retryDelayMs,
  shutdownBudgetMs,
  warnUnreachable,
  DEFAULT_STORM,
  RUN_OUTCOMES,
  SPAWN_SLICE,
  spawnSlice,
  nextSpawnMs,
  pollPeriodMs,
  DISPATCH_POLL_MS,
  WATCH_POLL_MS,
} from '@kanban-supervisor/policies';

const backoff = { baseSeconds: 1, factor: 4, maxSeconds: 300, jitter: 0 };

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      db: './.kanban/kanban.db',
      maxConcurrentWorkers: 4,
      reclaimGraceSeconds: 30,
      crashGraceSeconds: 30,
      failureLimit: 2,
      backoffBaseSeconds: 1,
      backoffFactor: 4,
      backoffMaxSeconds: 300,
      maxRuntimeSeconds: 3600,
      heartbeatTimeoutSeconds: 0,
      tickIntervalMs: 1000,
      logLevel: 'info',
    });
  });
  it('flags win over env', () => {
    const c = loadConfig({ MAX_CONCURRENT_WORKERS: '3', KANBAN_DB: '/a' }, { '--db': '/b' });
    expect(c.maxConcurrentWorkers).toBe(3);
    expect(c.db).toBe('/b');
  });
  it.each([
    ['MAX_CONCURRENT_WORKERS', 'abc', 'MAX_CONCURRENT_WORKERS must be an integer from 1 to 1024, got "abc"'],
    ['MAX_CONCURRENT_WORKERS', '0', 'MAX_CONCURRENT_WORKERS must be an integer from 1 to 1024, got "0"'],
    ['MAX_CONCURRENT_WORKERS', '2.5', 'got "2.5"'],
    ['RECLAIM_GRACE_SECONDS', '-1', 'RECLAIM_GRACE_SECONDS must be a number from 0 to 86400, got "-1"'],
    ['RECLAIM_GRACE_SECONDS', '1e3', 'RECLAIM_GRACE_SECONDS'],
    ['TICK_INTERVAL_MS', '5', 'TICK_INTERVAL_MS must be an integer from 10 to 60000, got "5"'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL must be one of'],
    ['FAILURE_LIMIT', ' ', 'FAILURE_LIMIT must be an integer from 1 to 1000, got " "'],
  ])('%s=%j is refused with a message naming it', (name, value, msg) => {
    let err: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(msg);
    expect((err as ConfigError).exitCode).toBe(2);
  });
  it('a bad flag names the flag', () => {
    expect(() => loadConfig({}, { '--max-concurrent-workers': 'x' })).toThrow('--max-concurrent-workers must be an integer');
  });
  it('the PostgreSQL board\'s host id, lease and state folder: unset by default (machine id, 30 s, XDG state), flags win over env', () => {
    expect(loadConfig({})).toMatchObject({ hostId: null, leaseSeconds: 30, stateDir: null });
    // Empty (or blank) in the environment is unset, as for every variable.
    expect(loadConfig({ KANBAN_HOST_ID: ' ', KANBAN_STATE_DIR: '' })).toMatchObject({ hostId: null, stateDir: null });
    const env = { KANBAN_HOST_ID: 'env-host', SUPERVISOR_LEASE_SECONDS: '40', KANBAN_STATE_DIR: '/env/state' };
    expect(loadConfig(env)).toMatchObject({ hostId: 'env-host', leaseSeconds: 40, stateDir: '/env/state' });
    expect(loadConfig(env, { '--host-id': 'flag-host', '--lease-seconds': '50', '--state-dir': '/flag/state' })).toMatchObject({ hostId: 'flag-host', leaseSeconds: 50, stateDir: '/flag/state' });
  });
  it.each([
    [{ KANBAN_HOST_ID: 'a b' }, {}, 'KANBAN_HOST_ID must be 1-128 letters, digits or . _ : -, got "a b"'],
    [{}, { '--host-id': '' }, '--host-id must be 1-128 letters'],
    [{}, { '--host-id': 'é' }, '--host-id must be 1-128 letters'],
    [{ SUPERVISOR_LEASE_SECONDS: '0.5' }, {}, 'SUPERVISOR_LEASE_SECONDS must be a number from 1 to 86400, got "0.5"'],
    [{}, { '--lease-seconds': 'x' }, '--lease-seconds must be a number from 1 to 86400, got "x"'],
    [{}, { '--state-dir': ' ' }, '--state-dir must not be empty'],
    [{ KANBAN_DB: 'postgres://h/db', SUPERVISOR_LEASE_SECONDS: '2' }, {}, 'SUPERVISOR_LEASE_SECONDS (2 s) must be at least 3 times TICK_INTERVAL_MS (1000 ms, the default), that is 3 s'],
    [{ KANBAN_DB: 'postgres://h/db', TICK_INTERVAL_MS: '11000' }, {}, 'SUPERVISOR_LEASE_SECONDS (30 s, the default) must be at least 3 times TICK_INTERVAL_MS (11000 ms), that is 33 s'],
    [{ KANBAN_DB: 'postgresql://h/db' }, { '--lease-seconds': '1', '--tick-interval-ms': '400' }, '--lease-seconds (1 s) must be at least 3 times --tick-interval-ms (400 ms), that is 1.2 s'],
  ])('%j %j is refused naming what is at fault', (env, flags, msg) => {
    let err: unknown;
    try {
      loadConfig(env, flags);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(msg);
  });
  it('the lease is checked against the tick only on a PostgreSQL board (it has no lease on SQLite)', () => {
    expect(loadConfig({ TICK_INTERVAL_MS: '60000' }).tickIntervalMs).toBe(60000);
    expect(loadConfig({ KANBAN_DB: 'postgres://h/db', TICK_INTERVAL_MS: '10000' }).leaseSeconds).toBe(30);
  });
});

describe('the README configuration table', () => {
  it('has a row for every variable of the config, with its run flag', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const rows = readme.split('\n').filter((l) => l.startsWith('| `'));
    for (const v of CONFIG_VARS) {
      const row = rows.find((r) => r.split('|')[1]!.includes(`\`${v.env}\``));
      expect(row, `README.md configuration table row for ${v.env}`).toBeDefined();
      expect(row).toContain(`\`${v.flag}\``);
    }
  });
});

describe('reaching a PostgreSQL board at start', () => {
  it('waits 0.5 s, doubling up to 10 s, between attempts', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 50].map(boardConnectDelayMs)).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
    expect(boardConnectDelayMs(0)).toBe(500);
  });
  it('warns at the first failure, then at most every 30 s', () => {
    expect(warnUnreachable(null, 5)).toBe(true);
    expect(warnUnreachable(1000, 1000 + BOARD_CONNECT_RETRY.warnEveryMs - 1)).toBe(false);
    expect(warnUnreachable(1000, 1000 + BOARD_CONNECT_RETRY.warnEveryMs)).toBe(true);
  });
});

describe('backoff and limits', () => {
  it('grows 1 s, 4 s, 16 s ... capped', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n, backoff))).toEqual([1000, 4000, 16000, 64000, 256000, 300000]);
  });
  it('jitter stays within its band and never exceeds the cap', () => {
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const d = retryDelayMs(2, { ...backoff, jitter: 0.2 }, r);
      expect(d).toBeGreaterThanOrEqual(3600);
      expect(d).toBeLessThanOrEqual(4400);
      expect(retryDelayMs(20, { ...backoff, jitter: 0.2 }, r)).toBeLessThanOrEqual(300000);
    }
  });
  it('counts exactly the failures the worker caused', () => {
    const counted = RUN_OUTCOMES.filter(countsAsFailure);
    expect(counted.sort()).toEqual(['crashed', 'failed', 'memory_exceeded', 'spawn_failed', 'stalled', 'timed_out']);
  });
  it('per-task max_retries wins over the global limit', () => {
    expect(failureLimitFor(null, 2)).toBe(2);
    expect(failureLimitFor(5, 2)).toBe(5);
  });
});

describe('accounting', () => {
  const base = { consecutiveFailures: 0, taskMaxRetries: null, taskStatus: 'running' as const, error: 'x', deferUntil: null, now: 1000, random: 0.5 };
  const policy = { failureLimit: 2, backoff };
  it('first counted failure requeues with backoff, the limit-th blocks', () => {
    expect(decideAccounting({ ...base, outcome: 'crashed' }, policy)).toEqual({ action: 'requeue', consecutiveFailures: 1, notBefore: 2000, counted: true });
    const d = decideAccounting({ ...base, outcome: 'crashed', consecutiveFailures: 1 }, policy);
    expect(d.action).toBe('block');
    if (d.action === 'block') expect(d.reason).toContain('crashed 2 times in a row (limit 2): x');
  });
  it('completed resets; deferred and abandoned do not count', () => {
    expect(decideAccounting({ ...base, outcome: 'completed', consecutiveFailures: 1 }, policy)).toEqual({ action: 'done', consecutiveFailures: 0 });
    expect(decideAccounting({ ...base, outcome: 'deferred', consecutiveFailures: 1, deferUntil: 9000 }, policy)).toEqual({ action: 'requeue', consecutiveFailures: 1, notBefore: 9000, counted: false });
    expect(decideAccounting({ ...base, outcome: 'abandoned', consecutiveFailures: 1 }, policy)).toMatchObject({ action: 'requeue', counted: false, consecutiveFailures: 1 });
  });
  it('leaves a task someone else cancelled', () => {
    expect(decideAccounting({ ...base, outcome: 'cancelled', taskStatus: 'cancelled' }, policy)).toEqual({ action: 'leave' });
  });
});

describe('reclaim decisions', () => {
  const run = { startedAt: 0, heartbeatAt: null, maxRuntimeSeconds: 10, heartbeatTimeoutSeconds: 3, maxRssMb: 100, rssBytes: 1, taskCancelled: false, endedAt: null };
  it('picks the reason', () => {
    expect(reclaimReason(run, 1000)).toBeNull();
    expect(reclaimReason(run, 3000)).toBe('stalled');
    expect(reclaimReason({ ...run, heartbeatAt: 9000 }, 10_000)).toBe('timed_out');
    expect(reclaimReason({ ...run, taskCancelled: true }, 1)).toBe('cancelled');
    expect(reclaimReason({ ...run, rssBytes: 101 * 1024 * 1024 }, 1)).toBe('memory_exceeded');
    expect(reclaimReason({ ...run, endedAt: 100 }, 5000)).toBeNull();
    expect(reclaimReason({ ...run, endedAt: 100 }, 10_100)).toBe('hung_after_report');
  });
  it('an adopted worker is judged stalled from its adoption at the earliest (its last beats may never have reached the board)', () => {
    const adopted = { ...run, maxRuntimeSeconds: null, heartbeatAt: 1000, adoptedAt: 3500 };
    expect(reclaimReason({ ...adopted, adoptedAt: null }, 4000)).toBe('stalled');
    expect(reclaimReason(adopted, 4000)).toBeNull();
    expect(reclaimReason(adopted, 6499)).toBeNull();
    expect(reclaimReason(adopted, 6500)).toBe('stalled');
  });
  it('deadline, heartbeat interval and shutdown budget', () => {
    expect(killDeadline(1000, 30)).toBe(31_000);
    expect(heartbeatIntervalMs(0)).toBe(30_000);
    expect(heartbeatIntervalMs(3)).toBe(1000);
    expect(shutdownBudgetMs(30)).toBe(25_000);
    expect(shutdownBudgetMs(2)).toBe(1500);
    expect(shutdownBudgetMs(0)).toBe(0);
  });
});

describe('the supervisor\'s poll between ticks (pollPeriodMs)', () => {
  const base = { stopped: false, stopping: false, freeSlot: false, watched: false };
  it('quick for a free slot or a stop, slow for a stream only, none for a full pool nobody watches', () => {
    expect(pollPeriodMs(base)).toBeNull();
    expect(pollPeriodMs({ ...base, freeSlot: true })).toBe(DISPATCH_POLL_MS);
    expect(pollPeriodMs({ ...base, stopping: true })).toBe(DISPATCH_POLL_MS);
    expect(pollPeriodMs({ ...base, watched: true })).toBe(WATCH_POLL_MS);
    expect(pollPeriodMs({ ...base, watched: true, freeSlot: true })).toBe(DISPATCH_POLL_MS);
    expect(pollPeriodMs({ ...base, stopped: true, freeSlot: true, watched: true })).toBeNull();
    // A configured dispatch period; the watching one is never quicker than it.
    expect(pollPeriodMs({ ...base, freeSlot: true }, 5)).toBe(5);
    expect(pollPeriodMs({ ...base, watched: true }, 500)).toBe(500);
    expect(DISPATCH_POLL_MS).toBeLessThan(WATCH_POLL_MS);
  });
});

describe('storm breaker', () => {
  it('trips when many different tasks fail in the window, with growing pauses', () => {
    let s = initialStorm;
    let tripped = false;
    for (let i = 0; i < DEFAULT_STORM.distinctTasks; i++) {
      const r = recordFailure(s, `t${i}`, 1000 + i, DEFAULT_STORM);
      s = r.state;
      tripped ||= r.tripped;
    }
    expect(tripped).toBe(true);
    expect(dispatchPaused(s, 1100)).toBe(true);
    expect(dispatchPaused(s, 1000 + DEFAULT_STORM.distinctTasks + DEFAULT_STORM.basePauseMs)).toBe(false);
  });
  it('one task failing many times does not trip it', () => {
    let s = initialStorm;
    for (let i = 0; i < 50; i++) s = recordFailure(s, 'same', 1000 + i, DEFAULT_STORM).state;
    expect(dispatchPaused(s, 1100)).toBe(false);
  });
});

describe('accountInput', () => {
  const run = { id: 'r1', outcome: null, error: 'boom', deferUntil: null };
  const task = { status: 'running' as const, consecutiveFailures: 2, maxRetries: 5, currentRunId: 'r1' };
  it('reads a run with no outcome as a crash of the task it still belongs to', () => {
    expect(accountInput(run, task, 1000, 0.5)).toEqual({ outcome: 'crashed', consecutiveFailures: 2, taskMaxRetries: 5, taskStatus: 'running', error: 'boom', deferUntil: null, now: 1000, random: 0.5 });
  });
  it('reads a task that points at another run as moved on (cancelled): the decision leaves it alone', () => {
    const input = accountInput({ ...run, outcome: 'failed' }, { ...task, currentRunId: 'r2' }, 1000, 0.5);
    expect(input.taskStatus).toBe('cancelled');
    expect(decideAccounting(input, { failureLimit: 3, backoff: { baseSeconds: 1, factor: 2, maxSeconds: 60 } })).toEqual({ action: 'leave' });
  });
});

describe('spawn slices (spawnSlice, nextSpawnMs)', () => {
  it('claims what fits in the budget at the recent spawn duration, at least the minimum, never more than the free slots', () => {
    expect(spawnSlice(0, 1)).toBe(0);
    expect(spawnSlice(-3, null)).toBe(0);
    expect(spawnSlice(100, null)).toBe(SPAWN_SLICE.first);
    expect(spawnSlice(3, null)).toBe(3);
    expect(spawnSlice(1000, 2)).toBe(Math.floor(SPAWN_SLICE.budgetMs / 2));
    expect(spawnSlice(1000, 500)).toBe(SPAWN_SLICE.min);
    expect(spawnSlice(1, 500)).toBe(1);
    expect(spawnSlice(10, 0)).toBe(10); // instant spawns: every free slot
  });
  it('the recent spawn duration is a moving average; a nonsense sample changes nothing', () => {
    expect(nextSpawnMs(null, 10)).toBe(10);
    expect(nextSpawnMs(10, 20)).toBeCloseTo(13);
    expect(nextSpawnMs(10, NaN)).toBe(10);
    expect(nextSpawnMs(10, -1)).toBe(10);
    expect(nextSpawnMs(null, Infinity)).toBe(0);
  });
});
