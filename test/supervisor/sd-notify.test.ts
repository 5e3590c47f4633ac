// sd_notify under a stand-in for systemd: a real AF_UNIX datagram socket (test/fixtures/notify/
// listener.py, which also reports each sender's pid from SCM_CREDENTIALS, as systemd checks it
// for NotifyAccess=main) given to the supervisor as NOTIFY_SOCKET.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeBoard, zeroInteriorPage } from '@kanban-supervisor/board';
import { SystemdNotifier } from '@kanban-supervisor/reaper';
import { Cleanups, FIXTURES, ROOT, cli, exited, sleep, startProcess, waitFor } from '../src/common.js';

const SUP = join(FIXTURES, 'sup');
const LISTENER = join(FIXTURES, 'notify', 'listener.py');
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

interface Note {
  t: number;
  pid: number | null;
  msg: string;
}

/** The listener on `socket` (a path or @abstract): every datagram, with its arrival time and sender pid. */
async function listen(socket: string): Promise<{ notes: () => Note[]; proc: ChildProcess }> {
  const proc = spawn('python3', [LISTENER, socket], { stdio: ['pipe', 'pipe', 'pipe'] });
  cleanups.killAtEnd(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += String(d)));
  proc.stderr!.on('data', (d) => (err += String(d)));
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`listener.py exited ${proc.exitCode}: ${err}`);
    return out.startsWith('LISTENING\n');
  }, 10_000, 20);
  const notes = () =>
    out
      .split('\n')
      .slice(1)
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Note);
  return { notes, proc };
}

/** The committed bin, run as systemd's ExecStart= runs it (its shebang, no wrapper in between). */
const BIN = join(ROOT, 'supervisor', 'bin', 'kanban-supervisor.js');

function supervise(db: string, args: string[], env: NodeJS.ProcessEnv, opts: { viaBin?: boolean } = {}) {
  return opts.viaBin ? cleanups.killAtEnd(startProcess(BIN, ['--db', db, 'run', ...args], env)) : cleanups.startCli(db, ['run', ...args], env);
}

const has = (notes: Note[], line: string) => notes.some((n) => n.msg.split('\n').includes(line));
const pings = (notes: Note[]) => notes.filter((n) => n.msg === 'WATCHDOG=1');
const statusOf = (n: Note) => n.msg.split('\n').find((l) => l.startsWith('STATUS='))?.slice('STATUS='.length);

