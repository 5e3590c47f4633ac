/**
 * Filling a SQLite board with many tasks below the board's interface (one transaction of plain
 * INSERTs: 100,000 tasks in a second or two, where createTask would take minutes): for the tests and
 * benches that need a big board (metrics scrape at 100,000 tasks).
 */
import { TASK_STATUSES } from '@kanban-supervisor/policies';
import { openSql } from './sup.js';

/**
 * Add `n` tasks to the board at `path` (its skills must exist), spread over `skills` and the task
 * statuses (mostly done, as a board that has run a while), each with a small JSON payload.
 * Returns how many tasks each (status, skill) pair got.
 */
export function fillTasks(path: string, n: number, skills: string[]): Map<string, number> {
  const db = openSql(path);
  const made = new Map<string, number>();
  try {
    const ins = db.prepare(
      `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)`,
    );
    const others = TASK_STATUSES.filter((s) => s !== 'done' && s !== 'running');
    const base = Date.now() - n;
    db.transaction(() => {
      for (let i = 0; i < n; i++) {
        const skill = skills[i % skills.length]!;
        const status = i % 4 === 0 ? others[(i >> 2) % others.length]! : 'done';
        ins.run(`tfill${i.toString(36)}`, `filled task ${i}`, skill, JSON.stringify({ n: i, note: 'x'.repeat(64) }), status, base + i, base + i);
        const k = `${status}/${skill}`;
        made.set(k, (made.get(k) ?? 0) + 1);
      }
    })();
  } finally {
    db.close();
  }
  return made;
}
