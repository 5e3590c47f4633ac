/**
 * slow-call: simulates a long LLM call streamed in steps.
 * - honours ctx.signal (a SIGTERM or a lost fence stops the "call" at once),
 * - heartbeats with progress after every step,
 * - saves its partial work in onShutdown, and resumes from it on the next run of the task.
 *
 * Payload (all optional): { "steps": 10, "stepMs": 500, "failAtStep": null }
 * Partial work goes to $SLOW_CALL_STATE_DIR, else `<board dir>/slow-call/<task id>.json`.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { runWorker, type WorkerContext } from '@kanban-supervisor/worker-runtime';

interface Partial {
  done: number;
  chunks: string[];
}

function intField(p: Record<string, unknown>, key: string, def: number, min: number, max: number): number {
  const v = p[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new Error(`payload.${key} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function stateFile(taskId: string): string {
  const dir = process.env.SLOW_CALL_STATE_DIR ?? join(dirname(resolve(process.env.KANBAN_DB ?? '.')), 'slow-call');
  return join(dir, `${taskId}.json`);
}

function load(file: string): Partial {
  try {
    const p = JSON.parse(readFileSync(file, 'utf8')) as Partial;
    if (Number.isInteger(p.done) && Array.isArray(p.chunks)) return p;
  } catch {
    /* nothing saved yet */
  }
  return { done: 0, chunks: [] };
}

function save(file: string, p: Partial): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(p), { mode: 0o600 });
  renameSync(tmp, file);
}

/** One "model call": takes `ms`, aborts at once when the signal fires. */
async function callModel(step: number, ms: number, signal: AbortSignal): Promise<string> {
  await delay(ms, undefined, { signal });
  return `chunk-${step}`;
}

async function slowCall(ctx: WorkerContext) {
  const payload = (ctx.task.payload && typeof ctx.task.payload === 'object' && !Array.isArray(ctx.task.payload) ? ctx.task.payload : {}) as Record<string, unknown>;
  const steps = intField(payload, 'steps', 10, 1, 100_000);
  const stepMs = intField(payload, 'stepMs', 500, 0, 3_600_000);
  const failAt = payload.failAtStep === undefined || payload.failAtStep === null ? null : intField(payload, 'failAtStep', 0, 0, 100_000);
  const file = stateFile(ctx.task.id);
  const partial = load(file);
  const resumedFrom = partial.done;
  if (resumedFrom > 0) await ctx.event('resumed', { from: resumedFrom });

  ctx.onShutdown(async (reason) => {
    save(file, partial);
    process.stderr.write(`slow-call: saved ${partial.done}/${steps} steps to ${file} (${reason.message})\n`);
  });

  for (let i = partial.done; i < steps; i++) {
    if (failAt !== null && i === failAt) throw new Error(`slow-call: simulated model error at step ${i}`);
    const chunk = await callModel(i, stepMs, ctx.signal);
    partial.chunks.push(chunk);
    partial.done = i + 1;
    await ctx.heartbeat({ step: partial.done, of: steps });
  }
  rmSync(file, { force: true });
  return { steps, resumedFrom, text: partial.chunks.join(' ') };
}

void runWorker(slowCall);
