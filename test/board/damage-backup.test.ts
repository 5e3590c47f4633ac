import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BACKUP_MAIN,
  DEFAULT_BACKUP_KEEP,
  SqliteBoard,
  backupDamaged,
  checkBoard,
  damageFingerprint,
  listBackups,
  makeBoard,
  tornWalTail,
  zeroInteriorPage,
} from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, run, sleep } from '../src/common.js';

const RACER = join(FIXTURES, 'damage', 'backup-racer.mjs');

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const tmp = () => cleanups.tempDir('ks-backup-');

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

async function damagedBoard(dir: string, tasks = 300): Promise<string> {
  const path = join(dir, 'kanban.db');
  await makeBoard(path, { tasks });
  zeroInteriorPage(path);
  return path;
}

describe('backupDamaged: exactly one backup per damage fingerprint', () => {
  it('50 calls make one backup, a faithful copy; read-only probes in between change nothing', async () => {
    const dir = tmp();
    const path = await damagedBoard(dir);
    const results = [];
    for (let i = 0; i < 50; i++) {
      results.push(backupDamaged(path));
      // `check` (a read-only SQLite open) recreates an empty -wal and a -shm next to the board:
      // that is not new damage and must not make a new backup.
      if (i % 10 === 0) expect(checkBoard(path).healthy).toBe(false);
    }
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.dir)).size).toBe(1);
    expect(new Set(results.map((r) => r.fingerprint)).size).toBe(1);
    const dirs = readdirSync(join(dir, 'backups'));
    expect(dirs).toEqual([`kanban.db.${results[0]!.fingerprint.slice(0, 16)}`]);
    expect(sha(join(results[0]!.dir, 'kanban.db'))).toBe(sha(path));
    expect(damageFingerprint(path)).toBe(results[0]!.fingerprint);
  });

  it('copies the -wal and the -shm with the database', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 50 });
    tornWalTail(path);
    const r = backupDamaged(path);
    expect(r.created).toBe(true);
    expect(readdirSync(r.dir).sort()).toEqual(['kanban.db', 'kanban.db-shm', 'kanban.db-wal']);
    for (const s of ['', '-wal', '-shm']) expect(sha(join(r.dir, 'kanban.db' + s))).toBe(sha(path + s));
  });

  it('3 concurrent helper processes, 10 calls each: one backup', async () => {
    const dir = tmp();
    const path = await damagedBoard(dir, 3000); // a few MB: copies overlap in time
    const one = async () => {
      const out = [];
      for (let i = 0; i < 10; i++) {
        const r = await run(process.execPath, [BACKUP_MAIN, path]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        out.push(JSON.parse(r.stdout) as { created: boolean; dir: string; fingerprint: string });
      }
      return out;
    };
    const all = (await Promise.all([one(), one(), one()])).flat();
    expect(all).toHaveLength(30);
    expect(all.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(all.map((r) => r.dir)).size).toBe(1);
    expect(readdirSync(join(dir, 'backups'))).toEqual([all[0]!.dir.split('/').pop()]);
    expect(sha(join(all[0]!.dir, 'kanban.db'))).toBe(sha(path));
  });

  it('racers started together: one backup per fingerprint, the losers see the winner\'s (rename is the arbiter)', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 3000, payloadBytes: 5000 }); // ~20 MB: copies overlap in time
    zeroInteriorPage(path);
    let raced = 0;
    // Three rounds at least; then more (up to 5, the number of backups kept) until a racer has lost
    // the rename, since on a loaded machine the racers may not overlap in a given round.
    let round = 0;
    for (; round < 3 || (raced === 0 && round < DEFAULT_BACKUP_KEEP); round++) {
      if (round > 0) {
        const buf = readFileSync(path);
        buf[buf.length - 1 - round] ^= 0xff; // new damage, new fingerprint
        writeFileSync(path, buf);
      }
      const go = join(dir, `go-${round}`);
      const racers = Array.from({ length: 3 }, () => run(process.execPath, [RACER, path, go]));
      await sleep(300);
      writeFileSync(go, '');
      const results = (await Promise.all(racers)).map((r) => {
        expect(r.code, r.stderr).toBe(0);
        return JSON.parse(r.stdout) as { created: boolean; raced: boolean; dir: string };
      });
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.dir)).size).toBe(1);
      raced += results.filter((r) => r.raced).length;
      expect(readdirSync(join(dir, 'backups')).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    }
    expect(readdirSync(join(dir, 'backups'))).toHaveLength(round);
    expect(raced).toBeGreaterThan(0); // the losing-rename path really ran
  });

  it('new damage makes a new backup; keep and the size cap prune the oldest', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 300 });
    const made: string[] = [];
    for (let i = 0; i < 4; i++) {
      // different damage each time: overwrite a different byte of the last page
      const buf = readFileSync(path);
      buf[buf.length - 1 - i] = 0xff;
      writeFileSync(path, buf);
      const r = backupDamaged(path, { keep: 2 });
      expect(r.created).toBe(true);
      made.push(r.dir);
      // mtime order is what pruning goes by; make it unambiguous
      const t = Date.now() / 1000 - 100 + i;
      utimesSync(r.dir, t, t);
    }
    expect(listBackups(path).map((b) => b.dir)).toEqual([made[3], made[2]]);
    // a cap just above one backup's size keeps only the newest
    const buf = readFileSync(path);
    buf[buf.length - 10] = 0xee;
    writeFileSync(path, buf);
    const size = readFileSync(path).length;
    const r = backupDamaged(path, { keep: 5, maxBytes: size + 1000 });
    expect(r.created).toBe(true);
    expect(r.pruned.length).toBe(2);
    expect(listBackups(path).map((b) => b.dir)).toEqual([r.dir]);
  });

  it('only touches its own board\'s backups and clears stale temporary folders', async () => {
    const dir = tmp();
    const path = await damagedBoard(dir, 50);
    const backups = join(dir, 'backups');
    mkdirSync(join(backups, 'other.db.0123456789abcdef'), { recursive: true });
    mkdirSync(join(backups, '.tmp-kanban.db.1.dead'));
    const old = Date.now() / 1000 - 7200;
    utimesSync(join(backups, '.tmp-kanban.db.1.dead'), old, old);
    backupDamaged(path, { keep: 1 });
    const names = readdirSync(backups).sort();
    expect(names).toContain('other.db.0123456789abcdef');
    expect(names.filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });

  it('refuses in a process that holds a connection to the board', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    await makeBoard(path, { tasks: 10 });
    const b = SqliteBoard.open(path);
    try {
      expect(() => backupDamaged(path)).toThrow(/holds a SQLite connection/);
      expect(() => damageFingerprint(path)).toThrow(/holds a SQLite connection/);
    } finally {
      b.closeNow();
    }
    expect(existsSync(join(dir, 'backups'))).toBe(false);
    // ... which is why the helper exists: it runs in its own process
    const r = await run(process.execPath, [BACKUP_MAIN, path, '--keep', '3']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).created).toBe(true);
  });

  it('helper: JSON error and exit 1 for a missing board, exit 2 for bad arguments', async () => {
    const dir = tmp();
    const missing = await run(process.execPath, [BACKUP_MAIN, join(dir, 'nope.db')]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error).toMatch(/does not exist/);
    const bad = await run(process.execPath, [BACKUP_MAIN, join(dir, 'x.db'), '--keep', 'zero']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout).error).toMatch(/--keep/);
    expect((await run(process.execPath, [BACKUP_MAIN])).code).toBe(2);
  });
});
