// Reaper tests with real processes (Linux: /proc, process groups, child subreaper).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn as spawnChild } from 'node:child_process';
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Reaper,
  alive,
  bootId,
  groupProcesses,
  identify,
  isGone,
  readStat,
  resolveExecutable,
  type ExitRecord,
  type ProcessIdentity,
} from '@kanban-supervisor/reaper';
import { FIXTURES, pidAlive, run, sleep, tempDir, waitFor } from '../src/common.js';

const LINUX = process.platform === 'linux';

/** waitFor with the "not yet" values (null/undefined/false) removed from the result type */
async function until<T>(fn: () => T | null | undefined | false, timeoutMs = 5000, everyMs = 20): Promise<T> {
  return (await waitFor(fn, timeoutMs, everyMs)) as T;
}
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

/** Children of this test process by /proc (the ground truth the tests assert against). */
function childrenOfUs(): { pid: number; state: string; comm: string }[] {
  const out: { pid: number; state: string; comm: string }[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = readStat(Number(d));
    if (s && s.ppid === process.pid) out.push({ pid: s.pid, state: s.state, comm: s.comm });
  }
  return out;
}
const zombieChildrenOfUs = () => childrenOfUs().filter((c) => c.state === 'Z');
function pidsInGroup(pgid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = readStat(Number(d));
    if (s && s.pgid === pgid && s.state !== 'Z') out.push(s.pid);
  }
  return out;
}

