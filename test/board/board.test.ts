import { describe, expect, it, afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BoardDamagedError,
  NotCurrentError,
  OwnerLock,
  SchemaTooNewError,
  SqliteBoard,
  SCHEMA_VERSION,
  HOT_SQL,
  WriteGroupLostError,
  classifyError,
  initLockPath,
} from '@kanban-supervisor/board';
import { FIXTURES, run, tempDir } from '../helpers.js';

const temps: Array<() => void> = [];
afterEach(() => {
  while (temps.length) temps.pop()!();
});
function tmp(): string {
  const t = tempDir();
  temps.push(t.cleanup);
  return t.dir;
}

async function boardWithSkill(dir: string): Promise<SqliteBoard> {
  const b = SqliteBoard.open(join(dir, 'sub', 'kanban.db'));
  await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
  return b;
}

describe('opening a board', () => {
  it('creates folders 0700 and the file 0600, in WAL, migrated from an empty file', async () => {
    const dir = tmp();
    const path = join(dir, 'a', 'b', 'kanban.db');
    const b = SqliteBoard.open(path);
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'a', 'b')).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(b.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(b.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(b.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(b.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(b.db.pragma('cell_size_check', { simple: true })).toBe(1);
    expect(b.db.pragma('trusted_schema', { simple: true })).toBe(0);
    expect(b.db.pragma('secure_delete', { simple: true })).toBe(1);
    await b.close();
  });

  it('migrates a pre-existing empty (0-byte) file', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    writeFileSync(path, '');
    const b = SqliteBoard.open(path);
    expect(b.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect((await b.listTasks()).length).toBe(0);
    await b.close();
  });

  it('never re-issues the WAL pragma on an already-WAL board', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const first = SqliteBoard.open(path);
    await first.putSkill({ name: 's', argv: ['true'] });
    const shmInode = statSync(path + '-shm').ino;
    // The init lock database exists only because WAL was set once; remove it while nobody holds it.
    expect(existsSync(initLockPath(path))).toBe(true);
    rmSync(initLockPath(path));
    const second = SqliteBoard.open(path);
    expect(existsSync(initLockPath(path))).toBe(false); // the WAL path was never entered
    expect(statSync(path + '-shm').ino).toBe(shmInode);
    await second.close();
    await first.close();
    // And after every connection closed, a reopen still skips it.
    const third = SqliteBoard.open(path);
    expect(existsSync(initLockPath(path))).toBe(false);
    expect(third.db.pragma('journal_mode', { simple: true })).toBe('wal');
    await third.close();
  });

  it('refuses a board written by a newer schema, naming the path and versions', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const b = SqliteBoard.open(path);
    b.db.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
    await b.close();
    let err: unknown;
    try {
      SqliteBoard.open(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect(String((err as Error).message)).toContain(path);
    expect(String((err as Error).message)).toContain(`schema version ${SCHEMA_VERSION + 5}`);
  });

  it('refuses a file that is not a SQLite database, and leaves it untouched', () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    writeFileSync(path, 'this is not a database, just some text that is long enough to fill a header.'.repeat(3));
    const before = statSync(path);
    expect(() => SqliteBoard.open(path)).toThrow(BoardDamagedError);
    expect(() => SqliteBoard.open(path)).toThrow(/not a SQLite database/);
    const after = statSync(path);
    expect(after.size).toBe(before.size);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(existsSync(path + '-wal')).toBe(false);
  });

  it('refuses to create a board over a separated -wal', () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    writeFileSync(path + '-wal', 'x');
    expect(() => SqliteBoard.open(path)).toThrow(/-wal exists without its database file/);
    expect(existsSync(path)).toBe(false);
  });
});

