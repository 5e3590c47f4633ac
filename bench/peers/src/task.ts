/**
 * The task every system runs: one process, `sh -c 'exit 0'`, started the way a Node program starts
 * one (child_process.spawn, output discarded). The limit and the peers' workers share this code, so
 * they pay the same for each spawn. Also what a worker process of this bench shares: its
 * configuration (one JSON argument) and its result (a JSON file the orchestrator reads).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';

export const TASK_ARGV: readonly string[] = ['sh', '-c', 'exit 0'];

/** Run the task once: its exit code (-1 when it could not start or was killed). */
export function runTask(): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(TASK_ARGV[0]!, TASK_ARGV.slice(1), { stdio: 'ignore' });
    child.once('error', () => resolve(-1));
    child.once('exit', (code) => resolve(code ?? -1));
  });
}

/** What a worker process of this bench is told (argv[2], JSON). */
export interface WorkerConfig {
  /** Tasks to complete before it stops. */
  n: number;
  conc: number;
  /** Where it writes its WorkerResult. */
  result: string;
  /** BullMQ: the Redis port and the queue. */
  redisPort?: number;
  queue?: string;
  /** graphile-worker: the database. */
  pgUrl?: string;
}

/** What a worker process reports: its first task's start and its last durable completion (epoch ms). */
export interface WorkerResult {
  t0: number;
  t1: number;
  done: number;
  failed: number;
  /** Anything that went wrong, for the orchestrator's error. */
  error?: string;
}

export function workerConfig(): WorkerConfig {
  const raw = process.argv[2];
  if (!raw) throw new Error('a worker of bench:peers needs its configuration (JSON) as its first argument');
  return JSON.parse(raw) as WorkerConfig;
}

export function writeResult(cfg: WorkerConfig, r: WorkerResult): void {
  writeFileSync(cfg.result, JSON.stringify(r));
}
