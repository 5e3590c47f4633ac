/**
 * The ledger check of the chaos scenarios whose workers are ledger-worker.mjs (storm, channel):
 * every write a worker saw acknowledged (its ledger line, written after the write returned) must be
 * on the board, and none applied twice.
 */
import type { Db } from '@kanban-supervisor/board';
import { fmt, readRecords } from '../lib.js';
import { res, rows } from './setup.js';

export interface LedgerFigures {
  lines: number;
  eventsAcked: number;
  heartbeatsAcked: number;
  lost: number;
  twice: number;
}

/** Compare the ledger with the board; add the rows "acknowledged writes lost" and "writes applied twice" (hard). */
export function ledgerRows(scenario: string, sql: Db, ledger: string): LedgerFigures {
  const recs = readRecords(ledger);
  const evAck = new Set<string>();
  const hbAck = new Map<string, number>();
  let hbAcks = 0;
  for (const r of recs) {
    if (r[0] === 'e') evAck.add(`${r[2]} ${r[3]}`);
    else if (r[0] === 'h') {
      hbAcks++;
      hbAck.set(r[2]!, Math.max(hbAck.get(r[2]!) ?? 0, Number(r[3])));
    }
  }
  const evRows = rows<{ run_id: string; seq: number }>(sql, `SELECT run_id, json_extract(data, '$.seq') AS seq FROM events WHERE kind = 'chaos.ev'`);
  const evBoard = new Map<string, number>();
  for (const r of evRows) evBoard.set(`${r.run_id} ${r.seq}`, (evBoard.get(`${r.run_id} ${r.seq}`) ?? 0) + 1);
  const progress = new Map(rows<{ id: string; seq: number | null }>(sql, `SELECT id, json_extract(progress, '$.seq') AS seq FROM runs`).map((r) => [r.id, r.seq]));
  let lostEv = 0;
  for (const k of evAck) if (!evBoard.has(k)) lostEv++;
  let lostHb = 0;
  for (const [run, seq] of hbAck) if (!((progress.get(run) ?? -1) >= seq)) lostHb++;
  let unacked = 0;
  for (const k of evBoard.keys()) if (!evAck.has(k)) unacked++;
  res.add({
    scenario,
    figure: 'acknowledged writes lost',
    value: `${lostEv + lostHb} (of ${fmt(evAck.size)} events + ${fmt(hbAcks)} heartbeats acknowledged)`,
    number: lostEv + lostHb,
    target: '0',
    pass: lostEv + lostHb === 0 && evAck.size > 0,
    hard: true,
    note: `${unacked} committed writes were never acknowledged (the worker died between commit and ledger line)`,
  });
  // Applied twice: an event of one run and worker seq on the board more than once, or a task completed by two runs.
  const twiceEv = [...evBoard.values()].filter((n) => n > 1).length;
  const twiceDone = rows<{ n: number }>(sql, `SELECT count(*) AS n FROM runs WHERE outcome = 'completed' GROUP BY task_id HAVING count(*) > 1`).length;
  res.add({
    scenario,
    figure: 'writes applied twice (an event of one run and seq more than once; a task completed twice)',
    value: `${twiceEv} events, ${twiceDone} tasks`,
    number: twiceEv + twiceDone,
    target: '0',
    pass: twiceEv + twiceDone === 0,
    hard: true,
  });
  return { lines: recs.length, eventsAcked: evAck.size, heartbeatsAcked: hbAcks, lost: lostEv + lostHb, twice: twiceEv + twiceDone };
}

/** The report path a supervisor's workers used, from its log: "channel" (listening, N reports answered) or why not. */
export function reportPathRow(scenario: string, listening: boolean, stats: { applied?: number; duplicates?: number; unavailable?: number; commits?: number } | null): void {
  const applied = stats?.applied ?? 0;
  res.add({
    scenario,
    figure: 'report path: the report channel (REPORT_CHANNEL=on, the default)',
    value: !listening
      ? 'the channel did not listen'
      : stats === null
        ? 'the last supervisor logged no report totals (no stopped event with reports in its log)'
        : `channel: ${fmt(applied)} reports applied over it in ${fmt(stats.commits ?? 0)} commits, ${fmt(stats.duplicates ?? 0)} duplicates, ${fmt(stats.unavailable ?? 0)} answered unavailable (written directly)`,
    target: 'channel, reports applied over it',
    pass: listening && applied > 0,
  });
}
