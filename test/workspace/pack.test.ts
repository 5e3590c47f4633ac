/**
 * The packages as a skill project gets them: every publishable package is packed (`npm pack`, which
 * runs its `prepack` build), then installed from those tarballs alone into a fresh project in a
 * temporary folder outside the repository. In that project a TypeScript skill (type-checked with
 * tsc: the published types resolve), a Python skill and a shell skill (both through the worker CLI,
 * `$KANBAN_CLI`) are registered with the installed CLI (`npx kanban-supervisor skill add …`), the
 * installed supervisor runs `--until-idle`, and every task is `done` with its skill's result.
 *
 * Our packages never come from a registry: the project maps the @kanban-supervisor scope to a closed
 * port, pins our names to the tarballs (`overrides`), and the npm http log is checked. Third-party
 * packages come from the npm cache or registry (`--prefer-offline`). better-sqlite3's own install
 * script runs for real, but finds its binary as a local prebuild (prebuild-install's
 * `npm_config_better_sqlite3_local_prebuilds`) made from the repository's already built copy:
 * compiling SQLite again would take minutes, and downloading prebuilt binaries may not be possible.
 * The reaper's native addon is compiled by node-gyp from the shipped source at install.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ROOT, npmEnv, run, type CmdResult } from '../src/common.js';

/** The publishable packages: folder → package name. */
const PACKAGES: Record<string, string> = {
  policies: '@kanban-supervisor/policies',
  board: '@kanban-supervisor/board',
  reaper: '@kanban-supervisor/reaper',
  'worker-runtime': '@kanban-supervisor/worker-runtime',
  web: '@kanban-supervisor/web',
  supervisor: 'kanban-supervisor',
};
const OURS = new Set(Object.values(PACKAGES));

/** Files each tarball must carry to work once installed (beyond dist/index.js and LICENSE). */
const REQUIRED: Record<string, string[]> = {
  policies: [],
  board: ['dist/backup-main.js'],
  reaper: ['binding.gyp', 'native/subreaper.c'],
  'worker-runtime': ['dist/cli.js', 'dist/worker-cli-main.js'],
  web: ['public/index.html', 'public/app.js', 'public/style.css'],
  supervisor: ['bin/kanban-supervisor.js', 'dist/cli.js'],
};
/** Tarball size bound: they stay small (a regression guard, not a target). */
const MAX_TARBALL_BYTES = 200 * 1024;

interface PackedFile { path: string; size: number; mode: number }
interface Packed { name: string; version: string; filename: string; size: number; unpackedSize: number; entryCount: number; files: PackedFile[] }

const readJson = (path: string): any => JSON.parse(readFileSync(path, 'utf8'));
const fail = (what: string, r: CmdResult): string => `${what} exited ${r.code ?? r.signal}\n--- stdout\n${r.stdout.slice(-6000)}\n--- stderr\n${r.stderr.slice(-6000)}`;

