/**
 * The supervisors of a PostgreSQL board (schema v2, SupervisorRegistry), in process: per-host
 * ownership is exclusive per host id and released by the server when its connection ends; a
 * registered board object records its supervisor on each claim, renews its lease in a BoardTx,
 * and sees only its own host's live and unaccounted runs. A SQLite board has no such ability.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { leaseRenewalOf, openBoard, supervisorRegistryOf, type Board, type SupervisorIdentity, type SupervisorRegistry } from '@kanban-supervisor/board';
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
