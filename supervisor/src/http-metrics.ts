/**
 * Interim /metrics and /api/history of the HTTP view, until the supervisor's metrics module
 * (supervisor/src/metrics/, prom-client) is merged and replaces both functions: a few real gauges
 * in the Prometheus text format, written by hand from the supervisor's state and the board's counts.
 */
import type { BoardReads } from '@kanban-supervisor/board';
import type { HistoryPoint } from '@kanban-supervisor/web';
import type { TickContext } from './state.js';

export async function interimMetrics(ctx: TickContext, reads: BoardReads): Promise<{ contentType: string; body: string }> {
  const s = ctx.state;
  const counts = await reads.counts();
  const lines = [
    '# HELP kanban_tasks Tasks on the board by status.',
    '# TYPE kanban_tasks gauge',
    ...Object.entries(counts.tasks).map(([status, n]) => `kanban_tasks{status="${status}"} ${n}`),
    '# HELP kanban_workers_live Workers supervised by this supervisor now.',
    '# TYPE kanban_workers_live gauge',
    `kanban_workers_live ${s.workers.size}`,
    '# HELP kanban_pool_capacity Most workers at once (MAX_CONCURRENT_WORKERS).',
    '# TYPE kanban_pool_capacity gauge',
    `kanban_pool_capacity ${ctx.cfg.maxConcurrentWorkers}`,
    '# HELP kanban_quarantined Whether the board is quarantined (1) or not (0).',
    '# TYPE kanban_quarantined gauge',
    `kanban_quarantined ${s.quarantine ? 1 : 0}`,
    '# HELP kanban_storm_paused Whether dispatch is paused by the storm breaker (1) or not (0).',
    '# TYPE kanban_storm_paused gauge',
    `kanban_storm_paused ${s.storm.pausedUntil > Date.now() ? 1 : 0}`,
  ];
  return { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: lines.join('\n') + '\n' };
}

export function interimHistory(): HistoryPoint[] {
  return [];
}