describe('sd_notify (NOTIFY_SOCKET)', () => {
  it('READY=1 once the owner lock is held and a tick committed; WATCHDOG=1 at half of WATCHDOG_USEC; STATUS= with pool use; STOPPING=1 on SIGTERM; all from the main pid', async () => {
    const dir = cleanups.tempDir('ks-sdn-');
    const db = join(dir, 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    // Workers that ignore SIGTERM: the stop takes their whole grace (2 s), SIGKILL ends them.
    await cli(db, ['skill', 'add', 'stubborn', '--reclaim-grace', '2', '--', join(SUP, 'ignore-term.sh'), join(dir, 'pids')]);
    const socket = join(dir, 'notify.sock');
    const l = await listen(socket);

    // Another supervisor owns the board: the standby one must not say READY while it waits.
    const owner = supervise(db, [], {});
    await waitFor(() => owner.output().includes('"event":"started"'));
    const sup = supervise(db, ['--standby'], {
      NOTIFY_SOCKET: socket,
      WATCHDOG_USEC: '2000000',
      // Far longer than half of WATCHDOG_USEC: the loop must wake for the watchdog by itself.
      TICK_INTERVAL_MS: '10000',
      MAX_CONCURRENT_WORKERS: '2',
    });
    await waitFor(() => l.notes().some((n) => statusOf(n)?.startsWith('standby')), 10_000);
    await sleep(1500);
    expect(has(l.notes(), 'READY=1'), JSON.stringify(l.notes())).toBe(false);
    expect(pings(l.notes())).toEqual([]);

    owner.kill('SIGTERM');
    expect((await exited(owner)).code).toBe(0);
    const ready = await waitFor(() => l.notes().find((n) => n.msg.split('\n')[0] === 'READY=1'), 15_000);
    // By then the board names it as its owner (the lock is held, the owner row committed).
    const st = JSON.parse((await cli(db, ['--json', 'status'])).stdout) as { owner: { pid: number } };
    expect(st.owner.pid).toBe(sup.pid);
    expect(statusOf(ready)).toMatch(/^running: 0\/2 workers; board ok, not quarantined$/);
    expect(l.notes().filter((n) => n.msg.includes('READY=1'))).toHaveLength(1);

    // Pool use shows in STATUS= (a count change is sent within a few seconds, not per tick).
    for (let i = 0; i < 2; i++) await cli(db, ['add', '--skill', 'stubborn']);
    await waitFor(() => l.notes().some((n) => statusOf(n)?.startsWith('running: 2/2 workers')), 15_000);
    // Pings: at about half of WATCHDOG_USEC (1 s), never a gap near the 2 s timeout.
    await waitFor(() => pings(l.notes()).filter((n) => n.t > ready.t).length >= 5, 15_000);
    const times = pings(l.notes()).map((n) => n.t);
    const gaps = times.slice(1).map((x, i) => x - times[i]);
    const sorted = [...gaps].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    expect(median, JSON.stringify(gaps)).toBeGreaterThanOrEqual(950);
    expect(median, JSON.stringify(gaps)).toBeLessThan(1500);
    expect(Math.max(...gaps), JSON.stringify(gaps)).toBeLessThan(1900);

    // SIGTERM: STOPPING=1 at once, while the workers are still being reclaimed (their grace).
    const termAt = Date.now();
    sup.kill('SIGTERM');
    const stopping = await waitFor(() => l.notes().find((n) => n.msg.split('\n')[0] === 'STOPPING=1'), 10_000);
    expect(stopping.t - termAt).toBeLessThan(1000);
    expect(statusOf(stopping)).toBe('stopping: 2 worker(s) being reclaimed');
    expect((await exited(sup)).code, sup.output()).toBe(0);
    expect(Date.now() - termAt).toBeGreaterThan(1800); // the workers' grace was waited for
    // The loop kept pinging while it reclaimed them.
    expect(pings(l.notes()).some((n) => n.t > stopping.t), JSON.stringify(l.notes())).toBe(true);
    // Every message came from the supervisor's own pid (NotifyAccess=main), none from a worker.
    expect(new Set(l.notes().map((n) => n.pid))).toEqual(new Set([sup.pid]));
    expect(l.notes().filter((n) => n.msg.includes('STOPPING=1'))).toHaveLength(1);
  });

  it('works with an abstract socket (@name) through the installed bin, and sends no WATCHDOG=1 when WATCHDOG_PID names another process', async () => {
    const dir = cleanups.tempDir('ks-sdn-');
    const db = join(dir, 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), join(dir, 'pids'), '1.5']);
    const socket = `@ks-sd-notify-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const l = await listen(socket);

    for (const watchdogPid of [undefined, '1']) {
      const before = l.notes().length;
      await cli(db, ['add', '--skill', 'sleeper']);
      const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '400000' };
      if (watchdogPid) env.WATCHDOG_PID = watchdogPid;
      // Through the bin: it loads the CLI in its own process, so the pid systemd starts is the one
      // that notifies (no MAINPID= needed under NotifyAccess=main).
      const sup = supervise(db, ['--until-idle'], env, { viaBin: true });
      expect((await exited(sup)).code, sup.output()).toBe(0);
      await sleep(200);
      const mine = l.notes().slice(before);
      expect(mine.length, sup.output()).toBeGreaterThan(0);
      expect(new Set(mine.map((n) => n.pid))).toEqual(new Set([sup.pid]));
      expect(mine[0].msg.split('\n')[0], JSON.stringify(mine)).toBe('READY=1');
      expect(mine.at(-1)!.msg.split('\n')).toEqual(['STOPPING=1', 'STATUS=stopping: idle']);
      if (watchdogPid) expect(pings(mine), JSON.stringify(mine)).toEqual([]);
      else expect(pings(mine).length, JSON.stringify(mine)).toBeGreaterThanOrEqual(4); // 1.5 s at 200 ms
    }
  });

  it('a tick loop stalled on purpose stops the pings while the process itself stays responsive', async () => {
    // A real stall, no test hook: a quarantined supervisor awaits a backup helper process in its
    // tick; SIGSTOP that helper and the loop waits. Its event loop is free meanwhile (the SIGTERM
    // handler runs and says STOPPING=1): a timer would keep pinging, the loop must not.
    const dir = cleanups.tempDir('ks-sdn-');
    const db = join(dir, 'board', 'kanban.db');
    await makeBoard(db, { tasks: 300 });
    zeroInteriorPage(db);
    const socket = join(dir, 'notify.sock');
    const l = await listen(socket);
    const sup = supervise(db, [], {
      NOTIFY_SOCKET: socket,
      WATCHDOG_USEC: '400000',
      TICK_INTERVAL_MS: '50',
      QUARANTINE_PROBE_SECONDS: '0.2',
    });
    const ready = await waitFor(() => l.notes().find((n) => n.msg.split('\n')[0] === 'READY=1'), 20_000);
    expect(statusOf(ready), sup.output()).toMatch(/^quarantined: 0\/\d+ workers supervised, no dispatch; since /);
    // It pings (every 200 ms) before the stall.
    await waitFor(() => pings(l.notes()).length >= 2, 10_000);

    // Catch one of the backup helpers the re-probes start (at 0.2, 0.4, 0.8, 1.6 … s).
    const helperOf = (pid: number): number | null => {
      let kids: string[] = [];
      try {
        kids = readdirSync(`/proc/${pid}/task`).flatMap((tid) => readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim().split(' ').filter(Boolean));
      } catch {
        return null;
      }
      for (const k of kids) {
        try {
          if (readFileSync(`/proc/${k}/cmdline`, 'latin1').includes('backup-main')) return Number(k);
        } catch {
          /* gone */
        }
      }
      return null;
    };
    let helper: number | null = null;
    const end = Date.now() + 30_000;
    while (helper === null && Date.now() < end) {
      helper = helperOf(sup.pid!);
      if (helper === null) await sleep(1);
    }
    expect(helper, 'no backup helper seen').not.toBeNull();
    process.kill(helper!, 'SIGSTOP');
    cleanups.push(() => {
      try {
        process.kill(helper!, 'SIGCONT');
      } catch {
        /* gone */
      }
    });
    const stalledAt = Date.now();

    await sleep(1500);
    sup.kill('SIGTERM');
    const stopping = await waitFor(() => l.notes().find((n) => n.msg.split('\n')[0] === 'STOPPING=1'), 5_000);
    await sleep(1500);
    // 3 s stalled: ~15 pings were due, none came (one already in flight may land within ~50 ms).
    const during = pings(l.notes()).filter((n) => n.t > stalledAt + 100);
    expect(during, JSON.stringify(l.notes().slice(-5))).toEqual([]);
    expect(sup.exitCode).toBeNull(); // still stalled, not exited
    expect(stopping.t).toBeGreaterThan(stalledAt); // the process answered a signal meanwhile

    const resumedAt = Date.now();
    process.kill(helper!, 'SIGCONT');
    expect((await exited(sup)).code, sup.output()).toBe(0);
    // The loop ran again: its first round pinged (the ping was overdue) before it stopped.
    expect(pings(l.notes()).some((n) => n.t >= resumedAt), JSON.stringify(l.notes().slice(-5))).toBe(true);
  });

  it('a NOTIFY_SOCKET nobody listens on costs one warning, not one per tick; a malformed one is named', async () => {
    const dir = cleanups.tempDir('ks-sdn-');
    const db = join(dir, 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), join(dir, 'pids'), '1']);
    await cli(db, ['add', '--skill', 'sleeper']);
    const gone = supervise(db, ['--until-idle'], { NOTIFY_SOCKET: join(dir, 'nobody.sock'), WATCHDOG_USEC: '100000', TICK_INTERVAL_MS: '20' });
    expect((await exited(gone)).code, gone.output()).toBe(0);
    const failures = gone.output().split('\n').filter((x) => x.includes('"event":"sd_notify_failed"'));
    expect(failures, gone.output()).toHaveLength(1);
    expect(failures[0]).toContain('ENOENT');
    expect(failures[0]).toContain(join(dir, 'nobody.sock'));
    expect(JSON.parse((await cli(db, ['--json', 'list'])).stdout)[0].status).toBe('done');

    await cli(db, ['add', '--skill', 'sleeper']);
    const bad = supervise(db, ['--until-idle'], { NOTIFY_SOCKET: 'relative/notify.sock' });
    expect((await exited(bad)).code, bad.output()).toBe(0);
    const lines = bad.output().split('\n').filter((x) => x.includes('"event":"sd_notify_unavailable"'));
    expect(lines, bad.output()).toHaveLength(1);
    expect(lines[0]).toContain('NOTIFY_SOCKET=\\"relative/notify.sock\\"');
  });

  it('without the native addon: one warning that systemd notification is unavailable, and nothing else', () => {
    const warnings: Array<{ obj: object; msg?: string }> = [];
    const logger = { warn: (obj: object, msg?: string) => warnings.push({ obj, msg }), info: () => undefined };
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '@ks-none', WATCHDOG_USEC: '1000000', OTHER: 'x' };
    const n = SystemdNotifier.fromEnv(env, { logger, native: () => ({ addon: null, error: 'native addon not built' }) });
    expect(n.enabled).toBe(false);
    n.notifyReady('running');
    for (let i = 0; i < 5; i++) {
      n.watchdog(Date.now() + i * 1000);
      n.status(`running: ${i}/4 workers`);
    }
    n.stopping('stopping');
    expect(warnings).toHaveLength(1);
    expect(warnings[0].msg).toMatch(/systemd notification .* is off/);
    expect(JSON.stringify(warnings[0].obj)).toContain('native addon not built');
    // Read once and removed, as sd_notify(3) does with unset_environment: no helper inherits them.
    expect(env).toEqual({ OTHER: 'x' });
  });
});
