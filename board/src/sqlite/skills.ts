/** Skills: the registry of commands tasks run (operator writes, each its own transaction). */
import type { Skill, SkillInput } from '../types.js';
import { LIMITS } from '@kanban-supervisor/policies';
import { BoardInputError } from '../errors.js';
import { optLimit, validSkill } from '../validate.js';
import type { Conn } from './connection.js';
import { toSkill } from './rows.js';
import type { Writer } from './tx.js';

/** Register a skill, or replace the one of that name. */
export async function putSkill(c: Conn, w: Writer, input: SkillInput): Promise<Skill> {
  const s = validSkill(input);
  const now = Date.now();
  await w.write(() =>
    c.run(
      `INSERT INTO skills (name, argv, cwd, env, pass_env, max_runtime_seconds, heartbeat_timeout_seconds, reclaim_grace_seconds, max_rss_mb, max_concurrent, report, result_from, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET argv = excluded.argv, cwd = excluded.cwd, env = excluded.env, pass_env = excluded.pass_env,
         max_runtime_seconds = excluded.max_runtime_seconds, heartbeat_timeout_seconds = excluded.heartbeat_timeout_seconds,
         reclaim_grace_seconds = excluded.reclaim_grace_seconds, max_rss_mb = excluded.max_rss_mb, max_concurrent = excluded.max_concurrent,
         report = excluded.report, result_from = excluded.result_from, updated_at = excluded.updated_at`,
      s.name,
      JSON.stringify(s.argv),
      s.cwd,
      JSON.stringify(s.env),
      JSON.stringify(s.passEnv),
      s.maxRuntimeSeconds,
      s.heartbeatTimeoutSeconds,
      s.reclaimGraceSeconds,
      s.maxRssMb,
      s.maxConcurrent,
      s.report,
      s.resultFrom,
      now,
      now,
    ),
  );
  return (await getSkill(c, w, s.name))!;
}

export async function getSkill(c: Conn, w: Writer, name: string): Promise<Skill | null> {
  return w.read(() => {
    const r = c.get('SELECT * FROM skills WHERE name = ?', name);
    return r ? toSkill(r) : null;
  });
}

export async function listSkills(c: Conn, w: Writer): Promise<Skill[]> {
  return w.read(() => c.all('SELECT * FROM skills ORDER BY name').map(toSkill));
}

/** Remove a skill; its ready tasks are blocked by the supervisor's next tick (blockUnknownSkillTasks). */
export async function removeSkill(c: Conn, w: Writer, name: string): Promise<boolean> {
  return w.write(() => c.run('DELETE FROM skills WHERE name = ?', name).changes > 0);
}

/** Change a skill's cap on live workers (null: none), nothing else of it. */
export async function setSkillCap(c: Conn, w: Writer, name: string, maxConcurrent: number | null): Promise<Skill> {
  const cap = optLimit(`skill ${name}: max concurrent`, maxConcurrent, LIMITS.maxConcurrent);
  const changed = await w.write(() => c.run('UPDATE skills SET max_concurrent = ?, updated_at = ? WHERE name = ?', cap, Date.now(), name).changes);
  if (changed === 0) throw new BoardInputError(`no skill ${JSON.stringify(name)} on board ${c.path}`);
  return (await getSkill(c, w, name))!;
}
