// The portable process backend (pidusage, tree-kill, Node's spawn, no addon), forced on Linux with
// KANBAN_REAPER_FALLBACK=1 (or the Reaper's `fallback` option), and the helper processes run
// through execa. Real processes, signals and supervisors; /proc is the ground truth.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  FALLBACK_ENV,
  Reaper,
  alive,
  isGone,
  openFdCount,
  processTable,
  psProcessTable,
  readStat,
  runHelper,
  runHelperSync,
  type ExitRecord,
  type ProcessIdentity,
} from '@kanban-supervisor/reaper';
import { Cleanups, FIXTURES, ROOT, cli, exited, killQuietly, logEvents, pidAlive, pidsIn, show, sleep, tempDir, waitFor } from '../src/common.js';

const LINUX = process.platform === 'linux';
const SUP = join(FIXTURES, 'sup');
const ADDON = join(ROOT, 'reaper/build/Release/subreaper.node');
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

async function until<T>(fn: () => T | null | undefined | false, timeoutMs = 20_000, everyMs = 20): Promise<T> {
  return (await waitFor(fn, timeoutMs, everyMs)) as T;
}
/** The supervisor's first JSON log line of one event. */
const logEvent = (output: string, event: string) => logEvents(output, event)[0] ?? null;

describe.skipIf(!LINUX)('portable process backend (forced on Linux): the Reaper', () => {
  let reaper: Reaper;
  let dir: string;
  let cleanup: () => void;
  const warnings: Array<{ obj: object; msg?: string }> = [];
  const infos: Array<{ obj: object; msg?: string }> = [];
  const exits: ExitRecord[] = [];
  const started: ProcessIdentity[] = [];

  let psLog: string;
  const savedPath = process.env.PATH;
  beforeAll(() => {
    ({ dir, cleanup } = tempDir('ks-fallback-'));
    // A `ps` first in PATH that logs its arguments and runs the real one: shows what tree-kill walks.
    const realPs = runHelperSync('sh', ['-c', 'command -v ps'], { timeoutMs: 5000 });
    if (!realPs.ok) throw new Error(realPs.error);
    mkdirSync(join(dir, 'bin'));
    psLog = join(dir, 'ps.log');
    writeFileSync(join(dir, 'bin/ps'), `#!/bin/sh\necho "$*" >> '${psLog}'\nexec '${realPs.stdout.trim()}' "$@"\n`, { mode: 0o755 });
    process.env.PATH = `${join(dir, 'bin')}:${savedPath}`;
    // Never a linux-proc Reaper with a subreaper in this process: it would make this whole process
    // a subreaper, and orphans would come back to it instead of going to init as without the addon.
    reaper = new Reaper({ fallback: true, logger: { warn: (obj, msg) => warnings.push({ obj, msg }), info: (obj, msg) => infos.push({ obj, msg }) }, portableSampler: { historyMaxAgeMs: 600 } });
  });
  afterAll(async () => {
    for (const id of started) reaper.terminate(id, 0, 0);
    await sleep(100);
    for (const id of started) reaper.terminate(id, 0);
    await sleep(100);
    process.env.PATH = savedPath;
    cleanup();
  });
  /** the --ppid walks tree-kill made through `ps` so far */
  const walks = () => (existsSync(psLog) ? readFileSync(psLog, 'utf8') : '').split('\n').filter((l) => l.includes('--ppid')).map((l) => Number(l.split(' ').at(-1)));

  async function start(script: string): Promise<ProcessIdentity> {
    const res = await reaper.spawn({ argv: ['bash', '-c', script], env: ENV, logPath: join(dir, 'worker.log') });
    if (!res.ok) throw new Error(`spawn failed: ${res.code} ${res.message}`);
    started.push(res.identity);
    return res.identity;
  }
  async function exitOf(pid: number, timeoutMs = 10_000): Promise<ExitRecord> {
    return until(() => {
      exits.push(...reaper.drainExits());
      return exits.find((e) => e.pid === pid);
    }, timeoutMs, 10);
  }
  const pidFrom = (file: string) => pidsIn(file)[0] ?? null;

  it('runs without the addon: no subreaper, Node spawn, the worker detached in its own session with the log on 1 and 2', async () => {
    expect(reaper.procBackend).toBe('portable');
    expect(reaper.procBackendReason).toContain(`${FALLBACK_ENV}=1`);
    expect(reaper.subreaperActive).toBe(false);
    expect(reaper.nativeSpawn).toBe(false);
    // asked for: a note, not a warning (a warning where the addon failed to build)
    expect(infos.find((w) => (w.obj as { event?: string }).event === 'proc_backend')?.obj).toMatchObject({ procBackend: 'portable', treeKill: 'usable' });
    expect(warnings).toEqual([]);
    const id = await start('sleep 30');
    const s = readStat(id.pid)!;
    expect(s.pgid).toBe(id.pid);
    expect(s.sid).toBe(id.pid);
    expect(s.ppid).toBe(process.pid);
    expect(readlinkSync(`/proc/${id.pid}/fd/0`)).toBe('/dev/null');
    expect(readlinkSync(`/proc/${id.pid}/fd/1`)).toBe(join(dir, 'worker.log'));
    expect(readlinkSync(`/proc/${id.pid}/fd/2`)).toBe(join(dir, 'worker.log'));
    reaper.terminate(id, 1000);
    await exitOf(id.pid);
    await waitFor(() => reaper.terminate(id, 1000).phase === 'gone', 20_000, 20);
  });

  it('sample(): CPU% and RSS summed over the group from pidusage; a first reading is the lifetime average, not 0', async () => {
    const id = await start('for i in 1 2; do (while :; do :; done) & done; sleep 300 & wait');
    const members = await until(() => {
      const g = [...processTable().values()].filter((s) => s.pgid === id.pgid && s.state !== 'Z').map((s) => s.pid);
      return g.length >= 4 ? g : null;
    });
    await sleep(300);
    const ticks = (pid: number) => {
      const f = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
      return Number(f[11]) + Number(f[12]);
    };
    const uptime = () => Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
    // first reading: pidusage alone would say 0 for every process (it reads /proc twice at once)
    const first = (await reaper.sampleNow([id])).get(id.pid)!;
    expect(first.processes).toBe(members.length);
    expect(first.cpuPercent).toBeGreaterThan(0);
    let t0 = members.reduce((a, p) => a + ticks(p), 0);
    let u0 = uptime();
    await sleep(1500);
    let second = (await reaper.sampleNow([id])).get(id.pid)!;
    let independent = ((members.reduce((a, p) => a + ticks(p), 0) - t0) / 100 / (uptime() - u0)) * 100;
    for (let retry = 0; retry < 3 && Math.abs(second.cpuPercent - independent) >= 35; retry++) {
      console.warn(`[fallback.test] noisy sample window: ${second.cpuPercent}% vs ${independent.toFixed(1)}%`);
      t0 = members.reduce((a, p) => a + ticks(p), 0);
      u0 = uptime();
      await sleep(1500);
      second = (await reaper.sampleNow([id])).get(id.pid)!;
      independent = ((members.reduce((a, p) => a + ticks(p), 0) - t0) / 100 / (uptime() - u0)) * 100;
    }
    expect(Math.abs(second.cpuPercent - independent)).toBeLessThan(35);
    // two busy loops: well over half a core unless the host is saturated by something else
    expect(second.cpuPercent).toBeGreaterThan(independent > 60 ? 30 : 5);
    const rss = (pid: number) => Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]) * 4096;
    const expectedRss = members.reduce((a, p) => a + rss(p), 0);
    expect(Math.abs(second.rssBytes - expectedRss)).toBeLessThan(expectedRss * 0.25);
    expect(second.processes).toBe(members.length);
    // the synchronous sample() answers at once from the background readings
    const sync = reaper.sample([id]).get(id.pid)!;
    expect(sync.processes).toBe(members.length);
    expect(sync.rssBytes).toBeGreaterThan(0);
    reaper.terminate(id, 200);
    await exitOf(id.pid);
    await waitFor(() => reaper.terminate(id, 200).phase === 'gone', 20_000, 20);
    expect(reaper.sample([id]).get(id.pid)).toEqual({ cpuPercent: 0, rssBytes: 0, processes: 0 });
  });

  it('pidusage keeps a descriptor per sampled pid; those of exited processes are closed again (no growth)', async () => {
    /** pidusage's descriptors: /proc/PID/stat opened by this process */
    const statFds = () => {
      let n = 0;
      for (const fd of readdirSync('/proc/self/fd')) {
        try {
          if (/^\/proc\/\d+\/stat$/.test(readlinkSync(`/proc/self/fd/${fd}`))) n++;
        } catch {
          /* closed meanwhile */
        }
      }
      return n;
    };
    const statPids = () => readdirSync('/proc/self/fd').map((fd) => { try { return /^\/proc\/(\d+)\/stat$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1]; } catch { return undefined; } }).filter(Boolean).map(Number);
    await waitFor(() => statFds() === 0, 20_000, 50); // earlier tests' pids have expired from pidusage's history
    const id = await start('for i in $(seq 40); do sleep 300 & done; wait');
    await until(() => [...processTable().values()].filter((s) => s.pgid === id.pgid && s.state !== 'Z').length === 41);
    for (let i = 0; i < 3; i++) {
      const u = (await reaper.sampleNow([id])).get(id.pid)!;
      expect(u.processes).toBe(41);
    }
    // one open /proc/PID/stat per process while they are sampled (pidusage's history)
    expect(statFds(), JSON.stringify(statPids().map((p) => [p, readStat(p)?.comm, readStat(p)?.pgid, id.pgid]))).toBeGreaterThanOrEqual(41);
    reaper.terminate(id, 0);
    await exitOf(id.pid);
    await waitFor(() => reaper.terminate(id, 0).phase === 'gone', 20_000, 20);
    reaper.sample([id]); // nothing left to ask for
    // history age 600 ms, checked every 300 ms: every descriptor is closed within a second or so
    await waitFor(() => statFds() === 0, 20_000, 50);
    // and again: a second round of processes does not add to it (pidusage.clear() would leak one per pid)
    const id2 = await start('for i in $(seq 40); do sleep 300 & done; wait');
    await until(() => [...processTable().values()].filter((s) => s.pgid === id2.pgid && s.state !== 'Z').length === 41);
    await reaper.sampleNow([id2]);
    reaper.terminate(id2, 0);
    await exitOf(id2.pid);
    await waitFor(() => reaper.terminate(id2, 0).phase === 'gone', 20_000, 20);
    reaper.sample([id2]);
    await waitFor(() => statFds() === 0, 20_000, 50);
  });

  it('terminate(): the group is killed, then tree-kill takes the setsid escapee and its children; SIGKILL after the grace', async () => {
    const marker = join(dir, 'escapee.pid');
    const kidsFile = join(dir, 'escapee-kids.pid');
    const id = await start(
      // (each `trap` after the children it must not reach: an ignored SIGTERM is inherited)
      `setsid bash -c 'sleep 300 & echo $! >> ${kidsFile}; sleep 301 & echo $! >> ${kidsFile}; trap "" TERM; echo $$ > ${marker}; while :; do sleep 0.2; done' & sleep 300 & trap "" TERM; while :; do sleep 0.05; done`,
    );
    const esc = await until(() => pidFrom(marker));
    const escKids = await until(() => (pidsIn(kidsFile).length === 2 ? pidsIn(kidsFile) : null));
    for (const k of escKids) expect(readStat(k)!.ppid).toBe(esc);
    const e = readStat(esc)!;
    expect(e.sid).toBe(esc); // out of the worker's session and group...
    expect(e.pgid).not.toBe(id.pgid);
    expect(e.ppid).toBe(id.pid); // ...but still below the worker
    const grace = 800;
    const t0 = Date.now();
    const walked = walks().length;
    const first = reaper.terminate(id, grace, t0);
    expect(first.phase).toBe('term');
    expect(first.remaining).toEqual(expect.arrayContaining([id.pid, esc, ...escKids]));
    // tree-kill walked from the escapee (a root outside the group), not from the group's leader
    await waitFor(() => walks().slice(walked).includes(esc), 20_000, 20);
    expect(walks().slice(walked)).not.toContain(id.pid);
    // tree-kill's SIGTERM reaches the escapee's children (they die), the escapee ignores it
    await waitFor(() => escKids.every((p) => !pidAlive(p)), 20_000, 20);
    expect(pidAlive(esc)).toBe(true);
    expect(alive(id)).toBe(true);
    await sleep(Math.max(0, t0 + grace - Date.now()));
    const kill = reaper.terminate(id, grace);
    expect(kill.phase).toBe('kill');
    await waitFor(() => reaper.terminate(id, grace).phase === 'gone', 20_000, 20);
    expect(pidAlive(esc)).toBe(false);
    expect(alive(id)).toBe(false);
    expect(isGone(id)).toBe(true);
    expect((await exitOf(id.pid)).signal).toBe('SIGKILL');
  });

  it('cleanupAfterExit(): what the worker double-forked re-parents to init (no subreaper) and is still terminated with its group', async () => {
    const id = await start('(sleep 300 &) ; (trap "" TERM; sleep 301 &) ; exit 0');
    expect((await exitOf(id.pid)).exitCode).toBe(0);
    const left = await until(() => {
      const g = [...processTable().values()].filter((s) => s.pgid === id.pgid && s.state !== 'Z');
      return g.length === 2 ? g : null;
    });
    for (const s of left) expect(s.ppid).not.toBe(process.pid); // nobody brought them back to us
    expect(reaper.cleanupAfterExit(id, 300).phase).toBe('term');
    await sleep(350);
    const states = [reaper.cleanupAfterExit(id, 300)];
    await waitFor(() => {
      const st = reaper.cleanupAfterExit(id, 300);
      states.push(st);
      return st.phase === 'gone';
    }, 20_000, 20);
    expect(states.some((s) => s.sigkillAt !== null)).toBe(true);
    for (const s of left) expect(pidAlive(s.pid)).toBe(false);
    expect(isGone(id)).toBe(true);
  });

  it('never signals a live process whose recorded start time does not match (identity checks kept)', async () => {
    const id = await start('trap "" TERM; sleep 300 & setsid sleep 302 & wait');
    const real = await until(() => {
      const s = [...processTable().values()].find((p) => p.ppid === id.pid && p.sid === p.pid && p.state !== 'Z');
      return s ? { pid: s.pid, pgid: s.pgid, startTime: s.startTime, bootId: id.bootId } : null;
    });
    const stale: ProcessIdentity = { ...id, startTime: id.startTime - 7 };
    const t0 = Date.now() - 60_000;
    expect(reaper.terminate(stale, 0, t0).phase).toBe('gone');
    expect(reaper.terminate(stale, 0).phase).toBe('gone');
    expect(reaper.sample([stale]).get(stale.pid)).toEqual({ cpuPercent: 0, rssBytes: 0, processes: 0 });
    await sleep(300);
    expect(alive(id)).toBe(true);
    expect(pidAlive(real.pid, real.startTime)).toBe(true);
    reaper.terminate(id, 0, t0);
    await sleep(50);
    await waitFor(() => reaper.terminate(id, 0).phase === 'gone', 20_000, 20);
    expect(pidAlive(real.pid)).toBe(false);
  });
});

