/**
 * The supervisors of a PostgreSQL board (schema v2, SupervisorRegistry), in process: per-host
 * ownership is exclusive per host id and released by the server when its connection ends; a
 * registered board object records its supervisor on each claim, renews its lease in a BoardTx,
 * and sees only its own host's live and unaccounted runs; a supervisor of another host whose lease
 * expired is taken over in one transaction (fences closed, tasks requeued, row marked). A SQLite
 * board has no such ability.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { NotCurrentError, leaseRenewalOf, openBoard, supervisorRegistryOf, type AccountAction, type Board, type SupervisorIdentity, type SupervisorRegistry } from '@kanban-supervisor/board';
import { tempDir } from '../src/common.js';
import { admin, freshDatabase, withDatabase } from './pg/server.js';

let database: Promise<string> | null = null;
const dbUrl = (): Promise<string> => (database ??= freshDatabase('ks_sups'));
afterAll(async () => {
  if (!database) return;
  const db = await database;
  await admin(withDatabase(db, 'postgres'), (c) => c.query(`DROP DATABASE IF EXISTS ${new URL(db).pathname.slice(1)} WITH (FORCE)`));
});

const opened: Board[] = [];
afterEach(async () => {
  while (opened.length) await opened.pop()!.close();
});

async function boardUrl(): Promise<{ url: string; schema: string }> {
  const u = new URL(await dbUrl());
  const schema = `sv_${randomBytes(5).toString('hex')}`;
  u.searchParams.set('schema', schema);
  return { url: u.href, schema };
}

async function open(url: string): Promise<Board & SupervisorRegistry> {
  const b = await openBoard(url, { pgPoolMax: 2 });
  opened.push(b);
  const r = supervisorRegistryOf(b);
  expect(r).not.toBeNull();
  return b as Board & SupervisorRegistry;
}

const me = (hostId: string, pid: number): SupervisorIdentity => ({ hostId, host: `host-${hostId}`, pid, bootId: 'boot', procStartTime: 123, startedAt: Date.now() });

describe('PostgreSQL board: supervisors, leases and ownership per host', () => {
  it('one holder per host id; another host id holds its own; a released (or dead) holder lets the next in', async () => {
    const { url } = await boardUrl();
    const a = await open(url);
    const b = await open(url);
    const h1 = await a.tryHoldHost('h1');
    expect(h1).not.toBeNull();
    expect(await b.tryHoldHost('h1')).toBeNull();
    const h2 = await b.tryHoldHost('h2');
    expect(h2).not.toBeNull();
    await h1!.release();
    const again = await b.tryHoldHost('h1');
    expect(again).not.toBeNull();
    // The server ends the holder's session (as when its host dies): the lock is free, the holder knows.
    let lost = false;
    again!.onLost(() => (lost = true));
    await admin(await dbUrl(), (c) =>
      c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_try_advisory_lock%' AND pid <> pg_backend_pid()`),
    );
    const deadline = Date.now() + 5000;
    let next = await a.tryHoldHost('h1');
    while (!next && Date.now() < deadline) next = await a.tryHoldHost('h1');
    expect(next).not.toBeNull();
    expect(again!.lost).toBe(true);
    expect(lost).toBe(true);
    await next!.release();
    await h2!.release();
  });

  it("a registered board records its supervisor on claims, renews its lease in a BoardTx, and sees only its host's runs", async () => {
    const { url, schema } = await boardUrl();
    const a = await open(url);
    const b = await open(url);
    await a.putSkill({ name: 's', argv: ['true'] });
    for (let i = 0; i < 4; i++) await a.createTask({ skill: 's', title: `t${i}` });
    const t0 = Date.now();
    const idA = await a.registerSupervisor(me('h1', 111), 30_000, t0);
    const idB = await b.registerSupervisor(me('h2', 222), 30_000, t0);
    const ca = await a.claimBatch(2, Date.now(), (id) => `/tmp/${id}.log`);
    const tx = b.begin();
    const cb = await tx.claimBatch(2, Date.now(), (id) => `/tmp/${id}.log`);
    expect(await leaseRenewalOf(tx)!.renewLease(t0 + 10_000)).toBe(true);
    await tx.commit();
    tx.close();
    const rows = await admin(url.replace(/\?.*$/, ''), async (c) => (await c.query(`SELECT id, supervisor_id FROM ${schema}.runs ORDER BY id`)).rows as Array<{ id: string; supervisor_id: string }>);
    const owner = new Map(rows.map((r) => [r.id, r.supervisor_id]));
    for (const c of ca) expect(owner.get(c.run.id)).toBe(idA);
    for (const c of cb) expect(owner.get(c.run.id)).toBe(idB);
    expect((await a.liveRuns()).map((r) => r.id).sort()).toEqual(ca.map((c) => c.run.id).sort());
    expect((await b.liveRuns()).map((r) => r.id).sort()).toEqual(cb.map((c) => c.run.id).sort());
    // An unregistered board object (the CLI, status) sees every run.
    const plain = await openBoard(url);
    opened.push(plain);
    expect(await plain.liveRuns()).toHaveLength(4);
    const sups = await a.liveSupervisors();
    expect(sups.map((s) => [s.id, s.hostId, s.pid]).sort()).toEqual([[idA, 'h1', 111], [idB, 'h2', 222]].sort());
    expect(sups.find((s) => s.id === idB)!.leaseExpiresAt).toBe(t0 + 40_000);
    expect(sups.find((s) => s.id === idA)!.leaseExpiresAt).toBe(t0 + 30_000);
    expect((await a.liveSupervisors('h2')).map((s) => s.id)).toEqual([idB]);
    await a.markSupervisorStopped(Date.now());
    expect((await b.liveSupervisors()).map((s) => s.id)).toEqual([idB]);
    // A new supervisor of host h2 (it holds the host's ownership): the older h2 row was a dead one's.
    const c = await open(url);
    const idC = await c.registerSupervisor(me('h2', 333), 30_000, Date.now());
    expect((await c.liveSupervisors()).map((s) => s.id)).toEqual([idC]);
  });

  it("takes over another host's supervisor whose lease expired: its runs fenced (late writes refused), tasks requeued not before the delay, a reported result kept; never its own host's, never one renewing", async () => {
    const { url, schema } = await boardUrl();
    const a = await open(url);
    const b = await open(url);
    await a.putSkill({ name: 's', argv: ['true'] });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await a.createTask({ skill: 's', title: `t${i}` })).id);
    const t0 = Date.now();
    const idA = await a.registerSupervisor(me('ha', 111), 5_000, t0);
    await b.registerSupervisor(me('hb', 222), 5_000, t0);
    const claims = await a.claimBatch(3, t0, (id) => `/tmp/${id}.log`);
    expect(claims).toHaveLength(3);
    const cred = (i: number) => ({ taskId: claims[i]!.task.id, runId: claims[i]!.run.id, token: claims[i]!.token });
    // Run 0 reported completed (its exit not seen yet), run 1 is running, run 2 is being reclaimed (timed out).
    await a.report(cred(0), { outcome: 'completed', result: { r: 0 } }, t0 + 10);
    const rtx = a.begin();
    expect(await rtx.beginReclaim(claims[2]!.run.id, 'timed_out', t0 + 20)).toBe(true);
    await rtx.commit();
    rtx.close();
    const decided: string[] = [];
    const decide = (run: { id: string; outcome: string | null }): AccountAction => {
      decided.push(`${run.id}:${run.outcome}`);
      return run.outcome === 'completed' ? { action: 'done', consecutiveFailures: 0 } : { action: 'requeue', consecutiveFailures: 0, notBefore: t0, counted: false };
    };
    const take = async (board: Board, now: number) => {
      const tx = board.begin();
      try {
        const out = await leaseRenewalOf(tx)!.takeOverExpired(now, decide, () => now + 7_000);
        await tx.commit();
        return out;
      } finally {
        tx.close();
      }
    };
    // Lease not expired yet: nothing.
    expect(await take(b, t0 + 4_000)).toEqual([]);
    // Expired, but A is renewing in an open transaction (its row locked): skipped, not waited for.
    const atx = a.begin();
    expect(await leaseRenewalOf(atx)!.renewLease(t0 + 1_000)).toBe(true);
    expect(await take(b, t0 + 6_100)).toEqual([]);
    atx.close(); // rolled back: the lease is still t0 + 5 s
    await new Promise((r) => setTimeout(r, 100));
    // A supervisor of the same host never takes it over (that host's next supervisor adopts its runs).
    await admin(url.replace(/\?.*$/, ''), (c) =>
      c.query(`INSERT INTO ${schema}.supervisors (id, host_id, host, pid, started_at, lease_expires_at) VALUES ('stale-hb', 'hb', 'host-hb', 333, $1, $2)`, [t0 - 9_000, t0 - 8_000]),
    );
    const now = t0 + 6_000;
    const taken = await take(b, now);
    expect(taken.map((t) => [t.id, t.hostId, t.pid])).toEqual([[idA, 'ha', 111]]);
    expect(taken[0]!.runs.map((r) => [r.taskId, r.outcome, r.action.action]).sort()).toEqual(
      [
        [ids[0], 'completed', 'done'],
        [ids[1], 'abandoned', 'requeue'],
        [ids[2], 'timed_out', 'requeue'],
      ].sort(),
    );
    expect(decided).toHaveLength(3);
    // The requeue waits for the fenced workers to stop (the delay), whatever the decision said.
    const t1 = await a.getTask(ids[1]!);
    expect([t1!.status, t1!.notBefore, t1!.currentRunId, t1!.consecutiveFailures]).toEqual(['ready', now + 7_000, null, 0]);
    expect((await a.getTask(ids[0]!))!.status).toBe('done');
    const r1 = await a.getRun(claims[1]!.run.id);
    expect([r1!.status, r1!.outcome, r1!.stopReason, r1!.exitedAt]).toEqual(['ended', 'abandoned', 'lease_lost', null]);
    expect(r1!.error).toMatch(/lost its lease.*taken over by supervisor/);
    expect((await a.getRun(claims[2]!.run.id))!.stopReason).toBe('timed_out'); // its reclaim goes on on its host
    expect((await a.getRun(claims[0]!.run.id))!.stopReason).toBe('lease_lost'); // reported, hung or exiting: stopped on its host
    // The fenced worker's late writes are refused.
    await expect(a.heartbeat(cred(1), { late: true }, now + 1)).rejects.toBeInstanceOf(NotCurrentError);
    await expect(a.report(cred(1), { outcome: 'completed', result: null }, now + 1)).rejects.toBeInstanceOf(NotCurrentError);
    // A, back: its lease cannot be renewed; its runs (still its host's, processes not confirmed gone) show the stop reason.
    const back = a.begin();
    expect(await leaseRenewalOf(back)!.renewLease(now + 10)).toBe(false);
    const live = await back.liveRuns();
    expect(live.map((r) => [r.id, r.stopReason]).sort()).toEqual(claims.map((c, i) => [c.run.id, i === 2 ? 'timed_out' : 'lease_lost']).sort());
    // Its reclaim of a taken-over run begins once (the SIGTERM recorded), never for another reason.
    expect(await back.beginReclaim(claims[1]!.run.id, 'stalled', now + 20)).toBe(false);
    expect(await back.beginReclaim(claims[1]!.run.id, 'lease_lost', now + 20)).toBe(true);
    expect(await back.beginReclaim(claims[1]!.run.id, 'lease_lost', now + 30)).toBe(false);
    await back.commit();
    back.close();
    const rows = await a.liveSupervisors();
    expect(rows.map((r) => r.id)).not.toContain(idA);
    expect(rows.map((r) => r.id)).toContain('stale-hb');
    // Taken over once: a second look finds nothing.
    expect(await take(b, now + 100)).toEqual([]);
    const events = (await a.showTask(ids[1]!))!.events.map((e) => e.kind);
    expect(events).toEqual(expect.arrayContaining(['ended', 'taken_over', 'requeued']));
  });

  it('a session stopped inside a transaction (a SIGSTOPped worker or CLI between two statements) is ended by the server: its row locks do not outlast the lock timeout', async () => {
    const { url } = await boardUrl();
    const a = await openBoard(url, { pgPoolMax: 2, busyTimeoutMs: 1000 });
    opened.push(a);
    const b = await openBoard(url, { pgPoolMax: 2, busyTimeoutMs: 5000 });
    opened.push(b);
    await a.putSkill({ name: 's', argv: ['true'] });
    await a.createTask({ skill: 's', title: 't' });
    const [c] = await a.claimBatch(1, Date.now(), (id) => `/tmp/${id}.log`);
    // a holds the run row locked in a transaction it never finishes (its process "stopped").
    const stuck = a.begin();
    expect(await stuck.beginReclaim(c!.run.id, 'timed_out', Date.now())).toBe(true);
    const t0 = Date.now();
    // b waits for the row; the server ends a's idle session after a's lock timeout (1 s), well
    // before b's own lock timeout (5 s) would fail it as busy: b's reclaim lands, a's is lost.
    const tx = b.begin();
    expect(await tx.beginReclaim(c!.run.id, 'stalled', Date.now())).toBe(true);
    await tx.commit();
    tx.close();
    expect(Date.now() - t0).toBeLessThan(4_000);
    await expect(stuck.commit()).rejects.toThrow(/rolled back|terminat/i);
    stuck.close();
    expect((await b.getRun(c!.run.id))!.stopReason).toBe('stalled');
  });

  it('a SQLite board has no supervisor registry (one owner: its lock file)', async () => {
    const t = tempDir('ks-sups-');
    try {
      const b = await openBoard(join(t.dir, 'k.db'));
      expect(supervisorRegistryOf(b)).toBeNull();
      const tx = b.begin();
      expect(leaseRenewalOf(tx)).toBeNull();
      tx.close();
      await b.close();
    } finally {
      t.cleanup();
    }
  });
});
