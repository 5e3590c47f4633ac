import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Cleanups, cli } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const db = () => join(cleanups.tempDir('ks-cli-'), 'kanban.db');

describe('board CLI', () => {
  it('round-trips a task from add to show --json with the documented fields', async () => {
    const d = db();
    expect((await cli(d, ['init'])).code).toBe(0);
    expect((await cli(d, ['skill', 'add', 'echo', '--env', 'A=1', '--max-runtime', '60', '--', 'node', 'echo.js'])).code).toBe(0);
    const added = await cli(d, ['--json', 'add', '--skill', 'echo', '--title', 'hello', '--payload', '{"n":1}', '--priority', '3', '--max-retries', '4']);
    expect(added.code, added.stderr).toBe(0);
    const { id } = JSON.parse(added.stdout);
    expect(id).toMatch(/^t[a-z2-7]{10}$/);
    const show = await cli(d, ['--json', 'show', id]);
    const t = JSON.parse(show.stdout);
    expect(Object.keys(t).sort()).toEqual(
      ['id', 'title', 'skill', 'status', 'priority', 'payload', 'result', 'consecutive_failures', 'last_error', 'not_before', 'created_at', 'key', 'runs', 'events', 'parents', 'children'].sort(),
    );
    expect(t).toMatchObject({ id, title: 'hello', skill: 'echo', status: 'ready', priority: 3, payload: { n: 1 }, result: null, consecutive_failures: 0, last_error: null, runs: [] });
    expect(t.events[0]).toMatchObject({ kind: 'created', run_id: null });
    const list = JSON.parse((await cli(d, ['--json', 'list', '--status', 'ready'])).stdout);
    expect(list.map((x: { id: string }) => x.id)).toEqual([id]);
    expect(list[0].runs).toBeUndefined();
    // block / unblock / cancel
    expect(JSON.parse((await cli(d, ['--json', 'block', id, '--reason', 'wait'])).stdout).status).toBe('blocked');
    expect(JSON.parse((await cli(d, ['--json', 'unblock', id])).stdout).status).toBe('ready');
    expect(JSON.parse((await cli(d, ['--json', 'cancel', id])).stdout).status).toBe('cancelled');
    const skills = JSON.parse((await cli(d, ['--json', 'skill', 'list'])).stdout);
    expect(skills[0]).toMatchObject({ name: 'echo', argv: ['node', 'echo.js'], env: { A: '1' }, maxRuntimeSeconds: 60 });
    expect((await cli(d, ['check'])).code).toBe(0);
  });

  it('refuses bad input with exit 2 (usage) or 1 (board), naming the thing at fault', async () => {
    const d = db();
    await cli(d, ['skill', 'add', 'echo', '--', 'true']);
    const badJson = await cli(d, ['add', '--skill', 'echo', '--payload', '{nope']);
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain('--payload must be valid JSON');
    const unknownSkill = await cli(d, ['add', '--skill', 'nope']);
    expect(unknownSkill.code).toBe(1);
    expect(unknownSkill.stderr).toContain('unknown skill "nope"');
    const unknownFlag = await cli(d, ['add', '--skill', 'echo', '--bogus']);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toContain('unknown option --bogus');
    const badPriority = await cli(d, ['add', '--skill', 'echo', '--priority', 'high']);
    expect(badPriority.code).toBe(2);
    expect(badPriority.stderr).toContain('--priority must be an integer from -9007199254740991 to 9007199254740991, got "high"');
    const badEnv = await cli(d, ['run'], { MAX_CONCURRENT_WORKERS: 'abc' });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('MAX_CONCURRENT_WORKERS must be an integer from 1 to 1024, got "abc"');
    const badGrace = await cli(d, ['run', '--reclaim-grace', 'soon']);
    expect(badGrace.code).toBe(2);
    expect(badGrace.stderr).toContain('--reclaim-grace must be a number');
    const noTask = await cli(d, ['show', 'tnothere']);
    expect(noTask.code).toBe(1);
    expect(noTask.stderr).toContain('no task "tnothere"');
    const unknownCmd = await cli(d, ['frobnicate']);
    expect(unknownCmd.code).toBe(2);
  });
});
