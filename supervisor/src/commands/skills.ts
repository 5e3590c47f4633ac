/**
 * `skill add NAME [options] -- CMD [ARGS...]`, `skill list`, `skill show NAME` and `skill rm NAME`:
 * the skills on the board (the command each skill's workers run, how they report, their
 * environment and their limits).
 */
import { BoardInputError, validSkill } from '@kanban-supervisor/board';
import { EXIT, LIMITS, REPORT_MODES, RESULT_SOURCES, type ReportMode, type ResultSource } from '@kanban-supervisor/policies';
import type { Skill, SkillInput } from '@kanban-supervisor/board';
import { parseArgs, UsageError } from '../args.js';
import { printable as safe } from '../text.js';
import { boardLabel, withBoard, type Globals } from './board.js';
import { checkPassEnv, one, optLimit } from './flags.js';
import { out } from './output.js';

/** `skill add`, `skill set`, `skill list`, `skill show` or `skill rm`; `skill add` creates a missing board. */
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
      '--report': { kind: 'value' },
      '--result': { kind: 'value' },
    }, 'skill add');
    const name = one(p, 'skill name', 'skill add');
    if (!p.rest || p.rest.length === 0) throw new UsageError('skill add: give the command after `--`, e.g. skill add echo -- node echo.js');
    const env: Record<string, string> = {};
    for (const kv of p.multi['--env'] ?? []) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`--env must be KEY=VALUE, got ${JSON.stringify(kv)}`);
      const key = kv.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UsageError(`--env ${JSON.stringify(kv)}: ${JSON.stringify(key)} is not an environment variable name`);
      if (key.startsWith('KANBAN_')) throw new UsageError(`--env ${key}: KANBAN_* variables are set by the supervisor`);
      env[key] = kv.slice(eq + 1);
    }
    const passEnv = p.multi['--pass-env'] ?? [];
    for (const name of passEnv) checkPassEnv(name);
    // The ranges the board and every worker of the skill accept: refused here, before anything is stored.
    const maxRuntimeSeconds = optLimit(p.values, '--max-runtime', LIMITS.maxRuntimeSeconds);
    const heartbeatTimeoutSeconds = optLimit(p.values, '--heartbeat-timeout', LIMITS.heartbeatTimeoutSeconds);
    const reclaimGraceSeconds = optLimit(p.values, '--reclaim-grace', LIMITS.reclaimGraceSeconds);
    const maxRssMb = optLimit(p.values, '--max-rss-mb', LIMITS.maxRssMb);
    const maxConcurrent = optLimit(p.values, '--max-concurrent', LIMITS.maxConcurrent);
    const report = p.values['--report'] ?? 'board';
    if (!(REPORT_MODES as readonly string[]).includes(report)) throw new UsageError(`--report must be ${REPORT_MODES.join(' or ')}, got ${JSON.stringify(report)}`);
    const resultFrom = p.values['--result'] ?? null;
    if (resultFrom !== null && !(RESULT_SOURCES as readonly string[]).includes(resultFrom)) {
      throw new UsageError(`--result must be ${RESULT_SOURCES.join(' or ')}, got ${JSON.stringify(resultFrom)}`);
    }
    if (resultFrom !== null && report !== 'exit') throw new UsageError(`--result ${resultFrom} is for exit-code skills: add --report exit`);
    const input: SkillInput = {
      name,
      argv: p.rest,
      cwd: p.values['--cwd'] ?? null,
      env,
      passEnv,
      maxRuntimeSeconds,
      heartbeatTimeoutSeconds,
      reclaimGraceSeconds,
      maxRssMb,
      maxConcurrent,
      report: report as ReportMode,
      resultFrom: resultFrom as ResultSource | null,
    };
    // The board's own checks (name, command, environment), before the board is opened: a refused
    // skill creates no board (skill add creates a missing one) and no folder (exit 2).
    validSkill(input);
    const skill = await withBoard(g, (b) => b.putSkill(input), 'build');
    out(g, `skill ${safe(skill.name)}: ${safe(JSON.stringify(skill.argv))}${reportText(skill)}`, skill);
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
      skills.map((s) => `${safe(s.name)}\t${safe(JSON.stringify(s.argv))}${s.cwd ? `\tcwd=${safe(s.cwd)}` : ''}${s.passEnv.length ? `\tpass-env=${safe(s.passEnv.join(','))}` : ''}${s.maxConcurrent !== null ? `\tmax-concurrent=${s.maxConcurrent}` : ''}${reportText(s, '\t')}`).join('\n'),
      skills,
    );
    return EXIT.ok;
  }
  if (sub === 'show') {
    const p = parseArgs(args.slice(1), {}, 'skill show');
    const name = one(p, 'skill name', 'skill show');
    const skill = await withBoard(g, (b) => b.getSkill(name));
    if (!skill) throw new BoardInputError(`no skill ${JSON.stringify(name)} on board ${boardLabel(g.db)}`);
    out(g, showText(skill), skill);
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
  throw new UsageError(`skill: expected add, set, list, show or rm, got ${JSON.stringify(sub ?? '')}`);
}

/** How a skill's workers report, for the listing (nothing for the default, board reports). */
function reportText(s: Skill, sep = ' '): string {
  if (s.report !== 'exit') return '';
  return `${sep}report=exit${s.resultFrom ? `${sep}result=${s.resultFrom}` : ''}`;
}

/** `skill show`: every field of the skill, one per line. */
function showText(s: Skill): string {
  const lim = (v: number | null, unit: string) => (v === null ? 'default' : `${v}${unit}`);
  return [
    `skill ${safe(s.name)}`,
    `  command      ${safe(JSON.stringify(s.argv))}`,
    `  cwd          ${s.cwd === null ? '(the supervisor\'s)' : safe(s.cwd)}`,
    `  report       ${s.report === 'exit' ? `exit (exit-code skill: the exit status is the report; result: ${s.resultFrom ?? 'none'})` : 'board (the worker reports with its run token)'}`,
    `  env          ${Object.keys(s.env).length ? safe(Object.keys(s.env).join(', ')) : '-'}`,
    `  pass-env     ${s.passEnv.length ? safe(s.passEnv.join(', ')) : '-'}`,
    `  max-runtime  ${lim(s.maxRuntimeSeconds, ' s')}`,
    `  heartbeat    ${s.heartbeatTimeoutSeconds === null ? (s.report === 'exit' ? 'off (exit-code skill)' : 'default') : `${s.heartbeatTimeoutSeconds} s`}`,
    `  grace        ${lim(s.reclaimGraceSeconds, ' s')}`,
    `  max-rss      ${lim(s.maxRssMb, ' MB')}`,
    `  max-concurrent ${s.maxConcurrent === null ? 'none' : s.maxConcurrent}`,
  ].join('\n');
}
