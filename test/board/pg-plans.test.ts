/**
 * The PostgreSQL board's hot statements stay flat in the board's size: with 1,000,000 done tasks and
 * 100,000 ready ones (made inside the server with generate_series), the claim walks the tasks_ready
 * index in claim order — no Seq Scan of tasks, no Sort over tasks rows (the only Sorts allowed are
 * over the batch's own few rows, from its CTEs) — and the unknown-skill check seeks
 * tasks_ready_skill. Plans are read with EXPLAIN EXECUTE of the statements as the board sends them
 * (parameters bound, as the driver does).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PG_HOT_SQL, openBoard, type Board } from '@kanban-supervisor/board';
import { admin, freshDatabase, withDatabase } from './pg/server.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

/** Every node of a plan, depth first. */
function nodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(nodes)];
}

/** The nodes that feed `n` itself: its subtree without the CTE definitions attached to it. */
function input(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).filter((p) => !p['Subplan Name']?.startsWith('CTE ')).flatMap(input)];
}

let url = '';
let board: Board;

beforeAll(async () => {
  url = await freshDatabase('ks_plans');
  const u = new URL(url);
  u.searchParams.set('schema', 'kanban');
  board = await openBoard(u.href);
  await board.putSkill({ name: 'echo', argv: ['/bin/true'] });
  await admin(url, async (c) => {
    await c.query('SET search_path = kanban');
    await c.query(`INSERT INTO tasks (id, title, skill, status, priority, created_at, updated_at)
      SELECT 'd' || g, 'done', 'echo', 'done', g % 7, g, g FROM generate_series(1, 1000000) g`);
    await c.query(`INSERT INTO tasks (id, title, skill, status, priority, created_at, updated_at)
      SELECT 'r' || g, 'ready', 'echo', 'ready', g % 5, 2000000 + g, 2000000 + g FROM generate_series(1, 100000) g`);
    // The task graph: 100,000 waiting tasks, each after one done task (not in tasks_ready).
    await c.query(`INSERT INTO tasks (id, title, skill, status, priority, created_at, updated_at)
      SELECT 'w' || g, 'waiting', 'echo', 'waiting', g % 5, 3000000 + g, 3000000 + g FROM generate_series(1, 100000) g`);
    await c.query(`INSERT INTO links (child, parent, created_at) SELECT 'w' || g, 'd' || g, 0 FROM generate_series(1, 100000) g`);
    await c.query('ANALYZE tasks');
    await c.query('ANALYZE links');
  });
}, 120_000);

