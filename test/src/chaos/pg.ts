/**
 * Chaos scenario "pg" (a PostgreSQL board, several hosts): three supervisors with distinct
 * KANBAN_HOST_IDs (three simulated hosts on this machine, each with its own state folder) share one
 * board on a PostgreSQL server (../pg-server.ts) with a short lease (SUPERVISOR_LEASE_SECONDS). Node
 * workers of the runtime (fixtures/chaos/pg-worker.mjs; two in three write a heartbeat and an event
 * every 300 ms and record each acknowledged write in a file outside the board, one in three is
 * quiet and only has the runtime's automatic heartbeats) run tasks while, paced over the run:
 * random workers are SIGKILLed, random supervisors are SIGKILLed and restarted (every 3rd after
 * longer than the lease, so that another host takes the dead one's runs over), and random
 * supervisors are partitioned (SIGSTOP for longer than the lease, then SIGCONT: another host takes
 * their runs over; the resumed one finds its runs fenced, stops their workers, registers again).
 * Then the board drains with the three supervisors, which are stopped by SIGTERM.
 *
 * Hard: every task done, none completed twice, no acknowledged write lost, no moment with two live
 * workers for one task (pg-watch.ts, every ~20 ms, across all hosts), the board's rows consistent,
 * nothing left running. For information: takeovers (by cause), runs by outcome and host, work that
 * ran to the end twice (a worker killed or fenced after its work, before its report), spawn →
 * handler latency, CPU by part.
 */
import { join } from 'node:path';
import pg from 'pg';
import { openBoard, type Board } from '@kanban-supervisor/board';
import { Sup, cpuSeconds, fmt, median, rand, readStat, sleep, zombieChildren, type LogLine } from '../lib.js';
import { SCHEMA, consistency, cpuOf, cpuOfTree, lifetimeOverlaps, lostWrites, startLatency, workRedone } from './pg-checks.js';
import { boardUrl, freshDatabase, startPgServer, type PgServer } from '../pg-server.js';
import { WorkerWatch } from './pg-watch.js';
import { CHAOS, P, h, leakChecks, res, tail, workerGroups } from './setup.js';

interface Host {
  id: string;
  sup: Sup;
  /** Supervisors this host ran (one per start). */
  starts: number;
}

