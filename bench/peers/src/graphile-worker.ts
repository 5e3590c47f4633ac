/**
 * graphile-worker's side: a runner (concurrency `conc`) on the database the orchestrator filled,
 * each job running the task. graphile-worker records a success by deleting the job's row, and
 * sends that delete after the handler returns without waiting for it; so after the `n`-th handler
 * the jobs view is polled (every 2 ms) until no job is left: the last completion is then committed.
 */
import { runTask, workerConfig, writeResult, type WorkerResult } from './task.js';

/** The part of graphile-worker's API used here (loaded by name). */
interface Runner {
  events: { on(event: 'job:complete', fn: (e: { error?: unknown }) => void): void };
  stop(): Promise<void>;
}
interface Utils {
  withPgClient<T>(fn: (c: { query(sql: string): Promise<{ rows: Array<Record<string, unknown>> }> }) => Promise<T>): Promise<T>;
  release(): Promise<void>;
}
interface GraphileWorker {
  run(opts: Record<string, unknown>): Promise<Runner>;
  makeWorkerUtils(opts: Record<string, unknown>): Promise<Utils>;
}

const cfg = workerConfig();
const spec = 'graphile-worker';
const gw = (await import(spec)) as GraphileWorker;
const r: WorkerResult = { t0: 0, t1: 0, done: 0, failed: 0 };
const utils = await gw.makeWorkerUtils({ connectionString: cfg.pgUrl });
let finish: () => void = () => undefined;
const handled = new Promise<void>((resolve) => (finish = resolve));
const runner = await gw.run({
  connectionString: cfg.pgUrl,
  concurrency: cfg.conc,
  noHandleSignals: true,
  taskList: {
    noop: async () => {
      if (!r.t0) r.t0 = Date.now();
      const code = await runTask();
      if (code !== 0) throw new Error(`the task exited ${code}`);
    },
  },
});
runner.events.on('job:complete', (e) => {
  if (e.error) r.failed++;
  else r.done++;
  if (r.done + r.failed === cfg.n) finish();
});
await handled;
const left = async () => Number(await utils.withPgClient(async (c) => (await c.query('SELECT count(*)::int AS n FROM graphile_worker.jobs')).rows[0]!.n));
for (const end = Date.now() + 30_000; ; ) {
  const n = await left();
  if (n === 0) break;
  if (Date.now() > end) {
    r.error = `${n} job(s) still in graphile_worker.jobs 30 s after the last handler`;
    break;
  }
  await new Promise((res) => setTimeout(res, 2));
}
r.t1 = Date.now();
await runner.stop();
await utils.release();
writeResult(cfg, r);
process.exit(0);
