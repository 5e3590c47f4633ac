/**
 * `npm run bench:peers` (bench/peers, a package of its own): its flags answer before anything is
 * installed or started — --help lists every system, a wrong argument exits 2 naming it — and the
 * peers' packages stay out of the repository's own install.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, run } from '../src/common.js';

const MAIN = join(ROOT, 'bench', 'peers', 'dist', 'main.js');
const peers = (args: string[]) => run(process.execPath, [MAIN, ...args], { cwd: ROOT, timeoutMs: 30_000 });

describe('bench:peers flags', () => {
  it('--help lists every system with its durability setting, and installs nothing', async () => {
    const r = await peers(['--help']);
    expect(r.code, r.stderr).toBe(0);
    for (const s of ['limit', 'bullmq-always', 'bullmq-everysec', 'graphile', 'ks-exit', 'ks-native', 'ks-cli', 'ks-node', 'ks-channel']) {
      expect(r.stdout).toMatch(new RegExp(`^  ${s} `, 'm'));
    }
    expect(r.stdout).toMatch(/BullMQ/);
    expect(r.stdout).toMatch(/graphile-worker/);
    expect(r.stdout).toMatch(/appendfsync always/);
    expect(r.stdout).toMatch(/appendfsync everysec/);
    expect(r.stdout).toMatch(/synchronous_commit on/);
    expect(r.stdout).toMatch(/synchronous=FULL/);
    expect(r.stdout + r.stderr).not.toMatch(/installing the peers/);
    expect((await peers(['-h'])).stdout).toBe(r.stdout);
  });

  it.each([
    [['--bogus'], /unknown option --bogus/],
    [['--short', 'extra'], /unknown argument extra/],
    [['--short=1'], /unknown argument --short=1/],
    [['--only'], /--only needs a value/],
    [['--only', 'bullmq,nope'], /unknown system "nope"/],
  ])('%j exits 2 naming what is wrong, before anything starts', async (args, message) => {
    const r = await peers(args);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it("keeps the peers' packages out of the repository's install", () => {
    const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[]; scripts: Record<string, string> };
    expect(root.workspaces).not.toContain('bench/peers');
    expect(root.scripts['bench:peers']).toMatch(/bench\/peers\/dist\/main\.js/);
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
    for (const p of ['bullmq', 'ioredis', 'graphile-worker']) expect(Object.keys(lock.packages)).not.toContain(`node_modules/${p}`);
    const own = JSON.parse(readFileSync(join(ROOT, 'bench', 'peers', 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(own.dependencies).sort()).toEqual(['bullmq', 'graphile-worker', 'ioredis']);
  });
});
