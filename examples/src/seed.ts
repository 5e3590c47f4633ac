#!/usr/bin/env node
/**
 * Seed a board with the example skills and a mix of tasks, on first run only.
 *   node examples/dist/seed.js [--db PATH]      (default: $KANBAN_DB, else ./.kanban/kanban.db)
 */
import { openBoard, type Board } from '@kanban-supervisor/board';
import { seedBoard } from './index.js';

function usage(): string {
  return 'usage: node examples/dist/seed.js [--db PATH]\n' +
    'Registers the example skills (echo, slow-call, flaky) and enqueues a mix of tasks, unless the board already has tasks.\n' +
    'The board is --db, else $KANBAN_DB, else ./.kanban/kanban.db.\n';
}

function parse(argv: string[]): { db: string } | { help: true } | { error: string } {
  let db: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') return { help: true };
    if (a === '--db') {
      const v = argv[++i];
      if (v === undefined || v === '') return { error: '--db needs a path' };
      db = v;
    } else if (a.startsWith('--db=')) {
      db = a.slice(5);
      if (db === '') return { error: '--db needs a path' };
    } else return { error: `unknown argument ${JSON.stringify(a)}` };
  }
  return { db: db ?? (process.env.KANBAN_DB || './.kanban/kanban.db') };
}

const args = parse(process.argv.slice(2));
if ('help' in args) {
  process.stdout.write(usage());
} else if ('error' in args) {
  process.stderr.write(`seed: ${args.error}\n${usage()}`);
  process.exitCode = 2;
} else {
  let board: Board | null = null;
  try {
    board = await openBoard(args.db);
    const r = await seedBoard(board);
    if (!r.seeded) {
      process.stdout.write(`seed: board ${board.location} already has ${r.existingTasks} task(s); not seeding it again\n`);
    } else {
      process.stdout.write(`seed: registered skills ${r.skills.join(', ')} on board ${board.location}\n`);
      for (const t of r.tasks) process.stdout.write(`seed: enqueued ${t.id}  ${t.skill.padEnd(9)}  ${t.title}\n`);
    }
  } catch (e) {
    process.stderr.write(`seed: ${(e as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    await board?.close();
  }
}
