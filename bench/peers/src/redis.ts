/**
 * A Redis server for the BullMQ series: Debian's redis-server (installed with apt-get when missing
 * and we are root), on a free loopback port with a folder and a configuration of its own, AOF on;
 * stopped by `stop()` (SHUTDOWN NOSAVE, then SIGKILL) and, whatever happens, by the Harness (it
 * carries the run's mark). Commands go over a few lines of RESP: no client package needed.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { cpuTimes, sleep, type Harness } from '../../../test/dist/lib.js';
import { freePort } from '../../../test/dist/pg-server.js';
import { tailOf } from './proc.js';

export interface Redis {
  port: number;
  pid: number;
  /** e.g. "Redis 7.0.15". */
  version: string;
  /** Send one command; its simple answer (an error answer throws). */
  cmd(...args: string[]): Promise<string>;
  /** The server's CPU so far (its own and its reaped children's: AOF rewrites), seconds. */
  cpu(): number;
  stop(): Promise<void>;
}

/** One command on a new connection; resolves with the first line of the answer (without its type byte). */
export function redisCmd(port: number, args: string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    const done = (f: () => void): void => {
      clearTimeout(t);
      s.destroy();
      f();
    };
    const t = setTimeout(() => done(() => reject(new Error(`redis ${args[0]}: no answer within ${timeoutMs} ms`))), timeoutMs);
    s.on('connect', () => s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    s.on('data', (d) => {
      buf += String(d);
      const i = buf.indexOf('\r\n');
      if (i < 0) return;
      const line = buf.slice(0, i);
      done(() => (line.startsWith('-') ? reject(new Error(`redis ${args[0]}: ${line.slice(1)}`)) : resolve(line.slice(1))));
    });
    s.on('error', (e) => done(() => reject(e)));
    s.on('close', () => done(() => reject(new Error(`redis ${args[0]}: connection closed without an answer`))));
  });
}

function redisVersion(): string | null {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return `Redis ${/v=([\d.]+)/.exec(r.stdout)?.[1] ?? '?'}`;
}

/** The server, or why there is none (the BullMQ series are skipped with that line). */
export async function startRedis(h: Harness): Promise<Redis | string> {
  let version = redisVersion();
  if (!version && process.getuid?.() === 0) {
    process.stdout.write('  redis-server is missing: apt-get install -y redis-server\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', 'redis-server'], { encoding: 'utf8', env });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
      r = spawnSync('apt-get', ['install', '-y', 'redis-server'], { encoding: 'utf8', env });
    }
    version = redisVersion();
    if (!version) return `redis-server could not be installed (apt-get exited ${r.status}: ${String(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')})`;
  }
  if (!version) return 'no redis-server on PATH and not root (install Debian\'s redis-server to measure BullMQ)';
  const dir = h.dir('redis');
  const port = await freePort();
  const conf = join(dir, 'redis.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode yes',
      'daemonize no',
      `dir ${dir}`,
      `logfile ${join(dir, 'redis.log')}`,
      'save ""',
      'appendonly yes',
      'appendfsync always',
      'maxmemory-policy noeviction',
      '',
    ].join('\n'),
  );
  const child = h.spawn('redis-server', [conf]);
  const pid = child.pid!;
  let exited = false;
  child.once('exit', () => (exited = true));
  const cmd = (...args: string[]) => redisCmd(port, args);
  const stop = async (): Promise<void> => {
    if (exited) return;
    await cmd('SHUTDOWN', 'NOSAVE').catch(() => undefined);
    for (let i = 0; i < 100 && !exited; i++) await sleep(50);
    if (!exited) child.kill('SIGKILL');
  };
  h.atCleanup(stop);
  for (const end = Date.now() + 15_000; ; await sleep(50)) {
    if (exited) throw new Error(`redis-server exited at start:\n${tailOf(join(dir, 'redis.log'))}`);
    if ((await cmd('PING').catch(() => '')) === 'PONG') break;
    if (Date.now() > end) {
      await stop();
      throw new Error(`redis-server did not answer PING within 15 s:\n${tailOf(join(dir, 'redis.log'))}`);
    }
  }
  const cpu = (): number => {
    const c = cpuTimes(pid);
    return c ? c.own + c.children : 0;
  };
  return { port, pid, version, cmd, cpu, stop };
}
