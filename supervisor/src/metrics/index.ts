/** The supervisor's metrics (Prometheus, prom-client) and recent history: see registry.ts, render.ts, history.ts. */
export { SupervisorMetrics, type SpoolResult, type ChannelOutcome, type ChannelDrop } from './registry.js';
export { renderMetrics, history, collectState, TASK_COUNTS_MAX_AGE_MS, type MetricsReads } from './render.js';
export { MinuteHistory, quantileOf, HISTORY_MINUTES, MINUTE_MS, type HistoryPoint } from './history.js';
