/**
 * The task graph end to end: the CLI's verbs (add --after, link, unlink, cancel --cascade, list and
 * show of waiting tasks, refusals) and a supervisor with real workers running a diamond A→B,C→D:
 * D starts only once B and C are done and reads both results (ctx.parents); a shell step after D
 * reads D's (worker parents).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, FIXTURES, cli, exited, show } from '../src/common.js';

const GRAPH = join(FIXTURES, 'graph');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' };

async function add(db: string, args: string[]): Promise<string> {
  const r = await cli(db, ['add', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('task graph: CLI', () => {
  it('add --after makes a waiting task; list and show say which parent holds it and why; list --status waiting', async () => {
    const { db } = cleanups.boardDir('ks-graph-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    const p = await add(db, ['--skill', 'echo', '--title', 'parent']);
    const q = await add(db, ['--skill', 'echo', '--title', 'other']);
    const c = await add(db, ['--skill', 'echo', '--title', 'child', '--after', p, '--after', q]);
    expect((await cli(db, ['block', p, '--reason', 'needs a key'])).code).toBe(0);
    const list = await cli(db, ['list', '--status', 'waiting']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(c);
    expect(list.stdout).toContain('waiting for ');
    expect(list.stdout).toContain(`${p} (blocked: needs a key)`);
    expect(list.stdout).toContain(`${q} (ready)`);
    const listJson = JSON.parse((await cli(db, ['--json', 'list', '--status', 'waiting'])).stdout);
    expect(listJson).toHaveLength(1);
    expect(listJson[0].waiting_for.map((x: { id: string }) => x.id).sort()).toEqual([p, q].sort());
    const text = await cli(db, ['show', c]);
    expect(text.stdout).toMatch(/waiting for .*needs a key/);
    const j = await show(db, c);
    expect(j.status).toBe('waiting');
    expect(j.parents.map((x: { id: string; status: string }) => [x.id, x.status]).sort()).toEqual([[p, 'blocked'], [q, 'ready']].sort());
    expect(j.children).toEqual([]);
    expect((await show(db, p)).children).toEqual([{ id: c, title: 'child', status: 'waiting', last_error: null }]);
    const unknown = await cli(db, ['add', '--skill', 'echo', '--after', 'nope-9']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no task "nope-9"');
  });

  it('link, unlink, a cycle refused naming it, cancel --cascade printing the ids', async () => {
    const { db } = cleanups.boardDir('ks-graph-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    const a = await add(db, ['--skill', 'echo', '--title', 'a']);
    const b = await add(db, ['--skill', 'echo', '--title', 'b']);
    const c = await add(db, ['--skill', 'echo', '--title', 'c']);
    let r = await cli(db, ['link', b, '--after', a]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`${b} waiting`);
    expect((await cli(db, ['link', c, '--after', b])).stdout.trim()).toBe(`${c} waiting`);
    r = await cli(db, ['link', a, '--after', c]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`would close a cycle: ${a} → ${c} → ${b} → ${a}`);
    r = await cli(db, ['link', a, '--after', 'nope-1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no task "nope-1"');
    expect((await cli(db, ['link', a])).code).toBe(2); // --after is required
    expect((await cli(db, ['unlink', c, '--after', b])).stdout.trim()).toBe(`${c} ready`);
    r = await cli(db, ['unlink', c, '--after', b]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`does not wait for ${b}`);
    expect((await cli(db, ['link', c, '--after', b])).code).toBe(0);
    r = await cli(db, ['cancel', a, '--cascade']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([`${a} cancelled`, `${b} cancelled`, `${c} cancelled`]);
    const j = JSON.parse((await cli(db, ['--json', 'cancel', a, '--cascade'])).stdout);
    expect(j).toEqual({ cancelled: [a] });
    expect((await cli(db, ['link', '--help'])).stdout).toContain('would close a cycle');
    expect((await cli(db, ['--help'])).stdout).toContain('link ID --after PARENT');
  });
});

describe('task graph: a supervisor with real workers', () => {
  // Both report paths: the report channel (the default: payload and parents over the supervisor's
  // socket) and the direct board write (REPORT_CHANNEL=off).
  it.each(['on', 'off'])('diamond A→B,C→D: D starts only after B and C are done and reads both results (ctx.parents); a shell step reads D\'s (worker parents); report channel %s', async (channel) => {
    const { dir, db } = cleanups.boardDir('ks-graph-');
    const spans = join(dir, 'spans.txt');
    expect((await cli(db, ['skill', 'add', 'step', '--env', `SPANS=${spans}`, '--', process.execPath, join(GRAPH, 'step.mjs')])).code).toBe(0);
    expect((await cli(db, ['skill', 'add', 'sh', '--', join(GRAPH, 'parents.sh')])).code).toBe(0);
    // Added in reverse of the order they may run, with priorities that would run D first if it could.
    const A = await add(db, ['--skill', 'step', '--title', 'A', '--payload', '{"ms":300}']);
    const B = await add(db, ['--skill', 'step', '--title', 'B', '--after', A, '--payload', '{"ms":600}']);
    const C = await add(db, ['--skill', 'step', '--title', 'C', '--after', A, '--payload', '{"ms":200}']);
    const D = await add(db, ['--skill', 'step', '--title', 'D', '--after', B, '--after', C, '--priority', '9']);
    const E = await add(db, ['--skill', 'sh', '--title', 'E', '--after', D]);
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { ...FAST, MAX_CONCURRENT_WORKERS: '4', REPORT_CHANNEL: channel });
    const { code } = await exited(sup);
    expect(code, sup.output()).toBe(0);
    expect(sup.output().includes('"event":"channel_listening"')).toBe(channel === 'on');
    const at = new Map<string, number>();
    for (const line of readFileSync(spans, 'utf8').trim().split('\n')) {
      const [kind, title, ms] = line.split(' ');
      at.set(`${kind} ${title}`, Number(ms));
    }
    expect([...at.keys()].sort()).toEqual(['end A', 'end B', 'end C', 'end D', 'start A', 'start B', 'start C', 'start D']);
    expect(at.get('start B')!).toBeGreaterThanOrEqual(at.get('end A')!);
    expect(at.get('start C')!).toBeGreaterThanOrEqual(at.get('end A')!);
    expect(at.get('start D')!).toBeGreaterThanOrEqual(at.get('end B')!);
    expect(at.get('start D')!).toBeGreaterThanOrEqual(at.get('end C')!);
    // B and C ran side by side (both released by A's report).
    expect(at.get('start C')!).toBeLessThan(at.get('end B')!);
    const d = await show(db, D);
    expect(d.status).toBe('done');
    expect(d.result).toEqual({ title: 'D', parents: { [B]: { title: 'B', parents: { [A]: { title: 'A', parents: {} } } }, [C]: { title: 'C', parents: { [A]: { title: 'A', parents: {} } } } } });
    const e = await show(db, E);
    expect(e.status).toBe('done');
    expect(e.result).toEqual({ parents: { [D]: d.result } });
    // Each child was released by its last parent's report (event `released`), never polled.
    expect(d.events.map((x: { kind: string }) => x.kind)).toContain('released');
  }, 60_000);
});
