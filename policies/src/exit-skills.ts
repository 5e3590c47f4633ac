/**
 * Exit-code skills (`skill add NAME --report exit [--result stdout-json] -- CMD …`): the worker
 * never touches the board; the supervisor ends its run from the exit status it reaped. Pure: the
 * supervisor reads the run's log (bounded, safely) and hands the text here; what the exit status
 * and the log mean is decided here.
 *
 * - exit 0: `completed` (result null, or with `--result stdout-json` the last non-empty line of the
 *   log parsed as JSON; a missing or unparsable line is `failed`, with why);
 * - exit 75 (EX_TEMPFAIL): `deferred`, not counted (one backoff step);
 * - any other exit: `failed`, counted, with the exit code and the last lines of the log;
 * - killed by a signal: `crashed`;
 * - no status at all (its supervisor did not reap it: adopted after a restart, or reaped by someone
 *   else): `abandoned`, not counted (the task runs again).
 * A run being reclaimed (cancel, limits, lease lost) keeps its reclaim's outcome, and a run that
 * already ended keeps its end (exitReportApplies).
 */
import { EXIT } from './reasons.js';
import { effectiveLimit, type RunOutcome } from './decisions.js';
import type { StopReason } from './reasons.js';
import { STOP_REASON_TEXT, stopOutcome } from './reasons.js';

/** How a skill's workers report: through the board (run token, worker runtime or CLI), or by their exit status alone. */
export const REPORT_MODES = ['board', 'exit'] as const;
export type ReportMode = (typeof REPORT_MODES)[number];

/** Where an exit-code skill's result comes from (none: the result is null). */
export const RESULT_SOURCES = ['stdout-json'] as const;
export type ResultSource = (typeof RESULT_SOURCES)[number];

/** How much of the log a failed run's error quotes: its last lines, within a byte bound. */
export const EXIT_LOG_TAIL = { lines: 20, bytes: 4096 } as const;
/** The longest result line read from the end of the log (a longer last line is a failure, said so). */
export const RESULT_LINE_MAX_BYTES = 1024 * 1024;

/** The exit the supervisor reaped: a code, or the signal that killed the worker (neither: unknown). */
export interface ExitStatusSeen {
  exitCode: number | null;
  signal: string | null;
}

/** The outcome an exit status means, before the log is read, and which part of the log completes it. */
export type ExitVerdict =
  | { outcome: 'completed'; read: 'result' | null }
  | { outcome: 'deferred'; read: null }
  | { outcome: 'failed'; read: 'tail' }
  | { outcome: 'crashed'; read: null }
  | { outcome: 'abandoned'; read: null };

export function exitVerdict(st: ExitStatusSeen, result: ResultSource | null): ExitVerdict {
  if (st.signal !== null) return { outcome: 'crashed', read: null };
  if (st.exitCode === null) return { outcome: 'abandoned', read: null };
  if (st.exitCode === EXIT.ok) return { outcome: 'completed', read: result === 'stdout-json' ? 'result' : null };
  if (st.exitCode === EXIT.tempFail) return { outcome: 'deferred', read: null };
  return { outcome: 'failed', read: 'tail' };
}

/** How many bytes from the end of the log a verdict reads (0: none). */
export function exitLogBytes(v: ExitVerdict): number {
  return v.read === 'result' ? RESULT_LINE_MAX_BYTES + 1 : v.read === 'tail' ? EXIT_LOG_TAIL.bytes : 0;
}

/** What was read from the end of the log: its text (`whole`: from the log's first byte), or why it could not be read. */
export type LogTail = { text: string; whole: boolean } | { error: string };

/** The end of an exit-code skill's run, as the board records it (resultText: the task's result, JSON text). */
export interface ExitReport {
  outcome: 'completed' | 'failed' | 'deferred' | 'crashed' | 'abandoned';
  error: string | null;
  resultText: string | null;
}

/** The error of a run whose worker's exit status is unknowable (adopted after a restart). */
export const EXIT_STATUS_UNKNOWN =
  'exit-code skill: the worker ended while not a child of this supervisor (adopted after a restart), so its exit status is unknowable: abandoned, not counted, the task runs again';

function how(st: ExitStatusSeen): string {
  return st.signal !== null ? `was killed by signal ${st.signal}` : st.exitCode !== null ? `exited with code ${st.exitCode}` : 'ended with an unknown status';
}

/**
 * The run's end from its exit status and (when the verdict reads it) the end of its log. `log` is
 * null when the log was not read (the verdict needs none, or the supervisor could not read it yet).
 */
