/**
 * Bare heartbeats answered from memory, against the wall clock: the freshness of the supervisor's
 * last tick commit and lease renewal (policies heartbeatFromMemory) is measured on a monotonic
 * clock. Measured with Date.now(), a wall clock stepped back (NTP, an operator) while the tick is
 * stuck (a hung PostgreSQL connection, exactly when another host takes the runs over) made the last
 * commit look fresh for as long as the step: the supervisor kept telling a worker whose run was
 * taken over that it was current, and the task could run twice. (Found by a review.)
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { SqliteBoard } from '@kanban-supervisor/board';
import { loadConfig } from '@kanban-supervisor/policies';
import { Supervisor } from '../../supervisor/dist/supervisor.js';
import { TickTx } from '../../supervisor/dist/tick-tx.js';
import { Cleanups, sleep } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(async () => {
  vi.restoreAllMocks();
  await cleanups.run();
});

function quietLog(): never {
  const log: Record<string, unknown> = {};
  for (const l of ['info', 'warn', 'error', 'debug', 'trace', 'fatal']) log[l] = () => undefined;
  log.child = () => log;
  return log as never;
}

describe('memory heartbeats and the clock', () => {
  it('a wall clock stepped back while the tick is stuck does not keep the last commit fresh', async () => {
    const dir = cleanups.tempDir('ks-memclock-');
    const db = join(dir, 'kanban.db');
    const b = SqliteBoard.open(db);
    cleanups.push(() => b.close());
    // TICK_INTERVAL_MS 10: fresh for 2 ticks and a second (1,020 ms).
    const cfg = loadConfig({ KANBAN_DB: db, TICK_INTERVAL_MS: '10', KANBAN_HTTP: 'off', REPORT_CHANNEL: 'on' });
    const sup = new Supervisor(cfg, quietLog());
    const s = sup.context.state;
    s.board = b;
    s.workers.set('r1', { runId: 'r1', stopReason: null, term: null, leaderExit: null, cleanup: null } as never);
    const batch = (sup as unknown as { channel: { batch: { deps: { memoryBeat: (runId: string, now: number) => boolean } } } }).channel.batch;
    const vouches = () => batch.deps.memoryBeat('r1', Date.now());
    // A tick transaction commits.
    const tx = new TickTx(s);
    try {
      await tx.commit();
    } finally {
      tx.close();
    }
    expect(vouches(), 'just after a tick commit').toBe(true);
    // The tick is stuck from here on (nothing commits), and the wall clock is stepped back an hour.
    const real = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => real() - 3_600_000);
    await sleep(1_300);
    expect(vouches(), 'no tick committed for 1.3 s: beats go through a transaction').toBe(false);
  });
});
