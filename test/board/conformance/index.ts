/**
 * The board conformance suite: the contract of every board operation, exercised through the `Board`
 * and `BoardTx` interfaces only (board/src/types.ts), so that every backend runs the same tests.
 * A backend registers it with `boardConformance(name, factory)` from its own test file
 * (conformance-sqlite.test.ts, conformance-pg.test.ts). What only one backend can
 * do to a board (bump its schema version, break a commit) comes from that factory or stays in that
 * backend's test file; where a behaviour must differ per backend, `BoardDifferences` says so, and
 * nothing else in this folder asks which backend it runs on.
 *
 * What a backend provides (`BoardFactory`):
 * - `open()`: a board at a new location, its schema created by opening it; `openEmpty()`: a board
 *   at a location that exists but holds nothing yet. Each returns a `BoardUnderTest` handle that can
 *   open a second connection to the same board (as another process would), read and overwrite the
 *   stored schema version behind the board's back, and clean up everything it opened.
 * - `schemaVersion`: the version this build creates and accepts.
 * - `differences`: the behaviours that are allowed to differ per backend.
 *
 * Layout: one module per contract area, each registering its describe block(s) with a fresh board
 * for every test (helpers.ts `useBoard`, which also holds the shared fixtures):
 * skills.ts, tasks.ts, claims.ts, fencing.ts, report-seq.ts, exits-runs.ts, accounting.ts, transactions.ts,
 * events-owner-counts.ts, pages.ts, graph.ts, schema.ts.
 */
import { describe } from 'vitest';
import type { Board } from '@kanban-supervisor/board';
import { accountingConformance } from './accounting.js';
import { capsKeysConformance } from './caps-keys.js';
import { claimsConformance } from './claims.js';
import { retentionConformance } from './retention.js';
import { eventsOwnerCountsConformance } from './events-owner-counts.js';
import { exitSkillsConformance } from './exit-skills.js';
import { exitsRunsConformance } from './exits-runs.js';
import { fencingConformance } from './fencing.js';
import { graphConformance } from './graph.js';
import { pagesConformance } from './pages.js';
import { reportSeqConformance } from './report-seq.js';
import { schemaConformance } from './schema.js';
import { skillsConformance } from './skills.js';
import { tasksConformance } from './tasks.js';
import { transactionsConformance } from './transactions.js';

/** The behaviours that differ per backend, stated once by each backend's factory. */
export interface BoardDifferences {
  /**
   * Whether a board object's own reads (`getTask`, `showTask`…) see the uncommitted writes of the
   * transaction it has open. SQLite: yes (one connection carries both). A backend whose reads go
   * through a pool of connections (PostgreSQL): no. The transaction's own reads (`liveRuns`,
   * `unaccountedRuns` on the BoardTx) see them on every backend.
   */
  boardReadsSeeOpenTransaction: boolean;
}

/** One fresh board, opened with `openBoard`, and what the suite may do to it. */
export interface BoardUnderTest {
  board: Board;
  /** Another connection to the same board, as a second process would open it (`openBoard` again). */
  openAnother(): Promise<Board>;
  /** The schema version stored on the board (SQLite: `user_version`). */
  schemaVersion(): Promise<number>;
  /** Store another schema version on the board, behind the board's back (to fake a newer build's board). */
  setSchemaVersion(n: number): Promise<void>;
  /** Close every board this handle opened and remove the location. */
  cleanup(): Promise<void>;
}

export interface BoardFactory {
  /** A board at a new location (nothing there before): opening it creates the schema. */
  open(): Promise<BoardUnderTest>;
  /** A board at a location that exists but holds nothing yet (SQLite: a 0-byte file). */
  openEmpty(): Promise<BoardUnderTest>;
  /** The schema version this build creates and accepts. */
  schemaVersion: number;
  differences: BoardDifferences;
}

/** Registers the whole suite as `board conformance: <name>`, one block per contract area. */
export function boardConformance(name: string, factory: BoardFactory): void {
  describe(`board conformance: ${name}`, () => {
    skillsConformance(factory);
    tasksConformance(factory);
    claimsConformance(factory);
    fencingConformance(factory);
    reportSeqConformance(factory);
    exitsRunsConformance(factory);
    exitSkillsConformance(factory);
    accountingConformance(factory);
    transactionsConformance(factory);
    eventsOwnerCountsConformance(factory);
    capsKeysConformance(factory);
    retentionConformance(factory);
    pagesConformance(factory);
    graphConformance(factory);
    schemaConformance(factory);
  });
}
