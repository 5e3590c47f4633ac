import { describe, expect, it, afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  type Claim,
} from '@kanban-supervisor/board';
import { Cleanups, FIXTURES, run, waitFor } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());
const tmp = () => cleanups.tempDir();

async function boardWithSkill(dir: string): Promise<SqliteBoard> {
  const b = SqliteBoard.open(join(dir, 'sub', 'kanban.db'));
  await b.putSkill({ name: 'echo', argv: ['/bin/true'] });
  return b;
}

/** The next claim (claimBatch of one), or null when nothing is runnable at `now`. */
async function claimOne(b: SqliteBoard, now = Date.now()): Promise<Claim | null> {
  return (await b.claimBatch(1, now, () => 'x.log'))[0] ?? null;
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
    const c1 = await claimOne(b);
    const c2 = await claimOne(b);
    const c3 = await claimOne(b);
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
    // Every claimer has the board open before any starts (a fixed 700 ms was not enough on a loaded
    // CI machine: one claimer took all 300 before the others had started).
    await waitFor(() => readdirSync(dir).filter((f) => f.startsWith('go.ready.')).length === 6, 60_000);
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
    const c = (await claimOne(b))!;
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
    const c = (await claimOne(b))!;
    const cred = { taskId: t.id, runId: c.run.id, token: c.token };
    await b.report(cred, { outcome: 'failed', error: 'boom' }, Date.now());
    // Ended but its process is not confirmed gone: not accountable yet, task not claimable.
    expect(await b.unaccountedRuns()).toEqual([]);
    expect(await claimOne(b)).toBeNull();
    await b.recordExits([{ runId: c.run.id, at: Date.now(), exitCode: 1, signal: null, gone: true }]);
    const [u] = await b.unaccountedRuns();
    expect(u!.run.outcome).toBe('failed');
    const nb = Date.now() + 60_000;
    await b.applyAccountingBatch([{ runId: c.run.id, action: { action: 'requeue', consecutiveFailures: 1, notBefore: nb, counted: true } }], Date.now());
    const t2 = (await b.getTask(t.id))!;
    expect([t2.status, t2.consecutiveFailures, t2.notBefore, t2.lastError]).toEqual(['ready', 1, nb, 'boom']);
    expect(await claimOne(b)).toBeNull();
    const c2 = (await claimOne(b, nb))!;
    await b.report({ taskId: t.id, runId: c2.run.id, token: c2.token }, { outcome: 'completed', result: { ok: true } }, Date.now());
    const t3 = (await b.getTask(t.id))!;
    expect([t3.status, t3.consecutiveFailures, t3.result]).toEqual(['done', 0, { ok: true }]);
    await b.close();
  });

  it('blocks ready tasks whose skill is not registered, naming the skill', async () => {
    const b = await boardWithSkill(tmp());
    const t = await b.createTask({ skill: 'echo' });
    await b.removeSkill('echo');
    expect(await claimOne(b)).toBeNull();
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
    const running = (await claimOne(b))!;
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
    for (let i = 0; i < 50; i++) await claimOne(b);
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

  it('the children of a finished parent are an index seek (links_parent, then each child and its parents by key), before and after ANALYZE', async () => {
    const b = await boardWithSkill(tmp());
    const parents = [];
    for (let i = 0; i < 20; i++) parents.push(await b.createTask({ skill: 'echo', title: `p${i}` }));
    for (let i = 0; i < 200; i++) await b.createTask({ skill: 'echo', title: `c${i}`, after: [parents[i % 20]!.id, parents[(i + 1) % 20]!.id] });
    for (const analyzed of [false, true]) {
      if (analyzed) b.db.exec('ANALYZE');
      const plan = (b.db.prepare(`EXPLAIN QUERY PLAN ${HOT_SQL.childrenToRelease}`).all(parents[0]!.id) as Array<{ detail: string }>).map((r) => r.detail);
      const label = analyzed ? 'after ANALYZE' : 'before ANALYZE';
      expect(plan.join(' | '), label).not.toMatch(/TEMP B-TREE|^SCAN|\| SCAN/);
      expect(plan.join(' | '), label).toMatch(/SEARCH l USING (COVERING )?INDEX links_parent \(parent=\?\)/);
    }
    await b.close();
  });

  it('tasks by status and skill (metrics) are counted from the covering index tasks_status_skill alone, never the task rows, before and after ANALYZE', async () => {
    const b = await boardWithSkill(tmp());
    for (let i = 0; i < 50; i++) await b.createTask({ skill: 'echo', title: `t${i}` });
    for (const analyzed of [false, true]) {
      if (analyzed) b.db.exec('ANALYZE');
      const plan = (b.db.prepare(`EXPLAIN QUERY PLAN ${HOT_SQL.taskCountsBySkill}`).all() as Array<{ detail: string }>).map((r) => r.detail);
      expect(plan, analyzed ? 'after ANALYZE' : 'before ANALYZE').toEqual(['SCAN tasks USING COVERING INDEX tasks_status_skill']);
    }
    expect(await b.taskCountsBySkill()).toEqual([{ status: 'ready', skill: 'echo', count: 50 }]);
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

describe('transactions (begin(): one transaction per supervisor tick)', () => {
  it('commit lands every write at once; a failed write undoes only itself; close rolls back the rest', async () => {
    const dir = tmp();
    const b = await boardWithSkill(dir);
    const other = SqliteBoard.open(b.path);
    try {
      const t1 = await b.createTask({ skill: 'echo', title: 'one' });
      const t2 = await b.createTask({ skill: 'echo', title: 'two' });
      const tx = b.begin();
      const [c1, c2] = await tx.claimBatch(2, Date.now(), () => 'x.log');
      expect([c1!.task.id, c2!.task.id].sort()).toEqual([t1.id, t2.id].sort());
      // The second spawn cannot be written (a pid SQLite cannot bind): the write fails after its
      // first spawn was written, and its savepoint undoes that one too; the claims stay.
      const badSpawn = { pid: {} as unknown as number, pgid: 2, procStartTime: 2, bootId: 'b' };
      await expect(
        tx.recordSpawns([{ runId: c1!.run.id, info: { pid: 1, pgid: 1, procStartTime: 1, bootId: 'b' } }, { runId: c2!.run.id, info: badSpawn }], Date.now()),
      ).rejects.toThrow(/parameter/);
      await expect(tx.endUnspawned('no-such-run', 'abandoned', 'x', Date.now())).rejects.toThrow(/no run no-such-run/);
      await tx.appendEvent(t1.id, null, 'note', { n: 1 }, Date.now());
      // the transaction's own reads see its writes; another connection sees nothing before the commit
      expect((await tx.liveRuns()).map((r) => [r.id, r.pid]).sort()).toEqual([c1!.run.id, c2!.run.id].sort().map((id) => [id, null]));
      expect((await other.getTask(t1.id))!.status).toBe('ready');
      expect(await other.liveRuns()).toEqual([]);
      await tx.commit();
      expect((await other.getTask(t1.id))!.status).toBe('running');
      expect((await other.getTask(t2.id))!.status).toBe('running');
      expect((await other.showTask(t1.id))!.events.map((e) => e.kind)).toEqual(['created', 'claimed', 'note']);
      // after a commit the transaction goes on; what is not committed when it closes is rolled back
      expect(await tx.beginReclaim(c1!.run.id, 'timed_out', Date.now())).toBe(true);
      expect((await b.getRun(c1!.run.id))!.stopReason).toBe('timed_out');
      tx.close();
      expect((await b.getRun(c1!.run.id))!.stopReason).toBeNull();
      expect((await other.getRun(c1!.run.id))!.stopReason).toBeNull();
      expect(b.db.inTransaction).toBe(false);
      // once it is closed, every write on the board commits on its own again
      await b.appendEvent(t2.id, null, 'after', null, Date.now());
      expect((await other.showTask(t2.id))!.events.map((e) => e.kind)).toEqual(['created', 'claimed', 'after']);
    } finally {
      other.closeNow();
      b.closeNow();
    }
  });

  it('a write that makes SQLite roll back the whole transaction (disk full) loses it loudly, never half', async () => {
    const dir = tmp();
    const b = await boardWithSkill(dir);
    try {
      const t = await b.createTask({ skill: 'echo', title: 'a' });
      const pages = Number(b.db.pragma('page_count', { simple: true }));
      b.db.pragma(`max_page_count = ${pages + 2}`); // a full disk, as SQLite sees it
      const tx = b.begin();
      const [c] = await tx.claimBatch(1, Date.now(), () => 'x.log');
      expect(c!.task.id).toBe(t.id);
      const big = tx.appendEvent(t.id, null, 'big', { x: 'y'.repeat(200_000) }, Date.now());
      await expect(big).rejects.toBeInstanceOf(WriteGroupLostError);
      await expect(big).rejects.toThrow(/rolled back/);
      // every later write of the transaction and its commit say so too, until it is closed
      await expect(tx.appendEvent(t.id, null, 'c', null, Date.now())).rejects.toBeInstanceOf(WriteGroupLostError);
      await expect(tx.commit()).rejects.toBeInstanceOf(WriteGroupLostError);
      tx.close();
      // nothing of the transaction landed: the task is still ready, its run does not exist
      expect((await b.getTask(t.id))!.status).toBe('ready');
      expect(await b.getRun(c!.run.id)).toBeNull();
      expect(classifyError(new WriteGroupLostError(b.path, Object.assign(new Error('x'), { code: 'SQLITE_FULL' })))).toBe('io');
      b.db.pragma(`max_page_count = ${2 ** 30}`);
      expect((await b.createTask({ skill: 'echo', title: 'after' })).title).toBe('after');
    } finally {
      b.closeNow();
    }
  });

  it('writes that wait together for a busy lock begin the transaction once and land in one commit', async () => {
    const dir = tmp();
    const b0 = await boardWithSkill(dir);
    for (let i = 1; i <= 3; i++) await b0.createTask({ skill: 'echo', title: `t${i}` });
    b0.closeNow();
    const b = SqliteBoard.open(join(dir, 'sub', 'kanban.db'), { busyTimeoutMs: 0, busyRetries: 50 });
    const holder = new Database(b.path);
    try {
      holder.exec('BEGIN IMMEDIATE');
      const tx = b.begin();
      const writes = Promise.all([1, 2, 3].map(() => tx.claimBatch(1, Date.now(), () => 'x.log')));
      await new Promise((r) => setTimeout(r, 60));
      holder.exec('COMMIT');
      const claims = (await writes).flat();
      await tx.commit();
      tx.close();
      const seen = new Database(b.path, { readonly: true });
      try {
        expect(seen.prepare("SELECT count(*) AS n FROM tasks WHERE status = 'running'").get()).toEqual({ n: 3 });
        expect(seen.prepare('SELECT count(*) AS n FROM runs').get()).toEqual({ n: 3 });
      } finally {
        seen.close();
      }
      expect(claims.map((c) => c.task.title).sort()).toEqual(['t1', 't2', 't3']);
    } finally {
      holder.close();
      b.closeNow();
    }
  });

  it('while a transaction is open, writes on the board itself are refused with a clear error; reads are not', async () => {
    const b = await boardWithSkill(tmp());
    try {
      const t = await b.createTask({ skill: 'echo' });
      const tx = b.begin();
      const refused = `a transaction is open on board ${b.path}: write through it`;
      await expect(b.createTask({ skill: 'echo', title: 'refused' })).rejects.toThrow(refused);
      await expect(b.appendEvent(t.id, null, 'refused', null, Date.now())).rejects.toThrow(refused);
      await expect(b.claimBatch(1, Date.now(), () => 'x.log')).rejects.toThrow(refused);
      expect(() => b.begin()).toThrow(`a transaction is already open on board ${b.path}`);
      expect((await b.getTask(t.id))!.status).toBe('ready');
      expect((await b.listTasks()).length).toBe(1);
      expect((await b.showTask(t.id))!.events.map((e) => e.kind)).toEqual(['created']);
      tx.close();
      expect((await b.createTask({ skill: 'echo', title: 'after' })).title).toBe('after');
      b.begin().close(); // and a new transaction can begin
    } finally {
      b.closeNow();
    }
  });

  it('commit() keeps the transaction usable: the next write begins a new transaction', async () => {
    const b = await boardWithSkill(tmp());
    const other = SqliteBoard.open(b.path, { busyTimeoutMs: 0 });
    try {
      const t = await b.createTask({ skill: 'echo' });
      const tx = b.begin();
      await tx.commit(); // nothing written: a no-op
      expect(b.db.inTransaction).toBe(false);
      await tx.appendEvent(t.id, null, 'first', null, Date.now());
      expect(b.db.inTransaction).toBe(true);
      await tx.commit();
      expect(b.db.inTransaction).toBe(false);
      // the commit released the write lock: another connection writes between the two transactions
      await other.appendEvent(t.id, null, 'between', null, Date.now());
      await tx.appendEvent(t.id, null, 'second', null, Date.now());
      expect(b.db.inTransaction).toBe(true);
      expect((await other.showTask(t.id))!.events.map((e) => e.kind)).toEqual(['created', 'first', 'between']);
      await tx.commit();
      expect((await other.showTask(t.id))!.events.map((e) => e.kind)).toEqual(['created', 'first', 'between', 'second']);
      tx.close();
    } finally {
      other.closeNow();
      b.closeNow();
    }
  });

  it('a closed transaction refuses every call; close() again is harmless', async () => {
    const b = await boardWithSkill(tmp());
    try {
      const t = await b.createTask({ skill: 'echo' });
      const tx = b.begin();
      tx.close();
      const closed = `the transaction on board ${b.path} is closed`;
      await expect(tx.appendEvent(t.id, null, 'late', null, Date.now())).rejects.toThrow(closed);
      await expect(tx.claimBatch(1, Date.now(), () => 'x.log')).rejects.toThrow(closed);
      await expect(tx.liveRuns()).rejects.toThrow(closed);
      await expect(tx.commit()).rejects.toThrow(closed);
      expect(() => tx.close()).not.toThrow();
      expect((await b.getTask(t.id))!.status).toBe('ready');
      expect((await b.showTask(t.id))!.events.map((e) => e.kind)).toEqual(['created']);
    } finally {
      b.closeNow();
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
