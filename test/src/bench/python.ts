/**
 * Benchmark "python" (issue 19: the Python runtime). One Python skill under a supervisor (report
 * channel on) heartbeats N times through kanban_worker (the channel), then M times through the worker
 * CLI ($KANBAN_CLI worker heartbeat: a Node process per call, what a Python skill did before); per
 * call wall ms and CPU ms (the skill's process and its children; the supervisor's side is apart: its
 * CPU over the whole run is printed too), and the resident memory of the Python worker (what one
 * worker of a fleet costs). All INFO: the figures, no targets.
 *
 * `--short`: 200 channel heartbeats and 10 CLI ones (full: 2,000 and 50).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT } from '../common.js';
import { Sup, cpuSeconds, fmt, openBoard } from '../lib.js';
import { BENCH, SHORT, h, res } from './setup.js';

const S = 'python runtime';

interface Side {
  n: number;
  wallMs: number;
  cpuMs: number;
}

export async function benchPython(): Promise<void> {
  const n = SHORT ? 200 : 2000;
  const m = SHORT ? 10 : 50;
  const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
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
