/**
 * The HTTP server's bearer token when KANBAN_HTTP_TOKEN is not set (loopback only): generated at the
 * first start and kept in a file only this user can read, `<board>.http-token` next to a SQLite
 * board, `<state folder>/http-token` for a PostgreSQL board.
 *
 * Created with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600. Read back only if it is a regular file (never
 * through a symlink, never a FIFO: opened O_NONBLOCK), owned by this user, with no access for group
 * or others and one link, holding a well-formed token. Anything else is refused with an error that
 * names the file and what to do (TokenFileError, a configuration error: exit 2). The token is never
 * logged; `status` prints the page's URL with it in the fragment for a user who can read the file.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, linkSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, HTTP_TOKEN_PATTERN } from '@kanban-supervisor/policies';
import { openSafe, UnsafeFileError } from '@kanban-supervisor/reaper/safe-fs';

export class TokenFileError extends ConfigError {
  override name = 'TokenFileError';
}

/** Where the token file of a board is: next to a SQLite board, in a PostgreSQL board's state folder. */
export function tokenFilePath(files: { kind: 'sqlite' | 'postgres'; dir: string }, boardPath: string): string {
  return files.kind === 'sqlite' ? `${boardPath}.http-token` : join(files.dir, 'http-token');
}

const fix = (path: string) => `remove it (\`rm ${path}\`): a new token is made at the next start, or set KANBAN_HTTP_TOKEN`;

/** Read the token file; null if it does not exist. Throws TokenFileError for a hostile or damaged file. */
export function readTokenFile(path: string): string | null {
  let fd: number;
  let mode: number;
  try {
    const o = openSafe(path, constants.O_RDONLY, { owner: true, singleLink: true });
    fd = o.fd;
    mode = o.stat.mode;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (e instanceof UnsafeFileError) throw new TokenFileError(`the HTTP token file ${e.message}: refused; ${fix(path)}`, { cause: e });
    throw new TokenFileError(`the HTTP token file ${path} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  try {
    if ((mode & 0o077) !== 0) {
      throw new TokenFileError(`the HTTP token file ${path} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}: others than its owner may read it, so it is refused; ${fix(path)}`);
    }
    const buf = Buffer.alloc(300);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString('utf8').trim();
    if (!HTTP_TOKEN_PATTERN.test(text)) throw new TokenFileError(`the HTTP token file ${path} does not hold a token (16-256 characters of A-Z a-z 0-9 . _ ~ + / = -); ${fix(path)}`);
    return text;
  } finally {
    closeSync(fd);
  }
}

/**
 * The token in the file at `path`, made (0600, exclusively) if there is none yet. The file appears
 * whole or not at all: the token is written and fsynced in a temporary file of our own, then linked
 * into place (link() never replaces a file and never follows a symlink at the target), so a crash
 * or a second supervisor starting at the same moment never finds it empty or half-written.
 */
export function loadOrCreateToken(path: string): { token: string; created: boolean } {
  const found = readTokenFile(path);
  if (found !== null) return { token: found, created: false };
  const token = randomBytes(32).toString('base64url');
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new TokenFileError(`the HTTP token file ${path} cannot be created (${tmp}): ${(e as Error).message}`, { cause: e });
  }
  try {
    try {
      writeSync(fd, `${token}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new TokenFileError(`the HTTP token file ${path} cannot be created: ${(e as Error).message}`, { cause: e });
      // Made meanwhile by another process: read what it wrote (checked like any other; it may
      // still have two links for a moment, until that process removes its temporary name).
      for (let i = 0; ; i++) {
        try {
          return { token: readTokenFile(path) ?? token, created: false };
        } catch (re) {
          if (i >= 20) throw re;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
        }
      }
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
  }
  return { token, created: true };
}
