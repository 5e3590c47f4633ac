/**
 * The report channel's fallbacks under faults (issue 17): a supervisor SIGKILLed while its workers
 * report; a socket file left by a dead supervisor; one a live process listens on.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Cleanups, FIXTURES, cli, exited, killQuietly, logEvents, sleep, waitFor } from '../src/common.js';
import { RawClient, socketOf } from '../src/channel-client.js';

const SKILL = join(FIXTURES, 'worker', 'skill.mjs');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', KANBAN_HTTP: 'off' };
const supervise = (db: string, args: string[] = [], env: Record<string, string> = {}) => cleanups.startCli(db, ['run', ...args], { ...FAST, ...env });

const ledgerLines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => /^\S+ \d+$/.test(l)) : []);

describe('report channel faults', () => {
  it('supervisor SIGKILLed while 20 workers report in a loop: they fall back to the board, every acknowledged report is on it exactly once', async () => {
    const { dir, db } = cleanups.boardDir('ks-chank-');
    const ledger = join(dir, 'ledger.txt');
    expect((await cli(db, ['skill', 'add', 'loop', '--env', 'MODE=write-loop', '--env', `LEDGER=${ledger}`, '--env', 'ITER_MS=5', '--', process.execPath, SKILL])).code).toBe(0);
    for (let i = 0; i < 20; i++) expect((await cli(db, ['add', '--skill', 'loop'])).code).toBe(0);
    const sup = supervise(db, [], { MAX_CONCURRENT_WORKERS: '20' });
    // Every worker acknowledged some reports through the channel.
    await waitFor(() => new Set(ledgerLines(ledger).map((l) => l.split(' ')[0])).size === 20 && ledgerLines(ledger).length >= 400, 120_000);
    const workerPids = () => {
      const d = new Database(db, { readonly: true });
      try {
        return (d.prepare('SELECT pid FROM runs WHERE pid IS NOT NULL').all() as Array<{ pid: number }>).map((r) => r.pid);
      } finally {
        d.close();
      }
    };
    const pids = await waitFor(() => (workerPids().length === 20 ? workerPids() : null), 60_000);
    cleanups.push(() => pids.forEach(killQuietly));
    expect(logEvents(sup.output(), 'channel_listening')).toHaveLength(1);
    sup.kill('SIGKILL');
    await exited(sup);
    const atKill = ledgerLines(ledger).length;
    // The workers go on, on the board directly: their ledger keeps growing.
    await waitFor(() => ledgerLines(ledger).length >= atKill + 200, 120_000);
    for (const pid of pids) killQuietly(pid);
    await sleep(300);
    const acked = ledgerLines(ledger).map((l) => l.split(' ') as [string, string]);
    const d = new Database(db, { readonly: true });
    try {
      expect(d.pragma('integrity_check', { simple: true })).toBe('ok');
      const rows = d.prepare(`SELECT run_id, data, seq FROM events WHERE kind = 'seq'`).all() as Array<{ run_id: string; data: string; seq: string | null }>;
      const onBoard = new Map<string, number>();
      for (const r of rows) {
        expect(r.seq).toMatch(/^\d+$/);
        const key = `${r.run_id} ${(JSON.parse(r.data) as { n: number }).n}`;
        onBoard.set(key, (onBoard.get(key) ?? 0) + 1);
      }
      // Nothing applied twice, nothing acknowledged lost.
      expect([...onBoard.values()].filter((n) => n !== 1)).toEqual([]);
      const missing = acked.filter(([run, n]) => onBoard.get(`${run} ${n}`) !== 1);
      expect(missing).toEqual([]);
      expect(new Set(rows.map((r) => `${r.run_id} ${r.seq}`)).size).toBe(rows.length);
    } finally {
      d.close();
    }
  });

  it('a socket file left by a dead supervisor is replaced; one a live process listens on is left alone (channel off, workers write directly)', async () => {
    const { dir, db } = cleanups.boardDir('ks-chank-');
    expect((await cli(db, ['init'])).code).toBe(0);
    const socket = socketOf(db);
    mkdirSync(join(socket, '..'), { recursive: true, mode: 0o700 });
    // A dead listener's file: bound by a process that was SIGKILLed.
    const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(process.argv[1], () => console.log('up'))`, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => holder.stdout!.once('data', () => r()));
    holder.kill('SIGKILL');
    await exited(holder);
    expect(lstatSync(socket).isSocket()).toBe(true);
    const sup = supervise(db);
    await waitFor(() => logEvents(sup.output(), 'channel_listening').length > 0);
    const c = await RawClient.connect(socket);
    c.send({ v: 1, id: 1, op: 'hello' });
    expect(await c.answer(1)).toMatchObject({ ok: true });
    c.close();
    sup.kill('SIGTERM');
    expect((await exited(sup)).code).toBe(0);
    expect(existsSync(socket)).toBe(false);

    // A live listener: never touched.
    const live = createServer((s) => {
      s.on('error', () => undefined);
      s.end('mine\n');
    });
    await new Promise<void>((r) => live.listen(socket, () => r()));
    cleanups.push(() => new Promise<void>((r) => live.close(() => r())));
    const ino = lstatSync(socket).ino;
    const ready = join(dir, 'ready');
    expect((await cli(db, ['skill', 'add', 'w', '--env', 'MODE=return', '--', process.execPath, SKILL])).code).toBe(0);
    expect((await cli(db, ['add', '--skill', 'w', '--payload', '{"result":7}'])).code).toBe(0);
    const sup2 = supervise(db, ['--until-idle']);
    expect((await exited(sup2)).code, sup2.output()).toBe(0);
    expect(logEvents(sup2.output(), 'channel_off')[0]?.error).toMatch(/another process listens/);
    expect(lstatSync(socket).ino).toBe(ino);
    expect(existsSync(ready)).toBe(false);
    const out = JSON.parse((await cli(db, ['--json', 'list'])).stdout) as Array<{ status: string; result: unknown }>;
    expect(out.map((t) => [t.status, t.result])).toEqual([['done', 7]]);
  });
});
