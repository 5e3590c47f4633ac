/**
 * The task graph's commands: `link CHILD --after PARENT` and `unlink CHILD --after PARENT` (each
 * `--after` once or more; one transaction per link), and what holds waiting tasks (for `list`).
 */
import type { Board, LinkedTask, Task } from '@kanban-supervisor/board';
import { EXIT } from '@kanban-supervisor/policies';
import { parseArgs, UsageError } from '../args.js';
import { printable as safe } from '../text.js';
import { withBoard, type Globals } from './board.js';
import { one } from './flags.js';
import { out, taskJson } from './output.js';

/** `link CHILD --after PARENT [--after PARENT…]` / `unlink …`: prints the child's status after. */
export async function cmdLink(g: Globals, cmd: 'link' | 'unlink', args: string[]): Promise<number> {
  const p = parseArgs(args, { '--after': { kind: 'multi' } }, cmd);
  const child = one(p, 'task id', cmd);
  const parents = p.multi['--after'] ?? [];
  if (parents.length === 0) throw new UsageError(`${cmd}: --after PARENT is required (once or more)`);
  const t = await withBoard(g, async (b) => {
    let last: Task | null = null;
    for (const parent of parents) last = cmd === 'link' ? await b.linkTasks(child, parent) : await b.unlinkTasks(child, parent);
    return last!;
  }, 'write');
  out(g, `${safe(t.id)} ${safe(t.status)}`, taskJson(t));
  return EXIT.ok;
}

/** The parents that are not done of the waiting tasks among `tasks` (at most 500 asked at a time). */
export async function waitingHolds(b: Pick<Board, 'waitingFor'>, tasks: Task[]): Promise<Map<string, LinkedTask[]>> {
  const ids = tasks.filter((t) => t.status === 'waiting').map((t) => t.id);
  const holds = new Map<string, LinkedTask[]>();
  for (let i = 0; i < ids.length; i += 500) {
    for (const w of await b.waitingFor(ids.slice(i, i + 500))) {
      const list = holds.get(w.taskId);
      if (list) list.push(w.parent);
      else holds.set(w.taskId, [w.parent]);
    }
  }
  return holds;
}
