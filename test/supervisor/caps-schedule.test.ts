/**
 * Issue 16 with a real supervisor and real processes: a capped skill with a long high-priority
 * backlog never holds back another skill's tasks (head-of-line), and never exceeds its cap
 * (measured from the workers' own timestamps); a scheduled task (--delay, --at) starts at its time,
 * not before, and not at the next periodic tick; one key added by 8 processes at once makes one
 * task; RETENTION_DAYS prunes finished tasks and their logs by itself.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, cli, run, CLI, sleep, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

function spans(file: string): Array<{ kind: string; at: number; task: string }> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const [kind, at, task] = l.split(' ');
    return { kind: kind!, at: Number(at), task: task! };
  });
}

function maxOverlap(s: Array<{ kind: string; at: number }>): number {
  const points = s.map((x) => ({ at: x.at, d: x.kind === 'start' ? 1 : -1 })).sort((a, b) => a.at - b.at || a.d - b.d);
  let cur = 0;
  let max = 0;
  for (const p of points) max = Math.max(max, (cur += p.d));
  return max;
}

describe('per-skill caps and scheduling with a real supervisor', () => {
  it('1,000 ready tasks of a skill capped at 1 at high priority: 10 low-priority tasks of another skill start at once; the cap holds', async () => {
    const { dir, db } = cleanups.boardDir('ks-caps-');
    const slow = join(dir, 'slow.txt');
    const fast = join(dir, 'fast.txt');
    expect((await cli(db, ['skill', 'add', 'slow', '--max-concurrent', '1', '--', join(SUP, 'span.sh'), slow, '1.5'])).code).toBe(0);
    expect((await cli(db, ['skill', 'add', 'fast', '--', join(SUP, 'span.sh'), fast, '0.1'])).code).toBe(0);
    const lines = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ skill: 'slow', title: `slow ${i}`, priority: 100 }));
    writeFileSync(join(dir, 'slow.jsonl'), lines.join('\n') + '\n');
    const added = await cli(db, ['add', '--from', join(dir, 'slow.jsonl')]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout.trim().split('\n').length).toBe(1000);
    for (let i = 0; i < 10; i++) expect((await cli(db, ['add', '--skill', 'fast', '--priority', '-5'])).code).toBe(0);
    const t0 = Date.now();
    const p = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '200', MAX_CONCURRENT_WORKERS: '4', LOG_LEVEL: 'info' });
    // Every fast task runs (3 slots for it: one is the slow skill's), well before the slow backlog moves.
    await waitFor(() => spans(fast).filter((s) => s.kind === 'stop').length === 10, 20_000);
    const fastDone = Date.now() - t0;
    const slowStarts = spans(slow).filter((s) => s.kind === 'start').length;
    expect(slowStarts, 'the slow skill ran one at a time meanwhile').toBeLessThanOrEqual(Math.ceil(fastDone / 1500) + 1);
    expect(fastDone, p.output()).toBeLessThan(10_000);
    // Let a few slow tasks run back to back: never two at once.
    await waitFor(() => spans(slow).filter((s) => s.kind === 'stop').length >= 3, 20_000);
    expect(maxOverlap(spans(slow))).toBe(1);
    const b = await openBoard(db);
    expect((await b.counts()).liveRuns).toBeLessThanOrEqual(1);
    await b.close();
  }, 60_000);

  it('add --delay and --at: the task starts at its time (not before, and not at the next 30 s tick)', async () => {
    const { dir, db } = cleanups.boardDir('ks-sched-');
    const file = join(dir, 'spans.txt');
    expect((await cli(db, ['skill', 'add', 'span', '--', join(SUP, 'span.sh'), file, '0'])).code).toBe(0);
    const p = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '30000', LOG_LEVEL: 'info' });
    await waitFor(() => p.output().includes('supervisor started') || p.output().includes('"event":"started"'), 20_000).catch(() => sleep(2000));
    await sleep(500);
    const delayed = JSON.parse((await cli(db, ['--json', 'add', '--skill', 'span', '--delay', '2s'])).stdout).id as string;
    const at = new Date(Date.now() + 3000);
    const atId = JSON.parse((await cli(db, ['--json', 'add', '--skill', 'span', '--at', at.toISOString()])).stdout).id as string;
    const b = await openBoard(db);
    // A task is due at its time; on a loaded machine the CLI may start so late that --at is already
    // past when it adds the task (then it is runnable at once: due when it was added).
    const dueOf = async (id: string) => {
      const t = (await b.getTask(id))!;
      return t.notBefore > 0 ? t.notBefore : t.createdAt;
    };
    const due = { [delayed]: await dueOf(delayed), [atId]: await dueOf(atId) };
    const atTask = (await b.getTask(atId))!;
    if (atTask.notBefore > 0) expect(atTask.notBefore).toBe(at.getTime());
    else expect(atTask.createdAt, 'added after its --at time').toBeGreaterThanOrEqual(at.getTime());
    await waitFor(() => spans(file).filter((s) => s.kind === 'start').length === 2, 15_000);
    for (const s of spans(file).filter((x) => x.kind === 'start')) {
      const late = s.at - due[s.task]!;
      expect(late, `task ${s.task} started ${late} ms after its time`).toBeGreaterThanOrEqual(0);
      expect(late, `task ${s.task} started ${late} ms after its time\n${p.output()}`).toBeLessThan(1500);
    }
    await b.close();
  }, 40_000);

  it('one key added by 8 processes at once: exactly one task, every process prints its id (exit 0)', async () => {
    const { db } = cleanups.boardDir('ks-key-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(Array.from({ length: 8 }, () => run(process.execPath, [CLI, '--db', db, '--json', 'add', '--skill', 'echo', '--key', `k${round}`])));
      for (const r of got) expect(r.code, r.stderr).toBe(0);
      const outs = got.map((r) => JSON.parse(r.stdout) as { id: string; created: boolean });
      expect(new Set(outs.map((o) => o.id)).size).toBe(1);
      expect(outs.filter((o) => o.created).length).toBe(1);
    }
    const b = await openBoard(db);
    expect((await b.counts()).tasks.ready).toBe(3);
    await b.close();
  }, 60_000);

  it('RETENTION_DAYS: the supervisor prunes finished tasks, their runs, events and log files by itself', async () => {
    const { dir, db } = cleanups.boardDir('ks-ret-');
    const file = join(dir, 'spans.txt');
    expect((await cli(db, ['skill', 'add', 'span', '--', join(SUP, 'span.sh'), file, '0'])).code).toBe(0);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await cli(db, ['add', '--skill', 'span'])).stdout.trim());
    const blocked = (await cli(db, ['add', '--skill', 'span', '--delay', '1h'])).stdout.trim();
    // 0.00002 days: 1.7 s.
    const p = cleanups.startCli(db, ['run'], { TICK_INTERVAL_MS: '100', RETENTION_DAYS: '0.00002', LOG_LEVEL: 'info' });
    const b = await openBoard(db);
    await waitFor(async () => (await b.counts()).tasks.done === 5, 20_000);
    const logs = (await b.listRuns({ limit: 100 })).map((r) => r.logPath!);
    expect(logs.length).toBe(5);
    expect(logs.every((l) => existsSync(l))).toBe(true);
    await waitFor(async () => (await b.counts()).tasks.done === 0, 20_000).catch(async (e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(await b.listRuns({ limit: 100 }))}\n${p.output()}`);
    });
    for (const id of ids) expect(await b.getTask(id)).toBeNull();
    expect(await b.getTask(blocked)).not.toBeNull();
    expect(logs.some((l) => existsSync(l)), 'log files removed').toBe(false);
    expect(p.output()).toContain('tasks_pruned');
    await b.close();
  }, 40_000);
});
