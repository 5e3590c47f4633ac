/**
 * The Python runtime's direct path (worker-runtime/python/kanban_worker/_board.py) writes exactly
 * what the Node direct path (board/src/sqlite/worker.ts, graph.ts releaseChildren) writes: the same
 * operations, at the same times and with the same seqs, on two fresh boards, one applied by the
 * board package and one by Python; the answers and the rows (tasks, runs, events, ids and the
 * times the set-up took aside) must be equal. A change on one side that is not mirrored fails here.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BoardInputError, MAX_JSON_CHARS, NotCurrentError, SCHEMA_VERSION, openBoard, type Board, type Json, type RunCredentials, type WorkerReport } from '@kanban-supervisor/board';
import { Cleanups, FIXTURES } from '../src/common.js';
import { PYTHON, PY_PATH } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

type Op =
  | { op: 'heartbeat'; cred: RunCredentials; progress?: Json; now: number }
  | { op: 'event'; cred: RunCredentials; kind: string; data?: Json; seq?: string; now: number }
  | { op: 'report'; cred: RunCredentials; report: WorkerReport; seq?: string; now: number }
  | { op: 'stop'; cred: RunCredentials; signal: string; seq?: string; now: number }
  | { op: 'load'; cred: RunCredentials };

async function nodeApply(board: Board, ops: Op[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const o of ops) {
    try {
      if (o.op === 'heartbeat') {
        await board.heartbeat(o.cred, 'progress' in o ? o.progress : undefined, o.now);
        out.push('ok');
      } else if (o.op === 'event') out.push(await board.workerEvent(o.cred, o.kind, o.data ?? null, o.now, o.seq));
      else if (o.op === 'report') out.push(await board.report(o.cred, o.report, o.now, o.seq));
      else if (o.op === 'stop') out.push(await board.recordStop(o.cred, o.signal, o.now, o.seq));
      else {
        const { task } = await board.loadRun(o.cred);
        out.push({ task: { id: task.id, title: task.title, skill: task.skill, payload: task.payload }, parents: await board.parentResults(o.cred) });
      }
    } catch (e) {
      if (e instanceof NotCurrentError) out.push('fenced');
      else if (e instanceof BoardInputError) out.push(`invalid: ${e.message}`);
      else throw e;
    }
  }
  return out;
}

function pythonApply(db: string, ops: Op[]): unknown[] {
  const text = execFileSync(PYTHON, [join(FIXTURES, 'runtimes', 'board-ops.py')], {
    input: JSON.stringify({ db, ops }),
    env: { ...process.env, PYTHONPATH: PY_PATH },
    encoding: 'utf8',
  });
  return JSON.parse(text) as unknown[];
}

const T0 = 1_800_000_000_000;

/** One board set up the same way, and the script of operations on it (its runs' credentials inside). */
async function scenario(dir: string): Promise<{ board: Board; ops: Op[]; ids: string[]; more: () => Promise<Op[]> }> {
  const board = await openBoard(join(dir, 'kanban.db'));
  await board.putSkill({ name: 'test', argv: ['true'] });
  const p = await board.createTask({ skill: 'test', title: 'parent', payload: { p: 1 }, priority: 9 });
  const c = await board.createTask({ skill: 'test', title: 'child', payload: { c: 'é' }, after: [p.id] });
  const f = await board.createTask({ skill: 'test', title: 'fails', priority: 8 });
  const d = await board.createTask({ skill: 'test', title: 'defers', priority: 7 });
  const s = await board.createTask({ skill: 'test', title: 'stops', priority: 6 });
  const claims = await board.claimBatch(4, Date.now(), () => '/dev/null');
  const cred = (id: string): RunCredentials => {
    const k = claims.find((x) => x.task.id === id)!;
    return { taskId: id, runId: k.run.id, token: k.token };
  };
  const [P, F, D, S] = [cred(p.id), cred(f.id), cred(d.id), cred(s.id)];
  const ops: Op[] = [
    { op: 'load', cred: P },
    { op: 'heartbeat', cred: P, progress: { step: 1, of: [2, 'é', null, true, 1.5] }, now: T0 + 1 },
    { op: 'heartbeat', cred: P, now: T0 + 2 },
    { op: 'event', cred: P, kind: 'note', data: { a: [1, 'é'] }, seq: '100', now: T0 + 3 },
    { op: 'event', cred: P, kind: 'note', data: { a: 'again' }, seq: '100', now: T0 + 4 },
    { op: 'event', cred: P, kind: 'bare', now: T0 + 5 },
    { op: 'event', cred: P, kind: 'bad kind!', seq: '101', now: T0 + 6 },
    { op: 'event', cred: P, kind: 'x', seq: '1x', now: T0 + 6 },
    { op: 'heartbeat', cred: { ...P, token: 'wrong' }, now: T0 + 7 },
    { op: 'report', cred: P, report: { outcome: 'completed', result: { r: [1, { deep: 'é' }] } }, seq: '200', now: T0 + 8 },
    { op: 'report', cred: P, report: { outcome: 'completed', result: { r: 'twice' } }, seq: '200', now: T0 + 9 },
    { op: 'event', cred: P, kind: 'late', seq: '300', now: T0 + 10 },
    { op: 'report', cred: F, report: { outcome: 'failed', error: 'x'.repeat(9000) }, seq: '210', now: T0 + 11 },
    { op: 'report', cred: D, report: { outcome: 'deferred', seconds: 1.2345, reason: 'later' }, seq: '220', now: T0 + 12 },
    { op: 'stop', cred: S, signal: 'SIGTERM', seq: '230', now: T0 + 13 },
    { op: 'stop', cred: S, signal: 'SIGTERM', seq: '230', now: T0 + 14 },
    { op: 'report', cred: S, report: { outcome: 'deferred', seconds: -1 }, seq: '231', now: T0 + 15 },
  ];
  // The child is claimable once its parent completed: its load carries the parent's result.
  const ids = [p.id, c.id, f.id, d.id, s.id, P.runId, F.runId, D.runId, S.runId];
  const more = async (): Promise<Op[]> => {
    const k = (await board.claimBatch(1, Date.now(), () => '/dev/null'))[0]!;
    expect(k.task.id).toBe(c.id);
    ids.push(k.run.id);
    const C = { taskId: c.id, runId: k.run.id, token: k.token };
    // The 4 MiB limit counts the JSON text in UTF-16 code units (validate.ts jsonText: JS string
    // length): an astral character is 2. At the limit exactly, then one character over.
    const astral = (n: number) => '\u{1F600}'.repeat(n);
    const atLimit = (MAX_JSON_CHARS - 2) / 2;
    return [
      { op: 'load', cred: C },
      { op: 'event', cred: C, kind: 'astral', data: astral(atLimit), seq: '400', now: T0 + 20 },
      { op: 'event', cred: C, kind: 'astral', data: astral(atLimit + 1), seq: '401', now: T0 + 21 },
      // An error is cut at 8,192 (the run) and 1,024 (its event) UTF-16 units: here inside a pair.
      { op: 'report', cred: C, report: { outcome: 'failed', error: 'a' + astral(5000) }, seq: '402', now: T0 + 22 },
    ];
  };
  return { board, ops, ids, more };
}

