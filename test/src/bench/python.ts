/**
 * Benchmark "python" (issue 19: the Python runtime). One Python skill under a supervisor (report
 * channel on) heartbeats N times through kanban_worker (the channel), then M times through the worker
 * CLI ($KANBAN_CLI worker heartbeat: a Node process per call, what a Python skill did before); per
 * call wall ms and CPU ms (the skill's process and its children; the supervisor's side is apart: its
 * CPU over the whole run is printed too), and the resident memory of the Python worker (what one
 * worker of a fleet costs). All INFO: the figures, no targets.
 *
 * Fleet: W light Python workers (py-idle.py: they wait, the runtime heartbeats every second through
 * the channel) under one supervisor: the supervisor's CPU over a window, each worker's PSS (its share
 * of memory), heartbeats applied. (1,000 workers at ~10-25 MB each do not fit the shared CI machine:
 * the full run takes 200; the figure per worker scales.)
 *
 * `--short`: 200 channel heartbeats and 10 CLI ones, 30 fleet workers over 10 s (full: 2,000 and 50,
 * 200 workers over 30 s).
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT } from '../common.js';
import { Sup, cpuSeconds, fmt, openBoard, openSql } from '../lib.js';
import { BENCH, SHORT, h, res } from './setup.js';

const S = 'python runtime';

interface Side {
  n: number;
  wallMs: number;
  cpuMs: number;
}

/**
 * The python3 interpreter itself (sys.executable), not a wrapper in PATH (a pyenv shim is a shell
 * script that costs more than the interpreter's own start-up: a figure per worker would count it).
 */
export function pythonExecutable(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
}

export async function benchPython(): Promise<void> {
  const n = SHORT ? 200 : 2000;
  const m = SHORT ? 10 : 50;
  const python = pythonExecutable();
  const dir = h.dir('python');
  const db = join(dir, 'board', 'kanban.db');
  const out = join(dir, 'figures.json');
  const b = await openBoard(db);
  await b.putSkill({
    name: 'py-beat',
    argv: [python, join(BENCH, 'py-heartbeat.py')],
    env: { PYTHONPATH: join(ROOT, 'worker-runtime', 'python'), N: String(n), M: String(m), OUT: out },
  });
  await b.createTask({ skill: 'py-beat', title: 'heartbeats' });
  await b.close();
  const sup = new Sup(h, db, { args: ['--until-idle'], logFile: join(dir, 'supervisor.log'), direct: true });
  let cpu = 0;
  const poll = setInterval(() => {
    const c = cpuSeconds(sup.pid);
    if (c !== null) cpu = c;
  }, 100);
  const fin = await sup.waitExit(600_000);
  clearInterval(poll);
  if (fin.timedOut || fin.code !== 0) throw new Error(`the supervisor ${fin.timedOut ? 'timed out' : `exited ${fin.code}`} (log: ${join(dir, 'supervisor.log')})`);
  const f = JSON.parse(readFileSync(out, 'utf8')) as { channel: Side; cli: Side; wentDirect: boolean; rssKb: number };
  if (f.wentDirect) throw new Error('some heartbeats went to the board directly: the channel figure would be wrong');
  const row = (label: string, s: Side) =>
    res.add({ scenario: S, figure: `one heartbeat from Python, ${label} (${s.n} calls)`, value: `${fmt(s.wallMs, 2)} ms wall, ${fmt(s.cpuMs, 2)} ms CPU`, number: s.wallMs, target: 'none: the figure', pass: null });
  row('through the report channel (kanban_worker)', f.channel);
  row('through the worker CLI (a Node process per call)', f.cli);
  res.add({ scenario: S, figure: 'worker CLI ÷ channel, per heartbeat', value: `${fmt(f.cli.wallMs / f.channel.wallMs, 0)}× wall, ${fmt(f.cli.cpuMs / Math.max(0.001, f.channel.cpuMs), 0)}× CPU`, target: 'none: the figure', pass: null });
  res.add({ scenario: S, figure: 'resident memory of one Python worker (kanban_worker, after the run)', value: `${fmt(f.rssKb / 1024, 1)} MB`, number: f.rssKb, target: 'none: the figure', pass: null });
  res.add({ scenario: S, figure: `supervisor CPU over the whole run (${n + m + 5} heartbeats, spawn and accounting)`, value: `${fmt(cpu * 1000, 0)} ms`, number: cpu * 1000, target: 'none: the figure', pass: null });
  res.extra.python = { ...f, supervisorCpuMs: cpu * 1000 };
}

/** PSS of a process, bytes (its share of the memory it maps), from smaps_rollup; null when gone. */
function pss(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

export async function benchPythonFleet(): Promise<void> {
  const workers = SHORT ? 30 : 200;
  const windowS = SHORT ? 10 : 30;
  const python = pythonExecutable();
  const dir = h.dir('python-fleet');
  const db = join(dir, 'board', 'kanban.db');
  const b = await openBoard(db);
  await b.putSkill({ name: 'py-idle', argv: [python, join(BENCH, 'py-idle.py')], env: { PYTHONPATH: join(ROOT, 'worker-runtime', 'python') }, heartbeatTimeoutSeconds: 3 });
  for (let i = 0; i < workers; i++) await b.createTask({ skill: 'py-idle', title: `idle ${i}` });
  await b.close();
  const sup = new Sup(h, db, { env: { MAX_CONCURRENT_WORKERS: String(workers) }, logFile: join(dir, 'supervisor.log'), direct: true });
  try {
    const sql = openSql(db);
    const live = () => (sql.prepare(`SELECT count(*) AS n FROM runs WHERE pid IS NOT NULL AND heartbeat_at IS NOT NULL AND exited_at IS NULL`).get() as { n: number }).n;
    const until = Date.now() + 120_000;
    while (live() < workers && Date.now() < until) await sleep(500);
    const started = live();
    const c0 = cpuSeconds(sup.pid) ?? 0;
    const t0 = Date.now();
    await sleep(windowS * 1000);
    const cpuPct = (((cpuSeconds(sup.pid) ?? 0) - c0) / ((Date.now() - t0) / 1000)) * 100;
    const fresh = (sql.prepare(`SELECT count(*) AS n FROM runs WHERE exited_at IS NULL AND heartbeat_at > ?`).get(Date.now() - 2500) as { n: number }).n;
    const pids = (sql.prepare('SELECT pid FROM runs WHERE pid IS NOT NULL AND exited_at IS NULL').all() as Array<{ pid: number }>).map((r) => r.pid);
    sql.close();
    const sizes = pids.map(pss).filter((x): x is number => x !== null);
    const mean = sizes.reduce((a, x) => a + x, 0) / Math.max(1, sizes.length);
    res.add({ scenario: S, figure: `fleet: light Python workers running, heartbeating every 1 s through the channel`, value: `${started}/${workers} (${fresh} beat in the last 2.5 s)`, target: `${workers}/${workers}`, pass: started === workers });
    res.add({ scenario: S, figure: `fleet: supervisor CPU with ${started} Python workers at 1 Hz (${windowS} s window)`, value: `${fmt(cpuPct, 2)} % of one core`, number: cpuPct, target: 'none: the figure', pass: null });
    res.add({ scenario: S, figure: 'fleet: memory of one light Python worker (PSS, mean)', value: `${fmt(mean / 1048576, 1)} MB (× 1,000 workers: ${fmt((mean * 1000) / 1073741824, 1)} GB)`, number: mean, target: 'none: the figure', pass: null });
    res.extra.pythonFleet = { workers, started, fresh, windowS, cpuPct, pssMeanBytes: mean };
  } finally {
    await sup.stop(60_000);
  }
}
