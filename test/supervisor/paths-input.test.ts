// The board path and the input of the CLI (issue 11, items 2, 10, 13 and 14):
// - one board, one owner, whatever path reaches it (a symlinked board file leads to the owner's
//   lock; a hard-linked board file is refused);
// - a limit no worker would accept is refused at `skill add`, by the CLI and by the board;
// - board text cannot inject terminal escapes or forge lines in human output;
// - a --db that cannot be a board (a directory, a missing folder, a file this user cannot write)
//   is a configuration error naming the path, and `run` creates a board only where `init` would.
import { afterEach, describe, expect, it } from 'vitest';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BoardInputError, openBoard } from '@kanban-supervisor/board';
import { readWorkerEnv } from '@kanban-supervisor/worker-runtime';
import { CLI, Cleanups, FIXTURES, cli, exited, pidAlive, pidsIn, run, startProcess, waitFor, type CmdResult } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' };

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const temp = () => cleanups.tempDir('ks-paths-');

/** A supervisor on `db` with two sleeping workers; returns it, its workers' pids and the task ids. */
async function ownerWithWorkers(dir: string, db: string) {
  const pids = join(dir, 'pids.txt');
  expect((await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '120'])).code).toBe(0);
  const ids = [];
  for (let i = 0; i < 2; i++) ids.push((await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim());
  const owner = startProcess(process.execPath, [CLI, '--db', db, 'run'], FAST);
  cleanups.push(async () => {
    if (owner.exitCode === null && owner.signalCode === null) {
      owner.kill('SIGTERM');
      const t = setTimeout(() => owner.kill('SIGKILL'), 15_000);
      await exited(owner);
      clearTimeout(t);
    }
  });
  const workers = await waitFor(() => {
    const listed = pidsIn(pids);
    return listed.length >= 2 ? listed : null;
  });
  return { owner, workers, ids };
}

/** The owner runs on, its workers live, and each task still has its one run, running and unjudged. */
async function expectUntouched(db: string, owner: { exitCode: number | null; signalCode: string | null; output: () => string }, workers: number[], ids: string[]) {
  expect(owner.exitCode, owner.output()).toBeNull();
  expect(owner.signalCode).toBeNull();
  for (const pid of workers) expect(pidAlive(pid), `worker ${pid}`).toBe(true);
  // Read through the library (a hard-linked board is refused by the CLI, not by a reader given its path).
  const b = await openBoard(db, { readonly: true });
  try {
    for (const id of ids) {
      const d = (await b.showTask(id))!;
      expect(d.task.status).toBe('running');
      expect(d.runs).toHaveLength(1);
      expect(d.runs[0]).toMatchObject({ status: 'running', outcome: null });
      expect(d.task.consecutiveFailures).toBe(0);
    }
  } finally {
    await b.close();
  }
  expect(owner.output()).not.toMatch(/"event":"(crash_detected|worker_exited|run_accounted)"/);
}

