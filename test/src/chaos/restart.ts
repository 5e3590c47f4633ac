/**
 * Chaos scenario "restart" (supervisor SIGKILL/restart): steady workers under load while the
 * supervisor is SIGKILLed and restarted again and again (8 times with --short, 50 in full), then a
 * final --until-idle supervisor. Measures: the kills and restart times; then, as hard invariants,
 * integrity at every restart and at the end, the final supervisor going idle, two live workers for
 * one task (sampled from /proc every 20 ms, and from the workers' own start/stop records), tasks
 * completed or run to the end more than once, tasks lost; and, for information, workers adopted and
 * runs by outcome.
 */
import { join } from 'node:path';
import { Sup, fmt, integrity, median, openBoard, openSql, rand, readRecords, sleep } from '../lib.js';
import { CHAOS, P, boards, h, integrityRow, one, outcomes, res, rows, tail } from './setup.js';

interface Rec {
  kind: string;
  task: string;
  run: string;
  pid: number;
  at: number;
  why?: string;
}

export async function scenarioRestart(): Promise<void> {
  const S = 'supervisor SIGKILL/restart';
  const cfg = P.restart;
  const dir = h.dir('restart');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const records = join(dir, 'records.txt');
  const b = await openBoard(db);
  const sql = openSql(db);
  const sups: Sup[] = [];
  const env = {
    MAX_CONCURRENT_WORKERS: '8',
    TICK_INTERVAL_MS: '100',
    CRASH_GRACE_SECONDS: '2',
    FAILURE_LIMIT: '5',
    BACKOFF_BASE_SECONDS: '0.2',
    BACKOFF_FACTOR: '2',
    BACKOFF_MAX_SECONDS: '2',
    RECLAIM_GRACE_SECONDS: '3',
  };
  let n = 0;
  const start = async (untilIdle = false): Promise<Sup> => {
    const s = new Sup(h, db, { env, args: untilIdle ? ['--until-idle'] : [], logFile: join(dir, `supervisor-${++n}.log`) });
    sups.push(s);
    if (!(await s.waitStarted(30_000))) throw new Error(`supervisor #${n} did not start:\n${tail(s)}`);
    return s;
  };
  let stop = false;
  let monitorStop = false;
  try {
    await b.putSkill({ name: 'steady', argv: [process.execPath, join(CHAOS, 'steady-worker.mjs')], env: { RECORDS: records } });
    let sup = await start();

    // Monitor: every ~20 ms, the live worker processes of each task (from /proc, by environment).
    const incidents = new Map<string, { task: string; pids: number[]; runs: string[]; first: number; last: number }>();
    let samples = 0;
    const monitor = (async () => {
      while (!monitorStop) {
        const byTask = new Map<string, Array<{ pid: number; run: string }>>();
        for (const p of h.scanner.scan((q) => q.stat.state !== 'Z' && q.cmd.some((c) => c.endsWith('steady-worker.mjs')))) {
          const task = p.env.get('KANBAN_TASK_ID') ?? '?';
          const list = byTask.get(task) ?? [];
          list.push({ pid: p.pid, run: p.env.get('KANBAN_RUN_ID') ?? '?' });
          byTask.set(task, list);
        }
        const now = Date.now();
        for (const [task, list] of byTask) {
          if (list.length < 2) continue;
          const pids = list.map((x) => x.pid).sort((x, y) => x - y);
          const key = `${task} ${pids.join(',')}`;
          const inc = incidents.get(key);
          if (inc) inc.last = now;
          else incidents.set(key, { task, pids, runs: list.map((x) => x.run), first: now, last: now });
        }
        samples++;
        await sleep(20);
      }
    })();

    let created = 0;
    const feeder = (async () => {
      while (!stop) {
        const open = one<{ n: number }>(sql, `SELECT count(*) AS n FROM tasks WHERE status IN ('ready', 'running')`).n;
        for (let i = open; i < cfg.open && !stop; i++, created++) await b.createTask({ skill: 'steady', title: `steady ${created}`, payload: { ms: Math.round(rand(300, 1500)) } });
        await sleep(100);
      }
    })();

    const t0 = Date.now();
    const end = t0 + cfg.budgetS * 1000;
    let kills = 0;
    let integrityOk = 0;
    const integrityBad: string[] = [];
    const startupMs: number[] = [];
    let finalSup: Sup | null = null;
    while (kills < cfg.kills) {
      await sleep(rand(cfg.gapMs[0], cfg.gapMs[1]));
      const last = kills + 1 >= cfg.kills || Date.now() >= end;
      if (last) {
        stop = true;
        await feeder;
      }
      if (!sup.running) throw new Error(`supervisor #${n} died by itself:\n${tail(sup)}`);
      sup.kill('SIGKILL');
      await sup.exited;
      kills++;
      const r = integrity(db);
      if (r === 'ok') integrityOk++;
      else integrityBad.push(r);
      const t = Date.now();
      sup = await start(last);
      startupMs.push(Date.now() - t);
      if (last) {
        finalSup = sup;
        break;
      }
    }
    const runS = (Date.now() - t0) / 1000;
    const fin = await finalSup!.waitExit(120_000);
    await sleep(1000); // let the last fenced-out stragglers (if any) show in the monitor
    monitorStop = true;
    await monitor;

    res.add({
      scenario: S,
      figure: 'supervisor SIGKILLs + restarts under load',
      value: `${kills} in ${fmt(runS)} s`,
      number: kills,
      target: `≥ ${cfg.kills}`,
      pass: kills >= cfg.kills,
      note: `restart to "started": median ${fmt(median(startupMs), 0)} ms, max ${fmt(Math.max(...startupMs), 0)} ms`,
    });
    res.add({
      scenario: S,
      figure: 'integrity_check at every restart',
      value: `${integrityOk}/${kills} ok${integrityBad.length ? `; ${integrityBad[0]}` : ''}`,
      number: integrityBad.length,
      target: 'all ok',
      pass: integrityBad.length === 0,
      hard: true,
    });
    res.add({
      scenario: S,
      figure: 'final --until-idle supervisor',
      value: fin.timedOut ? 'did not go idle within 120 s' : `exit ${fin.code}`,
      target: 'exit 0',
      pass: !fin.timedOut && fin.code === 0,
      hard: true,
    });

    // Two live workers for one task: seen in /proc, and from the workers' own start/stop records.
    const inc = [...incidents.values()];
    res.add({
      scenario: S,
      figure: 'times a task had two live workers at once (/proc, every 20 ms)',
      value: `${inc.length}${inc.length ? ` (e.g. task ${inc[0]!.task}: pids ${inc[0]!.pids.join(', ')}, runs ${inc[0]!.runs.join(', ')}, ${inc[0]!.last - inc[0]!.first} ms)` : ''}`,
      number: inc.length,
      target: '0',
      pass: inc.length === 0,
      hard: true,
      note: `${fmt(samples)} /proc samples`,
    });
    const recs: Rec[] = readRecords(records).map((r) => ({ kind: r[0]!, task: r[1]!, run: r[2]!, pid: Number(r[3]), at: Number(r[4]), why: r[5] }));
    const exitedAt = new Map(rows<{ id: string; exited_at: number | null }>(sql, 'SELECT id, exited_at FROM runs').map((r) => [r.id, r.exited_at]));
    const spans = new Map<string, Array<{ run: string; from: number; to: number }>>();
    for (const r of recs.filter((x) => x.kind === 'start')) {
      const stopRec = recs.find((x) => x.kind === 'stop' && x.run === r.run);
      const to = stopRec?.at ?? exitedAt.get(r.run) ?? Date.now();
      const list = spans.get(r.task) ?? [];
      list.push({ run: r.run, from: r.at, to });
      spans.set(r.task, list);
    }
    let overlaps = 0;
    let example = '';
    for (const [task, list] of spans) {
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const a = list[i]!;
          const c = list[j]!;
          if (a.from < c.to && c.from < a.to) {
            overlaps++;
            example ||= ` (e.g. task ${task}: runs ${a.run} and ${c.run})`;
          }
        }
      }
    }
    res.add({
      scenario: S,
      figure: 'overlapping worker lifetimes from start/stop records',
      value: `${overlaps}${example}`,
      number: overlaps,
      target: '0',
      pass: overlaps === 0,
      hard: true,
    });
    const twice = rows<{ task_id: string; n: number }>(sql, `SELECT task_id, count(*) AS n FROM runs WHERE outcome = 'completed' GROUP BY task_id HAVING n > 1`);
    res.add({ scenario: S, figure: 'tasks completed more than once', value: String(twice.length), number: twice.length, target: '0', pass: twice.length === 0, hard: true });
    const effects = new Map<string, number>();
    for (const r of recs) if (r.kind === 'effect') effects.set(r.task, (effects.get(r.task) ?? 0) + 1);
    const redone = [...effects.values()].filter((x) => x > 1).length;
    res.add({ scenario: S, figure: 'tasks whose work ran to the end more than once', value: String(redone), number: redone, target: '0', pass: redone === 0, hard: true });
    const tasks = one<{ n: number; done: number }>(sql, `SELECT count(*) AS n, sum(status = 'done') AS done FROM tasks`);
    const notDone = rows<{ status: string; n: number }>(sql, `SELECT status, count(*) AS n FROM tasks WHERE status != 'done' GROUP BY status`);
    res.add({
      scenario: S,
      figure: 'tasks lost (not done at the end)',
      value: `${tasks.n - tasks.done} of ${tasks.n}${notDone.length ? ` (${notDone.map((x) => `${x.status} ${x.n}`).join(', ')})` : ''}`,
      number: tasks.n - tasks.done,
      target: '0',
      pass: tasks.n === tasks.done,
      hard: true,
    });
    const adopted = sups.reduce((a, s) => a + s.events('adopted').length, 0);
    const crashed = rows<{ error: string | null }>(sql, `SELECT error FROM runs WHERE outcome = 'crashed'`);
    res.add({
      scenario: S,
      figure: 'workers adopted across restarts / runs ended crashed',
      value: `${adopted} / ${crashed.length}`,
      target: '-',
      pass: null,
      note: crashed.length ? `crashed: ${[...new Set(crashed.map((c) => c.error ?? '?'))].slice(0, 2).join(' | ')}` : undefined,
    });
    res.add({ scenario: S, figure: 'runs by outcome', value: outcomes(sql), target: '-', pass: null });
    integrityRow(S, db, 'at the end');
    res.extra.restart = { kills, runSeconds: runS, startupMs, incidents: inc, created };
  } finally {
    stop = true;
    monitorStop = true;
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
    sql.close();
  }
}
