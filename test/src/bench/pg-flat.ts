/**
 * Benchmark "flat" on a PostgreSQL board (bench --pg): claim + dispatch as the supervisor does it
 * per task (claim, record the spawn), interleaved on a board holding 1,000,000 finished tasks
 * (--short: 100,000) and one holding 1,000, as the ratio big ÷ small (target ≤ 1.2), as flat.ts
 * measures the SQLite board; also the tick's board reads and the accounting. Each board is its own
 * schema, filled with bulk SQL (generate_series INSERTs: a done task, its ended and accounted run,
 * one event each), then VACUUM ANALYZE (what autovacuum does to a board that grew, done before the
 * measurement so that it does not land in the middle of it).
 */
import { hostname } from 'node:os';
import { openBoard, supervisorRegistryOf, type Board } from '@kanban-supervisor/board';
import { fmt, median } from '../lib.js';
import { withClient } from '../pg-server.js';
import { flatCycles, type FlatMedians } from './flat-cycle.js';
import { dropSchemas, pgBoard } from './pg-setup.js';
import { PGP, res } from './setup.js';

/** Board `schema` holding `rows` finished tasks; the seconds the fill took. */
async function finishedBoard(schema: string, rows: number): Promise<{ url: string; seconds: number }> {
  const t0 = performance.now();
  const url = await pgBoard(schema);
  const b = await openBoard(url, { pgPoolMax: 1 }); // creates the schema (migrations)
  await b.putSkill({ name: 'noop', argv: ['/bin/true'] });
  await b.close();
  const base = Date.now() - rows * 10;
  await withClient(url, async (c) => {
    // One transaction per table, in slices of 250,000 rows (the server's memory stays flat).
    const slice = 250_000;
    for (let from = 0; from < rows; from += slice) {
      const to = Math.min(rows, from + slice) - 1;
      await c.query(
        `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures, result)
         SELECT 'tb' || lpad(to_hex(i), 9, '0'), 'finished ' || i, 'noop', '{"n":1}', 'done', 0, $1::bigint + i * 10, $1::bigint + i * 10 + 5, 0, 0, 'null'
           FROM generate_series($2::int, $3::int) AS i`,
        [base, from, to],
      );
      await c.query(
        `INSERT INTO runs (id, task_id, token, status, outcome, pid, pgid, proc_start_time, boot_id, started_at, ended_at, exit_code, log_path, exited_at, accounted_at)
         SELECT 'rb' || lpad(to_hex(i), 12, '0'), 'tb' || lpad(to_hex(i), 9, '0'), 'feedfacefeedfacefeedfacefeedface', 'ended', 'completed', 4242, 4242, 1, 'bench-boot',
                $1::bigint + i * 10, $1::bigint + i * 10 + 4, 0, '/dev/null', $1::bigint + i * 10 + 5, $1::bigint + i * 10 + 5
           FROM generate_series($2::int, $3::int) AS i`,
        [base, from, to],
      );
      await c.query(
        `INSERT INTO events (task_id, run_id, kind, data, at)
         SELECT 'tb' || lpad(to_hex(i), 9, '0'), 'rb' || lpad(to_hex(i), 12, '0'), 'done', NULL, $1::bigint + i * 10 + 5
           FROM generate_series($2::int, $3::int) AS i`,
        [base, from, to],
      );
    }
    await c.query('VACUUM (ANALYZE) tasks, runs, events');
    const n = Number((await c.query(`SELECT count(*) AS n FROM tasks WHERE status = 'done'`)).rows[0].n);
    if (n !== rows) throw new Error(`board ${schema}: ${n} finished tasks after the fill, expected ${rows}`);
  });
  return { url, seconds: (performance.now() - t0) / 1000 };
}

export async function benchPgFlat(): Promise<void> {
  const S = 'flat cost (PostgreSQL)';
  const small = await finishedBoard('bench_flat_small', PGP.smallRows);
  const big = await finishedBoard('bench_flat_big', PGP.bigRows);
  process.stdout.write(`  (boards filled: ${fmt(PGP.smallRows)} finished tasks in ${fmt(small.seconds)} s, ${fmt(PGP.bigRows)} in ${fmt(big.seconds)} s)\n`);
  const boards: Board[] = [];
  let m: FlatMedians[];
  try {
    for (const [i, url] of [small.url, big.url].entries()) {
      const b = await openBoard(url, { pgPoolMax: 2 });
      boards.push(b);
      // Registered, as a supervisor's board object is: claims record it, reads see its host's runs.
      await supervisorRegistryOf(b)!.registerSupervisor(
        { hostId: `flat-${i}`, host: hostname(), pid: process.pid, bootId: null, procStartTime: null, startedAt: Date.now() },
        600_000,
        Date.now(),
      );
    }
    m = await flatCycles(boards, PGP.flatIters);
  } finally {
    for (const b of boards) await b.close();
    await dropSchemas(['bench_flat_small', 'bench_flat_big']).catch(() => undefined);
  }
  const ratio = m[1]!.claim / m[0]!.claim;
  res.add({
    scenario: S,
    figure: `claim + dispatch (claim, record spawn), ${fmt(PGP.bigRows)} vs ${fmt(PGP.smallRows)} finished tasks`,
    value: `${fmt(ratio, 2)} (median ${fmt(m[1]!.claim, 2)} vs ${fmt(m[0]!.claim, 2)} ms)`,
    number: ratio,
    target: 'ratio ≤ 1.2',
    pass: ratio <= 1.2,
    note: `${PGP.flatIters} interleaved cycles per board, one schema each, filled by generate_series INSERTs then VACUUM ANALYZE; two commits per claim + dispatch`,
  });
  const rr = m[1]!.reads / m[0]!.reads;
  res.add({
    scenario: S,
    figure: "the tick's board reads (live runs, unaccounted runs, unknown skills, idle)",
    value: `${fmt(rr, 2)} (median ${fmt(m[1]!.reads, 2)} vs ${fmt(m[0]!.reads, 2)} ms)`,
    number: rr,
    target: 'ratio ≤ 1.2',
    pass: rr <= 1.2,
  });
  const ra = m[1]!.account / m[0]!.account;
  res.add({
    scenario: S,
    figure: 'accounting (record exit, apply outcome)',
    value: `${fmt(ra, 2)} (median ${fmt(m[1]!.account, 2)} vs ${fmt(m[0]!.account, 2)} ms)`,
    number: ra,
    target: 'ratio ≤ 1.2',
    pass: ra <= 1.2,
  });
  res.extra.pgFlat = { smallRows: PGP.smallRows, bigRows: PGP.bigRows, fillSeconds: { small: small.seconds, big: big.seconds }, medians: m };
}
