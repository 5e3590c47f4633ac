/**
 * Chaos scenario "damage": for each kind of damage (garbage over the header, a zeroed table page, a
 * truncated file, index keys out of order; --short runs the header and the truncation), a supervisor
 * runs workers while the board is damaged under it, a restart meets the damaged board, the operator
 * recovers it in place and a last supervisor drains it. Measures: whether the damage was seen, one
 * backup per damage fingerprint, worker results lost (neither on the board nor kept in the spool,
 * hard), integrity after recover. Skipped when the damage toolkit (board/src/damage.ts) is absent.
 */
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  garbageHeader,
  localConnectionOf,
  indexOutOfOrder,
  listBackups,
  makeBoard,
  recoverInPlace,
  truncateFile,
  zeroInteriorPage,
  type Db,
  type RecoverInPlaceReport,
} from '@kanban-supervisor/board';
import { readSpool, spoolDir } from '@kanban-supervisor/worker-runtime';
import { ROOT, Sup, fmt, openBoard, openSql, readRecords, sleep } from '../lib.js';
import { CHAOS, SHORT, h, integrityRow, one, res, tail } from './setup.js';

interface DamageKind {
  key: string;
  title: string;
  apply: (db: string) => string;
}

const DAMAGE_KINDS: DamageKind[] = [
  { key: 'header', title: 'garbage over the header', apply: (db) => `${garbageHeader(db).bytes} bytes of log text at offset 0` },
  {
    key: 'page',
    title: 'zeroed table page',
    apply: (db) => {
      const r = zeroInteriorPage(db, { table: 'tasks', kind: 'leaf' });
      return `tasks leaf page ${r.pageno} (${r.cells} rows) zeroed`;
    },
  },
  {
    key: 'truncate',
    title: 'truncated file',
    apply: (db) => {
      const r = truncateFile(db);
      return `${fmt(r.from)} → ${fmt(r.to)} bytes`;
    },
  },
  {
    key: 'index',
    title: 'index keys out of order',
    apply: (db) => {
      const r = indexOutOfOrder(db);
      return `tasks_status leaf page ${r.pageno}: cells ${r.swapped.join(' and ')} swapped`;
    },
  },
];

/** TRUNCATE checkpoint through a short connection (closed again before any byte is touched through fs). */
function checkpointTruncate(db: string): void {
  const c = openSql(db, { busyTimeoutMs: 2000 });
  try {
    c.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    c.close();
  }
}

/** Checkpoint (TRUNCATE: the -wal emptied) and close a plain connection; a busy checkpoint is harmless (the WAL stays valid). */
function closeTruncating(c: Db): void {
  try {
    c.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    /* harmless */
  }
  c.close();
}

