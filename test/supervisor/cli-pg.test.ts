/**
 * The board commands of the CLI on a PostgreSQL board (`--db postgres://…`): init, skill add, add,
 * list, show work; `check` and `recover` are SQLite file tools and say so in one line (exit 2); the
 * password never appears in what the CLI prints.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, run, tempDir } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from '../board/pg/server.js';

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_cli'));

afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

describe('CLI on a PostgreSQL board', () => {
  it('init, skill add, add, list, show work on a postgres:// URL; check and recover refuse in one line (exit 2); no password in any output', async () => {
    const u = new URL(await dbUrl());
    u.searchParams.set('schema', 'cli_board');
    const url = u.href;
    const password = u.password;
    const cli = (args: string[]) => run(process.execPath, [CLI, '--db', url, ...args]);
    const outputs: string[] = [];
    const ok = async (args: string[]) => {
      const r = await cli(args);
      outputs.push(r.stdout, r.stderr);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    // A board that does not exist yet is refused by a command that needs one.
    const missing = await cli(['list']);
    outputs.push(missing.stdout, missing.stderr);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('has no kanban board in schema cli_board');
    expect(await ok(['init'])).toContain('ready');
    await ok(['skill', 'add', 'echo', '--', 'true']);
    const added = JSON.parse(await ok(['--json', 'add', '--skill', 'echo', '--title', 'hello', '--priority', '3']));
    const id = String(added.id ?? added.task?.id);
    expect(id).toMatch(/^t/);
    const list = JSON.parse(await ok(['--json', 'list', '--status', 'ready']));
    expect(JSON.stringify(list)).toContain(id);
    expect(await ok(['show', id])).toContain('hello');
    const unknown = await cli(['add', '--skill', 'nope']);
    outputs.push(unknown.stdout, unknown.stderr);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('unknown skill "nope"');
    for (const cmd of [['check'], ['recover', '--in-place']]) {
      const r = await cli(cmd);
      outputs.push(r.stdout, r.stderr);
      expect(r.code, cmd[0]).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain('SQLite file tool');
    }
    for (const o of outputs) expect(o).not.toContain(password);
  });

  it('run, status and logs on a postgres:// URL keep their files in the state folder: nothing lands in the working directory, no password is printed', async () => {
    const u = new URL(await dbUrl());
    u.searchParams.set('schema', 'cli_files');
    const t = tempDir('ks-cli-pg-');
    try {
      const cwd = join(t.dir, 'cwd');
      mkdirSync(cwd);
      const env = { ...process.env, KANBAN_HOST_ID: 'cli-files', KANBAN_STATE_DIR: join(t.dir, 'state'), TICK_INTERVAL_MS: '100' };
      const ks = (args: string[]) => run(process.execPath, [CLI, '--db', u.href, ...args], { cwd, env });
      expect((await ks(['init'])).code).toBe(0);
      // Before the state folder, `run` took the URL for a file path and started a supervisor on a
      // new SQLite file under ./postgres:/… (the password in its folder name and its logs).
      const outputs = [await ks(['run', '--until-idle']), await ks(['status']), await ks(['logs', 'tnosuchtask'])];
      expect(outputs[0]!.code, outputs[0]!.stderr).toBe(0);
      expect(outputs[1]!.code, outputs[1]!.stderr).toBe(0);
      for (const r of outputs) expect(r.stdout + r.stderr).not.toContain(u.password);
      expect(readdirSync(cwd)).toEqual([]);
    } finally {
      t.cleanup();
    }
  });

  it('a bad KANBAN_HOST_ID or SUPERVISOR_LEASE_SECONDS stops `run` with exit 2 naming the variable, before any connection', async () => {
    const u = new URL(await dbUrl());
    u.searchParams.set('schema', 'cli_config');
    const t = tempDir('ks-cli-pg-');
    try {
      const base = { ...process.env, KANBAN_STATE_DIR: join(t.dir, 'state'), TICK_INTERVAL_MS: '100' };
      const cases: Array<[Record<string, string>, string]> = [
        [{ KANBAN_HOST_ID: 'two words' }, 'KANBAN_HOST_ID must be 1-128 letters, digits or . _ : -, got "two words"'],
        [{ KANBAN_HOST_ID: 'h1', SUPERVISOR_LEASE_SECONDS: 'abc' }, 'SUPERVISOR_LEASE_SECONDS must be a number from 1 to 86400, got "abc"'],
        [{ KANBAN_HOST_ID: 'h1', SUPERVISOR_LEASE_SECONDS: '0' }, 'SUPERVISOR_LEASE_SECONDS must be a number from 1 to 86400, got "0"'],
      ];
      for (const [env, message] of cases) {
        const r = await run(process.execPath, [CLI, '--db', u.href, 'run', '--until-idle'], { cwd: t.dir, env: { ...base, ...env } });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toContain(message);
        expect(r.stderr).not.toContain(u.password);
      }
    } finally {
      t.cleanup();
    }
  });
});
