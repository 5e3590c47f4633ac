/**
 * `pip install ./worker-runtime/python` (the README's command) into a fresh venv gives an importable
 * kanban_worker that runs a skill under a real supervisor, with no PYTHONPATH (issue 19). The install
 * needs no download: the package builds with its own standard-library backend (_build/kanban_build.py),
 * so it runs with `--no-index`, in a venv whose setuptools was removed (as on Python 3.12+, where a
 * venv has none), on a machine without network or package index. A Python without `venv`/`ensurepip`
 * fails here saying so.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Cleanups, ROOT, cli, run } from '../src/common.js';
import { PYTHON } from '../fixtures/runtimes/runtimes.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** Run a step of the set-up; a failure names the step and what the machine lacks. */
async function step(what: string, hint: string, cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, { cwd, timeoutMs: 120_000, env: { ...process.env, PIP_NO_INPUT: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' } });
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${hint}\n${r.stderr || r.stdout}`);
  return r.stdout;
}

describe('the Python package', () => {
  it('installs with pip into a venv, offline and without setuptools, and runs a skill from there', async () => {
    const tmp = cleanups.tempDir('ks-pypkg-');
    const venv = join(tmp, 'venv');
    await step(`${PYTHON} -m venv`, 'this Python has no venv module with ensurepip (Debian/Ubuntu: apt install python3-venv)', PYTHON, ['-m', 'venv', venv], tmp);
    const py = join(venv, 'bin', 'python');
    await step('pip in the venv', 'the venv has no pip (ensurepip missing from this Python)', py, ['-m', 'pip', '--version'], tmp);
    // No setuptools, no index, no network: the package's own backend builds it.
    await step('pip uninstall setuptools', 'pip could not remove setuptools from the fresh venv', py, ['-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'], tmp);
    await step('pip install --no-index ./worker-runtime/python', 'the package must build with the standard library alone', py, ['-m', 'pip', 'install', '--no-index', '--quiet', join(ROOT, 'worker-runtime', 'python')], tmp);
    const where = await step('import kanban_worker', 'the installed package does not import', py, ['-c', 'import kanban_worker, importlib.util; print(kanban_worker.__file__, kanban_worker.PROTOCOL_VERSIONS, importlib.util.find_spec("setuptools"))'], tmp);
    expect(where).toContain(join(venv, 'lib'));
    expect(where).toContain('(1,) None');

    const { db } = cleanups.boardDir('ks-pypkg-');
    expect((await cli(db, ['skill', 'add', 'py', '--env', 'MODE=return', '--', py, join(ROOT, 'test', 'fixtures', 'runtimes', 'skill.py')])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'py', '--payload', '{"result":{"ok":true}}'])).stdout.trim();
    const sup = await cli(db, ['run', '--until-idle'], { TICK_INTERVAL_MS: '100', KANBAN_HTTP: 'off' });
    expect(sup.code, sup.stderr).toBe(0);
    const t = JSON.parse((await cli(db, ['--json', 'show', id])).stdout) as { status: string; result: unknown };
    expect(t).toMatchObject({ status: 'done', result: { ok: true } });
  });
});
