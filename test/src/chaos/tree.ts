/**
 * Chaos scenario "tree" (printed as "leaks"): workers that leave children and escaped grandchildren
 * behind, some exiting, some hanging and SIGKILLed, their supervisor SIGKILLed in the middle and
 * restarted. Measures: descendants still alive once the board is idle (hard) and the second
 * supervisor's SIGTERM exit; its fd count and zombies feed the final leak check.
 */
import { join } from 'node:path';
import { Sup, fdCount, fmt, openBoard, pidAlive, readCmdline, readRecords, sleep } from '../lib.js';
import { CHAOS, P, boards, h, quiet, res, tail, waitIdle } from './setup.js';

export async function scenarioTree(): Promise<void> {
  const S = 'leaks';
  const each = P.tree.each;
  const dir = h.dir('tree');
  const db = join(dir, 'board', 'kanban.db');
  boards.push(db);
  const records = join(dir, 'tree.txt');
  const b = await openBoard(db);
  const sups: Sup[] = [];
  try {
    const script = join(CHAOS, 'tree-worker.sh');
    await b.putSkill({ name: 'tree-exit', argv: [script, records, 'exit'] });
    await b.putSkill({ name: 'tree-hang', argv: [script, records, 'hang'] });
    const hang: string[] = [];
    for (let i = 0; i < each; i++) await b.createTask({ skill: 'tree-exit' });
    for (let i = 0; i < each; i++) hang.push((await b.createTask({ skill: 'tree-hang', maxRetries: 1 })).id);
    const env = { MAX_CONCURRENT_WORKERS: String(2 * each), TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '2', RECLAIM_GRACE_SECONDS: '2' };
    const first = new Sup(h, db, { env, logFile: join(dir, 'supervisor.log') });
    sups.push(first);
    if (!(await first.waitStarted())) throw new Error(`the supervisor did not start:\n${tail(first)}`);
    const leaders = async () => readRecords(records).filter((r) => r[0] === 'leader');
    const t0 = Date.now();
    while ((await leaders()).length < 2 * each && Date.now() - t0 < 30_000) await sleep(100);
    // SIGKILL the supervisor in the middle: the escapees it was holding (re-parented to it, the
    // child subreaper) go to init, and the next supervisor must find them by their run id.
    first.kill('SIGKILL');
    await first.exited;
    const sup = new Sup(h, db, { env, logFile: join(dir, 'supervisor-2.log') });
    sups.push(sup);
    if (!(await sup.waitStarted())) throw new Error(`the second supervisor did not start:\n${tail(sup)}`);
    const fdStart = fdCount(sup.pid);
    // SIGKILL every hanging worker's shell: its group and its escaped grandchild stay behind.
    let killed = 0;
    for (const r of await leaders()) {
      if (!hang.includes(r[1]!)) continue;
      const pid = Number(r[2]);
      if (readCmdline(pid).some((c) => c.endsWith('tree-worker.sh'))) {
        try {
          process.kill(pid, 'SIGKILL');
          killed++;
        } catch {
          /* gone */
        }
      }
    }
    const idle = await waitIdle(b, 60_000);
    const tIdle = Date.now();
    // Left behind by the workers: every recorded child and escapee must disappear.
    const left = () =>
      readRecords(records)
        .filter((r) => r[0] === 'child' || r[0] === 'escapee')
        .filter((r) => pidAlive(Number(r[2])) && readCmdline(Number(r[2]))[0] === 'sleep');
    while (left().length > 0 && Date.now() - tIdle < 20_000) await sleep(100);
    const remaining = left();
    const cleanMs = Date.now() - tIdle;
    const total = readRecords(records).filter((r) => r[0] === 'child' || r[0] === 'escapee').length;
    await sleep(300);
    await quiet('process trees', sup, fdStart);
    res.add({
      scenario: S,
      figure: `descendants left by ${2 * each} workers (${killed} SIGKILLed, ${each} exited, their supervisor SIGKILLed and restarted) still alive`,
      value: `${remaining.length} of ${total}`,
      number: remaining.length,
      target: '0',
      pass: idle && remaining.length === 0 && total === 4 * each,
      hard: true,
      note: `board idle: ${idle ? 'yes' : 'no'}; last descendant gone ${fmt(cleanMs / 1000)} s after the board went idle`,
    });
    const code = await sup.stop(30_000);
    res.add({ scenario: S, figure: 'tree supervisor SIGTERM exit status', value: String(code), target: '0', pass: code === 0 });
  } finally {
    for (const s of sups) if (s.running) s.kill('SIGKILL');
    await b.close();
  }
}
