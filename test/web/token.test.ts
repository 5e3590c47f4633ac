/**
 * The HTTP token file (web/src/token.ts): made whole or not at all. Eight processes starting at the
 * same moment on one board all end with the one token that landed, the file is 0600 with one link,
 * and no temporary file is left behind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, exited, startProcess } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const SCRIPT = `
import { loadOrCreateToken } from '@kanban-supervisor/web';
const at = Number(process.argv[2]);
while (Date.now() < at) {}
process.stdout.write(JSON.stringify(loadOrCreateToken(process.argv[1])));
`;

describe('the HTTP token file', () => {
  it('eight processes creating it at once all read the one token that landed; 0600, one link, no temporary file left', async () => {
    const dir = cleanups.tempDir('ks-token-');
    const file = join(dir, 'kanban.db.http-token');
    const at = Date.now() + 1500;
    const procs = Array.from({ length: 8 }, () => startProcess(process.execPath, ['--input-type=module', '-e', SCRIPT, file, String(at)], {}));
    const out: Array<{ token: string; created: boolean }> = [];
    for (const p of procs) {
      const { code } = await exited(p);
      expect(code, p.output()).toBe(0);
      out.push(JSON.parse(p.output()));
    }
    const token = readFileSync(file, 'utf8').trim();
    expect(out.every((o) => o.token === token)).toBe(true);
    expect(out.filter((o) => o.created)).toHaveLength(1);
    const st = statSync(file);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.nlink).toBe(1);
    expect(readdirSync(dir)).toEqual(['kanban.db.http-token']);
  });
});
