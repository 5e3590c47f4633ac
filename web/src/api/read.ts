/**
 * The read endpoints: health and readiness, metrics, status, history, tasks (keyset pages) and a
 * task's detail. Every read goes through the view's own connection and is bounded (a page is at
 * most 500 tasks, a detail at most the board's 1,000 last events of the task).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { detailJson } from '@kanban-supervisor/board';
import { TASK_STATUSES, type TaskStatus } from '@kanban-supervisor/policies';
import { HttpError } from '../errors.js';
import type { SupervisorView } from '../view.js';
import { apiTask, decodeCursor, encodeCursor } from './shapes.js';

/** One query parameter as text (a repeated one is refused); undefined when absent. */
export function param(req: FastifyRequest, name: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, 'bad_request', `${name} must be given once`);
  return v;
}

function intParam(req: FastifyRequest, name: string, min: number, max: number, def: number): number {
  const v = param(req, name);
  if (v === undefined || v === '') return def;
  if (!/^\d{1,10}$/.test(v) || Number(v) < min || Number(v) > max) throw new HttpError(400, 'bad_request', `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}

export function readRoutes(app: FastifyInstance, view: SupervisorView): void {
  app.get('/healthz', async (_req, reply) => {
    const h = view.health();
    return reply.code(h.ok ? 200 : 503).send({ ok: h.ok, ...(h.reason ? { reason: h.reason } : {}), last_tick_ago_ms: h.lastTickAgoMs });
  });
  app.get('/readyz', async (_req, reply) => {
    const r = view.readiness();
    return reply.code(r.ok ? 200 : 503).send({ ok: r.ok, ...(r.reason ? { reason: r.reason } : {}) });
  });
  app.get('/metrics', async (_req, reply) => {
    const m = await view.metrics();
    return reply.type(m.contentType).send(m.body);
  });
  app.get('/api/status', async () => view.status());
  app.get('/api/history', async () => ({ points: view.history() }));

  app.get('/api/tasks', async (req) => {
    const status = param(req, 'status') || undefined;
    if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
      throw new HttpError(400, 'bad_request', `status must be one of ${TASK_STATUSES.join(', ')}, got ${JSON.stringify(status.slice(0, 40))}`);
    }
    const cursor = param(req, 'cursor') || undefined;
    const after = cursor !== undefined ? decodeCursor(cursor) : null;
    const page = await view.reads.listTasksPage({
      status: status as TaskStatus | undefined,
      skill: param(req, 'skill') || undefined,
      q: param(req, 'q') || undefined,
      limit: intParam(req, 'limit', 1, 500, 50),
      after,
    });
    const counts = after === null ? (await view.reads.counts()).tasks : undefined;
    return { tasks: page.tasks.map(apiTask), nextCursor: page.next ? encodeCursor(page.next) : null, ...(page.partial ? { partial: true } : {}), ...(counts ? { counts } : {}) };
  });

  app.get('/api/tasks/:id', async (req) => {
    const id = (req.params as { id: string }).id;
    // As `show`: a run id shows its task, the run marked.
    const d = await view.reads.showTask(id, { boundedEvents: true });
    if (d) return { ...detailJson(d), task: apiTask(d.task) };
    const run = await view.reads.getRun(id);
    const dr = run ? await view.reads.showTask(run.taskId, { boundedEvents: true }) : null;
    if (!dr) throw new HttpError(404, 'not_found', `no task ${JSON.stringify(id.slice(0, 100))} (nor a run of that id)`);
    return { ...detailJson(dr), task: apiTask(dr.task), selected_run: run!.id };
  });
}
