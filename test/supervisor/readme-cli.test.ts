/**
 * The README's CLI examples, through `npx kanban-supervisor` as a reader runs them (never through
 * supervisor/dist/cli.js): the command npm linked into node_modules/.bin must work.
 *
 * Convention (README.md):
 * - Runnable examples are the ```sh blocks of the section `## Quick start` (up to the next `## `).
 *   They run verbatim, in order, in one bash (`set -euo pipefail`), from the repository root, with
 *   `KANBAN_DB` set to a fresh temporary board. Every command there is `npx kanban-supervisor …`
 *   (`npm install` / `npm ci` lines are skipped: the suite runs after the install). Afterwards every
 *   task on the board must be `done`.
 * - Synopsis lines are lines of any fenced block that start with `kanban-supervisor `: each command
 *   they name (and each `|` alternative) must answer `kanban-supervisor COMMAND --help`, run as the
 *   command npm linked into node_modules/.bin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, npmEnv, run, type CmdResult } from '../src/common.js';
import { DAEMON_NODE_FLAGS } from '../src/sup.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

interface Block { lang: string; lines: string[] }

/** Fenced code blocks of a markdown text. */
function blocks(md: string): Block[] {
  const out: Block[] = [];
  let cur: Block | null = null;
  for (const line of md.split('\n')) {
    const fence = /^(```+|~~~+)\s*([\w-]*)/.exec(line);
    if (fence) {
      if (cur) {
        out.push(cur);
        cur = null;
      } else {
        cur = { lang: fence[2]!.toLowerCase(), lines: [] };
      }
      continue;
    }
    cur?.lines.push(line);
  }
  return out;
}

/** The text of the `## TITLE` section, up to the next `## ` heading (null when there is none). */
function section(md: string, title: string): string | null {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => l.trim().toLowerCase() === `## ${title.toLowerCase()}`);
  if (start < 0) return null;
  const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** Shell commands of a block: continuation lines joined, comments and blank lines dropped. */
function commands(lines: string[]): string[] {
  const out: string[] = [];
  let pending = '';
  for (const raw of lines) {
    const line = pending + raw;
    if (/\\$/.test(line)) {
      pending = line.slice(0, -1);
      continue;
    }
    pending = '';
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    out.push(line.trim());
  }
  return out;
}

const npx = (args: string[], env: NodeJS.ProcessEnv): Promise<CmdResult> =>
  run('npx', ['kanban-supervisor', ...args], { cwd: ROOT, env, timeoutMs: 120_000 });
const fail = (what: string, r: CmdResult): string => `${what} exited ${r.code ?? r.signal}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'ks-readme-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('README CLI examples through npx kanban-supervisor', () => {
  it('npx kanban-supervisor is the linked bin, and --help works', async () => {
    const r = await npx(['--help'], npmEnv());
    expect(r.code, fail('npx kanban-supervisor --help', r)).toBe(0);
    expect(r.stdout).toMatch(/^Usage: kanban-supervisor/);
  });

  it('the linked bin, `npm start` and the bench run the daemon with the same Node flags (a small young generation)', async () => {
    const shebang = readFileSync(join(ROOT, 'supervisor', 'bin', 'kanban-supervisor.js'), 'utf8').split('\n')[0]!;
    expect(shebang).toBe(`#!/usr/bin/env -S node ${DAEMON_NODE_FLAGS.join(' ')} --`);
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
    expect(start).toContain(`node ${DAEMON_NODE_FLAGS.join(' ')} supervisor/dist/cli.js run`);
    // Through the link, the flag reaches V8: its new space is 2 × 2 MB semi-spaces, not 2 × 16 MB.
    const bin = join(ROOT, 'node_modules', '.bin', 'kanban-supervisor');
    const probe = await run(bin, ['--help'], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '--require ' + join(ROOT, 'test', 'fixtures', 'ops', 'new-space.cjs') }, timeoutMs: 30_000 });
    expect(probe.code, fail('kanban-supervisor --help with the probe', probe)).toBe(0);
    expect(Number(/new_space (\d+)/.exec(probe.stderr)?.[1]), probe.stderr).toBeLessThanOrEqual(4 * 1048576);
  });

  it('the Quick start runs verbatim and leaves every task done', async () => {
    const text = section(README, 'Quick start');
    expect(text, 'README.md has a "## Quick start" section').not.toBeNull();
    const cmds = blocks(text!).filter((b) => b.lang === 'sh').flatMap((b) => commands(b.lines));
    const runnable = cmds.filter((c) => !/^npm (install|ci)\b/.test(c));
    expect(runnable.length, 'the Quick start has npx kanban-supervisor examples').toBeGreaterThan(0);
    for (const c of runnable) {
      expect(c, 'a Quick start command the test can run (only npx kanban-supervisor …)').toMatch(/^npx kanban-supervisor( |$)/);
    }
    const db = join(tmp, 'quick-start', 'kanban.db');
    const env = npmEnv({ KANBAN_DB: db });
    const script = ['set -euo pipefail', ...runnable.map((c) => `echo "+ ${c.replace(/["\\$`]/g, '\\$&')}" >&2\n${c}`)].join('\n');
    const r = await run('bash', ['-c', script], { cwd: ROOT, env, timeoutMs: 180_000 });
    expect(r.code, fail('the Quick start', r)).toBe(0);

    const listed = await npx(['--json', 'list'], env);
    expect(listed.code, fail('list', listed)).toBe(0);
    const tasks = JSON.parse(listed.stdout) as { id: string; status: string }[];
    expect(tasks.length, 'the Quick start adds tasks').toBeGreaterThan(0);
    expect(tasks.filter((t) => t.status !== 'done'), `tasks not done after the Quick start\n${r.stderr.slice(-3000)}`).toEqual([]);
  }, 240_000);

  it('every command of the README synopsis answers --help', async () => {
    const synopsis = blocks(README).flatMap((b) => b.lines).filter((l) => l.startsWith('kanban-supervisor '));
    expect(synopsis.length, 'README.md has synopsis lines (kanban-supervisor …) in a fenced block').toBeGreaterThan(0);
    const names = new Set<string>();
    for (const line of synopsis) {
      for (const alt of line.replace(/^kanban-supervisor /, '').split(/\s\|\s/)) {
        const word = alt.trim().split(/\s+/).find((w) => !/^[[\-<]/.test(w));
        if (word && /^[a-z][a-z-]*$/.test(word)) names.add(word);
      }
    }
    expect(names.size).toBeGreaterThan(3);
    const env = npmEnv();
    const list = [...names];
    // The command npm linked (what npx runs; npx itself was shown above), without npm's start-up each time.
    const bin = join(ROOT, 'node_modules/.bin/kanban-supervisor');
    for (let i = 0; i < list.length; i += 4) {
      await Promise.all(list.slice(i, i + 4).map(async (name) => {
        const r = await run(bin, [name, '--help'], { cwd: ROOT, env, timeoutMs: 60_000 });
        expect(r.code, fail(`kanban-supervisor ${name} --help`, r)).toBe(0);
        expect(r.stdout, `${name} --help`).toMatch(new RegExp(`usage: kanban-supervisor ${name}\\b`, 'i'));
      }));
    }
  }, 240_000);
});
