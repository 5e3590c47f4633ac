/**
 * The schema contract: a new location is created at the current schema version, an empty one is
 * given the schema, and a board whose schema is newer than this build is refused (SchemaTooNewError).
 * Part of the board conformance suite (index.ts); every test runs on a fresh board (helpers.ts).
 */
import { describe, expect, it } from 'vitest';
import { SchemaTooNewError, type Board } from '@kanban-supervisor/board';
import type { BoardFactory, BoardUnderTest } from './index.js';
import { rejection, useBoard } from './helpers.js';

/** Registers the `schema` block. */
export function schemaConformance(factory: BoardFactory): void {
  describe('schema', () => {
    let h: BoardUnderTest;
    let b: Board;
    const { skill, handles } = useBoard(factory, (opened) => {
      h = opened;
      b = opened.board;
    });

    it('a new location is created at the current schema version, empty', async () => {
      expect(await h.schemaVersion()).toBe(factory.schemaVersion);
      expect(await b.listSkills()).toEqual([]);
      expect(await b.listTasks()).toEqual([]);
      expect(await b.listRuns()).toEqual([]);
      expect(await b.getOwner()).toBeNull();
      expect(await b.idle()).toBe(true);
    });

    it('an empty location is given the schema and works; the schema is created once', async () => {
      const e = await factory.openEmpty();
      handles.push(e);
      expect(await e.schemaVersion()).toBe(factory.schemaVersion);
      await e.board.putSkill({ name: 'echo', argv: ['/bin/true'] });
      const t = await e.board.createTask({ skill: 'echo', title: 'kept' });
      const again = await e.openAnother();
      expect(await again.getTask(t.id)).toEqual(t);
      expect(await e.schemaVersion()).toBe(factory.schemaVersion);
    });

    it('a board whose schema is newer is refused, naming the board and both versions; the refusal changes nothing', async () => {
      await skill();
      const t = await b.createTask({ skill: 'echo' });
      const newer = factory.schemaVersion + 5;
      await h.setSchemaVersion(newer);
      const err = await rejection(h.openAnother());
      expect(err).toBeInstanceOf(SchemaTooNewError);
      expect(err.message).toContain(b.location);
      expect(err.message).toContain(`schema version ${newer}`);
      expect(err.message).toContain(`supports (${factory.schemaVersion})`);
      expect((err as SchemaTooNewError).found).toBe(newer);
      expect((err as SchemaTooNewError).supported).toBe(factory.schemaVersion);
      expect(await h.schemaVersion()).toBe(newer);
      await h.setSchemaVersion(factory.schemaVersion);
      expect(await (await h.openAnother()).getTask(t.id)).toEqual(t);
    });
  });
}