let work: string;
let tarballs: string;
let proj: string;
let packed: Packed[] = [];
let installed = false;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'ks-pack-'));
  tarballs = join(work, 'tarballs');
  proj = join(work, 'my-skills');
  mkdirSync(tarballs);
  mkdirSync(proj);
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('packages a skill project installs', () => {
  it('internal dependencies are semver ranges matching the workspace versions', () => {
    const versions = new Map<string, string>();
    for (const [dir, name] of Object.entries(PACKAGES)) {
      const pkg = readJson(join(ROOT, dir, 'package.json'));
      expect(pkg.name).toBe(name);
      versions.set(name, pkg.version);
    }
    for (const dir of Object.keys(PACKAGES)) {
      const pkg = readJson(join(ROOT, dir, 'package.json'));
      for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
        for (const [dep, range] of Object.entries<string>(pkg[field] ?? {})) {
          if (!OURS.has(dep)) continue;
          // Released in lockstep: the exact workspace version (a plain semver version is a range).
          expect(`${dir} ${field} ${dep}@${range}`).toBe(`${dir} ${field} ${dep}@${versions.get(dep)}`);
        }
      }
    }
  });

  it('npm pack builds every package and ships only what runs', async () => {
    const started = Date.now();
    const r = await run('npm', ['pack', '--json', '--pack-destination', tarballs, ...Object.keys(PACKAGES).flatMap((d) => ['-w', d])], {
      cwd: ROOT,
      env: npmEnv(),
      timeoutMs: 300_000,
    });
    expect(r.code, fail('npm pack', r)).toBe(0);
    packed = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as Packed[];
    expect(packed.map((p) => p.name).sort()).toEqual([...OURS].sort());

    const rows = packed.map((p) => `  ${p.name.padEnd(34)} ${(p.size / 1024).toFixed(1).padStart(6)} kB packed  ${(p.unpackedSize / 1024).toFixed(1).padStart(6)} kB unpacked  ${String(p.entryCount).padStart(3)} files`);
    console.log(`tarballs (npm pack, ${Date.now() - started} ms):\n${rows.join('\n')}`);

    for (const [dir, name] of Object.entries(PACKAGES)) {
      const p = packed.find((x) => x.name === name)!;
      const paths = p.files.map((f) => f.path);
      const pkg = readJson(join(ROOT, dir, 'package.json'));
      // Publishable, described, built by prepack, typed.
      expect(pkg.private, `${dir}/package.json "private"`).toBeFalsy();
      expect(pkg.license, `${dir} license`).toBe('MIT');
      expect(pkg.engines?.node, `${dir} engines`).toBe('>=20.19');
      expect(pkg.repository?.directory, `${dir} repository`).toBe(dir);
      expect(pkg.description, `${dir} description`).toBeTruthy();
      expect(pkg.keywords?.length, `${dir} keywords`).toBeGreaterThan(0);
      expect(pkg.scripts?.prepack, `${dir} prepack`).toMatch(/tsc -b/);
      expect(pkg.types).toBe('./dist/index.d.ts');
      expect(pkg.exports['.']).toEqual({ types: './dist/index.d.ts', default: './dist/index.js' });
      // What must be there.
      for (const f of ['package.json', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', ...REQUIRED[dir]!]) {
        expect(paths, `${name} lacks ${f}`).toContain(f);
      }
      for (const target of Object.values<unknown>(pkg.exports)) {
        const file = typeof target === 'string' ? target : (target as { default: string }).default;
        expect(paths, `${name} export ${file}`).toContain(file.replace(/^\.\//, ''));
      }
      // What must not: tests, boards, sources, source maps, build info, native build output.
      const unwanted = paths.filter((f) =>
        /(^|\/)(test|tests|__tests__|src|build|node_modules)\//.test(f) ||
        /\.(test|spec)\.[cm]?[jt]s$/.test(f) ||
        /\.db(-wal|-shm)?$|\.sqlite$|\.map$|tsbuildinfo|\.log$|\.node$|\.tgz$/.test(f) ||
        (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)),
      );
      expect(unwanted, `${name} ships files it must not`).toEqual([]);
      // Every shipped module has its source: no stale output of a removed file (prepack prunes them).
      for (const f of paths.filter((x) => /^dist\/.*\.js$/.test(x))) {
        expect(existsSync(join(ROOT, dir, f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'))), `${name} ships stale ${f}`).toBe(true);
      }
      expect(p.size, `${name} tarball size`).toBeLessThan(MAX_TARBALL_BYTES);
    }
    // Executables keep their mode: the bin, and the CLI the supervisor hands workers as $KANBAN_CLI.
    const sup = packed.find((x) => x.name === 'kanban-supervisor')!;
    for (const f of ['bin/kanban-supervisor.js', 'dist/cli.js']) {
      expect(sup.files.find((x) => x.path === f)!.mode & 0o111, `${f} executable in the tarball`).toBe(0o111);
    }
    expect(readJson(join(ROOT, 'supervisor/package.json')).bin).toEqual({ 'kanban-supervisor': './bin/kanban-supervisor.js' });
  }, 300_000);

  it('installs from the tarballs alone in a fresh project outside the repository', async () => {
    expect(packed.length, 'the pack test ran').toBe(Object.keys(PACKAGES).length);
    expect(relative(ROOT, proj).startsWith('..'), `${proj} is outside ${ROOT}`).toBe(true);

    // better-sqlite3: its install script (prebuild-install) finds this local prebuild of the same version.
    const rootRequire = createRequire(join(ROOT, 'board', 'package.json'));
    const sqliteDir = join(rootRequire.resolve('better-sqlite3/package.json'), '..');
    const sqliteVersion: string = readJson(join(sqliteDir, 'package.json')).version;
    const prebuilds = join(work, 'prebuilds');
    mkdirSync(prebuilds);
    const prebuild = join(prebuilds, `better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`);
    const tar = await run('tar', ['-czf', prebuild, '-C', sqliteDir, 'build/Release/better_sqlite3.node']);
    expect(tar.code, fail('tar', tar)).toBe(0);

    const file = (name: string): string => join(tarballs, packed.find((p) => p.name === name)!.filename);
    const dependencies: Record<string, string> = {};
    const overrides: Record<string, string> = { 'better-sqlite3': sqliteVersion };
    for (const name of OURS) {
      dependencies[name] = `file:${relative(proj, file(name))}`;
      // Our packages depend on each other by version: pin those edges to the tarballs too, so npm
      // never looks the names up in a registry.
      if (name !== 'kanban-supervisor') overrides[name] = `$${name}`;
    }
    const rootPkg = readJson(join(ROOT, 'package.json'));
    writeFileSync(join(proj, 'package.json'), JSON.stringify({
      name: 'my-skills',
      private: true,
      type: 'module',
      dependencies,
      devDependencies: { '@types/node': rootPkg.devDependencies['@types/node'] },
      overrides,
      // The two native builds this project allows (npm matches a tarball by its resolved path).
      allowScripts: { 'better-sqlite3': true, [`file:${file('@kanban-supervisor/reaper')}`]: true },
    }, null, 2));
    // A registry for our scope that refuses every connection at once.
    writeFileSync(join(proj, '.npmrc'), '@kanban-supervisor:registry=http://127.0.0.1:9/\nfetch-retries=0\n');

    const started = Date.now();
    const r = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel=http'], {
      cwd: proj,
      env: npmEnv({ npm_config_better_sqlite3_local_prebuilds: prebuilds }),
      timeoutMs: 600_000,
    });
    console.log(`npm install in ${proj}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(r.code, fail('npm install', r)).toBe(0);
    const log = `${r.stdout}\n${r.stderr}`;
    // No registry request for any of our packages (only cache reads of the tarballs).
    const ourFetches = log.split('\n').filter((l) => /http fetch/.test(l) && /kanban-supervisor/.test(l));
    expect(ourFetches, 'registry requests for our packages').toEqual([]);
    const lock = readJson(join(proj, 'package-lock.json'));
    for (const name of OURS) {
      expect(lock.packages[`node_modules/${name}`]?.resolved, `${name} in the lockfile`).toMatch(/^file:.*\.tgz$/);
    }
    expect(existsSync(join(proj, 'node_modules/.bin/kanban-supervisor')), 'node_modules/.bin/kanban-supervisor').toBe(true);
    // The reaper's install script compiled its addon from the shipped source.
    expect(existsSync(join(proj, 'node_modules/@kanban-supervisor/reaper/build/Release/subreaper.node')), `reaper addon built at install\n${log.slice(-4000)}`).toBe(true);
    installed = true;
  }, 600_000);

  it('a TypeScript, a Python and a shell skill run through the installed CLI until idle', async () => {
    expect(installed, 'the install test passed').toBe(true);
    const env = npmEnv();
    // `npx kanban-supervisor` where a user would type it (registering skills, running the supervisor);
    // the same installed command straight from node_modules/.bin for the bookkeeping around it
    // (npx adds a start-up of npm itself, seconds on a loaded machine).
    const timed = async (cmd: string, args: string[], label: string): Promise<CmdResult> => {
      const t0 = Date.now();
      const r = await run(cmd, args, { cwd: proj, env, timeoutMs: 120_000 });
      console.log(`${label} ${args.join(' ')}: ${Date.now() - t0} ms`);
      expect(r.code, fail(`${label} ${args.join(' ')}`, r)).toBe(0);
      return r;
    };
    const npx = (...args: string[]): Promise<CmdResult> => timed('npx', ['kanban-supervisor', ...args], 'npx');
    const ks = (...args: string[]): Promise<CmdResult> => timed(join(proj, 'node_modules/.bin/kanban-supervisor'), args, 'kanban-supervisor');

    mkdirSync(join(proj, 'skills'));
    writeFileSync(join(proj, 'skills/summarize.ts'), `import { runWorker } from '@kanban-supervisor/worker-runtime';

runWorker(async (ctx) => {
  const { text } = ctx.task.payload as { text: string };
  await ctx.heartbeat({ step: 'counting' });
  return { words: text.split(/\\s+/).filter(Boolean).length, chars: text.length };
});

// @ts-expect-error runWorker takes a handler function: this must not type-check, so the types are real (not any)
export const notAHandler: Parameters<typeof runWorker>[0] = 'not a handler';
`);
    writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
        skipLibCheck: false, types: ['node'], rootDir: 'skills', outDir: 'dist',
      },
      include: ['skills'],
    }, null, 2));
    writeFileSync(join(proj, 'skills/shout.py'), `#!/usr/bin/env python3
"""shout: a skill in Python, through the worker CLI ($KANBAN_CLI)."""
import json, os, subprocess

cli = os.environ["KANBAN_CLI"]

def worker(*args):
    return subprocess.run([cli, "worker", *args], check=True, capture_output=True, text=True).stdout

text = worker("payload", "--get", "text").rstrip("\\n")
worker("heartbeat", "--progress", json.dumps({"step": "shouting"}))
worker("complete", "--result", json.dumps({"shout": text.upper(), "cli": cli}))
`);
    writeFileSync(join(proj, 'skills/count.sh'), `#!/bin/sh
# count: a skill in shell, through the worker CLI ($KANBAN_CLI).
set -eu
text=$("$KANBAN_CLI" worker payload --get text)
words=$(printf '%s\\n' "$text" | wc -w)
exec "$KANBAN_CLI" worker complete --result "{\\"words\\": $words}"
`);

    // The TypeScript skill type-checks against the installed packages' types, with library checks on.
    const tsc = join(createRequire(join(ROOT, 'package.json')).resolve('typescript/package.json'), '../bin/tsc');
    const built = await run(process.execPath, [tsc, '-p', proj], { cwd: proj, env, timeoutMs: 120_000 });
    expect(built.code, fail('tsc', built)).toBe(0);

    await npx('skill', 'add', 'summarize', '--cwd', proj, '--', 'node', 'dist/summarize.js');
    await npx('skill', 'add', 'shout', '--cwd', proj, '--', 'python3', 'skills/shout.py');
    await npx('skill', 'add', 'count', '--cwd', proj, '--', 'sh', 'skills/count.sh');
    const add = async (skill: string, text: string): Promise<string> =>
      JSON.parse((await ks('--json', 'add', '--skill', skill, '--payload', JSON.stringify({ text }))).stdout).id as string;
    const ids = {
      summarize: await add('summarize', 'the quick brown fox'),
      shout: await add('shout', 'hello there'),
      count: await add('count', 'one two three four'),
    };
    const sup = await npx('run', '--until-idle');
    const tasks = JSON.parse((await ks('--json', 'list')).stdout) as { id: string; status: string; result: any }[];
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const runLog = `${sup.stdout}\n${sup.stderr}`;
    for (const id of Object.values(ids)) expect(byId.get(id)?.status, `task ${id}\n${runLog.slice(-4000)}`).toBe('done');
    expect(byId.get(ids.summarize)!.result).toEqual({ words: 4, chars: 19 });
    expect(byId.get(ids.shout)!.result.shout).toBe('HELLO THERE');
    expect(byId.get(ids.count)!.result).toEqual({ words: 4 });
    // `status` of the installed CLI (its own module, and web's `token` entry point).
    const status = await ks('--json', 'status');
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toHaveProperty('owner');
    // The supervisor that ran them is the installed one: it handed workers its own CLI as $KANBAN_CLI.
    expect(realpathSync(byId.get(ids.shout)!.result.cli)).toBe(realpathSync(join(proj, 'node_modules/kanban-supervisor/dist/cli.js')));
    // With the addon built, no warning about it.
    expect(warnings(runLog).filter((w) => /addon/i.test(w))).toEqual([]);
  }, 300_000);

  it('without the reaper addon, the installed supervisor still runs a task, with one warning', async () => {
    expect(installed, 'the install test passed').toBe(true);
    rmSync(join(proj, 'node_modules/@kanban-supervisor/reaper/build'), { recursive: true, force: true });
    const env = npmEnv();
    const ks = (...args: string[]): Promise<CmdResult> => run(join(proj, 'node_modules/.bin/kanban-supervisor'), args, { cwd: proj, env, timeoutMs: 120_000 });
    const added = await ks('--json', 'add', '--skill', 'count', '--payload', JSON.stringify({ text: 'no addon here' }));
    expect(added.code, fail('add', added)).toBe(0);
    const id = JSON.parse(added.stdout).id as string;
    const sup = await ks('run', '--until-idle');
    expect(sup.code, fail('run --until-idle', sup)).toBe(0);
    const shown = await ks('--json', 'list');
    const task = (JSON.parse(shown.stdout) as { id: string; status: string; result: unknown }[]).find((t) => t.id === id);
    expect(task?.status).toBe('done');
    expect(task?.result).toEqual({ words: 3 });
    const runLog = `${sup.stdout}\n${sup.stderr}`;
    const addonWarnings = warnings(runLog).filter((w) => /addon/i.test(w));
    expect(addonWarnings, runLog.slice(-4000)).toHaveLength(1);
    console.log(`the one warning without the addon: ${addonWarnings[0]}`);
  }, 300_000);
});

/** The warn-level (and worse) lines of a supervisor's log, JSON lines (stdout is not a terminal) or not. */
function warnings(log: string): string[] {
  return log.split('\n').filter((l) => {
    try {
      return (JSON.parse(l) as { level?: number }).level! >= 40;
    } catch {
      return /\bWARN\b/.test(l);
    }
  });
}
