import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Cleanups, FIXTURES, cleanEnv, cli, run } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

// What only the daemon needs: its HTTP server, metrics and logger.
const DAEMON_ONLY = ['fastify', 'prom-client', 'pino'];
// What only the portable process backend needs (loaded at its first use, never on Linux's fast path).
const PORTABLE_ONLY = ['pidusage', 'tree-kill', 'execa'];

/** The third-party packages and workspace modules a CLI call loads (ESM resolutions). */
async function loaded(db: string, args: string[]): Promise<{ code: number | null; packages: Set<string>; urls: string[] }> {
  const file = join(cleanups.tempDir('ks-imports-'), 'imports.txt');
  const r = await run(process.execPath, ['--import', join(FIXTURES, 'cli/record-imports.mjs'), CLI, '--db', db, ...args], {
    env: cleanEnv({ RECORD_IMPORTS: file }),
  });
  const urls = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : [];
  const packages = new Set(urls.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((p): p is string => p !== undefined));
  return { code: r.code, packages, urls };
}

describe('CLI start-up', () => {
  it('a worker verb, status and list load none of the daemon\'s modules; run does (the recorder sees them), but not the portable backend\'s', async () => {
    const db = join(cleanups.tempDir('ks-startup-'), 'kanban.db');
    expect((await cli(db, ['init'])).code).toBe(0);
    for (const args of [['worker', 'heartbeat', '--help'], ['status', '--help'], ['--json', 'list'], ['status']]) {
      const r = await loaded(db, args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.urls.length, args.join(' ')).toBeGreaterThan(10);
      expect([...DAEMON_ONLY, ...PORTABLE_ONLY].filter((p) => r.packages.has(p)), args.join(' ')).toEqual([]);
      expect(r.urls.filter((u) => u.includes('/supervisor/dist/supervisor.js')), args.join(' ')).toEqual([]);
    }
    // The daemon's command loads them: a bad flag is refused after its module is imported.
    const daemon = await loaded(db, ['run', '--no-such-flag']);
    expect(daemon.code).toBe(2);
    expect(DAEMON_ONLY.filter((p) => !daemon.packages.has(p))).toEqual([]);
    expect(PORTABLE_ONLY.filter((p) => daemon.packages.has(p))).toEqual([]);
  });
});