describe.skipIf(!LINUX)('reaper (Linux /proc)', () => {
  let reaper: Reaper;
  let dir: string;
  let cleanup: () => void;
  const warnings: object[] = [];
  const exits: ExitRecord[] = [];

  beforeAll(() => {
    ({ dir, cleanup } = tempDir('ks-reaper-'));
    reaper = new Reaper({ logger: { warn: (o) => warnings.push(o), info: () => {} }, orphanGraceMs: 400 });
  });
  const started: ProcessIdentity[] = [];
  afterAll(async () => {
    // safety net when a test failed half-way: nothing of ours may outlive the file
    for (const id of started) reaper.terminate(id, 0, 0);
    await sleep(50);
    for (const id of started) reaper.terminate(id, 0);
    reaper.reapOrphans(new Set());
    cleanup();
  });

  async function start(script: string): Promise<ProcessIdentity> {
    const res = await reaper.spawn({ argv: ['bash', '-c', script], env: ENV, logPath: join(dir, 'worker.log') });
    if (!res.ok) throw new Error(`spawn failed: ${res.code} ${res.message}`);
    started.push(res.identity);
    return res.identity;
  }
  /** The pid a script wrote to `file`, once it is there. */
  function pidFrom(file: string): number | null {
    try {
      return Number(readFileSync(file, 'utf8').trim()) || null;
    } catch {
      return null;
    }
  }
  async function exitOf(pid: number, timeoutMs = 10_000): Promise<ExitRecord> {
    return until(() => {
      exits.push(...reaper.drainExits());
      return exits.find((e) => e.pid === pid);
    }, timeoutMs, 10);
  }

  it('becomes a child subreaper through the native addon (no warning)', () => {
    expect(warnings).toEqual([]);
    expect(reaper.subreaperActive).toBe(true);
  });

  it('reads identities from /proc and rejects mismatching ones', async () => {
    const me = readStat(process.pid)!;
    expect(me.pid).toBe(process.pid);
    expect(me.ppid).toBe(process.ppid);
    expect(me.startTime).toBeGreaterThan(0);
    expect(bootId()).toMatch(/^[0-9a-f-]{36}$/);
    expect(readStat(2 ** 22 + 12345)).toBeNull();

    // a comm with spaces and parentheses must not break the parser (fields after the LAST ')')
    const odd = join(dir, 'we ird) (name');
    writeFileSync(odd, '#!/bin/sh\nsleep 30\n');
    chmodSync(odd, 0o755);
    const res = await reaper.spawn({ argv: [odd], env: ENV, logPath: join(dir, 'odd.log') });
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    started.push(res.identity);
    await waitFor(() => groupProcesses(res.identity).length === 2, 5000, 10); // sh + sleep
    const s = readStat(res.identity.pid)!;
    expect(s.comm).toBe('we ird) (name');
    expect(['Z', 'X']).not.toContain(s.state);
    expect(s.pgid).toBe(res.identity.pid);
    expect(s.sid).toBe(res.identity.pid);
    expect(s.startTime).toBe(res.identity.startTime);
    expect(alive(res.identity)).toBe(true);
    expect(identify(res.identity.pid)).toEqual(res.identity);
    expect(alive({ ...res.identity, startTime: res.identity.startTime + 1 })).toBe(false);
    expect(alive({ ...res.identity, bootId: '00000000-0000-0000-0000-000000000000' })).toBe(false);
    const st = reaper.terminate(res.identity, 5000);
    expect(st.phase).toBe('term');
    await exitOf(res.identity.pid);
    expect(alive(res.identity)).toBe(false);
    // the leader's exit can be collected before its `sleep` has died of the same SIGTERM
    await waitFor(() => reaper.terminate(res.identity, 5000).phase === 'gone', 5000, 10);
  });

  it('alive() is false for a zombie and groupProcesses() ignores it', async () => {
    // `sleep 0.1` becomes a zombie child of `sleep 60`, which never waits for it
    const id = await start('sleep 0.1 & exec sleep 60');
    const zombie = await until(() => {
      for (const d of readdirSync('/proc')) {
        const s = /^\d+$/.test(d) ? readStat(Number(d)) : null;
        if (s && s.ppid === id.pid && s.state === 'Z') return s;
      }
      return null;
    }, 5000, 20);
    expect(identify(zombie.pid)).toBeNull();
    expect(alive({ pid: zombie.pid, pgid: zombie.pgid, startTime: zombie.startTime, bootId: bootId() })).toBe(false);
    expect(groupProcesses(id)).toEqual([id.pid]);
    reaper.terminate(id, 1000);
    await exitOf(id.pid);
    await waitFor(() => reaper.terminate(id, 1000).phase === 'gone', 5000, 20);
    await waitFor(() => (reaper.reapOrphans(new Set()), zombieChildrenOfUs().length === 0), 5000, 20);
    expect(readStat(zombie.pid)?.startTime === zombie.startTime).toBe(false);
  });

  it('a worker that ignores SIGTERM survives the grace, then is gone with its children after grace + one call', async () => {
    const id = await start('trap "" TERM; sleep 300 & sleep 300 & while :; do sleep 0.05; done');
    const cmdline = (p: number) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0').join(' ').trim();
      } catch {
        return '';
      }
    };
    // wait until both background jobs have exec'd `sleep 300` (a forked subshell shows as bash until then)
    const kids = await until(() => {
      const g = groupProcesses(id);
      return g.filter((p) => cmdline(p) === 'sleep 300').length === 2 ? g : null;
    }, 5000, 20);
    const sleepers = kids.filter((p) => cmdline(p) === 'sleep 300');
    expect(sleepers.length).toBe(2);

    const grace = 1500;
    const t0 = Date.now();
    const first = reaper.terminate(id, grace, t0);
    expect(first.phase).toBe('term');
    expect(first.remaining).toContain(id.pid);
    await sleep(600);
    const mid = reaper.terminate(id, grace);
    expect(mid.phase).toBe('term');
    expect(alive(id)).toBe(true);
    for (const p of sleepers) expect(pidAlive(p)).toBe(true);
    expect(isGone(id)).toBe(false);

    await sleep(t0 + grace - Date.now());
    const esc = reaper.terminate(id, grace);
    expect(esc.phase === 'kill' || esc.phase === 'gone').toBe(true);
    expect(esc.sigkillAt).not.toBeNull();
    await sleep(250);
    const last = reaper.terminate(id, grace);
    expect(last).toMatchObject({ phase: 'gone', remaining: [] });
    expect(alive(id)).toBe(false);
    expect(isGone(id)).toBe(true);
    for (const p of kids) expect(pidAlive(p)).toBe(false);
    expect(pidsInGroup(id.pgid)).toEqual([]);
    const exit = await exitOf(id.pid);
    expect(exit).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    // the killed sleeps re-parented to us: no zombie may be left behind
    await waitFor(() => (reaper.reapOrphans(new Set()), zombieChildrenOfUs().length === 0), 5000, 20);
  });

  it('cleanupAfterExit removes what a worker double-forked before exiting (TERM-ignoring too)', async () => {
    const id = await start('(sleep 300 &) ; (trap "" TERM; sleep 301 &) ; exit 0');
    const exit = await exitOf(id.pid);
    expect(exit.exitCode).toBe(0);
    // the leader is gone, its double-forked children are not
    const left = await until(() => {
      const g = groupProcesses(id);
      return g.length === 2 ? g : null;
    }, 5000, 20);
    expect(left).not.toContain(id.pid);
    for (const p of left) {
      const s = readStat(p)!;
      expect(s.pgid).toBe(id.pgid);
      expect(s.ppid).toBe(process.pid); // re-parented to us, the subreaper
    }
    const first = reaper.cleanupAfterExit(id, 300);
    expect(first.phase).toBe('term');
    expect(first.remaining.sort()).toEqual([...left].sort());
    // the plain sleep dies on SIGTERM, the TERM-ignoring one needs the escalation
    await sleep(350);
    const states = [reaper.cleanupAfterExit(id, 300)];
    await waitFor(() => {
      const st = reaper.cleanupAfterExit(id, 300);
      states.push(st);
      return st.phase === 'gone';
    }, 5000, 20);
    expect(states.some((s) => s.sigkillAt !== null)).toBe(true);
    for (const p of left) expect(pidAlive(p)).toBe(false);
    expect(pidsInGroup(id.pgid)).toEqual([]);
    expect(isGone(id)).toBe(true);
    expect(zombieChildrenOfUs()).toEqual([]);
  });

  it('a setsid grandchild of a dead worker re-parents to us and reapOrphans kills and reaps it', async () => {
    const marker = join(dir, 'grandchild.pid');
    const id = await start(`setsid bash -c 'echo $$ > ${marker}; trap "" TERM; sleep 300 & wait' & sleep 0.3; exit 0`);
    await exitOf(id.pid);
    const gpid = await until(() => pidFrom(marker), 5000, 20);
    const g = await until(() => {
      const s = readStat(gpid);
      return s && s.ppid === process.pid ? s : null;
    }, 5000, 20);
    expect(g.sid).toBe(gpid); // escaped the worker's session and group...
    expect(g.pgid).not.toBe(id.pgid);
    // ...so the worker's own cleanup does not see it
    expect(reaper.cleanupAfterExit(id).phase).toBe('gone');
    expect(pidAlive(gpid)).toBe(true);

    const first = reaper.reapOrphans(new Set([id.pid]));
    expect(first.terminated).toContain(gpid);
    await sleep(200);
    expect(pidAlive(gpid)).toBe(true); // ignores SIGTERM; the orphan grace is 400 ms
    await sleep(300);
    const reaped: number[] = [];
    await waitFor(() => {
      const r = reaper.reapOrphans(new Set());
      reaped.push(...r.reaped);
      return !pidAlive(gpid, g.startTime) && zombieChildrenOfUs().length === 0;
    }, 5000, 20);
    expect(reaped).toContain(gpid);
    expect(pidsInGroup(gpid)).toEqual([]); // its own `sleep 300` went with it
    expect(zombieChildrenOfUs()).toEqual([]);
  });

  it('reapZombieChildren reaps an escaped grandchild that died, without a /proc scan, and nothing else', async () => {
    const marker = join(dir, 'short-grandchild.pid');
    // the grandchild leaves the worker's session, outlives the worker briefly, then exits
    const id = await start(`setsid bash -c 'echo $$ > ${marker}; sleep 0.4' & sleep 0.2; exit 0`);
    await exitOf(id.pid);
    const gpid = await until(() => pidFrom(marker), 5000, 20);
    const plain = spawnChild('sleep', ['0.1'], { stdio: 'ignore' }); // Node's own child: never ours to reap
    const plainExit = new Promise<number | null>((resolve) => plain.once('exit', (code) => resolve(code)));
    const z = await until(() => {
      const s = readStat(gpid);
      return s && s.ppid === process.pid && s.state === 'Z' ? s : null;
    }, 5000, 20);
    expect(z.pid).toBe(gpid);
    await sleep(150); // Node's `sleep 0.1` may be a zombie too by now, until libuv reaps it
    expect(reaper.reapZombieChildren([gpid, plain.pid!])).toEqual([gpid]);
    expect(readStat(gpid)?.startTime === z.startTime).toBe(false);
    expect(await plainExit).toBe(0); // libuv still got its child's status
    expect(reaper.reapZombieChildren([gpid])).toEqual([]);
  });

  it('reapOrphans leaves Node-owned children and helpers of running workers alone', async () => {
    const plain = spawnChild('sleep', ['30'], { stdio: 'ignore' });
    started.push(identify(plain.pid!)!);
    const id = await start('(sleep 300 &); sleep 300');
    const helper = await until(() => {
      const g = groupProcesses(id);
      const h = g.find((p) => p !== id.pid && readStat(p)?.ppid === process.pid);
      return h ?? null;
    }, 5000, 20);
    const res = reaper.reapOrphans(new Set([id.pid]));
    expect(res.terminated).toEqual([]);
    await sleep(100);
    expect(pidAlive(plain.pid!)).toBe(true);
    expect(pidAlive(helper)).toBe(true);
    plain.kill('SIGKILL');
    reaper.terminate(id, 1000);
    await exitOf(id.pid);
    await waitFor(() => reaper.terminate(id, 1000).phase === 'gone', 5000, 20);
    expect(pidAlive(helper)).toBe(false);
    await waitFor(() => plain.exitCode !== null || plain.signalCode !== null, 5000, 20);
    expect(zombieChildrenOfUs()).toEqual([]);
  });

  it('never signals a live process whose recorded start time (or boot) does not match', async () => {
    const victim = spawnChild('sleep', ['30'], { stdio: 'ignore', detached: true });
    const real = await until(() => identify(victim.pid!), 5000, 10);
    started.push(real);
    expect(real.pgid).toBe(victim.pid);
    const stale: ProcessIdentity = { ...real, startTime: real.startTime - 7 };
    const otherBoot: ProcessIdentity = { ...real, bootId: 'ffffffff-ffff-ffff-ffff-ffffffffffff' };
    for (const fake of [stale, otherBoot]) {
      expect(alive(fake)).toBe(false);
      expect(groupProcesses(fake)).toEqual([]);
      expect(isGone(fake)).toBe(true);
      const t0 = Date.now() - 60_000; // far past any grace
      expect(reaper.terminate(fake, 0, t0).phase).toBe('gone');
      expect(reaper.terminate(fake, 0).phase).toBe('gone');
      expect(reaper.cleanupAfterExit(fake, 0).phase).toBe('gone');
      expect(reaper.sample([fake]).get(fake.pid)).toEqual({ cpuPercent: 0, rssBytes: 0, processes: 0, cpuSeconds: 0 });
    }
    await sleep(200);
    expect(pidAlive(victim.pid!, real.startTime)).toBe(true);
    expect(victim.exitCode).toBeNull();
    expect(victim.signalCode).toBeNull();
    // the real identity does work (the test could fail)
    reaper.terminate(real, 1000);
    await waitFor(() => victim.signalCode === 'SIGTERM', 5000, 10);
  });

  it('adopts a worker whose spawner died (track) and terminates it from /proc alone', async () => {
    const log = join(dir, 'adopted.log');
    const out = await run(process.execPath, [join(FIXTURES, 'reaper/spawn-and-exit.mjs'), log, 'bash', '-c', 'echo started; sleep 300 & wait']);
    expect(out.code).toBe(0);
    const res = JSON.parse(out.stdout.trim()) as { ok: true; identity: ProcessIdentity };
    expect(res.ok).toBe(true);
    const id = res.identity;
    started.push(id);
    // the spawner is dead; the worker is not (no pipes, own group)
    await waitFor(() => readStat(id.pid)?.ppid === process.pid, 5000, 20); // re-parented to the subreaper
    expect(alive(id)).toBe(true);
    await waitFor(() => readFileSync(log, 'utf8').includes('started'), 5000, 20);
    reaper.track(id);
    expect(groupProcesses(id).length).toBe(2);
    // a running adopted worker is not an orphan
    expect(reaper.reapOrphans(new Set()).terminated).toEqual([]);
    expect(reaper.terminate(id, 2000).phase).toBe('term');
    await waitFor(() => reaper.terminate(id, 2000).phase === 'gone', 5000, 20);
    expect(alive(id)).toBe(false);
    // its zombie was ours to reap (not Node's child)
    await waitFor(() => (reaper.reapOrphans(new Set()), zombieChildrenOfUs().length === 0), 5000, 20);
    reaper.untrack(id.pid);
  });

  it('an adopted worker that dies on its own is reaped even while listed as known', async () => {
    const out = await run(process.execPath, [join(FIXTURES, 'reaper/spawn-and-exit.mjs'), join(dir, 'adopted2.log'), 'sleep', '0.3']);
    const id = (JSON.parse(out.stdout.trim()) as { identity: ProcessIdentity }).identity;
    started.push(id);
    reaper.track(id);
    const z = await until(() => {
      const s = readStat(id.pid);
      return s && s.ppid === process.pid && s.state === 'Z' && s.startTime === id.startTime ? s : null;
    });
    expect(alive(id)).toBe(false);
    const r = reaper.reapOrphans(new Set([id.pid]));
    expect(r.reaped).toEqual([z.pid]);
    expect(r.terminated).toEqual([]);
    expect(readStat(id.pid)?.startTime === id.startTime).toBe(false);
    expect(reaper.terminate(id, 1000).phase).toBe('gone');
  });

  it('sample(): CPU% and RSS summed over the process group', async () => {
    // three burners, reniced (works as root, silently ignored otherwise), so that other test
    // files running in parallel on a 2-core machine do not starve the group below one core
    const id = await start(
      'renice -n -10 $$ >/dev/null 2>&1; for i in 1 2 3; do (while :; do :; done) & done; sleep 300 & wait',
    );
    const members = await until(() => {
      const g = groupProcesses(id);
      return g.length >= 5 ? g : null;
    }, 5000, 20);
    const first = reaper.sample([id]).get(id.pid)!;
    expect(first.processes).toBe(members.length);
    const ticks = (pid: number) => {
      const f = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
      return Number(f[11]) + Number(f[12]);
    };
    const uptime = () => Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
    let t0 = members.reduce((a, p) => a + ticks(p), 0);
    let u0 = uptime();
    await sleep(1500);
    let second = reaper.sample([id]).get(id.pid)!;
    let independent = ((members.reduce((a, p) => a + ticks(p), 0) - t0) / 100 / (uptime() - u0)) * 100;
    // both measure the same thing: the reaper's figure must agree with the raw tick delta
    expect(Math.abs(second.cpuPercent - independent)).toBeLessThan(35);
    for (let retry = 0; retry < 3 && second.cpuPercent <= 50; retry++) {
      // the host was saturated by something else during that window; another window
      console.warn(`[reaper.test] contended sample window: ${second.cpuPercent}% (independent ${independent.toFixed(1)}%)`);
      t0 = members.reduce((a, p) => a + ticks(p), 0);
      u0 = uptime();
      await sleep(1500);
      second = reaper.sample([id]).get(id.pid)!;
      independent = ((members.reduce((a, p) => a + ticks(p), 0) - t0) / 100 / (uptime() - u0)) * 100;
      expect(Math.abs(second.cpuPercent - independent)).toBeLessThan(35);
    }
    // three busy loops: well over a core unless the host is saturated; then still clearly busy
    expect(second.cpuPercent).toBeGreaterThan(independent > 60 ? 50 : 20);
    const rss = (pid: number) => Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]) * 4096;
    const expectedRss = members.reduce((a, p) => a + rss(p), 0);
    expect(second.rssBytes).toBeGreaterThan(0);
    expect(second.rssBytes).toBeGreaterThan(rss(id.pid)); // more than the leader alone
    expect(Math.abs(second.rssBytes - expectedRss)).toBeLessThan(expectedRss * 0.25);
    expect(second.processes).toBe(members.length);
    // a worker that is no longer sampled is forgotten; a gone one reports zeros
    reaper.terminate(id, 200);
    await exitOf(id.pid);
    await waitFor(() => reaper.terminate(id, 200).phase === 'gone', 5000, 20);
    expect(reaper.sample([id]).get(id.pid)).toEqual({ cpuPercent: 0, rssBytes: 0, processes: 0, cpuSeconds: 0 });
    await waitFor(() => (reaper.reapOrphans(new Set()), zombieChildrenOfUs().length === 0), 5000, 20);
  });

  it('spawn: exact env, output appended to a 0600 log, precise errors', async () => {
    const log = join(dir, 'env.log');
    const env = { PATH: ENV.PATH, ONLY_THIS: 'yes' };
    for (let i = 0; i < 2; i++) {
      const res = await reaper.spawn({ argv: ['env'], env, logPath: log });
      expect(res.ok).toBe(true);
      if (res.ok) expect((await exitOf(res.identity.pid)).exitCode).toBe(0);
    }
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.sort()).toEqual(['ONLY_THIS=yes', 'ONLY_THIS=yes', `PATH=${ENV.PATH}`, `PATH=${ENV.PATH}`]);
    expect(statSync(log).mode & 0o777).toBe(0o600);

    const stderrLog = join(dir, 'stderr.log');
    const r2 = await reaper.spawn({ argv: ['bash', '-c', 'pwd; echo oops >&2; exit 3'], cwd: dir, env, logPath: stderrLog });
    expect(r2.ok).toBe(true);
    if (r2.ok) expect((await exitOf(r2.identity.pid)).exitCode).toBe(3);
    expect(readFileSync(stderrLog, 'utf8')).toBe(`${dir}\noops\n`);

    const missing = await reaper.spawn({ argv: ['no-such-command-xyz'], env, logPath: log });
    expect(missing).toMatchObject({ ok: false, code: 'ENOENT' });
    const notExec = join(dir, 'not-exec.sh');
    writeFileSync(notExec, '#!/bin/sh\n');
    chmodSync(notExec, 0o644);
    expect(await reaper.spawn({ argv: [notExec], env, logPath: log })).toMatchObject({ ok: false, code: 'EACCES' });
    expect(await reaper.spawn({ argv: ['./not-exec.sh'], cwd: dir, env, logPath: log })).toMatchObject({ ok: false, code: 'EACCES' });
    const badCwd = join(dir, 'nope');
    const r3 = await reaper.spawn({ argv: ['true'], cwd: badCwd, env, logPath: log });
    expect(r3).toMatchObject({ ok: false, code: 'ENOENT' });
    if (!r3.ok) expect(r3.message).toContain(badCwd);
    const r4 = await reaper.spawn({ argv: ['true'], cwd: log, env, logPath: log });
    expect(r4).toMatchObject({ ok: false, code: 'ENOTDIR' });
    if (!r4.ok) expect(r4.message).toContain(log);
    expect(await reaper.spawn({ argv: [], env, logPath: log })).toMatchObject({ ok: false });

    expect(resolveExecutable('sh', '/nonexistent:/bin:/usr/bin')).toMatch(/\/sh$/);
    expect(resolveExecutable('sh', '/nonexistent')).toBeNull();
    expect(resolveExecutable('./not-exec.sh', '', dir)).toBeNull();
    expect(resolveExecutable('not-exec.sh', ':', dir)).toBeNull();
    chmodSync(notExec, 0o755);
    expect(resolveExecutable('./not-exec.sh', '', dir)).toBe(notExec);
    expect(resolveExecutable('not-exec.sh', '', dir)).toBe(notExec); // empty PATH entry = cwd
    expect(resolveExecutable('not-exec.sh', '/bin', dir)).toBeNull();
    expect(resolveExecutable('tmp', '/', undefined)).toBeNull(); // a directory is not executable
  });

  it.each(['native', 'node'] as const)('%s spawner: the worker holds only stdin (/dev/null) and the log, signals at their defaults, own session', async (spawner) => {
    const r = new Reaper({ subreaper: false, spawner, logger: { warn: (o) => warnings.push(o), info: () => {} } });
    expect(r.nativeSpawn).toBe(spawner === 'native');
    // Descriptors this process holds: a board-like file and a plain one, both close-on-exec.
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(join(dir, `fds-${spawner}.db`));
    db.exec('CREATE TABLE IF NOT EXISTS t (x)');
    // What a child may legitimately inherit: our descriptors without FD_CLOEXEC (from whoever started the test).
    const inheritable = readdirSync('/proc/self/fd')
      .map(Number)
      .filter((fd) => {
        try {
          const flags = /flags:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
          return flags !== undefined && (parseInt(flags, 8) & 0o2000000) === 0;
        } catch {
          return false;
        }
      });
    const log = join(dir, `fds-${spawner}.log`);
    const res = await r.spawn({
      argv: ['bash', '-c', 'echo "ids $$ $(cut -d" " -f5,6 /proc/$$/stat)"; ls -l /proc/$$/fd/; exec grep -E "^Sig(Blk|Ign)" /proc/self/status'],
      env: ENV,
      logPath: log,
    });
    db.close();
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    await until(() => {
      const ex = r.drainExits().find((e) => e.pid === res.identity.pid);
      return ex ? (expect(ex.exitCode).toBe(0), true) : null;
    }, 10_000, 10);
    const out = readFileSync(log, 'utf8');
    const fds = new Map([...out.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => [Number(m[1]), m[2]!]));
    expect(fds.get(0)).toBe('/dev/null');
    expect(fds.get(1)).toBe(log);
    expect(fds.get(2)).toBe(log);
    const extra = [...fds.keys()].filter((fd) => fd > 2 && fd !== 255); // 255: bash's own script fd
    for (const fd of extra) expect(inheritable, `fd ${fd} -> ${fds.get(fd)} leaked into the worker`).toContain(fd);
    expect([...fds.values()].some((t) => t.endsWith('.db') || t.endsWith('.db-wal'))).toBe(false);
    const sigBlk = BigInt('0x' + /SigBlk:\s*([0-9a-f]+)/.exec(out)![1]);
    const sigIgn = BigInt('0x' + /SigIgn:\s*([0-9a-f]+)/.exec(out)![1]);
    expect(sigBlk).toBe(0n);
    // Node ignores SIGPIPE; a worker must get the default back (bit n-1 for signal n). glibc's
    // posix_spawn leaves its two internal real-time signals (32, 33) ignored; glibc programs re-arm them.
    expect(sigIgn & ~(3n << 31n)).toBe(0n);
    const [pid, pgid, sid] = /^ids (\d+) (\d+) (\d+)$/m.exec(out)!.slice(1).map(Number);
    expect(pid).toBe(res.identity.pid);
    expect(pgid).toBe(pid);
    expect(sid).toBe(pid);
  });

  it('native spawner: exec errors come back as codes naming the file', async () => {
    const r = new Reaper({ subreaper: false, spawner: 'native' });
    const noShebang = join(dir, 'no-shebang');
    writeFileSync(noShebang, '\x7fELF garbage');
    chmodSync(noShebang, 0o755);
    const res = await r.spawn({ argv: [noShebang], env: ENV, logPath: join(dir, 'enoexec.log') });
    expect(res, JSON.stringify(res)).toMatchObject({ ok: false, code: 'ENOEXEC' });
    if (!res.ok) expect(res.message).toContain(noShebang);
    expect(await r.spawn({ argv: ['true'], env: { ...ENV, 'BAD=NAME': 'x' }, logPath: join(dir, 'enoexec.log') })).toMatchObject({ ok: false, code: 'EINVAL' });
  });

  it('leaves no zombie children behind', async () => {
    exits.push(...reaper.drainExits());
    await waitFor(() => (reaper.reapOrphans(new Set()), zombieChildrenOfUs().length === 0), 5000, 20);
    expect(childrenOfUs()).toEqual([]);
  });
});
