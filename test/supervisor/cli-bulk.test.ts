/**
 * The CLI of issue 16: `add --from FILE.jsonl|-` (all or nothing, a bad line named by its number
 * and field; lines may carry `after`), `add --key` output (with --after too), `skill set --max-concurrent`, and `prune --older-than` (counts,
 * runs, events and log files removed; unfinished tasks kept; bad flags refused with exit 2).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBoard } from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, cli, exited, run, CLI } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('add --from, add --key, skill set, prune', () => {
  it('add --from: a bad line is refused naming its line number and field, and nothing is added; a good file adds every line in one go', async () => {
    const { dir, db } = cleanups.boardDir('ks-from-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    const file = join(dir, 't.jsonl');
    const cases: Array<[string[], RegExp]> = [
      [['{"skill":"echo"}', '', '{"skill":"echo","priority":"high"}'], /line 3, field "priority": must be an integer/],
      [['{"skill":"echo","colour":"red"}'], /line 1, field "colour": unknown field/],
      [['{"skill":"echo"}', '{"skill":"echo","delay":"soon"}'], /line 2, field "delay": delay must be a duration/],
      [['{"skill":"echo","at":"tomorrow"}'], /line 1, field "at": at must be an ISO-8601 time/],
      [['{"skill":"echo","max_attempts":0}'], /line 1, field "max_attempts": must be an integer from 1/],
      [['{"skill":"echo"}', '{"skill":"ghost"}'], /line 2, field "skill": unknown skill "ghost"/],
      [['{"skill":"echo"}', 'not json'], /line 2: not JSON/],
      [['[1]'], /line 1: must be a JSON object/],
      [['{"title":"x"}'], /line 1, field "skill": is required/],
    ];
    for (const [lines, msg] of cases) {
      writeFileSync(file, lines.join('\n') + '\n');
      const r = await cli(db, ['add', '--from', file]);
      // A malformed line is a usage error (2); a skill the board lacks, the board's refusal (1), as for `add --skill`.
      expect(r.code, r.stderr).toBe(/unknown skill/.test(msg.source) ? 1 : 2);
      expect(r.stderr).toMatch(msg);
    }
    const b = await openBoard(db);
    expect((await b.counts()).tasks.ready, 'nothing was added by a refused file').toBe(0);
    writeFileSync(file, ['{"skill":"echo","title":"a","key":"k1"}', '{"skill":"echo","title":"b","priority":3,"payload":{"n":1},"delay":"5m"}', '{"skill":"echo","key":"k1"}'].join('\n'));
    const ok = await cli(db, ['--json', 'add', '--from', file]);
    expect(ok.code, ok.stderr).toBe(0);
    const added = JSON.parse(ok.stdout) as Array<{ id: string; created: boolean }>;
    expect(added.map((a) => a.created)).toEqual([true, true, false]);
    expect(added[2]!.id).toBe(added[0]!.id);
    const second = (await b.getTask(added[1]!.id))!;
    expect(second).toMatchObject({ title: 'b', priority: 3, payload: { n: 1 } });
    expect(second.notBefore).toBeGreaterThan(Date.now() + 4 * 60_000);
    // stdin
    const piped = await run(process.execPath, [CLI, '--db', db, 'add', '--from', '-'], { input: '{"skill":"echo","title":"piped"}\n' });
    expect(piped.code, piped.stderr).toBe(0);
    expect((await b.getTask(piped.stdout.trim()))!.title).toBe('piped');
    expect((await cli(db, ['add', '--from', file, '--skill', 'echo'])).code).toBe(2);
    expect((await cli(db, ['add', '--skill', 'echo', '--delay', '1s', '--at', '2030-01-01T00:00:00Z'])).stderr).toMatch(/--delay or --at, not both/);
    await b.close();
  });

  it('add --from lines take after (ids on the board; an unknown one named by line and field); add --key with --after; a keyed add that finds its task adds no links', async () => {
    const { dir, db } = cleanups.boardDir('ks-after-');
    const b = await openBoard(db);
    await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
    const p = (await b.createTask({ skill: 'echo', title: 'p' })).id;
    const q = (await b.createTask({ skill: 'echo', title: 'q' })).id;
    const parentsOf = async (id: string) => (await b.showTask(id))!.parents.map((x) => x.id).sort();
    const file = join(dir, 'g.jsonl');
    const cases: Array<[string[], RegExp, number]> = [
      [['{"skill":"echo"}', '{"skill":"echo","after":["nope-1"]}'], /line 2, field "after": no task "nope-1"/, 1],
      [['{"skill":"echo","after":5}'], /line 1, field "after": must be a task id or an array of task ids/, 2],
    ];
    for (const [lines, msg, code] of cases) {
      writeFileSync(file, lines.join('\n') + '\n');
      const r = await cli(db, ['add', '--from', file]);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toMatch(msg);
    }
    expect((await b.listTasks()).length, 'nothing was added by a refused file').toBe(2);
    writeFileSync(file, [`{"skill":"echo","title":"c1","after":["${p}"]}`, `{"skill":"echo","title":"c2","after":"${q}","key":"k2"}`, `{"skill":"echo","title":"c3","after":["${p}","${q}"]}`].join('\n'));
    const ok = await cli(db, ['--json', 'add', '--from', file]);
    expect(ok.code, ok.stderr).toBe(0);
    const [c1, c2, c3] = (JSON.parse(ok.stdout) as Array<{ id: string }>).map((a) => a.id);
    for (const [id, parents] of [[c1, [p]], [c2, [q]], [c3, [p, q]]] as const) {
      expect((await b.getTask(id!))!.status).toBe('waiting');
      expect(await parentsOf(id!)).toEqual([...parents].sort());
    }
    // --key with --after: a new task waits; the same key again (other parents) is that task, no new link.
    const k = JSON.parse((await cli(db, ['--json', 'add', '--skill', 'echo', '--key', 'K', '--after', p])).stdout);
    expect(k.created).toBe(true);
    const again = await cli(db, ['--json', 'add', '--skill', 'echo', '--key', 'K', '--after', q]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ id: k.id, created: false });
    expect(await b.getTask(k.id)).toMatchObject({ status: 'waiting', key: 'K' });
    expect(await parentsOf(k.id)).toEqual([p]);
    // A keyed line of a file that finds its task adds no link either.
    writeFileSync(file, `{"skill":"echo","key":"k2","after":["${p}"]}\n`);
    expect(JSON.parse((await cli(db, ['--json', 'add', '--from', file])).stdout)).toEqual([{ id: c2, created: false }]);
    expect(await parentsOf(c2!)).toEqual([q]);
    expect((await cli(db, ['add', '--from', file, '--after', p])).code, '--from takes no other flag').toBe(2);
    await b.close();
  });

  it('add --key prints the existing id (--json created false, exit 0); skill set changes a cap without the command', async () => {
    const { db } = cleanups.boardDir('ks-key1-');
    expect((await cli(db, ['skill', 'add', 'echo', '--max-concurrent', '2', '--', '/bin/echo', 'x'])).code).toBe(0);
    const first = await cli(db, ['--json', 'add', '--skill', 'echo', '--key', 'K']);
    expect(JSON.parse(first.stdout)).toEqual({ id: expect.any(String), created: true });
    const again = await cli(db, ['add', '--skill', 'echo', '--key', 'K', '--title', 'other']);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(JSON.parse(first.stdout).id);
    const set = await cli(db, ['--json', 'skill', 'set', 'echo', '--max-concurrent', '5']);
    expect(JSON.parse(set.stdout)).toMatchObject({ name: 'echo', argv: ['/bin/echo', 'x'], maxConcurrent: 5 });
    expect(JSON.parse((await cli(db, ['--json', 'skill', 'set', 'echo', '--max-concurrent', 'none'])).stdout).maxConcurrent).toBeNull();
    const bad = await cli(db, ['skill', 'set', 'echo', '--max-concurrent', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-concurrent must be an integer from 1/);
    expect((await cli(db, ['skill', 'set', 'ghost', '--max-concurrent', '3'])).stderr).toMatch(/no skill "ghost"/);
  });

  it('prune --older-than: removes finished tasks with their runs, events and log files, prints the counts; never unfinished tasks', async () => {
    const { dir, db } = cleanups.boardDir('ks-prune-');
    const file = join(dir, 'spans.txt');
    expect((await cli(db, ['skill', 'add', 'span', '--', join(SUP, 'span.sh'), file, '0'])).code).toBe(0);
    for (let i = 0; i < 4; i++) await cli(db, ['add', '--skill', 'span']);
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { TICK_INTERVAL_MS: '100' });
    expect((await exited(sup)).code, sup.output()).toBe(0);
    const ready = (await cli(db, ['add', '--skill', 'span'])).stdout.trim();
    const blocked = (await cli(db, ['add', '--skill', 'span'])).stdout.trim();
    await cli(db, ['block', blocked, '--reason', 'hold']);
    const cancelled = (await cli(db, ['add', '--skill', 'span'])).stdout.trim();
    await cli(db, ['cancel', cancelled]);
    const b = await openBoard(db);
    const logs = (await b.listRuns({ limit: 100 })).map((r) => r.logPath!);
    expect(logs.length).toBe(4);
    expect(logs.every((l) => existsSync(l))).toBe(true);
    const none = await cli(db, ['prune', '--older-than', '1h']);
    expect(none.stdout).toMatch(/^pruned 0 task\(s\)/);
    const onlyDone = JSON.parse((await cli(db, ['--json', 'prune', '--older-than', '0s', '--status', 'done'])).stdout);
    expect(onlyDone).toMatchObject({ tasks: 4, runs: 4, links: 0, logs: 4 });
    expect(onlyDone.events).toBeGreaterThanOrEqual(4 * 4);
    expect(onlyDone.longest_batch_ms).toBeLessThan(50);
    expect(logs.some((l) => existsSync(l))).toBe(false);
    const rest = await cli(db, ['prune', '--older-than', '0s']);
    expect(rest.stdout).toMatch(/^pruned 1 task\(s\), 0 run\(s\), 2 event\(s\), 0 link\(s\) and 0 log file\(s\)/);
    expect(rest.stdout).toMatch(/the longest held the write lock [\d.]+ ms/);
    expect((await b.counts()).tasks).toEqual({ waiting: 0, ready: 1, running: 0, done: 0, blocked: 1, cancelled: 0 });
    expect(await b.getTask(ready)).not.toBeNull();
    for (const [args, msg] of [
      [['prune'], /--older-than DURATION is required/],
      [['prune', '--older-than', 'week'], /--older-than must be a duration/],
      [['prune', '--older-than', '1d', '--status', 'blocked'], /--status must list finished statuses/],
    ] as Array<[string[], RegExp]>) {
      const r = await cli(db, args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    await b.close();
  });
});
