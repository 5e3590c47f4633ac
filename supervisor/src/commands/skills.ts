/**
 * `skill add NAME [options] -- CMD [ARGS...]`, `skill list` and `skill rm NAME`: the skills on the
 * board (the command each skill's workers run, its environment and its limits).
 */
import { BoardInputError } from '@kanban-supervisor/board';
import { EXIT, LIMITS } from '@kanban-supervisor/policies';
import { parseArgs, UsageError } from '../args.js';
import { printable as safe } from '../text.js';
import { boardLabel, withBoard, type Globals } from './board.js';
import { checkPassEnv, one, optLimit } from './flags.js';
import { out } from './output.js';

/** `skill add`, `skill list` or `skill rm`; `skill add` creates a missing board. */
export async function cmdSkill(g: Globals, args: string[]): Promise<number> {
  const sub = args[0];
  if (sub === 'add') {
    const p = parseArgs(args.slice(1), {
      '--cwd': { kind: 'value' },
      '--env': { kind: 'multi' },
      '--pass-env': { kind: 'multi' },
      '--max-runtime': { kind: 'value' },
      '--heartbeat-timeout': { kind: 'value' },
      '--reclaim-grace': { kind: 'value' },
      '--max-rss-mb': { kind: 'value' },
      '--max-concurrent': { kind: 'value' },
    }, 'skill add');
    const name = one(p, 'skill name', 'skill add');
    if (!p.rest || p.rest.length === 0) throw new UsageError('skill add: give the command after `--`, e.g. skill add echo -- node echo.js');
    const env: Record<string, string> = {};
    for (const kv of p.multi['--env'] ?? []) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`--env must be KEY=VALUE, got ${JSON.stringify(kv)}`);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const passEnv = p.multi['--pass-env'] ?? [];
    for (const name of passEnv) checkPassEnv(name);
    // The ranges the board and every worker of the skill accept: refused here, before anything is stored.
    const maxRuntimeSeconds = optLimit(p.values, '--max-runtime', LIMITS.maxRuntimeSeconds);
    const heartbeatTimeoutSeconds = optLimit(p.values, '--heartbeat-timeout', LIMITS.heartbeatTimeoutSeconds);
    const reclaimGraceSeconds = optLimit(p.values, '--reclaim-grace', LIMITS.reclaimGraceSeconds);
    const maxRssMb = optLimit(p.values, '--max-rss-mb', LIMITS.maxRssMb);
    const maxConcurrent = optLimit(p.values, '--max-concurrent', LIMITS.maxConcurrent);
    const skill = await withBoard(g, (b) =>
      b.putSkill({ name, argv: p.rest!, cwd: p.values['--cwd'] ?? null, env, passEnv, maxRuntimeSeconds, heartbeatTimeoutSeconds, reclaimGraceSeconds, maxRssMb, maxConcurrent }), 'build');
    out(g, `skill ${safe(skill.name)}: ${safe(JSON.stringify(skill.argv))}`, skill);
    return EXIT.ok;
  }
  if (sub === 'set') {
    // Change a registered skill's cap without re-adding its command.
    const p = parseArgs(args.slice(1), { '--max-concurrent': { kind: 'value' } }, 'skill set');
    const name = one(p, 'skill name', 'skill set');
    const raw = p.values['--max-concurrent'];
    if (raw === undefined) throw new UsageError('skill set: give --max-concurrent N (or none to remove the cap)');
    const cap = raw.trim() === 'none' ? null : optLimit(p.values, '--max-concurrent', LIMITS.maxConcurrent);
    const skill = await withBoard(g, (b) => b.setSkillCap(name, cap), 'write');
    out(g, `skill ${safe(skill.name)}: max concurrent ${skill.maxConcurrent ?? 'none'}`, skill);
    return EXIT.ok;
  }
  if (sub === 'list') {
    parseArgs(args.slice(1), {}, 'skill list');
    const skills = await withBoard(g, (b) => b.listSkills());
    out(
      g,
      skills.map((s) => `${safe(s.name)}\t${safe(JSON.stringify(s.argv))}${s.cwd ? `\tcwd=${safe(s.cwd)}` : ''}${s.passEnv.length ? `\tpass-env=${safe(s.passEnv.join(','))}` : ''}${s.maxConcurrent !== null ? `\tmax-concurrent=${s.maxConcurrent}` : ''}`).join('\n'),
      skills,
    );
    return EXIT.ok;
  }
  if (sub === 'rm') {
    const p = parseArgs(args.slice(1), {}, 'skill rm');
    const name = one(p, 'skill name', 'skill rm');
    const removed = await withBoard(g, (b) => b.removeSkill(name), 'write');
    if (!removed) throw new BoardInputError(`no skill ${JSON.stringify(name)} on board ${boardLabel(g.db)}`);
    out(g, `removed skill ${safe(name)}`, { removed: name });
    return EXIT.ok;
  }
  throw new UsageError(`skill: expected add, set, list or rm, got ${JSON.stringify(sub ?? '')}`);
}