export function exitReport(st: ExitStatusSeen, result: ResultSource | null, log: LogTail | null): ExitReport {
  const v = exitVerdict(st, result);
  switch (v.outcome) {
    case 'crashed':
      return { outcome: 'crashed', error: `exit-code skill: the worker ${how(st)}`, resultText: null };
    case 'abandoned':
      return { outcome: 'abandoned', error: EXIT_STATUS_UNKNOWN, resultText: null };
    case 'deferred':
      return { outcome: 'deferred', error: `exit-code skill: the worker exited with code ${EXIT.tempFail} (EX_TEMPFAIL): deferred, not counted`, resultText: null };
    case 'failed': {
      const base = `exit-code skill: the worker exited with code ${st.exitCode}`;
      if (log === null) return { outcome: 'failed', error: base, resultText: null };
      if ('error' in log) return { outcome: 'failed', error: `${base}; its log could not be read: ${log.error}`, resultText: null };
      const lines = lastLines(log.text, !log.whole, EXIT_LOG_TAIL.lines);
      return { outcome: 'failed', error: lines ? `${base}; last lines of its log:\n${lines}` : `${base}; its log is empty`, resultText: null };
    }
    case 'completed': {
      if (v.read === null) return { outcome: 'completed', error: null, resultText: null };
      const fail = (why: string): ExitReport => ({ outcome: 'failed', error: `exit-code skill: the worker exited with code 0 but ${why} (--result stdout-json)`, resultText: null });
      if (log === null) return fail('its log was not read');
      if ('error' in log) return fail(`its log could not be read: ${log.error}`);
      const line = lastLine(log.text);
      if (line === null) return fail('its log has no non-empty line to take as the result');
      // The line starts right after a newline, or at the log's first byte.
      if (!line.complete && !log.whole) return fail(`the last line of its log is longer than ${RESULT_LINE_MAX_BYTES} bytes`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(line.text);
      } catch (e) {
        return fail(`the last line of its log is not JSON (${(e as Error).message}): ${quote(line.text)}`);
      }
      return { outcome: 'completed', error: null, resultText: JSON.stringify(parsed) };
    }
  }
}

/** The last non-empty line of `text` (trailing blank lines skipped); `complete`: a newline precedes it in `text`. */
function lastLine(text: string): { text: string; complete: boolean } | null {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() !== '') return { text: line, complete: i > 0 };
  }
  return null;
}

/** The last `n` lines of `text` (a first line cut by the read bound is marked), trailing blank lines dropped. */
function lastLines(text: string, cut: boolean, n: number): string {
  const lines = text.replace(/[\r\n]+$/, '').split('\n');
  if (cut && lines.length > 0) lines[0] = `…${lines[0]}`;
  return lines.slice(-n).join('\n').replace(/\r/g, '');
}

function quote(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
}

/**
 * Whether an exit report ends the run, or what ends it instead: a run that already ended (it
 * reported) keeps its end; a run being reclaimed ends with its reclaim's outcome; a run whose task
 * moved on (cancelled, no longer pointing at it) ends with the report's outcome but leaves the task
 * alone. `applyToTask`: a completed report makes the task done with its result, as a worker's
 * completed report does.
 */
export function exitReportApplies(
  r: ExitReport,
  run: { ended: boolean; stopReason: StopReason | null },
  taskCurrentAndRunning: boolean,
): { outcome: RunOutcome; error: string | null; resultText: string | null; applyToTask: boolean } | null {
  if (run.ended) return null;
  if (run.stopReason !== null) {
    return { outcome: stopOutcome(run.stopReason), error: `reclaimed (${STOP_REASON_TEXT[run.stopReason]}); ${r.error ?? 'the worker exited with code 0'}`, resultText: null, applyToTask: false };
  }
  return { outcome: r.outcome, error: r.error, resultText: r.resultText, applyToTask: taskCurrentAndRunning && r.outcome === 'completed' };
}

/**
 * The heartbeat timeout of a run: the skill's, else the global one; an exit-code skill's workers
 * cannot heartbeat, so only a timeout set on the skill itself applies to them.
 */
export function heartbeatTimeoutFor(report: ReportMode, skillSeconds: number | null, globalSeconds: number | null): number | null {
  return report === 'exit' ? skillSeconds : effectiveLimit(skillSeconds, globalSeconds);
}

/** The payload of an exit-code skill's task travels in KANBAN_PAYLOAD up to this many bytes of JSON, else in a file (KANBAN_PAYLOAD_FILE). */
export const PAYLOAD_ENV_MAX_BYTES = 64 * 1024;
