import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { garbageHeader, makeBoard, zeroInteriorPage } from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, cli, exited, sleep, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const FAST = { TICK_INTERVAL_MS: '50', CRASH_GRACE_SECONDS: '1', QUARANTINE_PROBE_SECONDS: '0.2' };

function supervise(db: string, args: string[] = []) {
  return cleanups.startCli(db, ['run', ...args], FAST);
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

/** Move the board and its sidecars aside, put `fresh` (and its sidecars) in its place. */
function swapIn(db: string, fresh: string, aside: string) {
  mkdirSync(aside, { recursive: true });
  for (const s of ['', '-wal', '-shm']) if (existsSync(db + s)) renameSync(db + s, join(aside, 'kanban.db' + s));
  for (const s of ['-wal', '-shm']) expect(existsSync(fresh + s)).toBe(false);
  renameSync(fresh, db);
}

describe('a damaged board under the supervisor', () => {
  it('a quarantined board emptied in place (a cp over it truncates it first) is not made a new board by the probe; the copy, once whole, is resumed', async () => {
    const dir = cleanups.tempDir('ks-q-');
    const db = join(dir, 'board', 'kanban.db');
    await makeBoard(db, { tasks: 50 });
    zeroInteriorPage(db);
    const p = supervise(db);
    await waitFor(() => p.output().includes('board_quarantined'));
    const rec = await cli(db, ['recover', '--out', join(dir, 'new.db')]);
    expect(rec.code, rec.stderr).toBe(0);
    for (const s of ['-wal', '-shm']) rmSync(db + s, { force: true });
    truncateSync(db, 0); // the first step of `cp new.db kanban.db`
    await sleep(1500); // several probes (every 0.2 s, doubling)
    expect(statSync(db).size, p.output()).toBe(0);
    expect(p.output()).not.toContain('quarantine_lifted');
    writeFileSync(db, readFileSync(join(dir, 'new.db'))); // the copy's end
    await waitFor(() => p.output().includes('quarantine_lifted'), 30_000);
    p.kill('SIGTERM');
    expect((await exited(p)).code).toBe(0);
  });

  it('run --until-idle on a damaged board gives up (exit 1, naming check and recover) instead of waiting forever; a text file at the board path too', async () => {
    const dir = cleanups.tempDir('ks-q-');
    const db = join(dir, 'board', 'kanban.db');
    await makeBoard(db, { tasks: 300 });
    zeroInteriorPage(db);
    const text = join(dir, 'text.db');
    writeFileSync(text, 'hello\n');
    for (const path of [db, text]) {
      const p = supervise(path, ['--until-idle']);
      const started = Date.now();
      expect((await exited(p)).code, p.output()).toBe(1);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(p.output()).toContain('board_quarantined');
      expect(p.output()).toContain('until_idle_gave_up');
      expect(p.output()).toContain('kanban-supervisor recover');
    }
    expect(readFileSync(text, 'utf8')).toBe('hello\n');
  });

  it('quarantines with one backup over many ticks and two restarts, then resumes by itself after recovery', async () => {
    const dir = cleanups.tempDir('ks-q-');
    const db = join(dir, 'board', 'kanban.db');
    await makeBoard(db, { tasks: 300 });
    zeroInteriorPage(db);
    const check = await cli(db, ['check']);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain('DAMAGED');

    const logs: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = supervise(db);
      await waitFor(() => p.output().includes('board_quarantined'));
      await sleep(800); // ~16 ticks and several re-probes
      if (i === 2) {
        const st = JSON.parse((await cli(db, ['--json', 'status'])).stdout);
        expect(st.owner.pid).toBe(p.pid);
        expect(st.quarantine.reason).toContain('malformed');
        // Recover while the owner is quarantined (it holds no connection), swap the files in.
        const rec = await cli(db, ['recover', '--out', join(dir, 'new.db')]);
        expect(rec.code, rec.stderr).toBe(0);
        expect(rec.stdout).toMatch(/tasks\s+partial\s+(\d+)/);
        const salvaged = Number(/tasks\s+partial\s+(\d+)/.exec(rec.stdout)![1]);
        expect(salvaged).toBeGreaterThan(250);
        expect(salvaged).toBeLessThan(300);
        swapIn(db, join(dir, 'new.db'), join(dir, 'broken'));
        await waitFor(() => p.output().includes('quarantine_lifted'), 10_000);
        // Dispatch resumes by itself: a new task runs to completion.
        await cli(db, ['skill', 'add', 'span', '--', join(SUP, 'span.sh'), join(dir, 'spans.txt'), '0']);
        const id = (await cli(db, ['add', '--skill', 'span', '--priority', '100'])).stdout.trim();
        await waitFor(async () => JSON.parse((await cli(db, ['--json', 'show', id])).stdout).status === 'done', 15_000, 200);
      }
      p.kill('SIGTERM');
      expect((await exited(p)).code, p.output()).toBe(0);
      logs.push(p.output());
    }
    // One error line per supervisor process for this damage, one backup in all.
    for (const l of logs) expect(count(l, '"event":"board_quarantined"'), l.split('\n').filter((x) => x.includes('board_quarantined')).join('\n')).toBe(1);
    // Exactly one backup per damage fingerprint, whatever the number of ticks and restarts.
    const lines = logs.flatMap((l) => l.split('\n').filter((x) => /board_quarantined|board_damage_changed/.test(x)));
    const fingerprints = new Set(lines.map((x) => (JSON.parse(x) as { fingerprint: string }).fingerprint));
    expect(fingerprints.has(null as unknown as string), lines.join('\n')).toBe(false);
    expect(count(logs.join(''), '"backupCreated":true'), lines.join('\n')).toBe(fingerprints.size);
    expect(readdirSync(join(dir, 'board', 'backups')).length).toBe(fingerprints.size);
    expect(fingerprints.size, lines.join('\n')).toBeLessThanOrEqual(2);
    expect((await cli(db, ['check', '--full'])).code).toBe(0);
  });

  it('a worker that finishes while the board is damaged lands its result through the spool, exactly once', async () => {
    const dir = cleanups.tempDir('ks-q-');
    const db = join(dir, 'board', 'kanban.db');
    const pids = join(dir, 'pids.txt');
    const go = join(dir, 'go');
    await cli(db, ['skill', 'add', 'waiter', '--', join(SUP, 'waiter.sh'), pids, go]);
    const id = (await cli(db, ['add', '--skill', 'waiter'])).stdout.trim();
    const a = supervise(db);
    await waitFor(() => existsSync(pids));
    a.kill('SIGKILL'); // the worker lives on
    await exited(a);
    garbageHeader(db);
    writeFileSync(go, '');
    const spool = join(dir, 'board', 'spool');
    await waitFor(() => existsSync(spool) && readdirSync(spool).some((f) => f.endsWith('.json')), 15_000);

    const b = supervise(db);
    await waitFor(() => b.output().includes('board_quarantined'));
    expect((await cli(db, ['recover', '--in-place'])).code).toBe(1); // refused while b owns the board
    b.kill('SIGTERM');
    expect((await exited(b)).code).toBe(0);
    const rec = await cli(db, ['recover', '--in-place']);
    expect(rec.code, rec.stderr).toBe(0);

    const c = supervise(db, ['--until-idle']);
    expect((await exited(c)).code, c.output()).toBe(0);
    expect(c.output()).toContain('spool_applied');
    const show = JSON.parse((await cli(db, ['--json', 'show', id])).stdout);
    expect(show.status).toBe('done');
    expect(show.result).toEqual({ via: 'spool' });
    expect(show.runs).toHaveLength(1);
    expect(show.runs[0].outcome).toBe('completed');
    expect(readdirSync(spool).filter((f) => f.endsWith('.json'))).toEqual([]);
    expect(readFileSync(pids, 'utf8').trim().split('\n')).toHaveLength(1);
  });
});
