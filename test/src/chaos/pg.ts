/**
 * Chaos scenario "pg" (a PostgreSQL board, several hosts): three supervisors with distinct
 * KANBAN_HOST_IDs (three simulated hosts on this machine, each with its own state folder) share one
 * board on a PostgreSQL server (pg-server.ts) with a short lease (SUPERVISOR_LEASE_SECONDS). Node
 * workers of the runtime (fixtures/chaos/pg-worker.mjs) heartbeat and write events, recording each
 * acknowledged write in a file outside the board. Meanwhile: random workers are SIGKILLed, random
 * supervisors are SIGKILLed and restarted (some after longer than the lease, so that another host
 * takes their runs over), and random supervisors are partitioned (SIGSTOP for longer than the lease,
 * then SIGCONT). Then the board drains with the three supervisors, which are stopped by SIGTERM.
 *
 * Hard: every task done, none completed twice, no acknowledged write lost, no moment with two live
 * workers for one task (pg-watch.ts, every ~20 ms, across all hosts), the board consistent, nothing
 * left running. For information: runs by outcome and by host, takeovers (runs ended `abandoned`),
 * work that ran to the end twice (a worker killed, or fenced, after its work and before its report).
 */
import { join } from 'node:path';
import pg from 'pg';
import { openBoard, type Board } from '@kanban-supervisor/board';
import { Sup, fmt, median, rand, readRecords, readStat, sleep, zombieChildren } from '../lib.js';
import { startPgServer, type PgServer } from './pg-server.js';
import { WorkerWatch } from './pg-watch.js';
import { CHAOS, P, h, leakChecks, res, tail, workerGroups } from './setup.js';

const SCHEMA = 'chaos';

interface Host {
  id: string;
  sup: Sup;
  /** Supervisors this host ran (one per start). */
  starts: number;
}

interface Partition {
  host: string;
  pid: number;
  supervisorId: string | null;
  stoppedMs: number;
  /** The supervisor was still running 3 s after SIGCONT (else: its exit, and it was restarted). */
  after: string;
}

