/**
 * `pip install ./worker-runtime/python` (the README's command) into a fresh venv gives an importable
 * kanban_worker that runs a skill under a real supervisor, with no PYTHONPATH (issue 19).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Cleanups, ROOT, cli, run } from '../src/common.js';
import { PYTHON } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('the Python package', () => {
  it('installs with pip into a venv and runs a skill from there', async () => {
    const tmp = cleanups.tempDir('ks-pypkg-');
    const venv = join(tmp, 'venv');
    expect((await run(PYTHON, ['-m', 'venv', venv], { timeoutMs: 60_000 })).code).toBe(0);
    const pip = await run(join(venv, 'bin', 'pip'), ['install', '--disable-pip-version-check', '--quiet', join(ROOT, 'worker-runtime', 'python')], { cwd: tmp, timeoutMs: 120_000 });
    expect(pip.code, pip.stderr).toBe(0);
    const py = join(venv, 'bin', 'python');
    const where = await run(py, ['-c', 'import kanban_worker; print(kanban_worker.__file__, kanban_worker.PROTOCOL_VERSIONS)'], { cwd: tmp });
    expect(where.stdout).toContain(join(venv, 'lib'));
    expect(where.stdout).toContain('(1,)');

    const { db } = cleanups.boardDir('ks-pypkg-');
    expect((await cli(db, ['skill', 'add', 'py', '--env', 'MODE=return', '--', py, join(ROOT, 'test', 'fixtures', 'runtimes', 'skill.py')])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'py', '--payload', '{"result":{"ok":true}}'])).stdout.trim();
    const sup = await cli(db, ['run', '--until-idle'], { TICK_INTERVAL_MS: '100', KANBAN_HTTP: 'off' });
    expect(sup.code, sup.stderr).toBe(0);
    const t = JSON.parse((await cli(db, ['--json', 'show', id])).stdout) as { task?: { status: string; result: unknown }; status?: string; result?: unknown };
    expect(t.task ?? t).toMatchObject({ status: 'done', result: { ok: true } });
  });
});
