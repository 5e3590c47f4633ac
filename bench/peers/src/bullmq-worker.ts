/**
 * BullMQ's side: a Worker (concurrency `conc`) on the queue the orchestrator filled, each job
 * running the task; a job is done when BullMQ has moved it to the completed set (the worker's
 * `completed` event comes after that write's answer, which Redis with appendfsync always sends
 * after the fsync). Stops after `n` jobs.
 */
import { runTask, workerConfig, writeResult, type WorkerResult } from './task.js';

/** The part of BullMQ's API used here (the package is loaded by name: see peers-api.ts). */
interface BullWorker {
  on(event: 'completed' | 'failed', fn: () => void): void;
  close(): Promise<void>;
}
type BullWorkerClass = new (queue: string, fn: () => Promise<unknown>, opts: Record<string, unknown>) => BullWorker;

const cfg = workerConfig();
const spec = 'bullmq';
const { Worker } = (await import(spec)) as { Worker: BullWorkerClass };
const r: WorkerResult = { t0: 0, t1: 0, done: 0, failed: 0 };
let finish: () => void = () => undefined;
const finished = new Promise<void>((resolve) => (finish = resolve));
const worker = new Worker(
  cfg.queue!,
  async () => {
    if (!r.t0) r.t0 = Date.now();
    const code = await runTask();
    if (code !== 0) throw new Error(`the task exited ${code}`);
    return null;
  },
  { connection: { host: '127.0.0.1', port: cfg.redisPort! }, concurrency: cfg.conc },
);
const count = (): void => {
  if (r.done + r.failed === cfg.n) {
    r.t1 = Date.now();
    finish();
  }
};
worker.on('completed', () => {
  r.done++;
  count();
});
worker.on('failed', () => {
  r.failed++;
  count();
});
await finished;
await worker.close();
writeResult(cfg, r);
process.exit(0);
