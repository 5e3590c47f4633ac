/**
 * Benchmark "flat" (flat cost in board size): claim + dispatch, the tick's board reads and the
 * accounting, interleaved on a small and a big board, as ratios big ÷ small (target ≤ 1.2 each):
 * 1,000,000 vs 1,000 finished tasks, 100,000 vs 1,000 tasks waiting in the queue, the same with the
 * skill capped, and 100,000 vs 1,000 tasks `waiting` on a parent (task graph: not ready, never claimable).
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { localConnectionOf, openBoard as openBoardWith } from '@kanban-supervisor/board';
import { fmt, median, openBoard } from '../lib.js';
import { flatCycles, type FlatMedians } from './flat-cycle.js';
import { P, h, res } from './setup.js';

/**
 * A board holding `rows` finished tasks (each with its ended, accounted run and one event) and
 * `readyRows` tasks waiting in the queue (priorities 0–2), inserted by direct SQL.
 */
export async function finishedBoard(path: string, rows: number, readyRows = 0, ageMs = 0, waitingRows = 0): Promise<number> {
  const t0 = performance.now();
  const b = await openBoard(path);
  await b.putSkill({ name: 'noop', argv: ['/bin/true'] });
  localConnectionOf(b)!.closeNow('TRUNCATE');
  const db = new Database(path);
  db.pragma('synchronous = OFF');
  const insT = db.prepare(
    `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures, result)
     VALUES (?, ?, 'noop', '{"n":1}', 'done', 0, ?, ?, 0, 0, 'null')`,
  );
  const insR = db.prepare(
    `INSERT INTO runs (id, task_id, token, status, outcome, pid, pgid, proc_start_time, boot_id, started_at, ended_at, exit_code, log_path, exited_at, accounted_at)
     VALUES (?, ?, 'feedfacefeedfacefeedfacefeedface', 'ended', 'completed', 4242, 4242, 1, 'bench-boot', ?, ?, 0, '/dev/null', ?, ?)`,
  );
  const insE = db.prepare(`INSERT INTO events (task_id, run_id, kind, data, at) VALUES (?, ?, 'done', NULL, ?)`);
  const base = Date.now() - rows * 10 - ageMs;
  const batch = 50_000;
  for (let from = 0; from < rows; from += batch) {
    db.transaction(() => {
      for (let i = from; i < Math.min(rows, from + batch); i++) {
        const id = `tb${i.toString(36).padStart(9, '0')}`;
        const rid = `rb${i.toString(36).padStart(12, '0')}`;
        const at = base + i * 10;
        insT.run(id, `finished ${i}`, at, at + 5);
        insR.run(rid, id, at, at + 4, at + 5, at + 5);
        insE.run(id, rid, at + 5);
      }
    })();
  }
  const insQ = db.prepare(
    `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures)
     VALUES (?, ?, 'noop', '{"n":1}', 'ready', ?, ?, ?, 0, 0)`,
  );
  db.transaction(() => {
    for (let i = 0; i < readyRows; i++) insQ.run(`tq${i.toString(36).padStart(9, '0')}`, `queued ${i}`, i % 3, base + i, base + i);
  })();
  if (waitingRows > 0) {
    // Tasks waiting on one parent that is blocked (it never finishes), each with its link.
    const insW = db.prepare(
      `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures)
       VALUES (?, ?, 'noop', '{"n":1}', ?, 2, ?, ?, 0, 0)`,
    );
    const insL = db.prepare('INSERT INTO links (child, parent, created_at) VALUES (?, ?, ?)');
    db.transaction(() => {
      insW.run('tw-parent', 'a blocked parent', 'blocked', base, base);
      for (let i = 0; i < waitingRows; i++) {
        const id = `tw${i.toString(36).padStart(9, '0')}`;
        insW.run(id, `waiting ${i}`, 'waiting', base + i, base + i);
        insL.run(id, 'tw-parent', base + i);
      }
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return (performance.now() - t0) / 1000;
}

/** Claim/dispatch, the tick's reads and the accounting, interleaved on a small and a big board. */
type Shape = { rows: number; ready: number; waiting?: number };

async function flatPair(dir: string, small: Shape, big: Shape, cap: number | null = null): Promise<{ m: FlatMedians[]; fill: number[] }> {
  const paths = [join(dir, 'small', 'kanban.db'), join(dir, 'big', 'kanban.db')];
  const fill = [await finishedBoard(paths[0]!, small.rows, small.ready, 0, small.waiting ?? 0), await finishedBoard(paths[1]!, big.rows, big.ready, 0, big.waiting ?? 0)];
  const shape = (s: Shape) => `${fmt(s.rows)} finished + ${fmt(s.ready)} queued${s.waiting ? ` + ${fmt(s.waiting)} waiting` : ''}`;
  process.stdout.write(`  (boards filled: ${shape(small)} tasks in ${fmt(fill[0]!)} s, ${shape(big)} in ${fmt(fill[1]!)} s)\n`);
  const boards = await Promise.all(paths.map((p) => openBoardWith(p, { busyTimeoutMs: 2000 })));
  // A capped skill: every claim takes the capped path (per-skill seeks, live runs counted).
  if (cap !== null) for (const b of boards) await b.setSkillCap('noop', cap);
  try {
    return { m: await flatCycles(boards, P.flatIters), fill };
  } finally {
    for (const b of boards) await b.close();
  }
}

export async function benchFlat(): Promise<void> {
  const S = 'flat cost';
  const dir = h.dir('flat');
  const { m, fill } = await flatPair(join(dir, 'finished'), { rows: P.smallRows, ready: 0 }, { rows: P.bigRows, ready: 0 });
  const [fillSmall, fillBig] = fill;
  const ratio = m[1]!.claim / m[0]!.claim;
  res.add({
    scenario: S,
    figure: `claim + dispatch (claim, record spawn), ${fmt(P.bigRows)} vs ${fmt(P.smallRows)} finished tasks`,
    value: `${fmt(ratio, 2)} (median ${fmt(m[1]!.claim, 2)} vs ${fmt(m[0]!.claim, 2)} ms)`,
    number: ratio,
    target: 'ratio ≤ 1.2',
    pass: ratio <= 1.2,
    note: `${P.flatIters} interleaved cycles per board; two synchronous=FULL commits each`,
  });
  const rr = m[1]!.reads / m[0]!.reads;
  res.add({
    scenario: S,
    figure: "the tick's board reads (live runs, unaccounted runs, unknown skills, idle)",
    value: `${fmt(rr, 2)} (median ${fmt(m[1]!.reads * 1000, 0)} vs ${fmt(m[0]!.reads * 1000, 0)} µs)`,
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
  // The queue's length must not matter either: the claim seeks the head of the ready index, the
  // unknown-skill check seeks the distinct skills (both once sorted or scanned every ready task).
  const q = await flatPair(join(dir, 'queued'), { rows: P.smallRows, ready: P.smallRows }, { rows: P.smallRows, ready: P.bigQueue });
  const qc = q.m[1]!.claim / q.m[0]!.claim;
  res.add({
    scenario: S,
    figure: `claim + dispatch, ${fmt(P.bigQueue)} vs ${fmt(P.smallRows)} tasks waiting in the queue`,
    value: `${fmt(qc, 2)} (median ${fmt(q.m[1]!.claim, 2)} vs ${fmt(q.m[0]!.claim, 2)} ms)`,
    number: qc,
    target: 'ratio ≤ 1.2',
    pass: qc <= 1.2,
  });
  const qr = q.m[1]!.reads / q.m[0]!.reads;
  res.add({
    scenario: S,
    figure: `the tick's board reads, ${fmt(P.bigQueue)} vs ${fmt(P.smallRows)} tasks waiting in the queue`,
    value: `${fmt(qr, 2)} (median ${fmt(q.m[1]!.reads * 1000, 0)} vs ${fmt(q.m[0]!.reads * 1000, 0)} µs)`,
    number: qr,
    target: 'ratio ≤ 1.2',
    pass: qr <= 1.2,
  });
  // With caps (issue 16): the same queue, its skill capped: the claim seeks per skill with room.
  const cq = await flatPair(join(dir, 'capped'), { rows: P.smallRows, ready: P.smallRows }, { rows: P.smallRows, ready: P.bigQueue }, 1000);
  const cc = cq.m[1]!.claim / cq.m[0]!.claim;
  res.add({
    scenario: S,
    figure: `claim + dispatch with the skill capped (max concurrent 1000), ${fmt(P.bigQueue)} vs ${fmt(P.smallRows)} tasks waiting in the queue`,
    value: `${fmt(cc, 2)} (median ${fmt(cq.m[1]!.claim, 2)} vs ${fmt(cq.m[0]!.claim, 2)} ms)`,
    number: cc,
    target: 'ratio ≤ 1.2',
    pass: cc <= 1.2,
  });
  // Tasks waiting on parents (task graph) are not in the ready index: the claim never sees them.
  const wq = await flatPair(join(dir, 'waiting'), { rows: P.smallRows, ready: P.smallRows, waiting: P.smallRows }, { rows: P.smallRows, ready: P.smallRows, waiting: P.bigQueue });
  const wc = wq.m[1]!.claim / wq.m[0]!.claim;
  res.add({
    scenario: S,
    figure: `claim + dispatch, ${fmt(P.bigQueue)} vs ${fmt(P.smallRows)} tasks waiting on an unfinished parent (${fmt(P.smallRows)} ready in both)`,
    value: `${fmt(wc, 2)} (median ${fmt(wq.m[1]!.claim, 2)} vs ${fmt(wq.m[0]!.claim, 2)} ms)`,
    number: wc,
    target: 'ratio ≤ 1.2',
    pass: wc <= 1.2,
  });
  const wr = wq.m[1]!.reads / wq.m[0]!.reads;
  res.add({
    scenario: S,
    figure: `the tick's board reads, ${fmt(P.bigQueue)} vs ${fmt(P.smallRows)} tasks waiting on an unfinished parent`,
    value: `${fmt(wr, 2)} (median ${fmt(wq.m[1]!.reads * 1000, 0)} vs ${fmt(wq.m[0]!.reads * 1000, 0)} µs)`,
    number: wr,
    target: 'ratio ≤ 1.2',
    pass: wr <= 1.2,
  });
  res.extra.flat = { smallRows: P.smallRows, bigRows: P.bigRows, bigQueue: P.bigQueue, fillSeconds: { small: fillSmall, big: fillBig }, medians: m, queued: q.m, capped: cq.m, waiting: wq.m };
}
