/**
 * The skills contract: putSkill/getSkill/listSkills/removeSkill, and the validation of a skill
 * (name, command, environment, limits) refused with BoardInputError before anything is stored.
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { BoardInputError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { rejection, useBoard } from './helpers.js';

/** Registers the `skills` block. */
export function skillsConformance(factory: BoardFactory): void {
  describe('skills', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('putSkill stores every field (defaults for those left out) and getSkill reads it back, on every connection', async () => {
      const minimal = await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'hi'] });
      expect(minimal).toEqual({
        name: 'echo',
        argv: ['/bin/echo', 'hi'],
        cwd: null,
        env: {},
        passEnv: [],
        maxRuntimeSeconds: null,
        heartbeatTimeoutSeconds: null,
        reclaimGraceSeconds: null,
        maxRssMb: null,
        maxConcurrent: null,
        report: 'board',
        resultFrom: null,
      });
      const full = await b.putSkill({
        name: 'full',
        argv: ['node', 'worker.js', '--flag'],
        cwd: '/srv/work',
        env: { MODE: 'fast', _X1: '' },
        passEnv: ['HOME', 'PATH', 'HOME'],
        maxRuntimeSeconds: 2.5,
        heartbeatTimeoutSeconds: 0,
        reclaimGraceSeconds: 3,
        maxRssMb: 0,
        maxConcurrent: 4,
      });
      expect(full).toEqual({
        name: 'full',
        argv: ['node', 'worker.js', '--flag'],
        cwd: '/srv/work',
        env: { MODE: 'fast', _X1: '' },
        passEnv: ['HOME', 'PATH'],
        maxRuntimeSeconds: 2.5,
        heartbeatTimeoutSeconds: 0,
        reclaimGraceSeconds: 3,
        maxRssMb: 0,
        maxConcurrent: 4,
        report: 'board',
        resultFrom: null,
      });
      expect(await b.getSkill('echo')).toEqual(minimal);
      const other = await h.openAnother();
      expect(await other.getSkill('full')).toEqual(full);
      expect(await other.getSkill('nope')).toBeNull();
    });

    it('putSkill on an existing name replaces its definition', async () => {
      await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'one'], cwd: '/a', env: { A: '1' }, maxRssMb: 10 });
      const second = await b.putSkill({ name: 'echo', argv: ['/bin/echo', 'two'] });
      expect(second).toMatchObject({ argv: ['/bin/echo', 'two'], cwd: null, env: {}, maxRssMb: null });
      expect(await b.listSkills()).toEqual([second]);
    });

    it('listSkills is ordered by name; removeSkill says whether there was one to remove', async () => {
      for (const n of ['zeta', 'alpha', 'mid']) await skill(n);
      expect((await b.listSkills()).map((s) => s.name)).toEqual(['alpha', 'mid', 'zeta']);
      expect(await b.removeSkill('mid')).toBe(true);
      expect(await b.removeSkill('mid')).toBe(false);
      expect(await b.removeSkill('never')).toBe(false);
      expect(await b.getSkill('mid')).toBeNull();
      expect((await b.listSkills()).map((s) => s.name)).toEqual(['alpha', 'zeta']);
    });

    it('accepts names of 1 to 64 letters, digits, ".", "_" or "-" starting with a letter or digit', async () => {
      for (const n of ['a', '9', 'x.y_z-1', 'A'.repeat(64)]) expect((await b.putSkill({ name: n, argv: ['x'] })).name).toBe(n);
      expect((await b.listSkills()).length).toBe(4);
    });

    it.each(['', 'bad name', '-lead', '.hidden', 'a/b', 'é', 'a'.repeat(65)])('refuses the skill name %j with BoardInputError naming it, storing nothing', async (bad) => {
      await skill('keep');
      const err = await rejection(b.putSkill({ name: bad, argv: ['/bin/true'] }));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(`skill name ${JSON.stringify(bad)} is invalid`);
      expect((await b.listSkills()).map((s) => s.name)).toEqual(['keep']);
    });

    it.each([
      ['an empty command', { argv: [] }, 'skill x: the command must be a non-empty array of strings'],
      ['an empty command name', { argv: [''] }, 'skill x: the command name is empty'],
      ['a reserved variable', { env: { KANBAN_DB: '/tmp/x' } }, 'skill x: environment variable KANBAN_DB is reserved for the supervisor'],
      ['an invalid variable name', { env: { '1X': 'a' } }, 'skill x: invalid environment variable name "1X"'],
      ['a passed reserved variable', { passEnv: ['KANBAN_TOKEN'] }, 'skill x: --pass-env KANBAN_TOKEN'],
      ['a passed invalid name', { passEnv: ['A B'] }, 'skill x: --pass-env must name an environment variable, got "A B"'],
      ['a zero max runtime', { maxRuntimeSeconds: 0 }, 'skill x: max runtime must be'],
      ['a negative heartbeat timeout', { heartbeatTimeoutSeconds: -1 }, 'skill x: heartbeat timeout must be'],
      ['a reclaim grace above a day', { reclaimGraceSeconds: 86_401 }, 'skill x: reclaim grace must be'],
      ['a fractional max RSS', { maxRssMb: 1.5 }, 'skill x: max RSS must be'],
    ])('refuses %s with BoardInputError naming the skill, storing nothing', async (_what, bad, msg) => {
      const err = await rejection(b.putSkill({ name: 'x', argv: ['/bin/true'], ...bad }));
      expect(err).toBeInstanceOf(BoardInputError);
      expect(err.message).toContain(msg);
      expect(await b.getSkill('x')).toBeNull();
    });
  });
}
