import { afterEach, describe, expect, it } from 'vitest';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Cleanups, FIXTURES, ROOT, cleanEnv, cli, exited, run } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

// What only the daemon needs: its HTTP server, metrics and logger.
const DAEMON_ONLY = ['fastify', 'prom-client', 'pino'];
// What only the portable process backend needs (loaded at its first use, never on Linux's fast path).
const PORTABLE_ONLY = ['pidusage', 'tree-kill', 'execa'];
// The board's backends: loaded by a worker only when it writes the board itself (the channel down).
const BACKENDS = ['better-sqlite3', 'pg'];

const packagesIn = (urls: string[]): Set<string> =>
  new Set(urls.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((p): p is string => p !== undefined));

/** The third-party packages and workspace modules a CLI call loads (ESM resolutions). */
async function loaded(db: string, args: string[]): Promise<{ code: number | null; packages: Set<string>; urls: string[] }> {
  const file = join(cleanups.tempDir('ks-imports-'), 'imports.txt');
  const r = await run(process.execPath, ['--import', join(FIXTURES, 'cli/record-imports.mjs'), CLI, '--db', db, ...args], {
    env: cleanEnv({ RECORD_IMPORTS: file }),
  });
  const urls = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : [];
  return { code: r.code, packages: packagesIn(urls), urls };
}

describe('CLI start-up', () => {
  it('a worker verb, status and list load none of the daemon\'s modules; run does (the recorder sees them), but not the portable backend\'s', async () => {
    const db = join(cleanups.tempDir('ks-startup-'), 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    for (const args of [['worker', 'heartbeat', '--help'], ['status', '--help'], ['--json', 'list'], ['status']]) {
      const r = await loaded(db, args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.urls.length, args.join(' ')).toBeGreaterThan(10);
      expect([...DAEMON_ONLY, ...PORTABLE_ONLY].filter((p) => r.packages.has(p)), args.join(' ')).toEqual([]);
      expect(r.urls.filter((u) => u.includes('/supervisor/dist/supervisor.js')), args.join(' ')).toEqual([]);
      if (args[0] === 'worker') expect(BACKENDS.filter((p) => r.packages.has(p))).toEqual([]);
    }
    // The daemon's command loads them: a bad flag is refused after its module is imported.
    const daemon = await loaded(db, ['run', '--no-such-flag']);
    expect(daemon.code).toBe(2);
    expect(DAEMON_ONLY.filter((p) => !daemon.packages.has(p))).toEqual([]);
    expect(PORTABLE_ONLY.filter((p) => daemon.packages.has(p))).toEqual([]);
  });

  it('workers reporting through the channel load neither better-sqlite3 nor pg: a Node worker (runWorker) and a shell worker (the worker CLI)', async () => {
    const dir = cleanups.tempDir('ks-startup-');
    const db = join(dir, 'kanban.db');
    const record = join(FIXTURES, 'cli/record-imports.mjs');
    const files = { node: join(dir, 'node.txt'), sh: join(dir, 'sh.txt') };
    const env = (file: string) => ['--env', `NODE_OPTIONS=--import ${record}`, '--env', `RECORD_IMPORTS=${file}`];
    expect((await cli(db, ['skill', 'add', 'node', ...env(files.node), '--env', 'MODE=return', '--', process.execPath, join(FIXTURES, 'runtimes/skill.mjs')])).code).toBe(0);
    expect((await cli(db, ['skill', 'add', 'sh', ...env(files.sh), '--', 'sh', join(FIXTURES, 'runtimes/count.sh')])).code).toBe(0);
    const ids = [];
    for (const skill of ['node', 'sh']) ids.push(JSON.parse((await cli(db, ['--json', 'add', '--skill', skill, '--payload', '{"result":{"ok":1}}'])).stdout).id as string);
    const sup = cleanups.startCli(db, ['run', '--until-idle'], { TICK_INTERVAL_MS: '100', LOG_LEVEL: 'info' });
    expect((await exited(sup)).code, sup.output()).toBe(0);
    for (const id of ids) expect(JSON.parse((await cli(db, ['--json', 'show', id])).stdout).status, sup.output()).toBe('done');
    for (const [kind, file] of Object.entries(files)) {
      const urls = readFileSync(file, 'utf8').trim().split('\n');
      expect(urls.some((u) => u.includes('/worker-runtime/dist/')), kind).toBe(true);
      expect(BACKENDS.filter((p) => packagesIn(urls).has(p)), kind).toEqual([]);
    }
  });

  it('an unknown option before any command is named as an option, an unknown word as a command (exit 2, nothing created)', async () => {
    const db = join(cleanups.tempDir('ks-startup-'), 'kanban.db');
    const opt = await cli(db, ['--bogus']);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain('unknown option "--bogus" (see kanban-supervisor --help)');
    const word = await cli(db, ['frobnicate']);
    expect(word.code).toBe(2);
    expect(word.stderr).toContain('unknown command "frobnicate"');
    expect(existsSync(db)).toBe(false);
  });

  it('every help text fits 100 columns', async () => {
    const db = join(cleanups.tempDir('ks-startup-'), 'kanban.db');
    const topics = ['', 'run', 'status', 'init', 'skill', 'add', 'list', 'show', 'runs', 'logs', 'cancel', 'block', 'unblock', 'retry', 'check', 'recover', 'migrate', 'link', 'prune'];
    const texts = await Promise.all(topics.map((t) => cli(db, t ? [t, '--help'] : ['--help'])));
    for (const [i, r] of texts.entries()) {
      expect(r.code, topics[i]).toBe(0);
      expect(r.stdout.split('\n').filter((l) => l.length > 100), topics[i]).toEqual([]);
    }
  });

  it('a command whose module is missing (a partial build) says the build is incomplete, exit 1, no stack', async () => {
    // A copy of the CLI's build inside its package (so that its packages resolve), one command's module removed.
    const copy = join(ROOT, 'supervisor', `dist-partial-${process.pid}`);
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }));
    cpSync(join(ROOT, 'supervisor', 'dist'), copy, { recursive: true });
    rmSync(join(copy, 'commands', 'tasks.js'));
    const db = join(cleanups.tempDir('ks-startup-'), 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    const r = await run(process.execPath, [join(copy, 'cli.js'), '--db', db, 'list'], { env: cleanEnv() });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('part of the build is missing: run `npm run build`');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // The other commands still work from it.
    expect((await run(process.execPath, [join(copy, 'cli.js'), '--db', db, 'status'], { env: cleanEnv() })).code).toBe(0);
  });
});