describe.skipIf(!LINUX)('the ps process table (the identity source where /proc is missing)', () => {
  it('agrees with /proc on pid, parent, group and state, and on the start time to the second', async () => {
    const btime = Number(/btime (\d+)/.exec(readFileSync('/proc/stat', 'latin1'))![1]);
    const hz = 100;
    const ps = psProcessTable();
    const proc = processTable();
    const mine = ps.get(process.pid)!;
    expect(mine).toMatchObject({ pid: process.pid, ppid: process.ppid, pgid: proc.get(process.pid)!.pgid, comm: proc.get(process.pid)!.comm });
    let compared = 0;
    for (const [pid, s] of ps) {
      const p = proc.get(pid);
      if (!p || p.state === 'Z' || s.state === 'Z') continue;
      compared++;
      expect([s.ppid, s.pgid]).toEqual([p.ppid, p.pgid]);
      // /proc's clock ticks since boot against ps's lstart (whole seconds)
      expect(Math.abs(s.startTime - (btime + p.startTime / hz))).toBeLessThanOrEqual(1.5);
    }
    expect(compared).toBeGreaterThan(5);
    expect(psProcessTable([process.pid, 2 ** 22 + 12345]).size).toBe(1);
    expect(psProcessTable([2 ** 22 + 12345]).size).toBe(0); // ps exits 1: an empty answer, not an error
  });
});