describe('one board, one owner, whatever path reaches it', () => {
  it('a symlinked board file leads to the owner lock: a second run through it exits 4 naming the owner, whose workers are untouched', async () => {
    const dir = temp();
    mkdirSync(join(dir, 'board'));
    const db = join(dir, 'board', 'k.db');
    const alias = join(dir, 'alias.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    symlinkSync('board/k.db', alias);
    const { owner, workers, ids } = await ownerWithWorkers(dir, db);

    const second = await run(process.execPath, [CLI, '--db', alias, 'run'], { env: { ...process.env, ...FAST }, timeoutMs: 20_000 });
    expect(second.code, second.stderr).toBe(4);
    expect(second.stderr).toContain(`board ${db} is owned by supervisor pid ${owner.pid}`);
    // Nothing of the board's was created next to the link.
    expect(readdirSync(dir).filter((f) => f.startsWith('alias.db'))).toEqual(['alias.db']);
    await expectUntouched(db, owner, workers, ids);
  });

  it('a hard-linked board file is refused (exit 2 naming the path and its links) by run and by every command, while the owner runs on untouched', async () => {
    const dir = temp();
    mkdirSync(join(dir, 'board'));
    mkdirSync(join(dir, 'other'));
    const db = join(dir, 'board', 'k.db');
    const other = join(dir, 'other', 'k.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    const { owner, workers, ids } = await ownerWithWorkers(dir, db);
    linkSync(db, other);

    const second = await run(process.execPath, [CLI, '--db', other, 'run'], { env: { ...process.env, ...FAST }, timeoutMs: 20_000 });
    expect(second.code, second.stderr).toBe(2);
    expect(second.stderr).toContain(`board ${other} has 2 hard links`);
    // Writes through the other name would go to a second -wal: refused too.
    const add = await cli(other, ['add', '--skill', 'sleeper']);
    expect(add.code).toBe(2);
    expect(add.stderr).toContain(`board ${other} has 2 hard links`);
    expect(readdirSync(join(dir, 'other'))).toEqual(['k.db']);
    await expectUntouched(db, owner, workers, ids);
  });
});

describe('limits no worker would accept are refused at skill add', () => {
  it('--reclaim-grace 40000000 and --heartbeat-timeout 1e9 exit 2 naming the flag and the range; nothing is stored; the board refuses them too', async () => {
    const dir = temp();
    const db = join(dir, 'k.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    const grace = await cli(db, ['skill', 'add', 'slow', '--reclaim-grace', '40000000', '--', 'true']);
    expect(grace.code, grace.stderr).toBe(2);
    expect(grace.stderr).toContain('--reclaim-grace must be a number from 0 to 86400, got "40000000"');
    const hb = await cli(db, ['skill', 'add', 'slow', '--heartbeat-timeout', '1e9', '--', 'true']);
    expect(hb.code, hb.stderr).toBe(2);
    expect(hb.stderr).toContain('--heartbeat-timeout must be a number from 0 to 31536000, got "1e9"');
    expect(JSON.parse((await cli(db, ['--json', 'skill', 'list'])).stdout)).toEqual([]);

    // The second line: the board itself refuses what the runtime would refuse.
    const b = await openBoard(db);
    try {
      await expect(b.putSkill({ name: 'slow', argv: ['true'], reclaimGraceSeconds: 40_000_000 })).rejects.toThrow(BoardInputError);
      await expect(b.putSkill({ name: 'slow', argv: ['true'], heartbeatTimeoutSeconds: 1e9 })).rejects.toThrow(/heartbeat timeout must be a number from 0 to 31536000, got 1000000000/);
      expect(await b.listSkills()).toEqual([]);
    } finally {
      await b.close();
    }
    // And what `skill add` accepts at the top of each range, a worker accepts.
    const top = await cli(db, ['skill', 'add', 'slow', '--reclaim-grace', '86400', '--heartbeat-timeout', '31536000', '--', 'true']);
    expect(top.code, top.stderr).toBe(0);
    const env = readWorkerEnv({ KANBAN_DB: db, KANBAN_TASK_ID: 't', KANBAN_RUN_ID: 'r', KANBAN_RUN_TOKEN: 'x', KANBAN_RECLAIM_GRACE_SECONDS: '86400', KANBAN_HEARTBEAT_TIMEOUT_SECONDS: '31536000' });
    expect(env).toMatchObject({ reclaimGraceSeconds: 86400, heartbeatTimeoutSeconds: 31_536_000 });
  });
});

describe('human output escapes board text', () => {
  it('a title with ESC, a newline and a tab shows escaped in list and show; --json keeps the raw text', async () => {
    const dir = temp();
    const db = join(dir, 'k.db');
    await cli(db, ['skill', 'add', 's', '--', 'true']);
    const title = 'red\x1b[31mX\nforged line\tcol';
    const id = (await cli(db, ['add', '--skill', 's', '--title', title, '--payload', JSON.stringify({ csi: '\u009b2J' })])).stdout.trim();

    const list = await cli(db, ['list']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toMatch(/[\x1b\u009b]/);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.split('\t')).toHaveLength(4);
    expect(lines[0]).toContain('red\\x1b[31mX\\nforged line\\tcol');

    const show = await cli(db, ['show', id]);
    expect(show.code).toBe(0);
    expect(show.stdout).not.toMatch(/[\x1b\u009b]/);
    expect(show.stdout.split('\n')[0]).toBe(`${id}  red\\x1b[31mX\\nforged line\\tcol`);
    expect(show.stdout).toContain('payload {"csi":"\\x9b2J"}');

    expect(JSON.parse((await cli(db, ['--json', 'list'])).stdout)[0].title).toBe(title);
    expect(JSON.parse((await cli(db, ['--json', 'show', id])).stdout).payload).toEqual({ csi: '\u009b2J' });
  });
});

describe('a --db that cannot be a board is a configuration error naming the path', () => {
  it('--db a directory: init, run and list exit 2 naming it; run never quarantines it', async () => {
    const dir = temp();
    const d = join(dir, 'boards');
    mkdirSync(d);
    for (const args of [['init'], ['run', '--until-idle'], ['list'], ['status']]) {
      const r = await run(process.execPath, [CLI, '--db', d, ...args], { env: { ...process.env, ...FAST }, timeoutMs: 20_000 });
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`board ${d} is a directory`);
    }
    // No owner lock, status file or logs next to it: nothing ran, nothing was quarantined.
    expect(readdirSync(dir)).toEqual(['boards']);
    expect(readdirSync(d)).toEqual([]);
  });

  it('--db in a missing folder: run refuses like list does (exit 2 naming the path) and creates nothing; init creates it', async () => {
    const dir = temp();
    const db = join(dir, 'missing', 'k.db');
    const list = await cli(db, ['list']);
    expect(list.code, list.stderr).toBe(2);
    expect(list.stderr).toContain(`board ${db} does not exist`);
    const r = await run(process.execPath, [CLI, '--db', db, 'run', '--until-idle'], { env: { ...process.env, ...FAST }, timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`board ${db} does not exist, nor does its folder ${join(dir, 'missing')}`);
    expect(existsSync(join(dir, 'missing'))).toBe(false);
    expect((await cli(db, ['init'])).code).toBe(0);
    const after = await run(process.execPath, [CLI, '--db', db, 'run', '--until-idle'], { env: { ...process.env, ...FAST }, timeoutMs: 20_000 });
    expect(after.code, after.stderr).toBe(0);
  });

  // Root ignores permissions: as root, the commands run as nobody (65534) in a folder it owns.
  const ROOTED = process.getuid?.() === 0;
  const AS = ROOTED ? { uid: 65534, gid: 65534 } : {};
  const nobodyCanRun = !ROOTED || spawnSync(process.execPath, [CLI, '--help'], { ...AS, timeout: 30_000 }).status === 0;
  it.skipIf(!nobodyCanRun)('a read-only board file: writes and run exit 2 naming the path; reads still work', async () => {
    const dir = cleanups.tempDir('ks-paths-ro-');
    if (ROOTED) chownSync(dir, 65534, 65534);
    const db = join(dir, 'k.db');
    const as = (args: string[]): Promise<CmdResult> =>
      new Promise((resolve) => {
        execFile(process.execPath, [CLI, '--db', db, ...args], { ...AS, env: { ...process.env, ...FAST }, timeout: 20_000 }, (err, stdout, stderr) => {
          const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
          resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout: String(stdout), stderr: String(stderr) });
        });
      });
    expect((await as(['init'])).code).toBe(0);
    expect((await as(['skill', 'add', 's', '--', 'true'])).code).toBe(0);
    expect((await as(['add', '--skill', 's'])).code).toBe(0);
    chmodSync(db, 0o444);
    const add = await as(['add', '--skill', 's']);
    expect(add.code, add.stderr).toBe(2);
    expect(add.stderr).toContain(`board ${db}`);
    expect(add.stderr).toMatch(/not writable|cannot be used/);
    const sup = await as(['run', '--until-idle']);
    expect(sup.code, sup.stderr).toBe(2);
    expect(sup.stderr).toContain(`board ${db}`);
    const list = await as(['--json', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });
});
