// PATH lookup with execvp semantics, done in the parent so spawn failures are reported with a
// precise code instead of a late 'error' event that blames the wrong thing.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** glibc's default when PATH is unset (confstr(_CS_PATH)). */
export const DEFAULT_PATH = '/bin:/usr/bin';

export type Lookup = { ok: true; file: string } | { ok: false; code: 'ENOENT' | 'EACCES'; message: string };

function check(file: string): 'ok' | 'ENOENT' | 'EACCES' {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EACCES' ? 'EACCES' : 'ENOENT';
  }
  if (!st.isFile()) return st.isDirectory() ? 'EACCES' : 'ENOENT';
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch {
    return 'EACCES';
  }
  return 'ok';
}

/**
 * Resolve cmd like execvp: a name with '/' is taken relative to cwd; otherwise each PATH entry
 * is tried (an empty entry means cwd, relative entries are relative to cwd). EACCES wins over
 * ENOENT when some candidate exists but is not executable.
 */
export function lookupExecutable(cmd: string, pathEnv: string | undefined, cwd?: string): Lookup {
  const base = cwd ?? process.cwd();
  if (!cmd) return { ok: false, code: 'ENOENT', message: 'empty command' };
  if (cmd.includes('/')) {
    const file = path.resolve(base, cmd);
    const r = check(file);
    if (r === 'ok') return { ok: true, file };
    return { ok: false, code: r, message: r === 'EACCES' ? `not executable: ${file}` : `no such file: ${file}` };
  }
  let sawEacces: string | null = null;
  for (const dir of (pathEnv ?? DEFAULT_PATH).split(':')) {
    const file = path.resolve(base, dir === '' ? '.' : dir, cmd);
    const r = check(file);
    if (r === 'ok') return { ok: true, file };
    if (r === 'EACCES' && !sawEacces) sawEacces = file;
  }
  if (sawEacces) return { ok: false, code: 'EACCES', message: `${cmd}: permission denied (${sawEacces})` };
  return { ok: false, code: 'ENOENT', message: `${cmd}: command not found in PATH=${pathEnv ?? DEFAULT_PATH}` };
}

export function resolveExecutable(cmd: string, pathEnv: string, cwd?: string): string | null {
  const r = lookupExecutable(cmd, pathEnv, cwd);
  return r.ok ? r.file : null;
}
