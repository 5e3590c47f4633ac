/**
 * Where a board's local files live (boardFiles): next to a SQLite board exactly as always; for a
 * PostgreSQL board, in a state folder named by a hash of the masked URL and schema (the same on
 * every host, whatever the password), created 0700 and refused when it is a symlink.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BoardPathError, boardFiles, ensureStateDir } from '@kanban-supervisor/board';
import { Cleanups } from '../src/common.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('boardFiles', () => {
  it('a SQLite board: logs/, spool/, <board>.supervisor.json, <board>.owner-lock and sockets/<board>.sock (and <board>.beats) next to it', () => {
    expect(boardFiles('/srv/k/kanban.db', {})).toEqual({
      kind: 'sqlite',
      dir: '/srv/k',
      logDir: '/srv/k/logs',
      spoolDir: '/srv/k/spool',
      statusFile: '/srv/k/kanban.db.supervisor.json',
      ownerLock: '/srv/k/kanban.db.owner-lock',
      socketDir: '/srv/k/sockets',
      socketPath: '/srv/k/sockets/kanban.db.sock',
      beatDir: '/srv/k/sockets/kanban.db.beats',
    });
  });

  it('a PostgreSQL board: XDG_STATE_HOME (else ~/.local/state)/kanban-supervisor/<hash of masked URL + schema>, or KANBAN_STATE_DIR', () => {
    const a = boardFiles('postgres://u:secret1@db.example:5432/app?schema=k1', { XDG_STATE_HOME: '/x' });
    const b = boardFiles('postgres://u:other@db.example:5432/app?schema=k1', { XDG_STATE_HOME: '/x' });
    const c = boardFiles('postgres://u:secret1@db.example:5432/app?schema=k2', { XDG_STATE_HOME: '/x' });
    const d = boardFiles('postgres://u@db.example:5432/app', { XDG_STATE_HOME: '/x' });
    const e = boardFiles('postgres://u@db.example:5432/app?schema=kanban', { XDG_STATE_HOME: '/x' });
    expect(a.dir).toMatch(/^\/x\/kanban-supervisor\/[0-9a-f]{24}$/);
    expect(b.dir).toBe(a.dir); // the password is not part of the name
    expect(c.dir).not.toBe(a.dir); // the schema is
    expect(e.dir).toBe(d.dir); // the default schema, named or not
    expect(a.dir).not.toContain('secret1');
    expect(a).toMatchObject({ kind: 'postgres', logDir: `${a.dir}/logs`, spoolDir: `${a.dir}/spool`, statusFile: `${a.dir}/supervisor.json`, ownerLock: null, socketPath: `${a.dir}/sockets/report.sock`, beatDir: `${a.dir}/sockets/beats` });
    expect(boardFiles('postgres://u@h/app', { HOME: '/home/q', KANBAN_STATE_DIR: '/var/lib/ks' }).dir).toBe('/var/lib/ks');
    expect(boardFiles('postgres://u@h/app', { XDG_STATE_HOME: 'relative' }).dir).toMatch(/\/\.local\/state\/kanban-supervisor\/[0-9a-f]{24}$/);
  });

  it('ensureStateDir creates the folder 0700 and refuses a symlink or a file in its place', () => {
    const root = cleanups.tempDir('ks-files-');
    const ok = boardFiles('postgres://u@h/app', { KANBAN_STATE_DIR: join(root, 'a', 'state') });
    ensureStateDir(ok, 'the board');
    expect(statSync(ok.dir).mode & 0o777).toBe(0o700);
    mkdirSync(join(root, 'real'));
    symlinkSync(join(root, 'real'), join(root, 'link'));
    const link = boardFiles('postgres://u@h/app', { KANBAN_STATE_DIR: join(root, 'link') });
    expect(() => ensureStateDir(link, 'the board')).toThrow(BoardPathError);
    expect(() => ensureStateDir(link, 'the board')).toThrow(/symbolic link/);
  });
});