afterAll(async () => {
  await board?.close();
  if (!url) return;
  const name = new URL(url).pathname.slice(1);
  await admin(withDatabase(url, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
});

/** The plan of `sql` with `params` bound, as the board would run it. */
async function plan(sql: string, types: string[], params: unknown[]): Promise<PlanNode[]> {
  return admin(url, async (c) => {
    await c.query('SET search_path = kanban');
    await c.query(`PREPARE hot${types.length ? `(${types.join(', ')})` : ''} AS ${sql}`);
    const values = params.map((p) => (Array.isArray(p) ? `ARRAY[${p.map((x) => `'${String(x)}'`).join(', ')}]::text[]` : String(p)));
    const r = await c.query(`EXPLAIN (FORMAT JSON) EXECUTE hot${values.length ? `(${values.join(', ')})` : ''}`);
    return nodes((r.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan);
  });
}

describe('PostgreSQL board: query plans of the hot statements at 1,000,000 done, 100,000 ready and 100,000 waiting tasks', () => {
  it('the claim is an index scan of tasks_ready in claim order: no Seq Scan of tasks, no Sort over tasks', async () => {
    const ids = ['ra', 'rb', 'rc'];
    const all = await plan(PG_HOT_SQL.claimBatch, ['bigint', 'integer', 'text[]', 'text[]', 'text[]', 'bigint', 'text'], [Date.now(), 3, ids, ids, ids, Date.now(), null]);
    const scans = all.filter((n) => n['Relation Name'] === 'tasks');
    expect(scans.map((n) => n['Node Type'])).not.toContain('Seq Scan');
    expect(scans.some((n) => /Index/.test(n['Node Type']) && n['Index Name'] === 'tasks_ready'), JSON.stringify(scans)).toBe(true);
    for (const sort of all.filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort')) {
      const under = input(sort).map((n) => n['Relation Name'] ?? n['Node Type']);
      expect(under, 'a Sort reads only the batch (CTE rows), never tasks').not.toContain('tasks');
    }
  });

  it('the claim takes the first tasks in claim order, quickly, at this size', async () => {
    const t0 = performance.now();
    const claims = await board.claimBatch(5, Date.now(), (id) => `/tmp/${id}.log`);
    const ms = performance.now() - t0;
    expect(claims.map((c) => c.task.id)).toEqual(['r4', 'r9', 'r14', 'r19', 'r24']);
    expect(ms, 'one claim batch at 1.1M tasks').toBeLessThan(2000);
  });

  it('the children of a finished parent are found by index: links_parent, then each child and its parents by key (no Seq Scan)', async () => {
    const lock = await plan(PG_HOT_SQL.lockWaitingChildren, ['text'], ["'d77'"]);
    const isScan = (x: PlanNode) => /Scan$/.test(x['Node Type']) && (x['Relation Name'] === 'tasks' || x['Relation Name'] === 'links');
    for (const n of lock.filter(isScan)) expect(n['Node Type'], JSON.stringify(n)).toMatch(/Index/);
    expect(lock.some((n) => n['Relation Name'] === 'links' && n['Index Name'] === 'links_parent'), JSON.stringify(lock)).toBe(true);
    const release = await plan(PG_HOT_SQL.releaseChildren, ['text[]', 'bigint', 'text'], [['w77'], Date.now(), "'d77'"]);
    const scans = release.filter(isScan);
    expect(scans.length).toBeGreaterThanOrEqual(3);
    for (const n of scans) expect(n['Node Type'], JSON.stringify(n)).toMatch(/Index/);
  });

  it('the unknown-skill check seeks tasks_ready_skill (no Seq Scan of tasks)', async () => {
    const all = await plan(PG_HOT_SQL.unknownReadySkills, [], []);
    const scans = all.filter((n) => n['Relation Name'] === 'tasks');
    expect(scans.length).toBeGreaterThan(0);
    for (const s of scans) expect(s['Node Type'], JSON.stringify(s)).toMatch(/Index/);
    expect(await board.blockUnknownSkillTasks(Date.now())).toEqual([]);
  });
});

describe('PostgreSQL board: per-skill caps and scheduling keep the claim an index seek (issue 16)', () => {
  it('the capped claim seeks tasks_ready_skill_order per skill (no Seq Scan of tasks or runs, no Sort over tasks)', async () => {
    const all = await plan(PG_HOT_SQL.claimCandidates, ['bigint', 'integer'], [Date.now(), 5]);
    const scans = all.filter((n) => n['Relation Name'] === 'tasks' || n['Relation Name'] === 'runs');
    expect(scans.map((n) => n['Node Type']), JSON.stringify(scans)).not.toContain('Seq Scan');
    expect(scans.some((n) => n['Index Name'] === 'tasks_ready_skill_order'), JSON.stringify(scans)).toBe(true);
    for (const sort of all.filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort')) {
      const under = input(sort).map((n) => `${n['Node Type']}:${n['Relation Name'] ?? ''}:${n['Index Name'] ?? ''}`);
      // The merge sorts the candidates: at most the batch size per skill, each read by a LIMITed seek.
      expect(under.filter((u) => u.includes(':tasks:') && !u.includes('tasks_ready_skill_order') && !u.includes('tasks_pkey')), JSON.stringify(under)).toEqual([]);
    }
    const chosen = await plan(PG_HOT_SQL.claimChosen, ['bigint', 'integer', 'text[]', 'text[]', 'text[]', 'bigint', 'text', 'text[]'], [Date.now(), 3, ['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c'], Date.now(), null, ['r1', 'r2', 'r3']]);
    expect(chosen.filter((n) => n['Relation Name'] === 'tasks').map((n) => n['Node Type'])).not.toContain('Seq Scan');
  });

  it('the next due time is a seek of tasks_ready_due', async () => {
    const all = await plan(PG_HOT_SQL.nextDue, ['bigint'], [Date.now()]);
    const scans = all.filter((n) => n['Relation Name'] === 'tasks');
    expect(scans.map((n) => n['Index Name']), JSON.stringify(scans)).toEqual(['tasks_ready_due']);
  });

  it('with a skill capped at 1 holding 50,000 ready tasks at the top priority, a claim takes 1 of them and fills the rest from the other skill, quickly', async () => {
    await board.putSkill({ name: 'slow', argv: ['/bin/true'], maxConcurrent: 1 });
    await admin(url, async (c) => {
      await c.query('SET search_path = kanban');
      await c.query(`INSERT INTO tasks (id, title, skill, status, priority, created_at, updated_at)
        SELECT 's' || g, 'slow', 'slow', 'ready', 100, 3000000 + g, 3000000 + g FROM generate_series(1, 50000) g`);
      await c.query('ANALYZE tasks');
    });
    const times: number[] = [];
    const skills: string[][] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const claims = await board.claimBatch(5, Date.now(), (id) => `/tmp/${id}.log`);
      times.push(performance.now() - t0);
      skills.push(claims.map((c) => c.task.skill));
    }
    expect(skills[0]).toEqual(['slow', 'echo', 'echo', 'echo', 'echo']);
    expect(skills[1]).toEqual(['echo', 'echo', 'echo', 'echo', 'echo']);
    expect(Math.max(...times), `capped claims at 1.15M tasks: ${times.map((t) => t.toFixed(1)).join(', ')} ms`).toBeLessThan(200);
  });
});
