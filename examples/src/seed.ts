#!/usr/bin/env node
/**
 * Seed a board with the example skills and a mix of tasks, on first run only.
 *   node examples/dist/seed.js [--db PATH]      (default: $KANBAN_DB, else ./.kanban/kanban.db)
 */
import { parseArgs } from 'node:util';
import { openBoard, type Board } from '@kanban-supervisor/board';
import { EXIT } from '@kanban-supervisor/policies';
import { seedBoard } from './index.js';

function usage(): string {
  return 'usage: node examples/dist/seed.js [--db PATH]\n' +
    'Registers the example skills (echo, slow-call, flaky) and enqueues a mix of tasks, unless the board already has tasks.\n' +
    'The board is --db, else $KANBAN_DB, else ./.kanban/kanban.db.\n';
}

function parse(argv: string[]): { db: string } | { help: true } | { error: string } {
  let values: { db?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: { db: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (e) {
    return { error: (e as Error).message };
  }
  if (values.help) return { help: true };
  if (values.db === '') return { error: '--db needs a path' };
  return { db: values.db ?? (process.env.KANBAN_DB || './.kanban/kanban.db') };
}

const args = parse(process.argv.slice(2));
if ('help' in args) {
  process.stdout.write(usage());
} else if ('error' in args) {
  process.stderr.write(`seed: ${args.error}\n${usage()}`);
  process.exitCode = EXIT.usage;
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
    process.exitCode = EXIT.failed;
  } finally {
    await board?.close();
  }
}
