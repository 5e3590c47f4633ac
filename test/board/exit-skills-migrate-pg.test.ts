/**
 * The exit-code skills migration (version 7 on both backends) on a board of the version before: existing skills become
 * `report = 'board'` with no result source, and the columns' CHECKs hold on both backends.
 */
import { afterAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { PG_SCHEMA_VERSION, SCHEMA_VERSION, openBoard } from '@kanban-supervisor/board';
import { tempDir } from '../src/common.js';
import { admin, freshDatabase } from './pg/server.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The schema version before the exit-code skills migration (7) on both backends. */
const BEFORE = 6;

describe('exit-code skills migration', () => {
  it('SQLite: a board of the version before gets report = board for its skills; the CHECKs refuse a bad mode or a result source without exit', async () => {
    const t = tempDir('ks-migrate-exit-');
    cleanups.push(t.cleanup);
    const path = join(t.dir, 'kanban.db');
    const b = await openBoard(path);
    await b.putSkill({ name: 'old', argv: ['/bin/true'], passEnv: ['HOME'] });
    await b.close();
    // Back to the version before (6): without the two columns, nor version 8's report sequence.
    const db = new Database(path);
    db.exec('ALTER TABLE skills DROP COLUMN result_from; ALTER TABLE skills DROP COLUMN report;');
    db.exec('DROP INDEX events_run_seq; ALTER TABLE events DROP COLUMN seq; ALTER TABLE runs DROP COLUMN report_seq;');
    db.pragma(`user_version = ${BEFORE}`);
    db.close();
    const again = await openBoard(path);
    expect(await again.getSkill('old')).toMatchObject({ name: 'old', passEnv: ['HOME'], report: 'board', resultFrom: null });
    await again.close();
    const raw = new Database(path);
    expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    const now = Date.now();
    const ins = raw.prepare(`INSERT INTO skills (name, argv, report, result_from, created_at, updated_at) VALUES (?, '["x"]', ?, ?, ${now}, ${now})`);
    expect(() => ins.run('a', 'socket', null)).toThrow(/CHECK constraint failed/);
    expect(() => ins.run('b', 'board', 'stdout-json')).toThrow(/CHECK constraint failed/);
    expect(() => ins.run('c', 'exit', 'stderr')).toThrow(/CHECK constraint failed/);
    ins.run('d', 'exit', 'stdout-json');
    raw.close();
  });

  it('PostgreSQL: the same, on a schema of the version before', async () => {
    const url = await freshDatabase('ks_migrate_exit');
    const schema = `kt_${randomBytes(5).toString('hex')}`;
    const u = new URL(url);
    u.searchParams.set('schema', schema);
    const b = await openBoard(u.href);
    await b.putSkill({ name: 'old', argv: ['/bin/true'] });
    await b.close();
    await admin(url, (c) => c.query(`ALTER TABLE ${schema}.skills DROP COLUMN result_from, DROP COLUMN report;
      DROP INDEX ${schema}.events_run_seq; ALTER TABLE ${schema}.events DROP COLUMN seq; ALTER TABLE ${schema}.runs DROP COLUMN report_seq;
      UPDATE ${schema}.schema_version SET version = ${BEFORE}`));
    const again = await openBoard(u.href);
    cleanups.push(() => again.close());
    expect(await again.getSkill('old')).toMatchObject({ name: 'old', report: 'board', resultFrom: null });
    expect(await admin(url, async (c) => Number((await c.query(`SELECT version FROM ${schema}.schema_version`)).rows[0]!.version))).toBe(PG_SCHEMA_VERSION);
    const now = Date.now();
    const ins = (name: string, report: string, result: string | null) =>
      admin(url, (c) => c.query(`INSERT INTO ${schema}.skills (name, argv, report, result_from, created_at, updated_at) VALUES ($1, '["x"]', $2, $3, $4, $4)`, [name, report, result, now]));
    await expect(ins('a', 'socket', null)).rejects.toThrow(/check constraint/);
    await expect(ins('b', 'board', 'stdout-json')).rejects.toThrow(/check constraint/);
    await ins('d', 'exit', 'stdout-json');
    expect(await again.getSkill('d')).toMatchObject({ report: 'exit', resultFrom: 'stdout-json' });
  });
});
