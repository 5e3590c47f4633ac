/**
 * The decisions of exit-code skills (policies/src/exit-skills.ts): exit status + the end of the log
 * → the run's end; the fence of an exit report; the heartbeat timeout of such skills. Pure.
 */
import { describe, expect, it } from 'vitest';
import {
  EXIT_LOG_TAIL,
  EXIT_STATUS_UNKNOWN,
  RESULT_LINE_MAX_BYTES,
  exitLogBytes,
  exitReport,
  exitReportApplies,
  exitVerdict,
  heartbeatTimeoutFor,
} from '@kanban-supervisor/policies';

const code = (exitCode: number) => ({ exitCode, signal: null });

describe('exit-code skills: exit status → outcome', () => {
  it('0 completed, 75 deferred, other codes failed, a signal crashed, no status abandoned; which log end each reads', () => {
    expect(exitVerdict(code(0), null)).toEqual({ outcome: 'completed', read: null });
    expect(exitVerdict(code(0), 'stdout-json')).toEqual({ outcome: 'completed', read: 'result' });
    expect(exitVerdict(code(75), 'stdout-json')).toEqual({ outcome: 'deferred', read: null });
    for (const c of [1, 2, 3, 74, 76, 127, 255]) expect(exitVerdict(code(c), null)).toEqual({ outcome: 'failed', read: 'tail' });
    expect(exitVerdict({ exitCode: null, signal: 'SIGKILL' }, 'stdout-json')).toEqual({ outcome: 'crashed', read: null });
    expect(exitVerdict({ exitCode: null, signal: null }, null)).toEqual({ outcome: 'abandoned', read: null });
    expect(exitLogBytes(exitVerdict(code(0), 'stdout-json'))).toBe(RESULT_LINE_MAX_BYTES + 1);
    expect(exitLogBytes(exitVerdict(code(3), null))).toBe(EXIT_LOG_TAIL.bytes);
    expect(exitLogBytes(exitVerdict(code(0), null))).toBe(0);
  });

  it('the result is the last non-empty line, as JSON (normalised); a missing, bad or cut line fails, saying why', () => {
    const js = (text: string, whole = true) => exitReport(code(0), 'stdout-json', { text, whole });
    expect(js('log line\n{"a": [1, 2]}\n\n  \n')).toEqual({ outcome: 'completed', error: null, resultText: '{"a":[1,2]}' });
    expect(js('42')).toMatchObject({ outcome: 'completed', resultText: '42' });
    expect(js('x\r\n"crlf"\r\n')).toMatchObject({ outcome: 'completed', resultText: '"crlf"' });
    expect(js('\n\n').error).toBe('exit-code skill: the worker exited with code 0 but its log has no non-empty line to take as the result (--result stdout-json)');
    expect(js('{"a":').error).toMatch(/^exit-code skill: the worker exited with code 0 but the last line of its log is not JSON \(.+\): "\{\\"a\\":" \(--result stdout-json\)$/);
    expect(js('x'.repeat(300)).error).toContain(`"${'x'.repeat(200)}…"`);
    // Read from the middle of a longer log: a line with no newline before it may be cut.
    expect(js('{"a":1}', false).error).toBe(`exit-code skill: the worker exited with code 0 but the last line of its log is longer than ${RESULT_LINE_MAX_BYTES} bytes (--result stdout-json)`);
    expect(js('cut part\n{"a":1}\n', false)).toMatchObject({ outcome: 'completed', resultText: '{"a":1}' });
    expect(exitReport(code(0), 'stdout-json', { error: 'the log x is a FIFO' }).error).toBe('exit-code skill: the worker exited with code 0 but its log could not be read: the log x is a FIFO (--result stdout-json)');
    expect(exitReport(code(0), 'stdout-json', null).outcome).toBe('failed');
    expect(exitReport(code(0), null, null)).toEqual({ outcome: 'completed', error: null, resultText: null });
  });

  it('a failure quotes the code and the last 20 lines of what was read', () => {
    const text = Array.from({ length: 30 }, (_, i) => `l${i + 1}`).join('\n') + '\n\n';
    const r = exitReport(code(3), null, { text, whole: true });
    expect(r).toEqual({ outcome: 'failed', error: `exit-code skill: the worker exited with code 3; last lines of its log:\n${Array.from({ length: 20 }, (_, i) => `l${i + 11}`).join('\n')}`, resultText: null });
    expect(exitReport(code(9), null, { text: 'partial line\nlast', whole: false }).error).toBe('exit-code skill: the worker exited with code 9; last lines of its log:\n…partial line\nlast');
    expect(exitReport(code(1), null, { text: '', whole: true }).error).toBe('exit-code skill: the worker exited with code 1; its log is empty');
    expect(exitReport(code(1), null, { error: 'the log x is a symbolic link (not followed)' }).error).toBe('exit-code skill: the worker exited with code 1; its log could not be read: the log x is a symbolic link (not followed)');
    expect(exitReport(code(75), null, null)).toMatchObject({ outcome: 'deferred', resultText: null });
    expect(exitReport({ exitCode: null, signal: 'SIGSEGV' }, null, null)).toEqual({ outcome: 'crashed', error: 'exit-code skill: the worker was killed by signal SIGSEGV', resultText: null });
    expect(exitReport({ exitCode: null, signal: null }, null, null)).toEqual({ outcome: 'abandoned', error: EXIT_STATUS_UNKNOWN, resultText: null });
  });

  it('the fence: an ended run keeps its end; a reclaimed run gets its reclaim\'s outcome; a completion touches the task only while it is current and running', () => {
    const done = exitReport(code(0), 'stdout-json', { text: '{"x":1}', whole: true });
    expect(exitReportApplies(done, { ended: true, stopReason: null }, true)).toBeNull();
    expect(exitReportApplies(done, { ended: false, stopReason: 'timed_out' }, true)).toMatchObject({ outcome: 'timed_out', resultText: null, applyToTask: false });
    expect(exitReportApplies(done, { ended: false, stopReason: 'cancelled' }, false)!.error).toMatch(/^reclaimed \(.+\); the worker exited with code 0$/);
    expect(exitReportApplies(done, { ended: false, stopReason: null }, true)).toEqual({ outcome: 'completed', error: null, resultText: '{"x":1}', applyToTask: true });
    expect(exitReportApplies(done, { ended: false, stopReason: null }, false)).toMatchObject({ outcome: 'completed', applyToTask: false });
    const failed = exitReport(code(2), null, null);
    expect(exitReportApplies(failed, { ended: false, stopReason: null }, true)).toMatchObject({ outcome: 'failed', applyToTask: false });
  });

  it('heartbeats: off for exit-code skills unless the skill sets a timeout; the global default applies to board skills', () => {
    expect(heartbeatTimeoutFor('exit', null, 30)).toBeNull();
    expect(heartbeatTimeoutFor('exit', 5, 30)).toBe(5);
    expect(heartbeatTimeoutFor('board', null, 30)).toBe(30);
    expect(heartbeatTimeoutFor('board', 5, 30)).toBe(5);
  });
});
