/**
 * The task commands: `add` (a ready task), `list`, `show ID` (a task, or the task of a run id, with
 * its runs and events) and the changes `cancel`, `block`, `unblock` and `retry`.
 */
import { BoardInputError, validTask, type Json, type TaskInput } from '@kanban-supervisor/board';
import { EXIT, LIMITS, notBeforeOf, parseDuration, parseIsoTime, parseLimit, PRIORITY_RANGE, TASK_STATUSES, type TaskStatus } from '@kanban-supervisor/policies';
import { addFrom } from './bulk.js';
import { parseArgs, parseJsonArg, UsageError } from '../args.js';
import { printable as safe } from '../text.js';
import { fmtAge } from '../status.js';
import { boardLabel, withBoard, type Globals } from './board.js';
import { one, optLimit } from './flags.js';
import { detailJson, eventsInTime, holdText, humanTimes, iso, linkedJson, out, taskJson, when } from './output.js';
import { waitingHolds } from './graph.js';

/** `add --skill NAME [options]`: prints the new task's id. */
export async function cmdAdd(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, {
    '--skill': { kind: 'value' },
    '--title': { kind: 'value' },
    '--payload': { kind: 'value' },
    '--priority': { kind: 'value' },
    '--max-runtime': { kind: 'value' },
    '--max-attempts': { kind: 'value' },
    '--max-retries': { kind: 'value' },
    '--after': { kind: 'multi' },
    '--delay': { kind: 'value' },
    '--at': { kind: 'value' },
    '--key': { kind: 'value' },
    '--from': { kind: 'value' },
  }, 'add');
  if (p.values['--from'] !== undefined) {
    const other = [...Object.keys(p.values), ...Object.keys(p.multi)].find((k) => k !== '--from');
    if (other || p.positionals.length) throw new UsageError(`add --from: the tasks come from the file only (got ${other ?? JSON.stringify(p.positionals[0])}); put the fields in its lines`);
    return addFrom(g, p.values['--from']!);
  }
  if (p.values['--max-attempts'] !== undefined && p.values['--max-retries'] !== undefined) {
    throw new UsageError('add: give --max-attempts only (--max-retries is its deprecated name)');
  }
  // --max-retries N always meant N attempts in total: the deprecated name of --max-attempts.
  const attemptsFlag = p.values['--max-retries'] !== undefined ? '--max-retries' : '--max-attempts';
  if (p.positionals.length) throw new UsageError(`add: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const skill = p.values['--skill'];
  if (!skill) throw new UsageError('add: --skill NAME is required');
  const payload = p.values['--payload'] !== undefined ? (parseJsonArg('--payload', p.values['--payload']!) as Json) : null;
  const now = Date.now();
  const notBefore = notBeforeOf(
    now,
    p.values['--delay'] !== undefined ? parseDuration('--delay', p.values['--delay']!) : null,
    p.values['--at'] !== undefined ? parseIsoTime('--at', p.values['--at']!) : null,
  );
  const key = p.values['--key'];
  if (key !== undefined && (key.length < 1 || key.length > 200)) throw new UsageError(`--key must be 1-200 characters, got ${key.length}`);
  const after = p.multi['--after'] ?? [];
  for (const id of after) if (id.length < 1 || id.length > 200) throw new UsageError(`--after must be a task id (1-200 characters), got ${JSON.stringify(id.slice(0, 80))}`);
  const input: TaskInput = {
    skill,
    title: p.values['--title'],
    payload,
    priority: p.values['--priority'] !== undefined ? parseLimit('--priority', p.values['--priority']!, PRIORITY_RANGE) : 0,
    maxRuntimeSeconds: optLimit(p.values, '--max-runtime', LIMITS.maxRuntimeSeconds),
    maxRetries: optLimit(p.values, attemptsFlag, LIMITS.failureLimit),
    after,
    notBefore,
    key: key ?? null,
  };
  // The board's own checks of the task, before the board is opened (exit 2).
  validTask(input);
  const [added] = await withBoard(g, (b) => b.createTasks([input]), 'write');
  // A key already on the board: its task's id, nothing added (exit 0).
  const task = added!.task;
  out(g, safe(task.id), { id: task.id, created: added!.created });
  return EXIT.ok;
}

/** `list [--status S] [--skill NAME] [--limit N]`: tasks, oldest first. */
export async function cmdList(g: Globals, args: string[]): Promise<number> {
  const p = parseArgs(args, { '--status': { kind: 'value' }, '--skill': { kind: 'value' }, '--limit': { kind: 'value' } }, 'list');
  if (p.positionals.length) throw new UsageError(`list: unexpected argument ${JSON.stringify(p.positionals[0])}`);
  const status = p.values['--status'];
  if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status must be one of ${TASK_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);
  }
  const limit = p.values['--limit'] !== undefined ? parseLimit('--limit', p.values['--limit']!, { min: 1, max: 10_000_000, integer: true, unit: '' }) : 100_000;
  const { tasks, holds } = await withBoard(g, async (b) => {
    const tasks = await b.listTasks({ status: status as TaskStatus | undefined, skill: p.values['--skill'], limit });
    return { tasks, holds: await waitingHolds(b, tasks) };
  });
  out(
    g,
    tasks
      .map((t) => {
        const held = holds.get(t.id);
        const why = held ? `\t(waiting for ${held.map((h) => safe(holdText(h))).join(', ')})` : t.lastError ? `\t(${safe(t.lastError)})` : '';
        return `${safe(t.id)}\t${safe(t.status.padEnd(9))}\t${safe(t.skill)}\t${safe(t.title)}${why}`;
      })
      .join('\n'),
    tasks.map((t) => (holds.has(t.id) ? { ...taskJson(t), waiting_for: holds.get(t.id)!.map(linkedJson) } : taskJson(t))),
  );
  return EXIT.ok;
}

/** `show ID`: a task (ID: task or run id) with its runs and events, every board field escaped. */
export async function cmdShow(g: Globals, args: string[]): Promise<number> {
  const id = one(parseArgs(args, {}, 'show'), 'task or run id', 'show');
  // A run id shows its task (the run marked).
  const found = await withBoard(g, async (b) => {
    const d = await b.showTask(id);
    if (d) return { d, run: null as string | null };
    const r = await b.getRun(id);
    const dr = r ? await b.showTask(r.taskId) : null;
    return dr ? { d: dr, run: r!.id } : null;
  });
  if (!found) throw new BoardInputError(`no task ${JSON.stringify(id)} (nor a run of that id) on board ${boardLabel(g.db)}`);
  const { d, run: selected } = found;
  const t = d.task;
  const now = Date.now();
  // Every field from the board is escaped (printable): a title or error cannot forge lines or reach the terminal.
  const human = [
    selected ? `run ${safe(selected)} is attempt ${d.runs.findIndex((r) => r.id === selected) + 1} of task ${safe(t.id)}:` : '',
    `${safe(t.id)}  ${safe(t.title)}`,
    `  skill ${safe(t.skill)}  status ${safe(t.status)}  priority ${t.priority}  failures in a row ${t.consecutiveFailures}${t.maxRetries !== null ? ` (max attempts ${t.maxRetries})` : ''}`,
    `  created ${when(t.createdAt, now)}  updated ${when(t.updatedAt, now)}`,
    `  payload ${safe(JSON.stringify(t.payload))}`,
    t.result !== null ? `  result ${safe(JSON.stringify(t.result))}` : '',
    t.lastError ? `  last error: ${safe(t.lastError)}` : '',
    t.notBefore > now ? `  not before ${when(t.notBefore, now)}` : '',
    t.status === 'waiting' ? `  waiting for ${d.parents.filter((x) => x.status !== 'done').map((x) => safe(holdText(x))).join(', ') || '(nothing: it is made ready at once)'}` : '',
    d.parents.length ? `  after ${d.parents.map((x) => `${safe(x.id)} (${safe(x.status)})`).join(', ')}` : '',
    d.children.length ? `  before ${d.children.map((x) => `${safe(x.id)} (${safe(x.status)})`).join(', ')}` : '',
    t.key !== null ? `  key ${safe(t.key)}` : '',
    d.runs.length ? `  runs (oldest first):` : '  runs: none',
    ...d.runs.flatMap((r, i) => {
      const took = r.startedAt && (r.exitedAt ?? r.endedAt) ? `, took ${fmtAge((r.exitedAt ?? r.endedAt)! - r.startedAt)}` : '';
      return [
        `    ${selected === r.id ? '>' : '#'}${i + 1} ${safe(r.id)} ${safe(r.outcome ?? r.status)}  pid ${r.pid ?? '-'}  exit ${r.exitCode ?? '-'}  signal ${safe(String(r.signal ?? '-'))}  started ${when(r.startedAt, now)}${took}`,
        r.stopReason ? `       reclaimed: ${safe(r.stopReason)}` : '',
        r.error ? `       error: ${safe(r.error)}` : '',
        r.heartbeatAt !== null ? `       last heartbeat ${when(r.heartbeatAt, now)}${r.progress !== null ? `  progress ${safe(JSON.stringify(r.progress))}` : ''}` : '',
        `       log ${r.logPath ? safe(r.logPath) : '-'}`,
      ].filter((l) => l !== '');
    }),
    `  events (in time order):`,
    ...eventsInTime(d).map((e) => `    ${iso(e.at)} ${safe(e.kind)}${e.runId ? ` ${safe(e.runId)}` : ''}${e.data !== null ? ` ${safe(JSON.stringify(humanTimes(e.data)))}` : ''}`),
  ].filter((l) => l !== '');
  out(g, human.join('\n'), selected ? { ...detailJson(d), selected_run: selected } : detailJson(d));
  return EXIT.ok;
}

/** `cancel ID`, `block ID --reason R`, `unblock ID` or `retry ID`: prints the task's new status. */
export async function cmdTaskChange(g: Globals, cmd: 'cancel' | 'block' | 'unblock' | 'retry', args: string[]): Promise<number> {
  const p = parseArgs(args, cmd === 'block' ? { '--reason': { kind: 'value' } } : cmd === 'cancel' ? { '--cascade': { kind: 'bool' } } : {}, cmd);
  const id = one(p, 'task id', cmd);
  if (cmd === 'cancel' && p.bools.has('--cascade')) {
    const ids = await withBoard(g, (b) => b.cancelCascade(id), 'write');
    out(g, ids.map((x) => `${safe(x)} cancelled`).join('\n'), { cancelled: ids });
    return EXIT.ok;
  }
  const t = await withBoard(g, async (b) => {
    if (cmd === 'cancel') return b.cancelTask(id);
    if (cmd === 'unblock') return b.unblockTask(id);
    if (cmd === 'retry') return b.retryTask(id);
    const reason = p.values['--reason'];
    if (!reason) throw new UsageError('block: --reason R is required');
    return b.blockTask(id, reason);
  }, 'write');
  out(g, `${safe(t.id)} ${safe(t.status)}`, taskJson(t));
  return EXIT.ok;
}