export async function scenarioPg(): Promise<void> {
  const S = 'PostgreSQL board, 3 hosts';
  const cfg = P.pg;
  const dir = h.dir('pg');
  const records = join(dir, 'records.txt');
  let server: PgServer | null = null;
  let dropDb: (() => Promise<void>) | null = null;
  let b: Board | null = null;
  let pool: pg.Pool | null = null;
  const hosts: Host[] = [];
  const sups: Sup[] = [];
  const watch = new WorkerWatch(h.mark);
  let stop = false;
  try {
    // KANBAN_TEST_PG_URL's server, else an embedded throwaway one (fsync off) with room for the
    // hosts' pools, their workers' connections and the watch.
    server = await startPgServer({ given: ['KANBAN_TEST_PG_URL'], durable: false, maxConnections: 300 });
    process.stdout.write(`  server: ${server.label}\n`);
    const db = await freshDatabase(server.url, 'ks_chaos');
    dropDb = db.drop;
    const url = boardUrl(db.url, SCHEMA);
    b = await openBoard(url, { pgPoolMax: 2 });
    const p = new pg.Pool({ connectionString: db.url, max: 2 });
    pool = p;
    p.on('error', () => undefined);
    const q = async <T>(text: string, params: unknown[] = []): Promise<T[]> => (await p.query(text, params)).rows as T[];
    const count = async (text: string) => Number((await q<{ n: string }>(text))[0]!.n);

    await b.putSkill({
      name: 'pg',
      argv: [process.execPath, join(CHAOS, 'pg-worker.mjs')],
      env: { RECORDS: records, STEP_MS: '300' },
      // The runtime heartbeats every third of it: a quiet worker learns within that that it was
      // fenced, and a takeover's requeue delay counts on it. Not shorter: the limit counts from the
      // spawn, and a Node worker took 4-5 s to its first heartbeat when a dozen started at once on
      // a busy 2-CPU machine; with 1.5 s every run was reclaimed as stalled, again and again.
      heartbeatTimeoutSeconds: cfg.heartbeatTimeoutS,
      reclaimGraceSeconds: 2,
    });
    const env = (id: string): Record<string, string> => ({
      KANBAN_HOST_ID: id,
      KANBAN_STATE_DIR: join(dir, `state-${id}`),
      SUPERVISOR_LEASE_SECONDS: String(cfg.leaseS),
      MAX_CONCURRENT_WORKERS: String(cfg.workers),
      // Exits and other hosts' commits wake a supervisor at once; the interval bounds the rest
      // (lease renewals, takeovers of others) and costs CPU on every host (and PostgreSQL's).
      TICK_INTERVAL_MS: '250',
      CRASH_GRACE_SECONDS: '2',
      FAILURE_LIMIT: '1000',
      BACKOFF_BASE_SECONDS: '0.05',
      BACKOFF_FACTOR: '1',
      BACKOFF_MAX_SECONDS: '0.05',
      RECLAIM_GRACE_SECONDS: '2',
      // The kills are the harness's, not a broken environment: no pool-wide pause for them.
      STORM_DISTINCT_TASKS: '0',
    });
    // CPU of supervisors that are gone (read just before their end): their own, and their reaped workers'.
    const gone = { self: 0, children: 0 };
    const account = (sup: Sup) => {
      const c = cpuOf(sup.pid);
      gone.self += c.self;
      gone.children += c.children;
    };
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
    // A supervisor that exited by itself (not ours to decide: a finding) is noted and started again.
    const selfExits: string[] = [];
    const ensureRunning = async () => {
      for (const x of hosts) {
        if (x.sup.running) continue;
        const e = await x.sup.exited;
        selfExits.push(`${x.id} #${x.starts} pid ${x.sup.pid} exit ${e.code ?? e.signal}: ${tail(x.sup, 3)}`);
        await startSup(x);
      }
    };
    for (let i = 1; i <= cfg.hosts; i++) hosts.push(await startSup(`h${i}`));
    // A supervisor's rows: the one it started with, and one more each time it found its lease lost.
    const idsOf = (sup: Sup): string[] =>
      sup.lines.flatMap((l) => (l.event === 'started' ? [l.supervisorId] : l.event === 'lease_lost' ? [l.newSupervisorId] : [])).filter((x): x is string => typeof x === 'string');
    const idOf = (sup: Sup): string | null => idsOf(sup).at(-1) ?? null;

    watch.start();
    const t0 = Date.now();
    const end = t0 + cfg.budgetS * 1000;
    let created = 0;
    let workerKills = 0;
    const killedRuns = new Map<string, number>();
    let supKills = 0;
    let lateRestarts = 0;
    const restartMs: number[] = [];
    /** Supervisor rows whose process was SIGKILLed, and when. */
    const killedIds = new Map<string, number>();
    /** `openTx`: the stopped supervisor's sessions in a transaction (idle in transaction) just before SIGCONT. */
    const partitions: Array<{ host: string; supervisorId: string | null; stoppedMs: number; from: number; until: number; openTx: number; openTxSince: number | null; rowLocked: boolean | null }> = [];
    const chaosDone = () => workerKills >= cfg.workerKills && supKills >= cfg.supKills && partitions.length >= cfg.partitions;
    // The faults are spread over the run: each may be as far along as the tasks created (plus a lead).
    const share = (target: number, lead: number) => Math.ceil(target * Math.min(1, created / cfg.tasks)) + lead;
    const live = () => !stop && Date.now() < end;

    // Feeder: keeps `open` tasks ready or running until the faults are done and enough were created.
    const feeder = (async () => {
      while (live() && !(created >= cfg.tasks && chaosDone())) {
        const open = await count(`SELECT count(*) AS n FROM ${SCHEMA}.tasks WHERE status IN ('ready', 'running')`);
        for (let i = open; i < cfg.open && live(); i++, created++) {
          await b!.createTask({ skill: 'pg', title: `pg ${created}`, payload: { ms: Math.round(rand(cfg.taskMs[0], cfg.taskMs[1])), quiet: created % 3 === 2 } });
        }
        await sleep(100);
      }
    })();
    // Killer: SIGKILLs a random live worker (any host).
    const killer = (async () => {
      while (live() && workerKills < cfg.workerKills) {
        await sleep(rand(cfg.killMs[0], cfg.killMs[1]));
        if (workerKills >= share(cfg.workerKills, 10)) continue;
        const ws = watch.live;
        if (ws.length === 0) continue;
        const v = ws[Math.floor(Math.random() * ws.length)]!;
        const s = readStat(v.pid);
        if (!s || s.startTime !== v.startTime || s.state === 'Z') continue;
        try {
          process.kill(v.pid, 'SIGKILL');
          workerKills++;
          killedRuns.set(v.run, Date.now());
        } catch {
          /* it exited meanwhile */
        }
      }
    })();
    // Supervisor faults, one at a time (two hosts always run): a partition, or a SIGKILL + restart.
    const chaos = (async () => {
      while (live() && (supKills < cfg.supKills || partitions.length < cfg.partitions)) {
        await sleep(rand(cfg.gapMs[0], cfg.gapMs[1]));
        if (end - Date.now() < 10_000) break; // no fault whose recovery would outlast the budget
        await ensureRunning();
        if (supKills + partitions.length >= share(cfg.supKills + cfg.partitions, 1)) continue;
        const host = hosts[Math.floor(Math.random() * hosts.length)]!;
        const sup = host.sup;
        const partLeft = cfg.partitions - partitions.length;
        const killLeft = cfg.supKills - supKills;
        if (partLeft > 0 && (killLeft <= 0 || Math.random() < partLeft / (partLeft + killLeft))) {
          const ms = Math.round(cfg.leaseS * 1000 + rand(cfg.partitionExtraMs[0], cfg.partitionExtraMs[1]));
          const from = Date.now();
          sup.kill('SIGSTOP');
          await sleep(ms);
          // What the stopped supervisor holds on the server: a transaction left open (its row
          // locks) blocks, or is skipped by, what the other hosts do meanwhile.
          const tx = await q<{ n: string; since: string | null }>(
            `SELECT count(*) AS n, (extract(epoch FROM min(xact_start)) * 1000)::bigint AS since FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'`,
            [`kanban-supervisor ${sup.pid}`],
          ).catch(() => [{ n: '-1', since: null }]);
          // Its supervisors row locked by that transaction (FOR SHARE SKIP LOCKED finds no row)?
          const id = idOf(sup);
          const rowLocked = id ? (await q(`SELECT id FROM ${SCHEMA}.supervisors WHERE id = $1 FOR SHARE SKIP LOCKED`, [id]).catch(() => [1])).length === 0 : null;
          sup.kill('SIGCONT');
          const openTx = Number(tx[0]?.n ?? 0);
          partitions.push({ host: host.id, supervisorId: id, stoppedMs: ms, from, until: Date.now(), openTx, openTxSince: tx[0]?.since ? Number(tx[0].since) : null, rowLocked });
        } else {
          account(sup);
          sup.kill('SIGKILL');
          await sup.exited;
          supKills++;
          const id = idOf(sup);
          if (id) killedIds.set(id, Date.now());
          if (supKills % 3 === 0) {
            lateRestarts++;
            await sleep(cfg.leaseS * 1000 + 1500);
          }
          const t = Date.now();
          await startSup(host);
          restartMs.push(Date.now() - t);
        }
      }
    })();
    await Promise.all([killer, chaos, feeder]);
    const chaosS = (Date.now() - t0) / 1000;
    stop = true;

    // Drain with the three supervisors.
    const drainEnd = Date.now() + cfg.drainS * 1000;
    const notDoneSql = `SELECT count(*) AS n FROM ${SCHEMA}.tasks WHERE status != 'done'`;
    let notDone = await count(notDoneSql);
    while (notDone > 0 && Date.now() < drainEnd) {
      await ensureRunning();
      await sleep(250);
      notDone = await count(notDoneSql);
    }
    const totalS = (Date.now() - t0) / 1000;
    await sleep(1500); // the last workers' exits, and any straggler, seen by the watch
    await watch.stop();
    for (const x of hosts) {
      leakChecks.push({ label: `pg ${x.id}`, pid: x.sup.pid, fdBefore: null, fdAfter: null, zombies: await zombieCount(x.sup.pid) });
    }
    const pgCpu = server.pid ? cpuOfTree(server.pid) : null;
    const codes: string[] = [];
    for (const x of hosts) {
      account(x.sup);
      codes.push(`${x.id} ${String(await x.sup.stop(30_000))}`);
    }
    await sleep(500);
    // This scenario's processes: anything whose environment points into its folder (supervisors'
    // state folders, workers' spool and records); the final leak check looks at everything.
    const left = h.leftovers().filter((x) => [...x.env.values()].some((v) => v.startsWith(dir)));

    // ---------------------------------------------------------------- figures
    const tasks = await count(`SELECT count(*) AS n FROM ${SCHEMA}.tasks`);
    const statuses = await q<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM ${SCHEMA}.tasks WHERE status != 'done' GROUP BY status`);
    res.add({ scenario: S, figure: 'tasks (3 hosts, one board)', value: `${fmt(tasks)} in ${fmt(totalS)} s (${fmt(tasks / totalS)}/s)`, number: tasks, target: `≥ ${fmt(cfg.tasks)}`, pass: tasks >= cfg.tasks });
    res.add({ scenario: S, figure: 'worker SIGKILLs', value: fmt(workerKills), number: workerKills, target: `≥ ${fmt(cfg.workerKills)}`, pass: workerKills >= cfg.workerKills });
    res.add({
      scenario: S,
      figure: 'supervisor SIGKILL + restarts',
      value: `${supKills} (${lateRestarts} after the lease + 1.5 s)`,
      number: supKills,
      target: `≥ ${cfg.supKills}`,
      pass: supKills >= cfg.supKills,
      note: restartMs.length ? `restart to "started": median ${fmt(median(restartMs), 0)} ms, max ${fmt(Math.max(...restartMs), 0)} ms` : undefined,
    });
    // Takeovers, from the supervisors' logs: who was taken over, and why.
    const ev = (name: string): LogLine[] => sups.flatMap((s) => s.events(name));
    // When a worker the harness did not kill ended by its supervisor's SIGKILL, or was seen gone.
    const endedAt = () => {
      const m = new Map<string, number>();
      for (const l of [...ev('sigkill_sent'), ...ev('worker_exited')]) {
        const run = String(l.run);
        if (!m.has(run) || Number(l.time) < m.get(run)!) m.set(run, Number(l.time));
      }
      return m;
    };
    // Each takeover by what the victim was doing then: stopped (a partition), dead (SIGKILLed), or
    // running (its ticks late by more than the lease: a starved process on a loaded machine).
    // (A takeover within a lease after SIGCONT is still the partition's: the resumed supervisor's
    // lease cannot have run out again by then.)
    const takeovers = ev('lease_takeover');
    const byCause = { partitioned: 0, killed: 0, running: 0 };
    const takenStopped = new Set<(typeof partitions)[number]>();
    const takenAfter = new Map<(typeof partitions)[number], number>();
    for (const t of takeovers) {
      const id = String(t.supervisorId);
      const at = Number(t.time);
      const part = partitions.find((x) => x.supervisorId === id && at >= x.from && at <= x.until + cfg.leaseS * 1000);
      if (part && at <= part.until) takenStopped.add(part);
      else if (part) takenAfter.set(part, at - part.until);
      byCause[part ? 'partitioned' : (killedIds.get(id) ?? Infinity) <= at ? 'killed' : 'running']++;
    }
    const lostAfter = new Set(ev('lease_lost').map((l) => String(l.supervisorId)));
    const resumedParts = partitions.filter((x) => x.supervisorId && lostAfter.has(x.supervisorId)).length;
    const withTx = partitions.filter((x) => x.openTx > 0);
    res.add({
      scenario: S,
      figure: `SIGSTOP partitions of a supervisor, longer than the lease (${cfg.leaseS} s)`,
      value:
        `${partitions.length} (stopped ${partitions.map((x) => fmt(x.stoppedMs / 1000)).join(', ')} s); taken over while stopped ${takenStopped.size}, ` +
        `only after SIGCONT ${takenAfter.size}${takenAfter.size ? ` (+${[...takenAfter.values()].map((x) => fmt(x / 1000)).join(', ')} s)` : ''}, ` +
        `never ${partitions.length - takenStopped.size - takenAfter.size}; found its lease lost after SIGCONT ${resumedParts}`,
      number: partitions.length,
      target: `≥ ${cfg.partitions}, each taken over while stopped`,
      pass: partitions.length >= cfg.partitions && takenStopped.size === partitions.length,
      note: withTx.length
        ? `${withTx.length} of the stopped supervisors had a transaction open on the server just before SIGCONT (idle in transaction since ${withTx.map((x) => fmt(((x.openTxSince ?? x.from) - x.from) / 1000)).join(', ')} s from SIGSTOP), ` +
          `${withTx.filter((x) => x.rowLocked).length} of them with their supervisors row locked by it; of those, taken over while stopped ${withTx.filter((x) => takenStopped.has(x)).length}. ` +
          `A takeover (FOR UPDATE SKIP LOCKED) passes over a supervisors row locked by its own supervisor's open transaction for as long as that stays open`
        : 'no stopped supervisor had a transaction open on the server',
    });
    const runsTaken = ev('run_taken_over').length;
    // How long the fenced workers lived on after the takeover, against their tasks' requeue delay.
    const lives = await lifetimeOverlaps(records, killedRuns, endedAt(), q);
    const after: number[] = [];
    let minMargin: { ms: number; run: string; delay: number } | null = null;
    for (const t of ev('run_taken_over')) {
      const end = lives.endOf.get(String(t.run));
      if (end === undefined) continue; // never booted, or ended before
      after.push(Math.max(0, end - Number(t.time)));
      if (t.action === 'requeue' && typeof t.notBefore === 'number') {
        const ms = t.notBefore - end;
        if (!minMargin || ms < minMargin.ms) minMargin = { ms, run: String(t.run), delay: t.notBefore - Number(t.time) };
      }
    }
    res.add({
      scenario: S,
      figure: 'fenced workers: alive after the takeover / least margin to the requeue',
      value: after.length
        ? `max ${fmt(Math.max(...after), 0)} ms (median ${fmt(median(after), 0)}, ${after.length} workers) / ${minMargin ? `${fmt(minMargin.ms, 0)} ms (run ${minMargin.run}, delay ${fmt(minMargin.delay, 0)} ms)` : '-'}`
        : 'none alive at the takeover',
      target: 'margin > 0',
      pass: after.length ? minMargin === null || minMargin.ms > 0 : null,
      note: 'the margin: from the fenced worker\'s exit to the not-before of its requeued task (a negative one: it outlived the delay)',
    });
    res.add({
      scenario: S,
      figure: 'supervisors taken over (lease expired) / their runs fenced',
      value: `${takeovers.length}: ${byCause.partitioned} stopped (partition), ${byCause.killed} SIGKILLed, ${byCause.running} running / ${runsTaken} runs`,
      target: '-',
      pass: null,
      note: byCause.running ? `"running": not stopped nor killed, its lease ran out all the same (its ticks late by more than ${cfg.leaseS} s: starved of CPU on this loaded machine)` : undefined,
    });
    res.add({
      scenario: S,
      figure: 'supervisors that exited by themselves',
      value: `${selfExits.length}${selfExits.length ? ` (${selfExits[0]})` : ''}`,
      number: selfExits.length,
      target: '0',
      pass: selfExits.length === 0,
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
      note: `${fmt(watch.samples)} samples (one every ${fmt((totalS * 1000) / Math.max(1, watch.samples), 0)} ms on average, ${fmt(watch.busyMs / Math.max(1, watch.samples), 1)} ms each; longest gap ${fmt(watch.maxGapMs, 0)} ms)`,
    });
    // The same from the workers' own boot/exit records (a SIGKILLed one ends at its kill).
    res.add({
      scenario: S,
      figure: 'overlapping worker lifetimes of one task (boot/exit records)',
      value: `${lives.overlaps}${lives.example ? ` (e.g. ${lives.example})` : ''}`,
      number: lives.overlaps,
      target: '0',
      pass: lives.overlaps === 0 && lives.processes > 0,
      hard: true,
      note:
        `${fmt(lives.processes)} worker processes${lives.endless ? `; ${lives.endless} without a known end (counted as still alive)` : ''}` +
        (lives.minGapMs !== null ? `; after a takeover the task's next worker booted ≥ ${fmt(lives.minGapMs, 0)} ms after the fenced one exited (${lives.takenOver} fenced workers that had booted)` : ''),
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
    res.add({ scenario: S, figure: "board's rows consistent at the end", value: bad.length ? bad.join('; ') : 'yes', target: 'yes', pass: bad.length === 0, hard: true });
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
    const redone = await workRedone(records, new Set(killedRuns.keys()), q);
    res.add({ scenario: S, figure: 'tasks whose work ran to the end more than once', value: String(redone.n), target: '-', pass: null, note: redone.n ? `the runs that did not count: ${redone.why}` : undefined });
    const outcomes = await q<{ outcome: string | null; n: string }>(`SELECT outcome, count(*) AS n FROM ${SCHEMA}.runs GROUP BY outcome ORDER BY count(*) DESC`);
    res.add({ scenario: S, figure: 'runs by outcome', value: outcomes.map((r) => `${r.outcome ?? 'open'} ${r.n}`).join(', '), target: '-', pass: null });
    const byHost = await q<{ host_id: string; n: string; done: string }>(
      `SELECT s.host_id, count(*) AS n, count(*) FILTER (WHERE r.outcome = 'completed') AS done FROM ${SCHEMA}.runs r JOIN ${SCHEMA}.supervisors s ON s.id = r.supervisor_id GROUP BY s.host_id ORDER BY s.host_id`,
    );
    res.add({ scenario: S, figure: 'runs (completed) by host', value: byHost.map((r) => `${r.host_id} ${r.n} (${r.done})`).join(', '), target: '-', pass: null });
    const lat = await startLatency(records, q);
    const me = cpuSeconds(process.pid) ?? 0;
    res.add({
      scenario: S,
      figure: 'spawn → handler start; CPU',
      value: `p50 ${fmt(lat.p50, 0)} ms, p95 ${fmt(lat.p95, 0)} ms, max ${fmt(lat.max, 0)} ms; CPU s: supervisors ${fmt(gone.self)}, their reaped workers ${fmt(gone.children)}, PostgreSQL ${pgCpu === null ? '?' : fmt(pgCpu)}, this script ${fmt(me)}`,
      target: '-',
      pass: null,
    });
    for (const r of await q<{ pgid: number; proc_start_time: string | null }>(`SELECT DISTINCT pgid, proc_start_time FROM ${SCHEMA}.runs WHERE pgid IS NOT NULL`)) {
      workerGroups.push({ pgid: r.pgid, startTime: r.proc_start_time === null ? null : Number(r.proc_start_time) });
    }
    res.extra.pg = {
      server: server.label,
      ...{ chaosSeconds: chaosS, totalSeconds: totalS, created, workerKills, supKills, lateRestarts, restartMs, partitions, takeovers: takeovers.length, takeoverCauses: byCause, runsTaken },
      ...{ selfExits, incidents: inc, lifetimes: lives, maxPerTask: watch.maxPerTask, codes, redone, startLatency: lat, cpu: { supervisors: gone.self, workers: gone.children, postgres: pgCpu, script: me } },
    };
  } finally {
    stop = true;
    await watch.stop();
    for (const s of sups) {
      s.kill('SIGCONT');
      if (s.running) s.kill('SIGKILL');
    }
    await b?.close().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    await dropDb?.().catch(() => undefined);
    await server?.stop();
  }
}

async function zombieCount(ppid: number): Promise<number> {
  // Look twice: a worker may be between its exit and the supervisor's wait.
  if (zombieChildren(ppid).length === 0) return 0;
  await sleep(500);
  return zombieChildren(ppid).length;
}
