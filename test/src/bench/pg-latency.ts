/**
 * Benchmark "latency" on a PostgreSQL board (bench --pg): a task added with the CLI by a user of
 * host A (`kanban-supervisor --db URL add …`, a process of its own) → its worker started by the
 * idle supervisor of host B (another KANBAN_HOST_ID), woken by LISTEN/NOTIFY (board/src/pg/feed.ts);
 * p50 / p99, target p99 ≤ 100 ms. The start is the add's commit as the server recorded it
 * (pg_xact_commit_timestamp of the task row: taken just before the commit is flushed, with
 * track_commit_timestamp on, as the embedded server runs), as latency.ts starts the clock at the
 * commit; on a server without it, or on another machine (another clock), the task's created_at,
 * which the add takes just before its transaction. The end is the worker's first act (stamp.sh).
 */
import { join } from 'node:path';
import { fmt, median, quantile, rand, readRecords, sleep } from '../lib.js';
import { openClient } from '../pg-server.js';
import { openBoard } from '@kanban-supervisor/board';
import { HAVE_PSQL, PSQL, cliAs, hostSup, pgBench, pgBoard } from './pg-setup.js';
import { BENCH, PGP, h, res, tail } from './setup.js';

export async function benchPgLatency(): Promise<void> {
  const S = 'dispatch latency (PostgreSQL)';
  const dir = h.dir('pg-latency');
  const url = await pgBoard('bench_latency');
  const stamps = join(dir, 'stamps.txt');
  const max = 8;
  const b = await openBoard(url, { pgPoolMax: 1 });
  const sql = await openClient(url);
  try {
    await b.putSkill({ name: 'stamp', argv: [join(BENCH, 'stamp.sh'), stamps], env: HAVE_PSQL ? { REPORT: 'pg', PSQL: PSQL! } : { REPORT: 'cli' } });
    const sup = hostSup(url, dir, 'host-b', { env: { MAX_CONCURRENT_WORKERS: String(max) } });
    if (!(await sup.waitStarted(30_000))) throw new Error(`the supervisor of host-b did not start:\n${tail(sup)}`);
    const add = async (title: string): Promise<string> => {
      const r = await cliAs(url, ['add', '--skill', 'stamp', '--title', title], { KANBAN_HOST_ID: 'host-a' });
      if (r.code !== 0) throw new Error(`kanban-supervisor add exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout.trim();
    };
    // Warm-up: a few tasks through, not measured.
    for (let i = 0; i < 3; i++) {
      await add('warm-up');
      await sleep(200);
    }
    await sleep(500);
    const ids: string[] = [];
    let fullAtAdd = 0;
    for (let i = 0; i < PGP.latN; i++) {
      await sleep(rand(50, 150));
      const running = Number((await sql.query(`SELECT count(*) AS n FROM runs WHERE exited_at IS NULL`)).rows[0].n);
      if (running >= max) fullAtAdd++;
      ids.push(await add(`latency ${i}`));
    }
    // The commit's time, when the server records it and shares this machine's clock.
    const local = (await pgBench()).postmaster !== null;
    const rows = (
      await sql.query(
        // The task row has been updated since (claim, report): its `created` event, which nothing
        // updates, carries the add's transaction id.
        `SELECT t.id, t.created_at,
                CASE WHEN current_setting('track_commit_timestamp') = 'on' THEN extract(epoch FROM pg_xact_commit_timestamp(e.xmin)) * 1000 END AS committed
           FROM tasks t JOIN events e ON e.task_id = t.id AND e.kind = 'created' WHERE t.id = ANY($1)`,
        [ids],
      )
    ).rows as Array<{ id: string; created_at: string; committed: string | null }>;
    const fromCommit = local && rows.length === ids.length && rows.every((r) => r.committed !== null);
    if (!fromCommit) process.stdout.write(`  (timed from created_at: ${local ? 'no commit timestamps on this server' : 'the server is not on this machine'})\n`);
    const created = new Map<string, number>(rows.map((r) => [r.id, Number(fromCommit ? r.committed : r.created_at)]));
    const addTx = rows.map((r) => (r.committed !== null ? Number(r.committed) - Number(r.created_at) : NaN)).filter(Number.isFinite);
    const end = Date.now() + 30_000;
    let lat: number[] = [];
    while (Date.now() < end) {
      lat = readRecords(stamps)
        .filter((r) => created.has(r[0]!))
        .map((r) => Number(r[1]) * 1000 - created.get(r[0]!)!);
      if (lat.length >= ids.length) break;
      await sleep(100);
    }
    // Every task done (the workers' fenced reports landed).
    let done = 0;
    for (const until = Date.now() + 30_000; Date.now() < until; await sleep(200)) {
      done = Number((await sql.query(`SELECT count(*) AS n FROM tasks WHERE id = ANY($1) AND status = 'done'`, [ids])).rows[0].n);
      if (done === ids.length) break;
    }
    // Where the time goes: commit → claimed (the wake-up and the claim's commit) → worker's first act.
    const claimed = new Map<string, number>(
      ((await sql.query(`SELECT task_id, min(started_at) AS at FROM runs WHERE task_id = ANY($1) GROUP BY task_id`, [ids])).rows as Array<{ task_id: string; at: string }>).map((r) => [
        r.task_id,
        Number(r.at),
      ]),
    );
    const toClaim = [...claimed].filter(([id]) => created.has(id)).map(([id, at]) => at - created.get(id)!);
    const stampOf = new Map(readRecords(stamps).map((r) => [r[0]!, Number(r[1]) * 1000]));
    const claimToStart = [...claimed].filter(([id]) => stampOf.has(id)).map(([id, at]) => stampOf.get(id)! - at);
    const code = await sup.stop(20_000);
    if (lat.length === 0) throw new Error(`no worker started:\n${tail(sup)}`);
    const p50 = median(lat);
    const p99 = quantile(lat, 0.99);
    res.add({
      scenario: S,
      figure: `task added by \`kanban-supervisor add\` (host A) → worker start by host B's idle supervisor, p50 / p99 (${lat.length} tasks)`,
      value: `${fmt(p50)} / ${fmt(p99)} ms`,
      number: p99,
      target: 'p99 ≤ 100 ms',
      pass: lat.length === ids.length && p99 <= 100,
      note:
        (fromCommit
          ? `from the add's commit (server's commit timestamp; the add's transaction took a median ${fmt(median(addTx))} ms before it) to the worker's first act; `
          : `from the task's created_at (taken by the add just before its transaction: its commit is inside) to the worker's first act; `) +
        `medians: → claimed ${fmt(median(toClaim))} ms, claimed → worker's first act ${fmt(median(claimToStart))} ms; ` +
        `max ${fmt(Math.max(...lat))} ms; ${done} of ${ids.length} done; pool full at ${fullAtAdd} of ${PGP.latN} adds; ` +
        `default TICK_INTERVAL_MS (1000), wake-up by LISTEN/NOTIFY; workers report with ${HAVE_PSQL ? 'psql' : 'the worker CLI'}; supervisor exit ${code}`,
    });
    res.extra.pgLatency = { samples: lat.length, from: fromCommit ? 'commit timestamp' : 'created_at', p50, p90: quantile(lat, 0.9), p99, max: Math.max(...lat), done, addTxMedianMs: median(addTx), toClaimMedianMs: median(toClaim), claimToStartMedianMs: median(claimToStart) };
  } finally {
    await b.close();
    await sql.end().catch(() => undefined);
  }
}
