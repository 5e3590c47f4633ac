/**
 * The peers' packages live in bench/peers/node_modules, apart from the repository's install. Before
 * a run they are installed with `npm ci` when missing or older than bench/peers/package-lock.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/peers (this module is in bench/peers/dist). */
export const PEERS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

export function depsCurrent(): boolean {
  const installed = join(PEERS_DIR, 'node_modules', '.package-lock.json');
  if (!existsSync(installed)) return false;
  if (statSync(installed).mtimeMs < statSync(join(PEERS_DIR, 'package-lock.json')).mtimeMs) return false;
  return ['bullmq', 'ioredis', 'graphile-worker'].every((p) => existsSync(join(PEERS_DIR, 'node_modules', p, 'package.json')));
}

/** `npm ci` in bench/peers when needed; false (and a line on stderr) when it failed. */
export function ensureDeps(): boolean {
  if (depsCurrent()) return true;
  process.stdout.write(`bench:peers: installing the peers' packages: npm --prefix ${PEERS_DIR} ci\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['--prefix', PEERS_DIR, 'ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`bench:peers: npm ci in ${PEERS_DIR} exited ${r.status ?? r.signal}: BullMQ and graphile-worker will be skipped\n`);
    return false;
  }
  return true;
}
