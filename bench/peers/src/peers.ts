/**
 * The peers' series: BullMQ on a Redis of its own (appendfsync always, then everysec, on the same
 * server) and graphile-worker on an embedded PostgreSQL. The orchestrator fills the queue before
 * each round (not timed), then starts a worker process and times it from its first task's start to
 * its last durable completion; the system's own CPU is the worker process's plus the server's
 * processes' over the round.
 */
import { spawnSync } from 'node:child_process';
import { sleep } from '../../../test/dist/lib.js';
import { freshDatabase, postmasterPid, serverCpuSeconds, startPgServer, withClient } from '../../../test/dist/pg-server.js';
import { runWorkerProcess, type Ctx, type RoundResult } from './proc.js';
import { startRedis, type Redis } from './redis.js';

/** A series as the run drives it. */
export interface Series {
  key: string;
  /** Start what it needs: null when ready, else the reason it is skipped. */
  prepare(): Promise<string | null>;
  round(round: number): Promise<RoundResult>;
  /** Facts for the table's notes and the JSON (server versions, settings). */
  about(): string;
}

/** A package of the peers, loaded by name from bench/peers/node_modules (null when not installed). */
async function load<T>(spec: string): Promise<T | null> {
  try {
    return (await import(spec)) as T;
  } catch {
    return null;
  }
}
const notInstalled = (pkg: string) => `${pkg} is not installed (run npm --prefix bench/peers ci, or use npm run bench:peers)`;

interface BullQueue {
  addBulk(jobs: Array<{ name: string; data: unknown }>): Promise<unknown>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  close(): Promise<void>;
}
interface BullMq {
  Queue: new (name: string, opts: Record<string, unknown>) => BullQueue;
}

let redisStarted: Promise<Redis | string> | null = null;

export function bullmqSeries(ctx: Ctx, key: string, fsync: 'always' | 'everysec'): Series {
  let redis: Redis | null = null;
  let mq: BullMq | null = null;
  return {
    key,
    async prepare() {
      mq = await load<BullMq>('bullmq');
      if (!mq) return notInstalled('bullmq');
      const r = await (redisStarted ??= startRedis(ctx.h));
      if (typeof r === 'string') return r;
      redis = r;
      return null;
    },
    async round(round) {
      const queue = `peers-${fsync}-${round}`;
      await redis!.cmd('CONFIG', 'SET', 'appendfsync', fsync);
      const q = new mq!.Queue(queue, { connection: { host: '127.0.0.1', port: redis!.port } });
      await q.addBulk(Array.from({ length: ctx.n }, (_, i) => ({ name: 'noop', data: { i } })));
      await q.close();
      spawnSync('sync');
      const cpu0 = redis!.cpu();
      const { result: r, cpu: worker, lifetimeCpu } = await runWorkerProcess(ctx, 'bullmq-worker.js', `${key}-${round}`, { redisPort: redis!.port, queue });
      const server = redis!.cpu() - cpu0;
      const check = new mq!.Queue(queue, { connection: { host: '127.0.0.1', port: redis!.port } });
      const counts = await check.getJobCounts('completed', 'failed', 'wait', 'active');
      await check.close();
      if (counts.completed !== ctx.n) throw new Error(`BullMQ: ${counts.completed} of ${ctx.n} jobs in the completed set (${JSON.stringify(counts)})`);
      const seconds = (r.t1 - r.t0) / 1000;
      return { tps: ctx.n / seconds, seconds, cpu: worker + server, cpuParts: { 'node worker': worker, 'redis-server': server }, lifetimeCpu: lifetimeCpu + server };
    },
    about: () => (redis ? `${redis.version} (Debian's redis-server), AOF on, RDB snapshots off, on 127.0.0.1:${redis.port}` : 'Redis not started'),
  };
}

interface WorkerUtils {
  addJobs(specs: Array<{ identifier: string; payload: unknown }>): Promise<unknown>;
  release(): Promise<void>;
}
interface GraphileWorker {
  runMigrations(opts: Record<string, unknown>): Promise<void>;
  makeWorkerUtils(opts: Record<string, unknown>): Promise<WorkerUtils>;
}

export function graphileSeries(ctx: Ctx, key: string): Series {
  let gw: GraphileWorker | null = null;
  let db = '';
  let postmaster: number | null = null;
  let label = 'PostgreSQL not started';
  return {
    key,
    async prepare() {
      gw = await load<GraphileWorker>('graphile-worker');
      if (!gw) return notInstalled('graphile-worker');
      const t0 = Date.now();
      const server = await startPgServer({ keep: ctx.h.opts.keep });
      let drop: (() => Promise<void>) | null = null;
      ctx.h.atCleanup(async () => {
        await drop?.().catch(() => undefined);
        await server.stop();
      });
      const fresh = await freshDatabase(server.url, 'ks_peers');
      drop = fresh.drop;
      db = fresh.url;
      postmaster = await postmasterPid(db).catch(() => null);
      label = server.label.replace(/, data in .*$/, '');
      await gw.runMigrations({ connectionString: db });
      process.stdout.write(`  (PostgreSQL: ${label}; ready in ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
      if (postmaster === null) return 'the PostgreSQL server does not run on this machine: its CPU cannot be read';
      return null;
    },
    async round(round) {
      const utils = await gw!.makeWorkerUtils({ connectionString: db });
      await utils.addJobs(Array.from({ length: ctx.n }, (_, i) => ({ identifier: 'noop', payload: { i } })));
      await utils.release();
      // The queue's pages written now, not by the checkpointer during the round.
      await withClient(db, (c) => c.query('CHECKPOINT')).catch(() => undefined);
      spawnSync('sync');
      await sleep(200);
      const cpu0 = serverCpuSeconds(postmaster!) ?? 0;
      const { result: r, cpu: worker, lifetimeCpu } = await runWorkerProcess(ctx, 'graphile-worker.js', `${key}-${round}`, { pgUrl: db }, { NO_LOG_SUCCESS: '1' });
      // The worker's backends end after it: their CPU moves to the postmaster's reaped children.
      await sleep(500);
      const server = (serverCpuSeconds(postmaster!) ?? 0) - cpu0;
      const seconds = (r.t1 - r.t0) / 1000;
      return { tps: ctx.n / seconds, seconds, cpu: worker + server, cpuParts: { 'node worker': worker, 'postgres processes': server }, lifetimeCpu: lifetimeCpu + server };
    },
    about: () => label,
  };
}