export async function scenarioPg(): Promise<void> {
  const S = 'PostgreSQL board, 3 hosts';
  const cfg = P.pg;
  const dir = h.dir('pg');
  const records = join(dir, 'records.txt');
  let server: PgServer | null = null;
  let b: Board | null = null;
  let pool: pg.Pool | null = null;
  const hosts: Host[] = [];
  const watch = new WorkerWatch(h.mark);
  let stop = false;
  try {
    server = await startPgServer({ maxConnections: 300 });
    process.stdout.write(`  server: ${server.what}\n`);
    const url = `${server.url}?schema=${SCHEMA}`;
    b = await openBoard(url, { pgPoolMax: 2 });
    const p = new pg.Pool({ connectionString: server.url, max: 2 });
    pool = p;
    p.on('error', () => undefined);
    const q = async <T>(text: string, params: unknown[] = []): Promise<T[]> => (await p.query(text, params)).rows as T[];
    const count = async (text: string, params: unknown[] = []) => Number((await q<{ n: string }>(text, params))[0]!.n);

    await b.putSkill({
      name: 'pg',
      argv: [process.execPath, join(CHAOS, 'pg-worker.mjs')],
      // Explicit heartbeats every STEP_MS, automatic ones every HEARTBEAT_MS: a fenced worker learns
      // it within that. The stall limit stays long: a Node worker takes over a second to start (and
      // heartbeat) when a dozen start at once on a small machine, and a 1.5 s limit (whose third
      // would be the interval) reclaimed them all as stalled, again and again.
      env: { RECORDS: records, STEP_MS: '300', HEARTBEAT_MS: '400' },
      heartbeatTimeoutSeconds: cfg.heartbeatTimeoutS,
      reclaimGraceSeconds: 2,
    });
    const env = (id: string): Record<string, string> => ({
      KANBAN_HOST_ID: id,
      KANBAN_STATE_DIR: join(dir, `state-${id}`),
      SUPERVISOR_LEASE_SECONDS: String(cfg.leaseS),
      MAX_CONCURRENT_WORKERS: String(cfg.workers),
      TICK_INTERVAL_MS: '100',
      CRASH_GRACE_SECONDS: '2',
      FAILURE_LIMIT: '1000',
      BACKOFF_BASE_SECONDS: '0.05',
      BACKOFF_FACTOR: '1',
      BACKOFF_MAX_SECONDS: '0.05',
      RECLAIM_GRACE_SECONDS: '2',
      // The kills are the harness's, not a broken environment: no pool-wide pause for them.
      STORM_DISTINCT_TASKS: '0',
    });
    const sups: Sup[] = [];
    const startSup = async (host: Host | string): Promise<Host> => {
      const id = typeof host === 'string' ? host : host.id;
      const n = typeof host === 'string' ? 1 : host.starts + 1;
      const sup = new Sup(h, url, { env: env(id), logFile: join(dir, `supervisor-${id}-${n}.log`) });
      sups.push(sup);
      if (!(await sup.waitStarted(30_000))) throw new Error(`supervisor ${id} #${n} did not start:\n${tail(sup)}`);
      if (typeof host === 'string') return { id, sup, starts: 1 };
      host.sup = sup;
      host.starts = n;
      return host;
    };
    for (let i = 1; i <= cfg.hosts; i++) hosts.push(await startSup(`h${i}`));
    const supervisorId = async (sup: Sup) => (await q<{ id: string }>(`SELECT id FROM ${SCHEMA}.supervisors WHERE pid = $1 ORDER BY started_at DESC LIMIT 1`, [sup.pid]))[0]?.id ?? null;

    watch.start();
    const t0 = Date.now();
    const end = t0 + cfg.budgetS * 1000;
    let created = 0;
    let workerKills = 0;
    const killedRuns = new Set<string>();
    let supKills = 0;
    let lateRestarts = 0;
    const restartMs: number[] = [];
    const partitions: Partition[] = [];
    const chaosDone = () => workerKills >= cfg.workerKills && supKills >= cfg.supKills && partitions.length >= cfg.partitions;

    // Feeder: keeps `open` tasks ready or running until the chaos is over and enough were created.
    const feeder = (async () => {
      while (!stop && !(created >= cfg.tasks && chaosDone()) && (created < cfg.tasks || Date.now() < end)) {
        const open = await count(`SELECT count(*) AS n FROM ${SCHEMA}.tasks WHERE status IN ('ready', 'running')`);
        for (let i = open; i < cfg.open && !stop; i++, created++) await b!.createTask({ skill: 'pg', title: `pg ${created}`, payload: { ms: Math.round(rand(cfg.taskMs[0], cfg.taskMs[1])) } });
        await sleep(100);
      }
    })();
    // Killer: SIGKILLs a random live worker (any host) every killMs.
    const killer = (async () => {
      while (!stop && workerKills < cfg.workerKills && Date.now() < end) {
        await sleep(rand(cfg.killMs[0], cfg.killMs[1]));
        const live = watch.live;
        if (live.length === 0) continue;
        const v = live[Math.floor(Math.random() * live.length)]!;
        const s = readStat(v.pid);
        if (!s || s.startTime !== v.startTime || s.state === 'Z') continue;
        try {
          process.kill(v.pid, 'SIGKILL');
          workerKills++;
          killedRuns.add(v.run);
        } catch {
          /* it exited meanwhile */
        }
      }
    })();
    // Supervisor chaos, one action at a time (so that two hosts always run): SIGKILL + restart (every
    // 4th restart after lease + 1.5 s: the others take the dead host's runs over), or a partition.
    const chaos = (async () => {
      while (!stop && (supKills < cfg.supKills || partitions.length < cfg.partitions) && Date.now() < end) {
        await sleep(rand(cfg.gapMs[0], cfg.gapMs[1]));
        const host = hosts[Math.floor(Math.random() * hosts.length)]!;
        if (!host.sup.running) throw new Error(`supervisor ${host.id} died by itself:\n${tail(host.sup)}`);
        const partLeft = cfg.partitions - partitions.length;
        const killLeft = cfg.supKills - supKills;
        if (partLeft > 0 && (killLeft <= 0 || Math.random() < partLeft / (partLeft + killLeft))) {
          const sup = host.sup;
          const id = await supervisorId(sup);
          const ms = Math.round(cfg.leaseS * 1000 + rand(cfg.partitionExtraMs[0], cfg.partitionExtraMs[1]));
          sup.kill('SIGSTOP');
          await sleep(ms);
          sup.kill('SIGCONT');
          await sleep(3000);
          let after = 'running';
          if (!sup.running) {
            const e = await sup.exited;
            after = `exited ${e.code ?? e.signal}; restarted`;
            await startSup(host);
          }
          partitions.push({ host: host.id, pid: sup.pid, supervisorId: id, stoppedMs: ms, after });
        } else {
          host.sup.kill('SIGKILL');
          await host.sup.exited;
          supKills++;
          if (supKills % 4 === 0) {
            lateRestarts++;
            await sleep(cfg.leaseS * 1000 + 1500);
          }
          const t = Date.now();
          await startSup(host);
          restartMs.push(Date.now() - t);
        }
      }
    })();
    await Promise.all([killer, chaos]);
    const chaosS = (Date.now() - t0) / 1000;
    await feeder;
    stop = true;

    // Drain with the three supervisors.
    const drainEnd = Date.now() + cfg.drainS * 1000;
    let notDone = await count(`SELECT count(*) AS n FROM ${SCHEMA}.tasks WHERE status != 'done'`);
    while (notDone > 0 && Date.now() < drainEnd) {
      for (const x of hosts) if (!x.sup.running) throw new Error(`supervisor ${x.id} died during the drain:\n${tail(x.sup)}`);
      await sleep(250);
      notDone = await count(`SELECT count(*) AS n FROM ${SCHEMA}.tasks WHERE status != 'done'`);
    }
    const totalS = (Date.now() - t0) / 1000;
    await sleep(1500); // the last workers' exits, and any straggler, seen by the watch
    await watch.stop();
    for (const x of hosts) {
      leakChecks.push({ label: `pg ${x.id}`, pid: x.sup.pid, fdBefore: null, fdAfter: null, zombies: await zombieCount(x.sup.pid) });
    }
    const codes: string[] = [];
    for (const x of hosts) codes.push(`${x.id} ${String(await x.sup.stop(30_000))}`);
    await sleep(500);
    const left = h.leftovers();

    // ---------------------------------------------------------------- figures
    const tasks = await count(`SELECT count(*) AS n FROM ${SCHEMA}.tasks`);
    const statuses = await q<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM ${SCHEMA}.tasks WHERE status != 'done' GROUP BY status`);
    res.add({ scenario: S, figure: 'tasks created (3 hosts, one board)', value: `${fmt(tasks)} in ${fmt(totalS)} s (${fmt(tasks / totalS)}/s)`, number: tasks, target: `≥ ${fmt(cfg.tasks)}`, pass: tasks >= cfg.tasks });
    res.add({ scenario: S, figure: 'worker SIGKILLs', value: fmt(workerKills), number: workerKills, target: `≥ ${fmt(cfg.workerKills)}`, pass: workerKills >= cfg.workerKills });
    res.add({
      scenario: S,
      figure: 'supervisor SIGKILL + restarts',
      value: `${supKills} (${lateRestarts} after lease + 1.5 s)`,
      number: supKills,
      target: `≥ ${cfg.supKills}`,
      pass: supKills >= cfg.supKills,
      note: restartMs.length ? `restart to "started": median ${fmt(median(restartMs), 0)} ms, max ${fmt(Math.max(...restartMs), 0)} ms` : undefined,
    });
    const abandonedBy = new Map(
      (await q<{ supervisor_id: string; n: string }>(`SELECT supervisor_id, count(*) AS n FROM ${SCHEMA}.runs WHERE outcome = 'abandoned' GROUP BY supervisor_id`)).map((r) => [r.supervisor_id, Number(r.n)]),
    );
    const taken = partitions.filter((x) => x.supervisorId && (abandonedBy.get(x.supervisorId) ?? 0) > 0).length;
    res.add({
      scenario: S,
      figure: `SIGSTOP partitions of a supervisor (lease ${cfg.leaseS} s)`,
      value: `${partitions.length} (stopped ${partitions.map((x) => fmt(x.stoppedMs / 1000)).join(', ')} s); ${taken} with runs taken over`,
      number: partitions.length,
      target: `≥ ${cfg.partitions}, longer than the lease`,
      pass: partitions.length >= cfg.partitions && partitions.every((x) => x.stoppedMs > cfg.leaseS * 1000),
      note: partitions.some((x) => x.after !== 'running') ? `after SIGCONT: ${partitions.map((x) => `${x.host} ${x.after}`).join(', ')}` : 'every partitioned supervisor ran on after SIGCONT',
    });
    res.add({
      scenario: S,
      figure: 'tasks not done at the end (lost)',
      value: `${notDone} of ${fmt(tasks)}${statuses.length ? ` (${statuses.map((x) => `${x.status} ${x.n}`).join(', ')})` : ''}`,
      number: notDone,
      target: '0',
      pass: notDone === 0,
      hard: true,
    });
    const twice = await q<{ task_id: string; n: string }>(`SELECT task_id, count(*) AS n FROM ${SCHEMA}.runs WHERE outcome = 'completed' GROUP BY task_id HAVING count(*) > 1`);
    res.add({
      scenario: S,
      figure: 'tasks completed more than once',
      value: `${twice.length}${twice.length ? ` (e.g. ${twice[0]!.task_id} × ${twice[0]!.n})` : ''}`,
      number: twice.length,
      target: '0',
      pass: twice.length === 0,
      hard: true,
    });
    const inc = [...watch.incidents.values()];
    res.add({
      scenario: S,
      figure: 'times a task had two live workers at once (/proc, all hosts)',
      value: `${inc.length}${inc.length ? ` (e.g. task ${inc[0]!.task}: pids ${inc[0]!.pids.join(', ')}, runs ${inc[0]!.runs.join(', ')}, ${inc[0]!.last - inc[0]!.first} ms)` : ''}`,
      number: inc.length,
      target: '0',
      pass: inc.length === 0 && watch.samples > 0,
      hard: true,
      note: `${fmt(watch.samples)} samples, longest gap between two ${fmt(watch.maxGapMs, 0)} ms`,
    });
    const lost = await lostWrites(records, q);
    res.add({
      scenario: S,
      figure: 'acknowledged writes lost',
      value: `${lost.lostEv + lost.lostHb} (of ${fmt(lost.events)} events + ${fmt(lost.heartbeats)} heartbeats acknowledged)`,
      number: lost.lostEv + lost.lostHb,
      target: '0',
      pass: lost.lostEv + lost.lostHb === 0 && lost.events > 0,
      hard: true,
      note: lost.lostEv + lost.lostHb ? `e.g. ${lost.example}` : `${lost.unacked} committed events were never acknowledged (the worker died between commit and record)`,
    });
    const bad = await consistency(q);
    res.add({ scenario: S, figure: 'board consistent at the end', value: bad.length ? bad.join('; ') : 'yes', target: 'yes', pass: bad.length === 0, hard: true });
    const workers = left.filter((x) => x.env.has('KANBAN_TASK_ID'));
    res.add({
      scenario: S,
      figure: 'processes left after the supervisors stopped',
      value: `${left.length}${left.length ? ` (${workers.length} workers; e.g. ${left.slice(0, 3).map((x) => `${x.pid} ${x.cmd.join(' ').slice(0, 50)}`).join('; ')})` : ''}`,
      number: left.length,
      target: '0',
      pass: left.length === 0,
      hard: true,
    });
    res.add({ scenario: S, figure: 'supervisors SIGTERM exit status', value: codes.join(', '), target: '0 each', pass: codes.every((c) => c.endsWith(' 0')) });
    const redone = await workRedone(records, killedRuns, q);
    res.add({ scenario: S, figure: 'tasks whose work ran to the end more than once', value: String(redone.n), target: '-', pass: null, note: redone.n ? `the earlier run: ${redone.why}` : undefined });
    const outcomes = await q<{ outcome: string | null; n: string }>(`SELECT outcome, count(*) AS n FROM ${SCHEMA}.runs GROUP BY outcome ORDER BY count(*) DESC`);
    res.add({ scenario: S, figure: 'runs by outcome', value: outcomes.map((r) => `${r.outcome ?? 'open'} ${r.n}`).join(', '), target: '-', pass: null });
    const byHost = await q<{ host_id: string; n: string; done: string }>(
      `SELECT s.host_id, count(*) AS n, count(*) FILTER (WHERE r.outcome = 'completed') AS done FROM ${SCHEMA}.runs r JOIN ${SCHEMA}.supervisors s ON s.id = r.supervisor_id GROUP BY s.host_id ORDER BY s.host_id`,
    );
    res.add({ scenario: S, figure: 'runs (completed) by host', value: byHost.map((r) => `${r.host_id} ${r.n} (${r.done})`).join(', '), target: '-', pass: null });
    for (const r of await q<{ pgid: number; proc_start_time: string | null }>(`SELECT DISTINCT pgid, proc_start_time FROM ${SCHEMA}.runs WHERE pgid IS NOT NULL`)) {
      workerGroups.push({ pgid: r.pgid, startTime: r.proc_start_time === null ? null : Number(r.proc_start_time) });
    }
    res.extra.pg = { server: server.what, chaosSeconds: chaosS, totalSeconds: totalS, created, workerKills, supKills, lateRestarts, restartMs, partitions, incidents: inc, maxPerTask: watch.maxPerTask, codes, redone };
  } finally {
    stop = true;
    await watch.stop();
    for (const x of hosts) {
      x.sup.kill('SIGCONT');
      if (x.sup.running) x.sup.kill('SIGKILL');
    }
    await b?.close().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    await server?.stop();
  }
}

type Query = <T>(text: string, params?: unknown[]) => Promise<T[]>;

async function zombieCount(ppid: number): Promise<number> {
  // Look twice: a worker may be between its exit and the supervisor's wait.
  if (zombieChildren(ppid).length === 0) return 0;
  await sleep(500);
  return zombieChildren(ppid).length;
}

/** The workers' records against the board: every acknowledged event is there, every acknowledged heartbeat's seq is ≤ the run's progress. */
async function lostWrites(records: string, q: Query): Promise<{ events: number; heartbeats: number; lostEv: number; lostHb: number; unacked: number; example: string }> {
  const evAck = new Set<string>();
  const hbAck = new Map<string, number>();
  let heartbeats = 0;
  for (const r of readRecords(records)) {
    if (r[0] === 'e') evAck.add(`${r[2]} ${r[3]}`);
    else if (r[0] === 'h') {
      heartbeats++;
      hbAck.set(r[2]!, Math.max(hbAck.get(r[2]!) ?? 0, Number(r[3])));
    }
  }
  const evBoard = new Set(
    (await q<{ run_id: string; seq: string }>(`SELECT run_id, data::json->>'seq' AS seq FROM ${SCHEMA}.events WHERE kind = 'chaos.ev'`)).map((r) => `${r.run_id} ${r.seq}`),
  );
  const progress = new Map((await q<{ id: string; seq: string | null }>(`SELECT id, progress::json->>'seq' AS seq FROM ${SCHEMA}.runs`)).map((r) => [r.id, r.seq === null ? -1 : Number(r.seq)]));
  let lostEv = 0;
  let lostHb = 0;
  let example = '';
  for (const k of evAck) {
    if (!evBoard.has(k)) {
      lostEv++;
      example ||= `event ${k}`;
    }
  }
  for (const [run, seq] of hbAck) {
    if (!((progress.get(run) ?? -1) >= seq)) {
      lostHb++;
      example ||= `heartbeat ${run} ${seq} (board: ${progress.get(run) ?? 'no run'})`;
    }
  }
  let unacked = 0;
  for (const k of evBoard) if (!evAck.has(k)) unacked++;
  return { events: evAck.size, heartbeats, lostEv, lostHb, unacked, example };
}

/** Invariants of the board's rows once everything stopped; each violated one, with its count. */
async function consistency(q: Query): Promise<string[]> {
  const checks: Array<[string, string]> = [
    ['done tasks without a completed run', `SELECT count(*) AS n FROM ${SCHEMA}.tasks t WHERE status = 'done' AND NOT EXISTS (SELECT 1 FROM ${SCHEMA}.runs r WHERE r.task_id = t.id AND r.outcome = 'completed')`],
    ['completed runs of a task not done', `SELECT count(*) AS n FROM ${SCHEMA}.runs r JOIN ${SCHEMA}.tasks t ON t.id = r.task_id WHERE r.outcome = 'completed' AND t.status != 'done'`],
    ['runs not ended', `SELECT count(*) AS n FROM ${SCHEMA}.runs WHERE status != 'ended' OR outcome IS NULL`],
    ['runs ended but not accounted', `SELECT count(*) AS n FROM ${SCHEMA}.runs WHERE accounted_at IS NULL`],
    ['runs without a supervisor', `SELECT count(*) AS n FROM ${SCHEMA}.runs WHERE supervisor_id IS NULL`],
    ['supervisors not stopped', `SELECT count(*) AS n FROM ${SCHEMA}.supervisors s WHERE stopped_at IS NULL AND NOT EXISTS (SELECT 1 FROM ${SCHEMA}.supervisors o WHERE o.host_id = s.host_id AND o.started_at > s.started_at)`],
  ];
  const bad: string[] = [];
  for (const [what, sql] of checks) {
    const n = Number((await q<{ n: string }>(sql))[0]!.n);
    if (n) bad.push(`${what}: ${n}`);
  }
  return bad;
}

/** Tasks with more than one run that recorded `effect` (its work finished), and why the earlier one did not count. */
async function workRedone(records: string, killed: Set<string>, q: Query): Promise<{ n: number; why: string }> {
  const effects = new Map<string, string[]>();
  for (const r of readRecords(records)) if (r[0] === 'effect') effects.set(r[1]!, [...(effects.get(r[1]!) ?? []), r[2]!]);
  const outcome = new Map((await q<{ id: string; outcome: string | null }>(`SELECT id, outcome FROM ${SCHEMA}.runs`)).map((r) => [r.id, r.outcome]));
  const why = new Map<string, number>();
  let n = 0;
  for (const runs of effects.values()) {
    if (runs.length < 2) continue;
    n++;
    for (const run of runs) {
      const o = outcome.get(run) ?? 'no run';
      if (o === 'completed') continue;
      const k = `${o}${killed.has(run) ? ' (SIGKILLed by the harness)' : ''}`;
      why.set(k, (why.get(k) ?? 0) + 1);
    }
  }
  return { n, why: [...why].map(([k, c]) => `${k} ×${c}`).join(', ') };
}
