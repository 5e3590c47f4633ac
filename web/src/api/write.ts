/**
 * The state-changing endpoints: add a task, cancel, retry, block, unblock. Each needs the bearer
 * token (server.ts), a JSON body (415 otherwise; `{}` for the actions without one) of at most
 * 1 MiB (413), and goes through the view's operator queue: the supervisor's loop runs it between
 * ticks, with the same board operations and validation as the CLI's `add`, `cancel`, … .
 */
import type { FastifyInstance } from 'fastify';
import { BoardInputError, taskJson, type Json, type Task, type TaskInput } from '@kanban-supervisor/board';
import { ConfigError, notBeforeOf, parseDuration, parseIsoTime } from '@kanban-supervisor/policies';
import { HttpError } from '../errors.js';
import type { SupervisorView } from '../view.js';
import { apiTask } from './shapes.js';

const ADD_KEYS = ['skill', 'title', 'payload', 'priority', 'max_runtime_seconds', 'max_attempts', 'after', 'delay', 'at', 'key'] as const;

function objectBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'bad_request', 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

function optNumber(b: Record<string, unknown>, key: string, integer: boolean): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new HttpError(400, 'bad_request', `${key} must be ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return v;
}

/** The body of POST /api/tasks, checked as `add` checks its flags (the board checks the ranges). */
export function addInput(body: unknown, now = Date.now()): TaskInput {
  const b = objectBody(body);
  for (const k of Object.keys(b)) {
    if (!(ADD_KEYS as readonly string[]).includes(k)) throw new HttpError(400, 'bad_request', `unknown field ${JSON.stringify(k.slice(0, 60))}; fields: ${ADD_KEYS.join(', ')}`);
  }
  if (typeof b.skill !== 'string' || b.skill === '') throw new HttpError(400, 'bad_request', 'skill (a skill name) is required');
  if (b.title !== undefined && typeof b.title !== 'string') throw new HttpError(400, 'bad_request', 'title must be a string');
  if (b.after !== undefined && (!Array.isArray(b.after) || b.after.some((x) => typeof x !== 'string'))) {
    throw new HttpError(400, 'bad_request', 'after must be an array of task ids (strings)');
  }
  if (b.key !== undefined && b.key !== null && typeof b.key !== 'string') throw new HttpError(400, 'bad_request', 'key must be a string');
  // delay: seconds (a number) or a duration ("30s", "5m", "2h"); at: an ISO-8601 time with its offset.
  let notBefore = 0;
  try {
    const delayMs =
      b.delay === undefined || b.delay === null ? null : typeof b.delay === 'number' && Number.isFinite(b.delay) && b.delay >= 0 ? Math.round(b.delay * 1000) : parseDuration('delay', String(b.delay));
    const at = b.at === undefined || b.at === null ? null : parseIsoTime('at', String(b.at));
    if (delayMs !== null && at !== null) throw new ConfigError('give delay or at, not both');
    notBefore = notBeforeOf(now, delayMs, at);
  } catch (e) {
    if (e instanceof ConfigError) throw new HttpError(400, 'bad_request', e.message);
    throw e;
  }
  return {
    skill: b.skill,
    title: b.title as string | undefined,
    payload: (b.payload ?? null) as Json,
    priority: optNumber(b, 'priority', true) ?? 0,
    maxRuntimeSeconds: optNumber(b, 'max_runtime_seconds', false),
    maxRetries: optNumber(b, 'max_attempts', true),
    ...(b.after !== undefined ? { after: b.after as string[] } : {}),
    notBefore,
    key: (b.key as string | null | undefined) ?? null,
  };
}

export function writeRoutes(app: FastifyInstance, view: SupervisorView): void {
  app.post('/api/tasks', async (req, reply) => {
    const input = addInput(req.body);
    const [added] = await view.operator((ops) => ops.createTasks([input]));
    const t = added!.task;
    // A key already on the board: its task, nothing added (200, created false).
    return reply.code(added!.created ? 201 : 200).send({ id: t.id, created: added!.created, task: apiTask(t) });
  });

  for (const action of ['cancel', 'retry', 'block', 'unblock'] as const) {
    app.post(`/api/tasks/:id/${action}`, async (req) => {
      const id = (req.params as { id: string }).id;
      const b = objectBody(req.body);
      const allowed = action === 'block' ? ['reason'] : action === 'cancel' ? ['cascade'] : [];
      for (const k of Object.keys(b)) if (!allowed.includes(k)) throw new HttpError(400, 'bad_request', `unknown field ${JSON.stringify(k.slice(0, 60))} for ${action}`);
      const reason = b.reason;
      if (action === 'block' && (typeof reason !== 'string' || reason.trim() === '')) throw new HttpError(400, 'bad_request', 'block needs a reason (a non-empty string)');
      if (b.cascade !== undefined && typeof b.cascade !== 'boolean') throw new HttpError(400, 'bad_request', 'cascade must be true or false');
      if (!(await view.reads.getTask(id))) throw new HttpError(404, 'not_found', `no task ${JSON.stringify(id.slice(0, 100))}`);
      let t: Task;
      try {
        // cancel {cascade: true}: the task and every task waiting on it, transitively, in one transaction.
        if (b.cascade === true) return { cancelled: await view.operator((ops) => ops.cancelCascade(id)) };
        t = await view.operator((ops) => {
          if (action === 'cancel') return ops.cancelTask(id);
          if (action === 'retry') return ops.retryTask(id);
          if (action === 'unblock') return ops.unblockTask(id);
          return ops.blockTask(id, reason as string);
        });
      } catch (e) {
        // The task exists: what the board refuses is its state (e.g. retry of a running task).
        if (e instanceof BoardInputError) throw new HttpError(409, 'conflict', e.message);
        throw e;
      }
      return taskJson(t);
    });
  }
}