async function damageOne(kind: DamageKind): Promise<void> {
  const S = `damage: ${kind.title}`;
  const dir = h.dir(`damage-${kind.key}`);
  const db = join(dir, 'board', 'kanban.db');
  const records = join(dir, 'records.txt');
  const go = join(dir, 'GO');
  const K = 3;
  const sups: Sup[] = [];
  const env = { MAX_CONCURRENT_WORKERS: '8', TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '5', QUARANTINE_PROBE_SECONDS: '0.5', RECLAIM_GRACE_SECONDS: '3' };
  const sup = async (label: string, args: string[] = []): Promise<Sup> => {
    const s = new Sup(h, db, { env, args, logFile: join(dir, `supervisor-${label}.log`) });
    sups.push(s);
    if (!(await s.waitStarted(30_000))) throw new Error(`supervisor ${label} did not start:\n${tail(s)}`);
    return s;
  };
  try {
    // The work tasks first (low rowids: the part of the file the damage leaves), then the
    // toolkit's filler board around them (300 tasks, half with ended runs); filler stays blocked.
    {
      const b = await openBoard(db);
      await b.putSkill({ name: 'work', argv: [process.execPath, join(CHAOS, 'damage-worker.mjs')], env: { RECORDS: records, GO: go } });
      for (let i = 0; i < K; i++) await b.createTask({ skill: 'work', title: `work ${i}`, priority: -1 });
      localConnectionOf(b)!.closeNow('TRUNCATE');
    }
    await makeBoard(db, { tasks: 300 });
    {
      const c = openSql(db);
      c.prepare(`UPDATE tasks SET status = 'blocked', last_error = 'chaos filler' WHERE skill = 's' AND status = 'ready'`).run();
      closeTruncating(c);
    }

    // 1. A supervisor runs K workers; the board is damaged under it; the workers then deliver.
    const s1 = await sup('1-live');
    const t0 = Date.now();
    while (readRecords(records).filter((r) => r[0] === 'start').length < K && Date.now() - t0 < 30_000) await sleep(50);
    let applied = '';
    let lastErr = '';
    for (let i = 0; i < 20 && !applied; i++) {
      try {
        checkpointTruncate(db);
        applied = kind.apply(db);
      } catch (e) {
        lastErr = (e as Error).message;
        await sleep(100);
      }
    }
    if (!applied) throw new Error(`could not damage the board: ${lastErr}`);
    writeFileSync(go, '');
    const t1 = Date.now();
    const workerAlive = () => h.scanner.scan((p) => p.stat.state !== 'Z' && p.cmd.some((c) => c.endsWith('damage-worker.mjs'))).length > 0;
    while (workerAlive() && Date.now() - t1 < 30_000) await sleep(50);
    const live = await s1.waitFor((l) => l.event === 'board_quarantined', 3000);
    await s1.stop(20_000);
    // 2. A restart on the damaged board: its pre-check quarantines; a few probes; no second backup.
    const s2 = await sup('2-restart');
    const atRestart = await s2.waitFor((l) => l.event === 'board_quarantined', 3000);
    await sleep(1500);
    await s2.stop(20_000);
    const spooled = readSpool(db).length;
    // 3. The operator recovers the board in place; a supervisor takes the spool and drains the board.
    let recovered: RecoverInPlaceReport | null = null;
    let recoverError = '';
    try {
      recovered = recoverInPlace(db);
    } catch (e) {
      recoverError = (e as Error).message;
    }
    const s3 = await sup('3-recovered', ['--until-idle']);
    const fin = await s3.waitExit(60_000);

    const fingerprints = new Set<string>();
    for (const s of sups) for (const l of s.events('board_quarantined')) if (typeof l.fingerprint === 'string') fingerprints.add(l.fingerprint);
    if (recovered?.backup?.fingerprint) fingerprints.add(recovered.backup.fingerprint);
    const backups = listBackups(db);
    const perFp = [...fingerprints].map((fp) => backups.filter((x) => x.dir.endsWith(`.${fp.slice(0, 16)}`)).length);
    const okBackups = fingerprints.size > 0 && perFp.every((n) => n === 1) && backups.length === fingerprints.size;
    res.add({
      scenario: S,
      figure: 'damage seen by the running supervisor / by a restart',
      value: `${live ? 'yes' : 'no'} / ${atRestart ? 'yes' : 'no'}`,
      target: '-',
      pass: null,
      note: `${applied}${live ? `; reason: ${String(live.reason).slice(0, 80)}` : ''}`,
    });
    res.add({
      scenario: S,
      figure: 'backups made per damage fingerprint',
      value: `${backups.length} backup(s) for ${fingerprints.size} fingerprint(s)`,
      number: backups.length,
      target: '1 per fingerprint',
      pass: okBackups,
    });
    // Results: every worker that returned a result must find it on the recovered board.
    const sql = openSql(db);
    try {
      // Kept aside: spool files (pending or set aside as rejected) still naming the run.
      const spoolFiles = (() => {
        const out: string[] = [];
        const walk = (d: string) => {
          let names: string[] = [];
          try {
            names = readdirSync(d);
          } catch {
            return;
          }
          for (const n of names) {
            const p = join(d, n);
            if (statSync(p).isDirectory()) walk(p);
            else out.push(readFileSync(p, 'latin1'));
          }
        };
        walk(spoolDir(db));
        return out;
      })();
      let onBoard = 0;
      let kept = 0;
      let destroyed = 0;
      const results = readRecords(records).filter((r) => r[0] === 'result');
      for (const r of results) {
        const t = one<{ status: string; result: string | null } | undefined>(sql, 'SELECT status, result FROM tasks WHERE id = ?', r[1]);
        const run = one<{ id: string } | undefined>(sql, 'SELECT id FROM runs WHERE id = ?', r[2]);
        if (!t || !run) destroyed++;
        const by = t?.result ? (JSON.parse(t.result) as { by?: string }).by : undefined;
        if (t?.status === 'done' && by === r[2]) onBoard++;
        else if (spoolFiles.some((f) => f.includes(r[2]!))) kept++;
      }
      const lost = results.length - onBoard - kept;
      const count = (ev: string) => sups.reduce((a, s) => a + s.events(ev).length, 0);
      const dropped = count('spool_not_current');
      res.add({
        scenario: S,
        figure: 'worker results lost (neither on the board nor kept in the spool)',
        value: `${lost} of ${results.length}${kept ? ` (${kept} only in the spool, not on the board)` : ''}`,
        number: lost,
        target: '0',
        pass: lost === 0 && results.length === K && !recoverError && !fin.timedOut,
        hard: true,
        note:
          `${spooled} spooled while the board was damaged: ${count('spool_applied')} applied, ${count('spool_unapplied')} kept unapplied, ${dropped} deleted as not current; ${kept} on disk in the spool; ` +
          `${destroyed} whose run (or task) the damage destroyed${recoverError ? `; recover failed: ${recoverError}` : ''}; final supervisor ${fin.timedOut ? 'did not go idle' : `exit ${fin.code}`}`,
      });
    } finally {
      sql.close();
    }
    integrityRow(S, db, 'after recover');
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
  }
}

export async function scenarioDamage(): Promise<void> {
  const S = 'damage';
  if (!existsSync(join(ROOT, 'board/src/damage.ts')) || typeof makeBoard !== 'function') {
    process.stdout.write('damage: skipped (toolkit not present)\n');
    res.add({ scenario: S, figure: 'damaged-board fixtures under a running supervisor', value: 'skipped (toolkit not present)', target: 'backups per fingerprint 1, results lost 0', verdict: 'SKIP' });
    return;
  }
  const kinds = SHORT ? DAMAGE_KINDS.filter((k) => k.key === 'header' || k.key === 'truncate') : DAMAGE_KINDS;
  for (const k of kinds) {
    try {
      await damageOne(k);
    } catch (e) {
      res.add({ scenario: `damage: ${k.title}`, figure: 'scenario ran to the end', value: `error: ${(e as Error).message.split('\n')[0]}`, target: 'no error', pass: false, hard: true });
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    }
  }
}
