// Bad input to the board CLI (a hostile review): each is refused naming the thing at fault, with
// exit 2 for usage and configuration errors, and leaves nothing lost or half-written.
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { CLI, Cleanups, cli, memory } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** The most a refused `add --from` may hold: the 64 MiB limit, one chunk, and node itself. */
const RSS_BOUND = 400 * 1024 * 1024;

/**
 * Run the CLI with `stdin` as its standard input, watching its memory: killed (SIGKILL) past
 * 1 GiB or after `timeoutMs`, so that a CLI that reads without bound cannot eat the machine.
 */
function watched(db: string, args: string[], stdin: 'ignore' | NodeJS.ReadableStream = 'ignore', timeoutMs = 30_000) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; peakRss: number; ms: number }>((resolve) => {
    const t0 = Date.now();
    const child: ChildProcess = cleanups.killAtEnd(spawn(process.execPath, [CLI, '--db', db, ...args], { stdio: [stdin as 'ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    let peakRss = 0;
    child.stderr!.on('data', (d) => (stderr += String(d)));
    const watch = setInterval(() => {
      const m = child.pid ? memory(child.pid) : null;
      if (m) peakRss = Math.max(peakRss, m.hwm || 0, m.rss || 0);
      if (peakRss > 1024 * 1024 * 1024 || Date.now() - t0 > timeoutMs) child.kill('SIGKILL');
    }, 20);
    child.on('exit', (code, signal) => {
      clearInterval(watch);
      resolve({ code, signal, stderr, peakRss, ms: Date.now() - t0 });
    });
  });
}

describe('add --from reads at most its limit', () => {
  it('an endless input (/dev/zero, a FIFO, stdin) is refused past 64 MiB, exit 2 naming --from and the limit, in bounded memory; a FIFO still works', async () => {
    const { dir, db } = cleanups.boardDir('ks-from-bound-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);

    const zero = await watched(db, ['add', '--from', '/dev/zero']);
    expect(zero.code, zero.stderr).toBe(2);
    expect(zero.stderr).toContain('--from "/dev/zero": larger than 64 MiB');
    expect(zero.peakRss).toBeLessThan(RSS_BOUND);

    // A FIFO with a writer that never stops.
    const fifo = join(dir, 'endless.fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = cleanups.killAtEnd(spawn('sh', ['-c', `exec yes '{"skill":"echo"}' > "$1"`, 'sh', fifo], { stdio: 'ignore' }));
    const endless = await watched(db, ['add', '--from', fifo]);
    expect(endless.code, endless.stderr).toBe(2);
    expect(endless.stderr).toContain(`--from ${JSON.stringify(fifo)}: larger than 64 MiB`);
    expect(endless.peakRss).toBeLessThan(RSS_BOUND);
    writer.kill('SIGKILL');

    // stdin: `yes … | kanban-supervisor add --from -`.
    const yes = cleanups.killAtEnd(spawn('yes', ['{"skill":"echo"}'], { stdio: ['ignore', 'pipe', 'ignore'] }));
    const piped = await watched(db, ['add', '--from', '-'], yes.stdout!);
    expect(piped.code, piped.stderr).toBe(2);
    expect(piped.stderr).toContain('--from stdin: larger than 64 MiB');
    expect(piped.peakRss).toBeLessThan(RSS_BOUND);
    yes.kill('SIGKILL');

    // Nothing was added by any of them; a FIFO that ends (`--from <(…)`) still adds its tasks.
    expect(JSON.parse((await cli(db, ['--json', 'list'])).stdout)).toEqual([]);
    const small = join(dir, 'small.fifo');
    execFileSync('mkfifo', [small]);
    const w = cleanups.killAtEnd(spawn('sh', ['-c', `printf '{"skill":"echo","title":"a"}\\n{"skill":"echo","title":"b"}\\n' > "$1"`, 'sh', small], { stdio: 'ignore' }));
    const ok = await cli(db, ['add', '--from', small]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.trim().split('\n')).toHaveLength(2);
    w.kill('SIGKILL');
  }, 120_000);
});

describe('input refused for itself is a usage error (exit 2) naming the flag or field', () => {
  it('add --priority out of range, skill add with a bad name, env or command, an oversized payload line: exit 2; an unknown skill stays exit 1', async () => {
    const { dir, db } = cleanups.boardDir('ks-exit2-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    const range = 'must be an integer from -9007199254740991 to 9007199254740991';
    const cases: Array<[string[], string]> = [
      [['add', '--skill', 'echo', '--priority', '1e300'], `--priority ${range}, got "1e300"`],
      [['add', '--skill', 'echo', '--priority', '9007199254740993'], `--priority ${range}, got "9007199254740993"`],
      [['add', '--skill', 'echo', '--priority', '1.5'], `--priority ${range}, got "1.5"`],
      [['skill', 'add', 'a b', '--', 'true'], 'skill name "a b" is invalid'],
      [['skill', 'add', '', '--', 'true'], 'skill name "" is invalid'],
      [['skill', 'add', 'x'.repeat(65), '--', 'true'], `skill name "${'x'.repeat(65)}" is invalid`],
      [['skill', 'add', 'a\x1bb', '--', 'true'], 'skill name "a\\u001bb" is invalid'],
      [['skill', 'add', 'x', '--env', 'KANBAN_DB=x', '--', 'true'], '--env KANBAN_DB: KANBAN_* variables are set by the supervisor'],
      [['skill', 'add', 'x', '--env', '1A=x', '--', 'true'], '--env "1A=x": "1A" is not an environment variable name'],
      [['skill', 'add', 'x', '--pass-env', 'KANBAN_DB', '--', 'true'], '--pass-env KANBAN_DB'],
      [['skill', 'add', 'x', '--', ''], 'the command name is empty'],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(db, args);
      expect(r.code, `${JSON.stringify(args)}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    const file = join(dir, 'big.jsonl');
    writeFileSync(file, JSON.stringify({ skill: 'echo', payload: 'x'.repeat(5 * 1024 * 1024) }) + '\n');
    const big = await cli(db, ['add', '--from', file]);
    expect(big.code, big.stderr).toBe(2);
    expect(big.stderr).toContain('--from: line 1: payload is larger than 4 MiB of JSON');
    writeFileSync(file, '{"skill":"echo","priority":1e300}\n');
    const prio = await cli(db, ['add', '--from', file]);
    expect(prio.code, prio.stderr).toBe(2);
    expect(prio.stderr).toContain(`--from: line 1, field "priority": ${range}, got 1e+300`);
    // What the board holds decides: an unknown skill is the board's refusal, a failure (exit 1).
    const unknown = await cli(db, ['add', '--skill', 'ghost']);
    expect(unknown.code, unknown.stderr).toBe(1);
    expect(unknown.stderr).toContain('unknown skill "ghost"');
    // Nothing was stored by any refusal.
    expect(JSON.parse((await cli(db, ['--json', 'list'])).stdout)).toEqual([]);
    expect(JSON.parse((await cli(db, ['--json', 'skill', 'list'])).stdout).map((s: { name: string }) => s.name)).toEqual(['echo']);
  });
});

describe('a refused command leaves nothing behind', () => {
  it('skill add with a bad name, command or env on a new board path creates no board, lock or folder (exit 2); a good one creates it', async () => {
    const dir = cleanups.tempDir('ks-nohalf-');
    const db = join(dir, 'newb', 'k.db');
    for (const args of [
      ['skill', 'add', 'bad name', '--', 'true'],
      ['skill', 'add', 'x', '--', ''],
      ['skill', 'add', 'x', '--env', 'KANBAN_DB=x', '--', 'true'],
      ['skill', 'add', 'x', '--report', 'exit', '--result', 'stdout-json', '--max-rss-mb', '-1', '--', 'true'],
    ]) {
      const r = await cli(db, args);
      expect(r.code, `${JSON.stringify(args)}: ${r.stderr}`).toBe(2);
      expect(readdirSync(dir), JSON.stringify(args)).toEqual([]);
    }
    expect((await cli(db, ['skill', 'add', 'ok', '--', 'true'])).code).toBe(0);
    expect(existsSync(db)).toBe(true);
  });
});

describe('a file that holds no board is not made one by a command that needs a board', () => {
  it('an empty file, or a SQLite database without the board schema: list, show, runs, logs, status, add refuse it (exit 2 naming the path and init) and touch nothing; init makes a board of an empty file', async () => {
    const dir = cleanups.tempDir('ks-notboard-');
    const empty = join(dir, 'e.db');
    const foreign = join(dir, 'f.db');
    const db = new Database(foreign);
    db.exec('CREATE TABLE mine (x INTEGER)');
    db.close();
    const foreignBytes = readFileSync(foreign);
    for (const args of [['list'], ['show', 'nosuch'], ['runs'], ['logs', 'nosuch'], ['status'], ['status', '--watch', '--interval', '0.2'], ['add', '--skill', 'echo'], ['skill', 'list']]) {
      writeFileSync(empty, '');
      const r = await cli(empty, args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`board ${empty} is an empty file, not a board`);
      expect(r.stderr).toContain(`kanban-supervisor --db ${empty} init`);
      const f = await cli(foreign, args);
      expect(f.code, `${args.join(' ')}: ${f.stderr}`).toBe(2);
      expect(f.stderr).toContain(`board ${foreign} is a SQLite database without the board's schema`);
      // Nothing written: no WAL, no tables, no init lock.
      expect(readdirSync(dir).sort(), args.join(' ')).toEqual(['e.db', 'f.db']);
      expect(statSync(empty).size).toBe(0);
      expect(readFileSync(foreign).equals(foreignBytes)).toBe(true);
    }
    // Another application's database with a schema version of its own: refused by every command,
    // init and run too, byte for byte untouched (no WAL switch, no init lock, no migration).
    const app = join(dir, 'app.db');
    const adb = new Database(app);
    adb.exec('CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES (\'keep\'); PRAGMA user_version = 3');
    adb.close();
    const appBytes = readFileSync(app);
    for (const args of [['list'], ['status'], ['add', '--skill', 'echo'], ['init'], ['skill', 'add', 'echo', '--', 'true'], ['run', '--until-idle']]) {
      const r = await cli(app, args, { KANBAN_HTTP: 'off' });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`board ${app} is a SQLite database without the board's tables (user_version 3, no tasks table)`);
      expect(readFileSync(app).equals(appBytes), args.join(' ')).toBe(true);
      // (run takes its owner lock next to the path before it opens it; nothing else writes beside it.)
      if (args[0] !== 'run') expect(readdirSync(dir).filter((f) => f.startsWith('app.db')), args.join(' ')).toEqual(['app.db']);
      expect(existsSync(`${app}-wal`) || existsSync(`${app}.init-lock`), args.join(' ')).toBe(false);
    }
    for (const f of readdirSync(dir).filter((n) => n.startsWith('app.db'))) rmSync(join(dir, f), { recursive: true, force: true });
    // init is the command that makes a board, of an empty file too (what it would have created itself).
    const init = await cli(empty, ['init']);
    expect(init.code, init.stderr).toBe(0);
    expect((await cli(empty, ['--json', 'list'])).stdout.trim()).toBe('[]');
  });
});

describe('status of a board this user cannot read', () => {
  // Root ignores permissions: as root, status runs as nobody (65534) on a board of mode 0600 owned by root.
  const ROOTED = process.getuid?.() === 0;
  const AS = ROOTED ? { uid: 65534, gid: 65534 } : {};
  const nobodyCanRun = !ROOTED || spawnSync(process.execPath, [CLI, '--help'], { ...AS, timeout: 30_000 }).status === 0;
  it.skipIf(!nobodyCanRun)('with no supervisor: exit 2 naming the board and the access error, as list (not "dispatch held", exit 0)', async () => {
    const dir = cleanups.tempDir('ks-status-eacces-');
    chmodSync(dir, 0o755);
    const db = join(dir, 'k.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), ROOTED ? 0o600 : 0o000);
    cleanups.push(() => {
      for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o600);
    });
    const as = (args: string[]) => spawnSync(process.execPath, [CLI, '--db', db, ...args], { ...AS, encoding: 'utf8', timeout: 30_000 });
    for (const args of [['status'], ['--json', 'status'], ['status', '--watch', '--interval', '0.2'], ['list']]) {
      const r = as(args);
      expect(r.status, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`board ${db} cannot be `);
      expect(r.stderr).toContain('EACCES');
      expect(r.stdout).not.toContain('dispatch held');
    }
  });
});

describe('small ones', () => {
  it('a negative number after --tail, --interval or --limit is that flag’s value, refused naming the flag and its range (not node’s "argument is ambiguous")', async () => {
    const { db } = cleanups.boardDir('ks-negative-');
    expect((await cli(db, ['init'])).code).toBe(0);
    const cases: Array<[string[], string]> = [
      [['logs', 'tx', '--tail', '-1'], '--tail must be an integer from 0 to 100000000, got "-1"'],
      [['status', '--watch', '--interval', '-1'], '--interval must be a number from 0.2 to 3600, got "-1"'],
      [['runs', '--limit', '-3'], '--limit must be an integer from 1 to 1000000, got "-3"'],
      [['runs', '--task', '-x'], 'runs: option --task needs a value, and the next argument starts with a dash (for such a value write --task=VALUE)'],
      [['runs', '--outcome'], 'runs: option --outcome needs a value'],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(db, args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(msg);
      expect(r.stderr).not.toContain('ambiguous');
    }
  });

  it('add --at an impossible date (2026-02-30, hour 24) is refused naming --at, as is a --from line\'s at; a real leap day is taken', async () => {
    const { dir, db } = cleanups.boardDir('ks-at-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    for (const [at, msg] of [
      ['2026-02-30T09:00:00Z', 'has no day 30 (2026-02 has 28 days)'],
      ['2027-02-29T09:00:00Z', 'has no day 29 (2027-02 has 28 days)'],
      ['2026-04-31T09:00:00Z', 'has no day 31 (2026-04 has 30 days)'],
      ['2026-13-01T09:00:00Z', 'has no month 13'],
      ['2026-12-24T24:00:00Z', 'has no hour 24'],
      ['2026-12-24T09:00:00+25:00', 'has no offset +25:00'],
    ]) {
      const r = await cli(db, ['add', '--skill', 'echo', '--at', at!]);
      expect(r.code, `${at}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`--at is not a valid time: "${at}" ${msg}`);
    }
    const file = join(dir, 'at.jsonl');
    writeFileSync(file, '{"skill":"echo","at":"2026-02-30T09:00:00Z"}\n');
    const line = await cli(db, ['add', '--from', file]);
    expect(line.code, line.stderr).toBe(2);
    expect(line.stderr).toContain('--from: line 1, field "at": at is not a valid time');
    expect(JSON.parse((await cli(db, ['--json', 'list'])).stdout)).toEqual([]);
    const leap = await cli(db, ['--json', 'add', '--skill', 'echo', '--at', '2096-02-29T09:00:00Z']);
    expect(leap.code, leap.stderr).toBe(0);
    expect((await cli(db, ['--json', 'show', JSON.parse(leap.stdout).id])).stdout).toContain(String(Date.UTC(2096, 1, 29, 9)));
  });

  it('add --title \'\' takes the skill name, as the help promises for no title (add and a --from line)', async () => {
    const { dir, db } = cleanups.boardDir('ks-title-');
    expect((await cli(db, ['skill', 'add', 'echo', '--', '/bin/true'])).code).toBe(0);
    const id = (await cli(db, ['add', '--skill', 'echo', '--title', ''])).stdout.trim();
    expect(JSON.parse((await cli(db, ['--json', 'show', id])).stdout).title).toBe('echo');
    const file = join(dir, 't.jsonl');
    writeFileSync(file, '{"skill":"echo","title":""}\n');
    const fromLine = (await cli(db, ['add', '--from', file])).stdout.trim();
    expect(JSON.parse((await cli(db, ['--json', 'show', fromLine])).stdout).title).toBe('echo');
  });

  it('recover --out an existing file (the board itself too, by any name) exits 2 naming --out and overwrites nothing; a missing board exits 2', async () => {
    const dir = cleanups.tempDir('ks-recover-out-');
    const db = join(dir, 'k.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    const other = join(dir, 'other.db');
    writeFileSync(other, 'keep me');
    symlinkSync(db, join(dir, 'link.db'));
    for (const [out, msg] of [
      [other, `recover --out ${other}: it already exists; give a new path`],
      [db, `recover --out ${db}: that is the board itself; use --in-place`],
      [join(dir, 'link.db'), `recover --out ${join(dir, 'link.db')}: that is the board itself`],
    ]) {
      const r = await cli(db, ['recover', '--out', out!]);
      expect(r.code, `${out}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    expect(readFileSync(other, 'utf8')).toBe('keep me');
    const missing = await cli(join(dir, 'nope.db'), ['recover', '--out', join(dir, 'new.db')]);
    expect(missing.code, missing.stderr).toBe(2);
    expect(missing.stderr).toContain(`board ${join(dir, 'nope.db')} does not exist`);
    const ok = await cli(db, ['recover', '--out', join(dir, 'new.db')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(join(dir, 'new.db'))).toBe(true);
  });
});