describe('helper processes through execa', () => {
  it('a timeout stops the helper (SIGTERM, then SIGKILL) and the error names the command line', async () => {
    const t0 = Date.now();
    const r = await runHelper(process.execPath, ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)'], { timeoutMs: 200, forceKillAfterMs: 300 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.timedOut).toBe(true);
    expect(r.error).toContain('timed out after 200 milliseconds');
    expect(r.error).toContain(process.execPath);
  });

  it('a failing helper: exit code, the command line and its stderr in one line; no shell (metacharacters are arguments)', async () => {
    const r = await runHelper(process.execPath, ['-e', 'console.error("bad\\nthings"); process.exit(3)', '$(touch /tmp/ks-no-shell)', ';', 'echo'], { timeoutMs: 10_000 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.exitCode).toBe(3);
    expect(r.error).toMatch(/^Command failed with exit code 3: /);
    expect(r.error).toContain(process.execPath);
    expect(r.error).toContain('bad | things');
    expect(r.error).not.toContain('\n');
    expect(existsSync('/tmp/ks-no-shell')).toBe(false);
    const missing = runHelperSync('no-such-helper-kanban', ['x'], { timeoutMs: 1000 });
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.error).toContain('ENOENT: no-such-helper-kanban');
    const big = await runHelper(process.execPath, ['-e', 'process.stdout.write("x".repeat(5000))'], { timeoutMs: 10_000, maxBuffer: 1000 });
    expect(big.ok).toBe(false);
    if (!big.ok) expect(big.error).toContain('larger than 1000');
    const good = await runHelper(process.execPath, ['-e', 'process.stdout.write(JSON.stringify({ ok: 1 }))'], { timeoutMs: 10_000, env: { ONLY: '1' } });
    expect(good).toMatchObject({ ok: true, stdout: '{"ok":1}' });
  });
});

