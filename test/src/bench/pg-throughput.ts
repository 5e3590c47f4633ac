/**
 * Benchmark "throughput" on a PostgreSQL board (bench --pg): the same tiny tasks drained by 3
 * supervisors (3 host ids, MAX_CONCURRENT_WORKERS 4 each) and by 1, on a board of their own each
 * round, sides alternating; the figure is 3 ÷ 1 in tasks/s (the median round). Each side's CPU is
 * reported per task: the supervisors' (utime + stime from /proc/PID/stat), their workers' (the
 * supervisors' reaped children) and the PostgreSQL server's (every process of it, when it runs on
 * this machine). On a 2-core machine workers, supervisors and the server share the same CPUs, so
 * the ratio is reported, not judged.
 *
 * The worker is the cheapest that completes its task: a shell running psql for one fenced report
 * (pg-report.sh), or the Node worker runtime when there is no psql. The supervisors are started
 * and idle first; the tasks arrive at once (one bulk INSERT, then one add through the board, whose
 * notification wakes every supervisor), so no supervisor starts ahead of another.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { cpuTimes, fmt, sleep, type Sup } from '../lib.js';
import { openClient, serverCpuSeconds } from '../pg-server.js';
import { HAVE_PSQL, PSQL, dropSchemas, fileTail, hostSup, pgBench, pgBoard, quiesce, waitStartedInFile } from './pg-setup.js';
import { BENCH, PGP, h, res } from './setup.js';

interface Side {
  sups: number;
  tps: number;
  seconds: number;
  /** Tasks done by each supervisor. */
  perSup: number[];
  /** CPU seconds during the drain: supervisors, their workers, the server (null: not on this machine). */
  supCpu: number;
  workerCpu: number;
  serverCpu: number | null;
}

async function drain(round: number, nSups: number, argv: string[], env: Record<string, string>): Promise<Side> {
  const n = PGP.tpN;
  const label = `r${round}_s${nSups}`;
  const dir = h.dir(`pg-throughput/${label}`);
  const url = await pgBoard(`bench_tp_${label}`);
  const { postmaster } = await pgBench();
  const b = await openBoard(url, { pgPoolMax: 1 });
  const sql = await openClient(url);
  const sups: Sup[] = [];
  try {
    await b.putSkill({ name: 'tiny', argv, env });
    const hosts = Array.from({ length: nSups }, (_, i) => `tp-host-${i + 1}`);
    for (const host of hosts) sups.push(hostSup(url, dir, host, { env: { MAX_CONCURRENT_WORKERS: String(PGP.tpConc) }, direct: true }));
    for (const [i, s] of sups.entries()) {
      const log = join(dir, `supervisor-${hosts[i]}.log`);
      if (!(await waitStartedInFile(s, log))) throw new Error(`the supervisor of ${hosts[i]} did not start:\n${fileTail(log)}`);
    }
    await quiesce();
    const cpu0 = sups.map((s) => cpuTimes(s.pid));
    const srv0 = postmaster !== null ? serverCpuSeconds(postmaster) : null;
    // The tasks arrive together: n - 1 in one INSERT (no notification), the last through the board
    // (its notification wakes every supervisor; they find all n).
    const now = Date.now();
    await sql.query(
      `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures)
       SELECT 'tp' || lpad(to_hex(i), 9, '0'), 'tiny ' || i, 'tiny', 'null', 'ready', 0, $1::bigint + i, $1::bigint + i, 0, 0
         FROM generate_series(0, $2::int - 2) AS i`,
      [now - n, n],
    );
    await b.createTask({ skill: 'tiny', title: 'tiny last' });
    const deadline = Date.now() + n * 1000 + 60_000;
    let done = 0;
    let stuck = 0;
    while (Date.now() < deadline) {
      const r = (await sql.query(`SELECT count(*) FILTER (WHERE status = 'done') AS d, count(*) FILTER (WHERE status IN ('blocked', 'cancelled')) AS x FROM tasks`)).rows[0];
      done = Number(r.d);
      stuck = Number(r.x);
      if (done + stuck >= n || sups.some((s) => !s.running)) break;
      await sleep(250);
    }
    const cpu1 = sups.map((s) => cpuTimes(s.pid));
    const srv1 = postmaster !== null ? serverCpuSeconds(postmaster) : null;
    const exits = [];
    for (const s of sups) exits.push(await s.stop(20_000));
    const r = (
      await sql.query(`SELECT count(*) AS runs, count(DISTINCT task_id) AS tasks, min(started_at) AS t0, max(accounted_at) AS t1, count(*) FILTER (WHERE outcome <> 'completed') AS bad FROM runs`)
    ).rows[0];
    const per = (await sql.query(`SELECT s.host_id, count(r.id) AS n FROM supervisors s LEFT JOIN runs r ON r.supervisor_id = s.id GROUP BY s.host_id`)).rows as Array<{ host_id: string; n: string }>;
    if (done !== n || Number(r.runs) !== n || Number(r.bad) > 0 || cpu1.some((c) => c === null) || cpu0.some((c) => c === null)) {
      throw new Error(
        `${nSups} supervisor(s), round ${round + 1}: ${done}/${n} done, ${stuck} blocked or cancelled, ${r.runs} runs (${r.bad} not completed), supervisor exits ${exits.join(', ')}\n` +
          fileTail(join(dir, `supervisor-${hosts[0]}.log`)),
      );
    }
    const seconds = (Number(r.t1) - Number(r.t0)) / 1000;
    const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);
    return {
      sups: nSups,
      tps: n / seconds,
      seconds,
      perSup: hosts.map((host) => Number(per.find((p) => p.host_id === host)?.n ?? 0)),
      supCpu: sum(cpu1.map((c, i) => c!.own - cpu0[i]!.own)),
      workerCpu: sum(cpu1.map((c, i) => c!.children - cpu0[i]!.children)),
      serverCpu: srv0 !== null && srv1 !== null ? srv1 - srv0 : null,
    };
  } finally {
    for (const s of sups) await s.stop(5000);
    await b.close();
    await sql.end().catch(() => undefined);
    await dropSchemas([`bench_tp_${label}`]).catch(() => undefined);
  }
}

