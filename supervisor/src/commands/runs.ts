/**
 * The run commands: `runs` (runs across tasks, newest first) and `logs ID` (a run's output, read
 * by logs.ts; -f follows the task).
 */
import { BoardInputError } from '@kanban-supervisor/board';
import { EXIT, parseLimit, RUN_OUTCOMES, type RunOutcome } from '@kanban-supervisor/policies';
import { parseOptions, UsageError } from '../args.js';
import { printable as safe } from '../text.js';
import { fmtAge } from '../status.js';
import { logsCommand } from '../logs.js';
import { boardPath, namingBoard, withBoard, type Globals } from './board.js';
import { listingJson, out, when } from './output.js';

/** `runs [--task ID] [--outcome O] [--limit N]`: a table of runs, newest first. */
export async function cmdRuns(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { task: { type: 'string' }, outcome: { type: 'string' }, limit: { type: 'string' } }, 'runs');
  if (positionals.length) throw new UsageError(`runs: unexpected argument ${JSON.stringify(positionals[0])}`);
  const outcome = values.outcome;
  if (outcome !== undefined && !(RUN_OUTCOMES as readonly string[]).includes(outcome)) {
    throw new UsageError(`--outcome must be one of ${RUN_OUTCOMES.join(', ')}, got ${JSON.stringify(outcome)}`);
  }
  const limit = values.limit !== undefined ? parseLimit('--limit', values.limit, { min: 1, max: 1_000_000, integer: true, unit: '' }) : 100;
  const runs = await withBoard(g, async (b) => {
    if (values.task !== undefined && !(await b.getTask(values.task))) throw new BoardInputError(`no task ${JSON.stringify(values.task)} on board ${b.location}`);
    return b.listRuns({ taskId: values.task, outcome: outcome as RunOutcome | undefined, limit });
  });
  const now = Date.now();
  const rows = [
    ['RUN', 'TASK', 'SKILL', 'ATTEMPT', 'OUTCOME', 'STARTED', 'TOOK', 'PID', 'EXIT'],
    ...runs.map((r) => [
      r.id,
      r.taskId,
      r.skill,
      String(r.attempt),
      r.outcome ?? (r.exitedAt === null ? (r.status === 'ended' ? 'exiting' : r.status) : r.status),
      when(r.startedAt, now),
      (r.exitedAt ?? r.endedAt) ? fmtAge((r.exitedAt ?? r.endedAt)! - r.startedAt) : `${fmtAge(now - r.startedAt)}+`,
      String(r.pid ?? '-'),
      r.exitCode !== null ? String(r.exitCode) : r.signal ?? '-',
    ].map((c) => safe(c))),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const human = runs.length ? rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') : 'no runs';
  out(g, human, runs.map(listingJson));
  return EXIT.ok;
}

/** `logs ID [--run RUN_ID | --attempt N] [--tail N] [-f]`: a run's output on stdout. */
export async function cmdLogs(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(
    args,
    { run: { type: 'string' }, attempt: { type: 'string' }, tail: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
    'logs',
  );
  if (positionals.length !== 1) throw new UsageError(`logs: expected one task or run id, got ${positionals.length}`);
  if (values.run !== undefined && values.attempt !== undefined) throw new UsageError('logs: give --run or --attempt, not both');
  const attempt = values.attempt !== undefined ? parseLimit('--attempt', values.attempt, { min: 1, max: 1_000_000, integer: true, unit: '' }) : undefined;
  const tail = values.tail !== undefined ? parseLimit('--tail', values.tail, { min: 0, max: 100_000_000, integer: true, unit: '' }) : undefined;
  const abs = boardPath(g.db, 'existing');
  // A reader that goes away (logs … | head) ends the command quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
  });
  try {
    return await logsCommand(abs, positionals[0]!, { run: values.run, attempt, tail, follow: values.follow === true }, {
      out: (chunk) => {
        process.stdout.write(chunk);
      },
      err: (text) => {
        process.stderr.write(text);
      },
    });
  } catch (e) {
    throw namingBoard(abs, e);
  }
}