const DROP = new Set(['created_at', 'updated_at', 'claimed_at', 'started_at', 'token', 'log_path', 'not_before', 'lease_until', 'attempt_started_at']);

/** Every id of the set-up replaced by its place in `ids` (also inside JSON texts). */
function labelled(v: unknown, ids: string[]): unknown {
  let text = JSON.stringify(v);
  ids.forEach((id, i) => (text = text.split(id).join(`#${i}`)));
  return JSON.parse(text) as unknown;
}

function rows(db: string): Record<string, unknown[]> {
  const d = new Database(db, { readonly: true });
  const label = (v: unknown) => v;
  const norm = (r: Record<string, unknown>) => Object.fromEntries(Object.entries(r).filter(([k]) => !DROP.has(k) && k !== 'id').map(([k, v]) => [k, label(v)]));
  try {
    const tasks = (d.prepare('SELECT * FROM tasks ORDER BY title').all() as Array<Record<string, unknown>>).map((r) => ({ id: r.id, ...norm(r) }));
    const runs = (d.prepare('SELECT r.* FROM runs r JOIN tasks t ON t.id = r.task_id ORDER BY t.title').all() as Array<Record<string, unknown>>).map((r) => ({ id: r.id, ...norm(r) }));
    const events = (d.prepare(`SELECT * FROM events WHERE at >= ${T0} ORDER BY id`).all() as Array<Record<string, unknown>>).map((r) => ({ ...norm(r), at: Number(r.at) - T0 }));
    return { tasks, runs, events };
  } finally {
    d.close();
  }
}

describe('the Python direct path mirrors the Node one', () => {
  it('same answers, same rows', async () => {
    const a = await scenario(cleanups.tempDir('ks-pyboard-node-'));
    const b = await scenario(cleanups.tempDir('ks-pyboard-py-'));
    cleanups.push(() => a.board.close());
    cleanups.push(() => b.board.close());
    const na = await nodeApply(a.board, a.ops);
    const pa = pythonApply(b.board.location, b.ops);
    na.push(...(await nodeApply(a.board, await a.more())));
    pa.push(...pythonApply(b.board.location, await b.more()));
    expect(labelled(pa, b.ids)).toEqual(labelled(na, a.ids));
    // The answers are the ones expected (not only equal).
    expect(na.slice(1, 17)).toEqual([
      'ok', 'ok', 'applied', 'duplicate', 'applied',
      `invalid: event kind "bad kind!" is invalid: use 1-64 letters, digits, '.', '_', ':' or '-'`,
      `invalid: a report's seq must be 1-20 decimal digits, got "1x"`,
      'fenced', 'applied', 'duplicate', 'fenced', 'applied', 'applied', 'applied', 'duplicate',
      'invalid: defer seconds must be a non-negative number, got -1',
    ]);
    const ra = labelled(rows(a.board.location), a.ids) as Record<string, unknown[]>;
    const rb = labelled(rows(b.board.location), b.ids);
    expect(na.slice(-3)).toEqual(['applied', 'invalid: event data is larger than 4 MiB of JSON', 'applied']);
    expect(ra.events!.length).toBeGreaterThan(6);
    // The astral error was cut before the pair the limit falls in (8,191 units: no half character).
    const cut = (ra.runs as Array<{ error: string | null }>).find((r) => r.error?.startsWith('a\u{1F600}'))!.error!;
    expect([cut.length, cut.includes('\uFFFD'), cut.endsWith('\u{1F600}')]).toEqual([8191, false, true]);
    expect(JSON.stringify(ra)).not.toMatch(/"[tr][a-z0-9]{10,}"/);
    expect(rb).toEqual(ra);
  });

  it('writes the schema version the board package has', () => {
    const v = execFileSync(PYTHON, ['-c', 'import kanban_worker; print(kanban_worker.SCHEMA_VERSION)'], { env: { ...process.env, PYTHONPATH: PY_PATH }, encoding: 'utf8' }).trim();
    expect(Number(v)).toBe(SCHEMA_VERSION);
  });
});