/** The server's CPU per bare psql connection (connect, SELECT 1, end), ms; null when its CPU cannot be read. */
async function connectionCost(): Promise<number | null> {
  const { postmaster, db } = await pgBench();
  if (postmaster === null) return null;
  await quiesce();
  const count = 20;
  const c0 = serverCpuSeconds(postmaster);
  for (let i = 0; i < count; i++) {
    const r = spawnSync(PSQL!, ['-X', '-q', '-A', '-t', db, '-c', 'SELECT 1'], { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) return null;
  }
  const c1 = serverCpuSeconds(postmaster);
  return c0 !== null && c1 !== null ? ((c1 - c0) / count) * 1000 : null;
}

export async function benchPgThroughput(): Promise<void> {
  const S = 'throughput (PostgreSQL)';
  const n = PGP.tpN;
  const k = PGP.tpSups;
  const argv = HAVE_PSQL ? [join(BENCH, 'pg-report.sh')] : [process.execPath, join(BENCH, 'noop-worker.mjs')];
  const worker = HAVE_PSQL ? 'sh + psql report' : 'Node worker runtime (no psql on PATH)';
  const env: Record<string, string> = HAVE_PSQL ? { PSQL: PSQL! } : {};
  const connMs = HAVE_PSQL ? await connectionCost() : null;
  const rounds: Array<{ one: Side; many: Side; ratio: number }> = [];
  for (let round = 0; round < PGP.tpRounds; round++) {
    // Alternate which side goes first, so that a slow stretch of the host hits both alike.
    const first = round % 2 === 0 ? 1 : k;
    const a = await drain(round, first, argv, env);
    const b = await drain(round, first === 1 ? k : 1, argv, env);
    const [one, many] = first === 1 ? [a, b] : [b, a];
    rounds.push({ one, many, ratio: many.tps / one.tps });
    process.stdout.write(`  round ${round + 1}: 1 supervisor ${fmt(one.tps)} tasks/s, ${k} supervisors ${fmt(many.tps)} tasks/s\n`);
  }
  const mid = [...rounds].sort((x, y) => x.ratio - y.ratio)[Math.floor((rounds.length - 1) / 2)]!;
  const ms = (s: number | null) => (s === null ? 'n/a' : `${fmt((s / n) * 1000, 2)} ms`);
  const cpuText = (x: Side) =>
    `supervisor${x.sups > 1 ? 's' : ''} ${ms(x.supCpu)}, workers ${ms(x.workerCpu)}, PostgreSQL server ${ms(x.serverCpu)} of CPU per task`;
  res.add({
    scenario: S,
    figure: `${k} supervisors (${k} host ids) ÷ 1 supervisor, same board size, ${n} tiny tasks (${worker}), MAX_CONCURRENT_WORKERS ${PGP.tpConc} each`,
    value: `${fmt(mid.ratio, 2)} (${fmt(mid.many.tps)} vs ${fmt(mid.one.tps)} tasks/s)`,
    number: mid.ratio,
    target: 'report (the CPUs are shared by workers, supervisors and the server)',
    pass: null,
    note:
      `${rounds.length > 1 ? `median of ${rounds.length} alternating rounds, ratios ${rounds.map((x) => fmt(x.ratio, 2)).join(', ')}; ` : ''}` +
      `tasks per supervisor ${mid.many.perSup.join(' / ')}; on a host with other load, ${k} × ${PGP.tpConc} workers also get a bigger share of its CPUs than ${PGP.tpConc}`,
  });
  res.add({
    scenario: S,
    figure: '1 supervisor: tasks/s and CPU per task',
    value: `${fmt(mid.one.tps)} tasks/s`,
    number: mid.one.tps,
    target: 'report',
    pass: null,
    note: `${cpuText(mid.one)}${connMs !== null ? `; for scale: a bare psql connection (connect, SELECT 1, end) costs the server ${fmt(connMs, 1)} ms here, and every worker opens one` : ''}`,
  });
  res.add({
    scenario: S,
    figure: `${k} supervisors: tasks/s and CPU per task`,
    value: `${fmt(mid.many.tps)} tasks/s`,
    number: mid.many.tps,
    target: 'report',
    pass: null,
    note: cpuText(mid.many),
  });
  res.extra.pgThroughput = { n, sups: k, conc: PGP.tpConc, worker, serverMsPerBareConnection: connMs, rounds };
}
