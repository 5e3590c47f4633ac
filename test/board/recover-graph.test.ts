/**
 * `recover` carries the task graph over: every link of a healthy board is on the recovered board
 * (with `--out` and with `--in-place`), the report counts them, and a supervisor on the recovered
 * board runs the waiting tasks once their parents are done, in order. Through the real CLI, on
 * real SQLite files. (Damaged links pages and lost tasks: damage-recover.test.ts.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, FIXTURES, cli, exited, show } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' };

async function ok(db: string, args: string[]): Promise<string> {
  const r = await cli(db, args);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

type Graph = Record<'A' | 'B' | 'C' | 'D', string>;

/**
 * A board with a graph: A; B after A; C after A and B; D after C. The workers (graph/step.mjs, a
 * runWorker reporting through the board) append "start/end TITLE MS" to `spans` and return their
 * parents' results.
 */
async function graphBoard(db: string, spans: string): Promise<Graph> {
  await ok(db, ['skill', 'add', 'step', '--env', `SPANS=${spans}`, '--', process.execPath, join(FIXTURES, 'graph', 'step.mjs')]);
  const A = await ok(db, ['add', '--skill', 'step', '--title', 'A', '--payload', '{"ms":50}']);
  const B = await ok(db, ['add', '--skill', 'step', '--title', 'B', '--payload', '{"ms":50}', '--after', A]);
  // C and D have the highest priority: they would run first if they could.
  const C = await ok(db, ['add', '--skill', 'step', '--title', 'C', '--payload', '{"ms":50}', '--priority', '9', '--after', A, '--after', B]);
  const D = await ok(db, ['add', '--skill', 'step', '--title', 'D', '--payload', '{"ms":50}', '--priority', '9', '--after', C]);
  return { A, B, C, D };
}

/** The links of a CLOSED board, read from a private copy (child after parent, sorted). */
function linksOf(path: string, dir: string): string[] {
  const copy = join(dir, `links-${Math.random().toString(36).slice(2)}.db`);
  copyFileSync(path, copy);
  if (existsSync(path + '-wal')) copyFileSync(path + '-wal', copy + '-wal');
  const db = new Database(copy, { readonly: true });
  try {
    return (db.prepare(`SELECT child || ' after ' || parent AS l FROM links ORDER BY child, parent`).pluck().all() as string[]);
  } finally {
    db.close();
  }
}

/** A supervisor on the recovered board runs the graph to the end, each task once its parents are done. */
async function runsInOrder(db: string, t: Graph, spans: string): Promise<void> {
  for (const k of ['B', 'C', 'D'] as const) expect((await show(db, t[k])).status, k).toBe('waiting');
  const sup = cleanups.startCli(db, ['run', '--until-idle'], FAST);
  expect((await exited(sup)).code, sup.output()).toBe(0);
  const shown = Object.fromEntries(await Promise.all((['A', 'B', 'C', 'D'] as const).map(async (k) => [k, await show(db, t[k])])));
  for (const k of ['A', 'B', 'C', 'D']) expect(shown[k].status, `${k}: ${JSON.stringify(shown[k])}`).toBe('done');
  const at = new Map<string, number>();
  for (const line of readFileSync(spans, 'utf8').trim().split('\n')) {
    const [kind, title, ms] = line.split(' ');
    at.set(`${kind} ${title}`, Number(ms));
  }
  // Each started after its parents ended (released by the last one, not run early), and was released.
  for (const [child, parents] of [['B', ['A']], ['C', ['A', 'B']], ['D', ['C']]] as const) {
    for (const p of parents) expect(at.get(`start ${child}`)!, `${child} after ${p}`).toBeGreaterThanOrEqual(at.get(`end ${p}`)!);
    expect(shown[child].events.map((e: { kind: string }) => e.kind)).toContain('released');
  }
  // D read its parent's result, which holds C's parents' (the graph's results travelled through the recovered links).
  expect(shown.D.result).toEqual({ title: 'D', parents: { [t.C]: { title: 'C', parents: { [t.A]: { title: 'A', parents: {} }, [t.B]: { title: 'B', parents: { [t.A]: { title: 'A', parents: {} } } } } } } });
}

describe('recover carries the task graph (links) over', () => {
  it('recover --out: every link is on the new board and in the report; a supervisor there runs the waiting tasks after their parents', async () => {
    const { dir, db } = cleanups.boardDir('ks-recover-graph-');
    const spans = join(dir, 'spans.txt');
    const t = await graphBoard(db, spans);
    const before = linksOf(db, dir);
    expect(before).toHaveLength(4);
    const out = join(dir, 'rec.db');
    const rec = await cli(db, ['recover', '--out', out]);
    expect(rec.code, rec.stderr).toBe(0);
    expect(rec.stdout).toMatch(/^links\s+complete\s+4\s+0\s+-$/m);
    expect(rec.stdout).not.toContain('not carried over');
    expect(rec.stdout).toMatch(/complete: every row was salvaged/);
    expect(linksOf(out, dir)).toEqual(before);
    // --json: the links table is in the report, with every row salvaged
    const json = JSON.parse((await cli(db, ['--json', 'recover', '--out', join(dir, 'rec2.db')])).stdout);
    expect(json.complete).toBe(true);
    expect(json.tables.find((x: { table: string }) => x.table === 'links')).toMatchObject({ status: 'complete', salvaged: 4, dropped: 0 });
    expect(json.fixups).toEqual([]);
    await runsInOrder(out, t, spans);
  });

  it('recover --in-place: every link stays; a supervisor on the recovered board runs the waiting tasks after their parents', async () => {
    const { dir, db } = cleanups.boardDir('ks-recover-graph-');
    const spans = join(dir, 'spans.txt');
    const t = await graphBoard(db, spans);
    const before = linksOf(db, dir);
    const rec = await cli(db, ['recover', '--in-place']);
    expect(rec.code, rec.stderr).toBe(0);
    expect(rec.stdout).toMatch(/^links\s+complete\s+4\s+0\s+-$/m);
    expect(rec.stdout).not.toContain('not carried over');
    expect(linksOf(db, dir)).toEqual(before);
    expect((await cli(db, ['check', '--full'])).code).toBe(0);
    await runsInOrder(db, t, spans);
  });
});