describe.skipIf(!LINUX)('kanban-supervisor run with the portable backend', () => {
  const cleanups = new Cleanups();
  afterEach(() => cleanups.run());
  const FAST = { TICK_INTERVAL_MS: '100', CRASH_GRACE_SECONDS: '1', LOG_LEVEL: 'info', LOG_FORMAT: 'json' };
  const FALLBACK = { [FALLBACK_ENV]: '1' };

  const setup = () => cleanups.boardDir('ks-fallback-sup-');
  function supervise(db: string, args: string[] = [], env: Record<string, string> = {}) {
    return cleanups.startCli(db, ['run', ...args], { ...FAST, ...env });
  }

  it('says which backend it uses: portable when forced, linux-proc (the fast path) when /proc and the addon are there', async () => {
    const { db } = setup();
    expect((await cli(db, ['init'])).code).toBe(0);
    const forced = supervise(db, ['--until-idle'], FALLBACK);
    expect((await exited(forced)).code, forced.output()).toBe(0);
    expect(logEvent(forced.output(), 'started')).toMatchObject({ procBackend: 'portable', subreaper: false });
    expect(logEvent(forced.output(), 'proc_backend')).toMatchObject({ procBackend: 'portable', reason: `forced by ${FALLBACK_ENV}=1` });

    expect(existsSync(ADDON), 'the native addon is built here').toBe(true);
    const fast = supervise(db, ['--until-idle'], { [FALLBACK_ENV]: '0' });
    expect((await exited(fast)).code, fast.output()).toBe(0);
    expect(logEvent(fast.output(), 'started')).toMatchObject({ procBackend: 'linux-proc', subreaper: true });
    expect(logEvent(fast.output(), 'proc_backend')).toBeNull();

    const bad = supervise(db, ['--until-idle'], { [FALLBACK_ENV]: 'yes' });
    const r = await exited(bad);
    expect(r.code).not.toBe(0);
    expect(bad.output()).toContain(`${FALLBACK_ENV} must be 1`);
    expect(bad.output()).toContain('"yes"');
  });

  it('reclaim: SIGKILLs a SIGTERM-ignoring worker after the grace, not before, and leaves nothing behind', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'stubborn', '--max-runtime', '0.5', '--reclaim-grace', '1.5', '--', join(SUP, 'ignore-term.sh'), pids]);
    const id = (await cli(db, ['add', '--skill', 'stubborn', '--max-attempts', '1'])).stdout.trim();
    const p = supervise(db, ['--until-idle'], FALLBACK);
    expect((await exited(p)).code, p.output()).toBe(0);
    expect(logEvent(p.output(), 'started')).toMatchObject({ procBackend: 'portable' });
    const s = await show(db, id);
    const term = s.events.find((e: { kind: string }) => e.kind === 'sigterm_sent');
    const kill = s.events.find((e: { kind: string }) => e.kind === 'sigkill_sent');
    expect(term.data.reason).toBe('timed_out');
    expect(kill.at - term.at).toBeGreaterThanOrEqual(1500);
    expect(kill.at - term.at).toBeLessThan(1500 + 1500);
    expect(s.runs[0].outcome).toBe('timed_out');
    expect(s.runs[0].signal).toBe('SIGKILL');
    for (const pid of pidsIn(pids)) expect(pidAlive(pid)).toBe(false);
  });

  it('reclaim on cancel: the worker and its children are gone and the task stays cancelled', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--reclaim-grace', '5', '--', join(SUP, 'sleeper.sh'), pids, '60']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    const p = supervise(db, ['--until-idle'], FALLBACK);
    const pid = await until(() => pidsIn(pids)[0], 20_000);
    const sleepChild = await until(() => [...processTable().values()].find((s) => s.ppid === pid && s.comm === 'sleep')?.pid, 20_000);
    expect((await cli(db, ['cancel', id])).code).toBe(0);
    expect((await exited(p)).code, p.output()).toBe(0);
    expect((await show(db, id)).status).toBe('cancelled');
    expect(pidAlive(pid)).toBe(false);
    expect(pidAlive(sleepChild)).toBe(false);
  });

  it('memory limit and stall: pidusage figures reclaim the worker over its limit as memory_exceeded', async () => {
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'silent', '--heartbeat-timeout', '1', '--reclaim-grace', '2', '--', join(SUP, 'sleeper.sh'), pids, '60']);
    await cli(db, ['skill', 'add', 'hog', '--max-rss-mb', '40', '--reclaim-grace', '2', '--', process.execPath, '-e', 'globalThis.b = Buffer.alloc(150e6, 1); setInterval(() => {}, 1000)']);
    const silent = (await cli(db, ['add', '--skill', 'silent', '--max-attempts', '1'])).stdout.trim();
    const hog = (await cli(db, ['add', '--skill', 'hog', '--max-attempts', '1'])).stdout.trim();
    const p = supervise(db, ['--until-idle'], FALLBACK);
    expect((await exited(p)).code, p.output()).toBe(0);
    expect(logEvent(p.output(), 'started')).toMatchObject({ procBackend: 'portable' });
    const s1 = await show(db, silent);
    const s2 = await show(db, hog);
    expect(s1.runs[0].outcome).toBe('stalled');
    expect(s2.runs[0].outcome).toBe('memory_exceeded');
    expect(s2.last_error).toContain('memory_exceeded');
  });

  it.each([
    ['linux-proc', 'portable', {}, FALLBACK],
    ['portable', 'linux-proc', FALLBACK, {}],
  ] as const)('a worker started under %s is adopted by a %s supervisor after a SIGKILL: one run, nothing lost', async (_a, _b, envA, envB) => {
    // identity (pid + start time) is read from /proc by both backends: its unit never changes
    const { dir, db } = setup();
    const pids = join(dir, 'pids.txt');
    await cli(db, ['skill', 'add', 'sleeper', '--', join(SUP, 'sleeper.sh'), pids, '8']);
    const id = (await cli(db, ['add', '--skill', 'sleeper'])).stdout.trim();
    const a = supervise(db, [], envA);
    const pid = await until(() => pidsIn(pids)[0], 20_000);
    await waitFor(async () => (await show(db, id)).runs[0]?.pid === pid, 20_000); // its identity is on the board
    a.kill('SIGKILL');
    await exited(a);
    expect(pidAlive(pid)).toBe(true); // it sleeps 8 s: still running when the next supervisor starts
    const b = supervise(db, ['--until-idle'], envB);
    expect((await exited(b)).code, b.output()).toBe(0);
    // recognised as the same process (nothing of it signalled: its sleep runs to its end below)
    expect(logEvent(b.output(), 'adopted'), b.output()).toMatchObject({ workerPid: pid, reclaiming: null });
    expect(b.output()).not.toContain('crash_detected');
    const s = await show(db, id);
    expect(s.status).toBe('done');
    expect(s.result).toEqual({ slept: true });
    expect(s.runs.length).toBe(1);
    expect(s.runs[0].ended_at - s.runs[0].started_at).toBeGreaterThanOrEqual(7500); // its sleep ran to its end
    expect(pidsIn(pids)).toEqual([pid]);
  });

  it.each([
    ['portable', FALLBACK],
    ['linux-proc', {}],
  ] as const)('orphan cleanup (%s): what a finished worker left behind (double fork, TERM-ignoring setsid child) is terminated', async (backend, env) => {
    const { dir, db } = setup();
    const pids = join(dir, 'left.txt');
    await cli(db, ['skill', 'add', 'leaver', '--', join(SUP, 'leave-behind.sh'), pids, '6']);
    const id = (await cli(db, ['add', '--skill', 'leaver'])).stdout.trim();
    const p = supervise(db, [], env);
    const left = await until(() => (pidsIn(pids).length === 2 ? pidsIn(pids) : null), 10_000);
    cleanups.push(() => left.forEach(killQuietly));
    await waitFor(async () => (await show(db, id)).status === 'done', 20_000);
    expect(logEvent(p.output(), 'started')).toMatchObject({ procBackend: backend });
    // SIGTERM, the 5 s cleanup grace, SIGKILL: nothing of the run may be left
    await waitFor(() => left.every((pid) => !pidAlive(pid)), 15_000).catch(() => undefined);
    for (const pid of left) expect(pidAlive(pid), `pid ${pid} (${readStat(pid)?.comm}) left running; ${p.output().slice(-2000)}`).toBe(false);
    p.kill('SIGTERM');
    expect((await exited(p)).code, p.output()).toBe(0);
  });
});
