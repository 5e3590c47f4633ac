/** echo: the smallest skill. Its result is its payload. */
import { runWorker } from '@kanban-supervisor/worker-runtime';

void runWorker(async (ctx) => {
  await ctx.event('echo', { bytes: JSON.stringify(ctx.task.payload).length });
  return ctx.task.payload;
});
