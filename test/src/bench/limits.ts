/**
 * The two references the throughput benchmark measures the supervisor against, in the same run: the
 * physical limit (the same workers spawned the way the reaper spawns them, no board at all) and the
 * board limit (the same workers reporting into a board, claims made beforehand, no supervisor).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard, openSql } from '../lib.js';
import { h } from './setup.js';

/** The base environment the supervisor gives its workers (so the limit's command sees the same). */
export function workerBaseEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return { ...env, ...extra };
}

/**
 * The physical limit: spawn `argv` `n` times with at most `conc` alive, the way the reaper spawns
 * (own process group, stdin ignored, stdout/stderr appended to a log file), no board at all.
 * `env` may give each spawn its own environment (the i-th spawn gets env(i)).
 */
export async function physicalLimit(
  argv: string[],
  env: Record<string, string> | ((i: number) => Record<string, string>),
  n: number,
  conc: number,
  logPath: string,
): Promise<{ tps: number; seconds: number; failures: number }> {
  let started = 0;
  let done = 0;
  let failures = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const next = () => {
      if (done === n) return resolve();
      while (started < n && started - done < conc) {
        const i = started++;
        const fd = openSync(logPath, 'a');
        const child = h.spawn(argv[0]!, argv.slice(1), { env: typeof env === 'function' ? env(i) : env, stdio: fd, exactEnv: true });
        closeSync(fd);
        child.once('exit', (code) => {
          if (code !== 0) failures++;
          done++;
          next();
        });
      }
    };
    next();
  });
  const seconds = (performance.now() - t0) / 1000;
  return { tps: n / seconds, seconds, failures };
}

/**
 * The same workers writing the same board, with no supervisor: every task is claimed up front (one
 * transaction, before the clock starts), then the workers run as in physicalLimit, each with the
 * variables the supervisor would give it, and report into the board. Separates what the workers'
 * own fenced, fsync'd report costs from what the supervisor costs.
 */
export async function boardLimit(argv: string[], skillEnv: Record<string, string>, n: number, conc: number, dir: string): Promise<{ tps: number; seconds: number; failures: number; done: number }> {
  const db = join(dir, 'board', 'kanban.db');
  const b = await openBoard(db);
  await b.putSkill({ name: 'noop', argv, env: skillEnv });
  for (let i = 0; i < n; i++) await b.createTask({ skill: 'noop', title: `noop ${i}` });
  const claims = await b.claimBatch(n, Date.now(), (runId) => join(dir, `${runId}.log`));
  await b.close();
  spawnSync('sync');
  const envOf = (i: number) =>
    workerBaseEnv({
      ...skillEnv,
      KANBAN_DB: db,
      KANBAN_TASK_ID: claims[i]!.task.id,
      KANBAN_RUN_ID: claims[i]!.run.id,
      KANBAN_RUN_TOKEN: claims[i]!.token,
      KANBAN_RECLAIM_GRACE_SECONDS: '30',
      KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '0',
    });
  const r = await physicalLimit(argv, envOf, n, conc, join(dir, 'workers.log'));
  const c = openSql(db);
  const done = (c.prepare(`SELECT count(*) AS n FROM tasks WHERE status = 'done'`).get() as { n: number }).n;
  c.close();
  return { ...r, done };
}
