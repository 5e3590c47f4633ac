/**
 * The example skills, as data: where they live, how to register them, and a mix of tasks.
 * `seed.ts` uses this; so can tests of the supervisor.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Board, SkillInput, Task, TaskInput } from '@kanban-supervisor/board';

/** examples/dist (the compiled skills). */
export const EXAMPLES_DIST = fileURLToPath(new URL('.', import.meta.url));
/** examples/ */
export const EXAMPLES_ROOT = join(EXAMPLES_DIST, '..');

export const EXAMPLE_PATHS = {
  echo: join(EXAMPLES_DIST, 'echo.js'),
  slowCall: join(EXAMPLES_DIST, 'slow-call.js'),
  /** Shell scripts are not compiled: flaky.sh is used from examples/src (mode 755). */
  flaky: join(EXAMPLES_ROOT, 'src', 'flaky.sh'),
} as const;

/** The example skills with absolute commands (`node` is the running Node.js). */
export function exampleSkills(nodePath: string = process.execPath): SkillInput[] {
  return [
    { name: 'echo', argv: [nodePath, EXAMPLE_PATHS.echo], maxRuntimeSeconds: 60 },
    {
      name: 'slow-call',
      argv: [nodePath, EXAMPLE_PATHS.slowCall],
      maxRuntimeSeconds: 300,
      heartbeatTimeoutSeconds: 10,
      reclaimGraceSeconds: 5,
    },
    { name: 'flaky', argv: [EXAMPLE_PATHS.flaky], maxRuntimeSeconds: 60, reclaimGraceSeconds: 3 },
  ];
}

/** A mix of tasks over the example skills: quick ones, slow ones, and ones that fail or crash. */
export function exampleTasks(): TaskInput[] {
  return [
    { skill: 'echo', title: 'echo: hello', payload: { message: 'hello, board' } },
    { skill: 'echo', title: 'echo: numbers', payload: [1, 2, 3] },
    { skill: 'echo', title: 'echo: urgent', payload: { message: 'I jump the queue' }, priority: 10 },
    { skill: 'slow-call', title: 'slow-call: short answer', payload: { steps: 6, stepMs: 400 } },
    { skill: 'slow-call', title: 'slow-call: long answer', payload: { steps: 30, stepMs: 500 } },
    { skill: 'slow-call', title: 'slow-call: model error at step 3', payload: { steps: 8, stepMs: 200, failAtStep: 3 }, maxRetries: 2 },
    { skill: 'flaky', title: 'flaky: succeeds', payload: { outcome: 'succeed', sleepSeconds: 0.5 } },
    { skill: 'flaky', title: 'flaky: fails', payload: { outcome: 'fail', sleepSeconds: 0.5 }, maxRetries: 2 },
    { skill: 'flaky', title: 'flaky: crashes', payload: { outcome: 'crash', sleepSeconds: 0.5 }, maxRetries: 2 },
    { skill: 'flaky', title: 'flaky: coin toss 1', payload: { failPercent: 30, crashPercent: 20, sleepSeconds: 1 } },
    { skill: 'flaky', title: 'flaky: coin toss 2', payload: { failPercent: 30, crashPercent: 20, sleepSeconds: 1 } },
  ];
}

export type SeedResult = { seeded: false; existingTasks: number } | { seeded: true; skills: string[]; tasks: Task[] };

/** Register the example skills and enqueue the example tasks, only if the board has no task yet. */
export async function seedBoard(board: Board, nodePath: string = process.execPath): Promise<SeedResult> {
  const existing = await board.counts();
  const total = Object.values(existing.tasks).reduce((a, b) => a + b, 0);
  if (total > 0) return { seeded: false, existingTasks: total };
  const skills: string[] = [];
  for (const s of exampleSkills(nodePath)) skills.push((await board.putSkill(s)).name);
  const tasks: Task[] = [];
  for (const t of exampleTasks()) tasks.push(await board.createTask(t));
  return { seeded: true, skills, tasks };
}
