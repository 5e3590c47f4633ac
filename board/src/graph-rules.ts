/**
 * The task graph's rules outside the SQL, shared by every backend: which tasks may get a parent,
 * the bounds of the graph walks, and the cycle a new link would close (found from the edges a
 * bounded recursive query returned).
 */
import { BoardInputError } from './errors.js';
import type { Task } from './types.js';

/** The most links a cycle check reads (the graph above the new parent); beyond, the link is refused. */
export const GRAPH_SCAN = 100_000;
/** The most waiting tasks one cascaded cancel takes with it. */
export const CASCADE_MAX = 100_000;

/** Why `child` cannot get a parent (null: it can): only a waiting or ready task can wait for another. */
export function notLinkable(child: Task): string | null {
  if (child.status === 'waiting' || child.status === 'ready') return null;
  return `task ${child.id} is ${child.status}; only a waiting or ready task can be linked after another (a task that started or ended keeps its parents)`;
}

/**
 * The path from `from` up to `to` (both included) through the edges the walk up from `from` read
 * (`id` reached from `via`, `via` null for the start), or null when `to` is not above `from`.
 */
export function cycleOf(edges: Array<{ id: string; via: string | null }>, from: string, to: string, board: string): string[] | null {
  if (edges.length > GRAPH_SCAN) {
    throw new BoardInputError(`the tasks above ${from} on board ${board} have more than ${GRAPH_SCAN} links: a cycle check would be unbounded, so the link is refused`);
  }
  const up = new Map<string, string[]>();
  for (const e of edges) {
    if (e.via === null) continue;
    const list = up.get(e.via);
    if (list) list.push(e.id);
    else up.set(e.via, [e.id]);
  }
  const prev = new Map<string, string | null>([[from, null]]);
  const queue = [from];
  for (let i = 0; i < queue.length; i++) {
    const cur = queue[i]!;
    if (cur === to) {
      const path: string[] = [];
      for (let at: string | null = cur; at !== null; at = prev.get(at) ?? null) path.unshift(at);
      return path;
    }
    for (const next of up.get(cur) ?? []) {
      if (!prev.has(next)) {
        prev.set(next, cur);
        queue.push(next);
      }
    }
  }
  return null;
}

/**
 * Which parents' results one page holds (a worker reading them in pages: the report channel's
 * `parents` op): in id order, as many as fit in `maxBytes` of stored JSON text (UTF-8 bytes), and
 * always at least one (a result larger than a page is a page of its own). `next`: the cursor of the
 * next page (the last id of this one), null when this is the last.
 */
export function parentPageIds(sizes: Array<{ id: string; bytes: number }>, maxBytes: number): { ids: string[]; next: string | null } {
  const ids: string[] = [];
  let total = 0;
  for (const s of sizes) {
    if (ids.length > 0 && total + s.bytes > maxBytes) break;
    ids.push(s.id);
    total += s.bytes;
  }
  return { ids, next: ids.length < sizes.length ? ids[ids.length - 1]! : null };
}