describe('claims and fencing', () => {
  it('orders claims by priority then age, skips tasks waiting for not_before', async () => {
    const b = await boardWithSkill(tmp());
    const low = await b.createTask({ skill: 'echo', title: 'low' });
    const high = await b.createTask({ skill: 'echo', title: 'high', priority: 5 });
    await b.createTask({ skill: 'echo', title: 'later', priority: 9, notBefore: Date.now() + 60_000 });
    const c1 = await b.claimNext(Date.now(), () => 'x.log');
    const c2 = await b.claimNext(Date.now(), () => 'x.log');
    const c3 = await b.claimNext(Date.now(), () => 'x.log');
    expect([c1?.task.id, c2?.task.id, c3]).toEqual([high.id, low.id, null]);
    expect(c1!.token).toMatch(/^[0-9a-f]{32}$/);
    await b.close();
  });

  it('concurrent claimers in separate processes never claim one task twice', async () => {
    const dir = tmp();
    const b = await boardWithSkill(dir);
    const N = 300;
    for (let i = 0; i < N; i++) await b.createTask({ skill: 'echo', title: `t${i}` });
    const go = join(dir, 'go');
    const procs = Array.from({ length: 6 }, () => run(process.execPath, [join(FIXTURES, 'claimer.mjs'), b.path, go]));
    await new Promise((r) => setTimeout(r, 700));
    writeFileSync(go, '');
    const results = await Promise.all(procs);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const ids = results.flatMap((r) => r.stdout.split('\n').filter(Boolean));
    expect(ids.length).toBe(N);
    expect(new Set(ids).size).toBe(N);
    expect(results.filter((r) => r.stdout.trim() !== '').length).toBeGreaterThan(1);
    const counts = await b.counts();
    expect(counts.tasks.running).toBe(N);
    expect(b.db.pragma('integrity_check', { simple: true })).toBe('ok');
    await b.close();
  });

  it('a fenced write with a stale or wrong token changes nothing', async () => {
    const b = await boardWithSkill(tmp());
    const t = await b.createTask({ skill: 'echo' });
    const c = (await b.claimNext(Date.now(), () => 'x.log'))!;
    const cred = { taskId: t.id, runId: c.run.id, token: c.token };
    const wrong = { ...cred, token: '0'.repeat(32) };
    const snapshot = () => JSON.stringify([b.db.prepare('select * from runs').all(), b.db.prepare('select * from tasks').all(), b.db.prepare("select count(*) n from events").get()]);
    const before = snapshot();
    await expect(b.heartbeat(wrong, { step: 1 }, Date.now())).rejects.toBeInstanceOf(NotCurrentError);
    await expect(b.report(wrong, { outcome: 'completed', result: 1 }, Date.now())).rejects.toThrow(
      `run ${c.run.id} is no longer current for task ${t.id}`,
    );
    await expect(b.workerEvent(wrong, 'note', null, Date.now())).rejects.toBeInstanceOf(NotCurrentError);
    expect(snapshot()).toBe(before);

    // Reclaim closes the fence at once, before any signal.
    await b.heartbeat(cred, { step: 1 }, Date.now());
    expect(await b.beginReclaim(c.run.id, 'timed_out', Date.now())).toBe(true);
    const mid = snapshot();
    await expect(b.heartbeat(cred, { step: 2 }, Date.now())).rejects.toBeInstanceOf(NotCurrentError);
    await expect(b.report(cred, { outcome: 'completed', result: 2 }, Date.now())).rejects.toBeInstanceOf(NotCurrentError);
    expect(snapshot()).toBe(mid);
    // ...but the worker may still record that it stopped on request.
    await b.recordStop(cred, 'SIGTERM', Date.now());
    expect((await b.getTask(t.id))!.status).toBe('running');
    await b.close();
  });

  it('counter and backoff are committed with the requeue; completed resets the counter', async () => {
    const b = await boardWithSkill(tmp());
    const t = await b.createTask({ skill: 'echo' });
    const c = (await b.claimNext(Date.now(), () => 'x.log'))!;
    const cred = { taskId: t.id, runId: c.run.id, token: c.token };
    await b.report(cred, { outcome: 'failed', error: 'boom' }, Date.now());
    // Ended but its process is not confirmed gone: not accountable yet, task not claimable.
    expect(await b.unaccountedRuns()).toEqual([]);
    expect(await b.claimNext(Date.now(), () => 'x.log')).toBeNull();
    await b.recordExits([{ runId: c.run.id, at: Date.now(), exitCode: 1, signal: null, gone: true }]);
    const [u] = await b.unaccountedRuns();
    expect(u!.run.outcome).toBe('failed');
    const nb = Date.now() + 60_000;
    await b.applyAccounting(c.run.id, { action: 'requeue', consecutiveFailures: 1, notBefore: nb, counted: true }, Date.now());
    const t2 = (await b.getTask(t.id))!;
    expect([t2.status, t2.consecutiveFailures, t2.notBefore, t2.lastError]).toEqual(['ready', 1, nb, 'boom']);
    expect(await b.claimNext(Date.now(), () => 'x.log')).toBeNull();
    const c2 = (await b.claimNext(nb, () => 'x.log'))!;
    await b.report({ taskId: t.id, runId: c2.run.id, token: c2.token }, { outcome: 'completed', result: { ok: true } }, Date.now());
    const t3 = (await b.getTask(t.id))!;
    expect([t3.status, t3.consecutiveFailures, t3.result]).toEqual(['done', 0, { ok: true }]);
    await b.close();
  });

  it('blocks ready tasks whose skill is not registered, naming the skill', async () => {
    const b = await boardWithSkill(tmp());
    const t = await b.createTask({ skill: 'echo' });
    await b.removeSkill('echo');
    expect(await b.claimNext(Date.now(), () => 'x.log')).toBeNull();
    const blocked = await b.blockUnknownSkillTasks(Date.now());
    expect(blocked.map((x) => x.taskId)).toEqual([t.id]);
    const t2 = (await b.getTask(t.id))!;
    expect(t2.status).toBe('blocked');
    expect(t2.lastError).toContain('skill "echo" is not registered');
    await b.close();
  });

  it('blocks exactly the ready tasks of a removed skill, among tasks of skills on either side of it', async () => {
    const b = await boardWithSkill(tmp());
    for (const name of ['alpha', 'zulu']) await b.putSkill({ name, argv: ['/bin/true'] });
    const tasks = [];
    for (let i = 0; i < 9; i++) tasks.push(await b.createTask({ skill: ['alpha', 'echo', 'zulu'][i % 3]!, title: `t${i}` }));
    await b.removeSkill('echo');
    await b.removeSkill('zulu');
    // Only tasks of registered skills are claimed: this one is running, not ready, and not blocked.
    const running = (await b.claimNext(Date.now(), () => 'x.log'))!;
    const blocked = await b.blockUnknownSkillTasks(Date.now());
    const want = tasks.filter((t) => t.skill !== 'alpha').map((t) => t.id);
    expect(blocked.map((x) => x.taskId).sort()).toEqual([...want].sort());
    expect(new Set(blocked.map((x) => x.reason.match(/skill "(\w+)"/)![1]))).toEqual(new Set(['echo', 'zulu']));
    for (const t of tasks) {
      const now = (await b.getTask(t.id))!;
      if (t.skill === 'alpha') expect(now.status).not.toBe('blocked');
      else expect(now.status).toBe('blocked');
    }
    expect(running.task.skill).toBe('alpha');
    expect(await b.blockUnknownSkillTasks(Date.now())).toEqual([]); // nothing twice
    await b.close();
  });

  it('the statements of every tick read tasks and runs through an index: no table scan, no sort of the queue, before and after ANALYZE', async () => {
    const b = await boardWithSkill(tmp());
    for (let i = 0; i < 200; i++) await b.createTask({ skill: 'echo', title: `t${i}`, priority: i % 3 });
    for (let i = 0; i < 50; i++) await b.claimNext(Date.now(), () => 'x.log');
    for (const analyzed of [false, true]) {
      if (analyzed) b.db.exec('ANALYZE');
      for (const [name, sql] of Object.entries(HOT_SQL)) {
        const params = Array((sql.match(/\?/g) ?? []).length).fill(1);
        const plan = (b.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
        expect(plan.join(' | '), `${name}${analyzed ? ' after ANALYZE' : ''}`).not.toMatch(/TEMP B-TREE/);
        // Tasks and runs grow without bound and are only ever read through an index; the skills
        // registry stays small, and the planner may well scan it once it knows it holds one row.
        for (const step of plan.filter((d) => /^SCAN (?!s\b|skills\b)/.test(d))) expect(step, `${name}: ${step}`).toMatch(/USING (COVERING )?INDEX/);
      }
    }
    await b.close();
  });

  it('refuses unknown skills and bad input with messages that name the culprit', async () => {
    const b = await boardWithSkill(tmp());
    await expect(b.createTask({ skill: 'nope' })).rejects.toThrow(/unknown skill "nope".*registered: echo/);
    await expect(b.putSkill({ name: 'bad name', argv: ['x'] })).rejects.toThrow(/skill name "bad name" is invalid/);
    await expect(b.putSkill({ name: 'x', argv: [] })).rejects.toThrow(/non-empty array/);
    await expect(b.putSkill({ name: 'x', argv: ['a'], env: { KANBAN_DB: 'x' } })).rejects.toThrow(/KANBAN_DB is reserved/);
    expect((await b.listSkills()).map((s) => s.name)).toEqual(['echo']);
    await b.close();
  });
});

describe('write groups (one transaction per supervisor tick)', () => {
  it('commit lands every write at once; a failed write undoes only itself; endGroup rolls back the rest', async () => {
    const dir = tmp();
    const b = await boardWithSkill(dir);
    const other = SqliteBoard.open(b.path);
    try {
      const t1 = await b.createTask({ skill: 'echo', title: 'one' });
      b.beginGroup();
      await b.cancelTask(t1.id);
      await expect(b.cancelTask('no-such-task')).rejects.toThrow(/no-such-task/);
      const t2 = await b.createTask({ skill: 'echo', title: 'two' });
      // the group's own reads see its writes; another connection sees nothing before the commit
      expect((await b.getTask(t1.id))!.status).toBe('cancelled');
      expect((await other.getTask(t1.id))!.status).toBe('ready');
      expect(await other.getTask(t2.id)).toBeNull();
      await b.commitGroup();
      expect((await other.getTask(t1.id))!.status).toBe('cancelled');
      expect((await other.getTask(t2.id))!.title).toBe('two');
      // after a commit the group goes on; what is not committed when it ends is rolled back
      const t3 = await b.createTask({ skill: 'echo', title: 'three' });
      b.endGroup();
      expect(await b.getTask(t3.id)).toBeNull();
      expect(await other.getTask(t3.id)).toBeNull();
      expect(b.db.inTransaction).toBe(false);
      // outside a group every write commits on its own again
      const t4 = await b.createTask({ skill: 'echo', title: 'four' });
      expect((await other.getTask(t4.id))!.title).toBe('four');
    } finally {
      other.closeSync();
      b.closeSync();
    }
  });

  it('a write that makes SQLite roll back the whole transaction (disk full) loses the group loudly, never half', async () => {
    const dir = tmp();
    const b = await boardWithSkill(dir);
    try {
      const pages = Number(b.db.pragma('page_count', { simple: true }));
      b.db.pragma(`max_page_count = ${pages + 2}`); // a full disk, as SQLite sees it
      b.beginGroup();
      const a = await b.createTask({ skill: 'echo', title: 'a' });
      const big = b.createTask({ skill: 'echo', title: 'big', payload: { x: 'y'.repeat(200_000) } });
      await expect(big).rejects.toBeInstanceOf(WriteGroupLostError);
      await expect(big).rejects.toThrow(/rolled back/);
      // every later write of the group and its commit say so too, until the group ends
      await expect(b.createTask({ skill: 'echo', title: 'c' })).rejects.toBeInstanceOf(WriteGroupLostError);
      await expect(b.commitGroup()).rejects.toBeInstanceOf(WriteGroupLostError);
      b.endGroup();
      expect(await b.getTask(a.id)).toBeNull(); // nothing of the group landed
      expect(classifyError(new WriteGroupLostError(b.path, Object.assign(new Error('x'), { code: 'SQLITE_FULL' })))).toBe('io');
      b.db.pragma(`max_page_count = ${2 ** 30}`);
      expect((await b.createTask({ skill: 'echo', title: 'after' })).title).toBe('after');
    } finally {
      b.closeSync();
    }
  });

  it('writes that wait together for a busy lock begin the group once and land in one commit', async () => {
    const dir = tmp();
    const b0 = await boardWithSkill(dir);
    b0.closeSync();
    const b = SqliteBoard.open(join(dir, 'sub', 'kanban.db'), { busyTimeoutMs: 0, busyRetries: 50 });
    const holder = new Database(b.path);
    try {
      holder.exec('BEGIN IMMEDIATE');
      b.beginGroup();
      const writes = Promise.all([1, 2, 3].map((i) => b.createTask({ skill: 'echo', title: `t${i}` })));
      await new Promise((r) => setTimeout(r, 60));
      holder.exec('COMMIT');
      const tasks = await writes;
      await b.commitGroup();
      b.endGroup();
      const seen = new Database(b.path, { readonly: true });
      try {
        expect(seen.prepare('SELECT count(*) AS n FROM tasks').get()).toEqual({ n: 3 });
      } finally {
        seen.close();
      }
      expect(tasks.map((t) => t.title).sort()).toEqual(['t1', 't2', 't3']);
    } finally {
      holder.close();
      b.closeSync();
    }
  });
});

describe('owner lock', () => {
  it('is exclusive while held and free once released or once its holder process dies', async () => {
    const dir = tmp();
    const path = join(dir, 'kanban.db');
    const a = OwnerLock.tryAcquire(path);
    expect(a.ok).toBe(true);
    expect(OwnerLock.tryAcquire(path).ok).toBe(false);
    if (a.ok) a.lock.release();
    const b = OwnerLock.tryAcquire(path);
    expect(b.ok).toBe(true);
    if (b.ok) b.lock.release();

    // A holder in another process that gets SIGKILLed: the kernel releases its lock.
    const holder = await import('node:child_process').then((cp) =>
      cp.spawn(process.execPath, ['-e', `
        const { OwnerLock } = await import('@kanban-supervisor/board');
        const r = OwnerLock.tryAcquire(${JSON.stringify(path)});
        console.log(r.ok ? 'held' : 'busy');
        setInterval(() => {}, 1000);
      `, '--input-type=module'], { cwd: FIXTURES, stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    await new Promise<void>((res) => holder.stdout!.once('data', (d) => (expect(String(d)).toContain('held'), res())));
    expect(OwnerLock.tryAcquire(path).ok).toBe(false);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    const c = OwnerLock.tryAcquire(path);
    expect(c.ok).toBe(true);
    if (c.ok) c.lock.release();
  });
});

describe('damage is reported through SQLite, not guessed', () => {
  it('a raw connection sees the same data the board wrote (sanity of the on-disk format)', async () => {
    const dir = tmp();
    const b = await boardWithSkill(dir);
    await b.createTask({ skill: 'echo', title: 'visible' });
    const raw = new Database(b.path, { readonly: true });
    expect((raw.prepare('select title from tasks').get() as { title: string }).title).toBe('visible');
    raw.close();
    await b.close();
  });
});
