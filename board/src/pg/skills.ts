/** Skills: the registry of commands tasks run (operator writes, each its own transaction). */
import type { Skill, SkillInput } from '../types.js';
import { LIMITS } from '@kanban-supervisor/policies';
import { BoardInputError } from '../errors.js';
import { optLimit, validSkill } from '../validate.js';
import { toSkill } from './rows.js';
import type { Writer } from './tx.js';

/** Register a skill, or replace the one of that name. */
export async function putSkill(w: Writer, input: SkillInput): Promise<Skill> {
  const s = validSkill(input);
  const now = Date.now();
  return w.write(async (q) => {
    const r = await q.get(
      `INSERT INTO skills (name, argv, cwd, env, pass_env, max_runtime_seconds, heartbeat_timeout_seconds, reclaim_grace_seconds, max_rss_mb, max_concurrent, report, result_from, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, $13, $10, $10)
       ON CONFLICT (name) DO UPDATE SET argv = excluded.argv, cwd = excluded.cwd, env = excluded.env, pass_env = excluded.pass_env,
         max_runtime_seconds = excluded.max_runtime_seconds, heartbeat_timeout_seconds = excluded.heartbeat_timeout_seconds,
         reclaim_grace_seconds = excluded.reclaim_grace_seconds, max_rss_mb = excluded.max_rss_mb, max_concurrent = excluded.max_concurrent,
         report = excluded.report, result_from = excluded.result_from, updated_at = excluded.updated_at
       RETURNING *`,
      [
        s.name,
        JSON.stringify(s.argv),
        s.cwd,
        JSON.stringify(s.env),
        JSON.stringify(s.passEnv),
        s.maxRuntimeSeconds,
        s.heartbeatTimeoutSeconds,
        s.reclaimGraceSeconds,
        s.maxRssMb,
        now,
        s.maxConcurrent,
        s.report,
        s.resultFrom,
      ],
    );
    return toSkill(r!);
  });
}

export async function getSkill(w: Writer, name: string): Promise<Skill | null> {
  return w.read(async (q) => {
    const r = await q.get('SELECT * FROM skills WHERE name = $1', [name]);
    return r ? toSkill(r) : null;
  });
}

export async function listSkills(w: Writer): Promise<Skill[]> {
  return w.read(async (q) => (await q.all('SELECT * FROM skills ORDER BY name')).map(toSkill));
}

/** Remove a skill; its ready tasks are blocked by the supervisor's next tick (blockUnknownSkillTasks). */
export async function removeSkill(w: Writer, name: string): Promise<boolean> {
  return w.write(async (q) => (await q.run('DELETE FROM skills WHERE name = $1', [name])) > 0);
}

/** Change a skill's cap on live workers (null: none), nothing else of it. */
export async function setSkillCap(w: Writer, name: string, maxConcurrent: number | null): Promise<Skill> {
  const cap = optLimit(`skill ${name}: max concurrent`, maxConcurrent, LIMITS.maxConcurrent);
  return w.write(async (q) => {
    const r = await q.get('UPDATE skills SET max_concurrent = $1, updated_at = $2 WHERE name = $3 RETURNING *', [cap, Date.now(), name]);
    if (!r) throw new BoardInputError(`no skill ${JSON.stringify(name)} on board ${q.path}`);
    await q.notify(); // a raised cap leaves room: the supervisors claim at once
    return toSkill(r);
  });
}
