/**
 * docs/worker-protocol.md cannot drift from the code (issue 19): every ```json example in it is
 * parsed; a request (it has "op") must pass the real parseRequest, every op must have an example,
 * an answer (it has "ok") must have the shape the client and the server use, the spool example must
 * be what readSpool accepts, and the numbers the document states must be the code's constants.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SLOT_ACK_WAIT_MS, SLOT_READ_MS, heartbeatIntervalMs, shutdownBudgetMs, slotBeatValue, FENCED_SIGNAL_WAIT_MS, EXIT } from '@kanban-supervisor/policies';
import {
  CHANNEL_RETRY_MS,
  CHANNEL_TIMEOUT_MS,
  MAX_ANSWER_BYTES,
  MAX_FRAME_BYTES,
  OPS,
  PARENTS_PAGE_BYTES,
  PROTOCOL_VERSION,
  PROTOCOL_VERSIONS,
  REQUIRED_VARS,
  WORKER_BUSY_TIMEOUT_MS,
  parseRequest,
  readSpool,
} from '@kanban-supervisor/worker-runtime';
import { MAX_JSON_CHARS } from '@kanban-supervisor/board';
import { BEAT_SLOT } from '@kanban-supervisor/reaper/beat-slot';
import { ROOT, tempDir } from '../src/common.js';

const DOC = join(ROOT, 'docs', 'worker-protocol.md');

export function jsonExamples(text: string): unknown[] {
  const out: unknown[] = [];
  const re = /```json\n([\s\S]*?)```/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(JSON.parse(m[1]!));
  return out;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkAnswer(a: Record<string, unknown>): void {
  expect(Number.isSafeInteger(a.id), JSON.stringify(a)).toBe(true);
  const allowed = a.ok === true ? ['id', 'ok', 'duplicate', 'versions', 'task', 'parentIds', 'parents', 'next'] : ['id', 'ok', 'code', 'error'];
  expect(Object.keys(a).filter((k) => !allowed.includes(k)), JSON.stringify(a)).toEqual([]);
  if (a.ok === true) {
    if ('duplicate' in a) expect(a.duplicate).toBe(true);
    if ('versions' in a) expect(a.versions).toEqual([...PROTOCOL_VERSIONS]);
    if ('task' in a) {
      expect(Object.keys(a.task as object).sort()).toEqual(['id', 'payload', 'skill', 'title']);
    }
    if ('parentIds' in a) expect(Array.isArray(a.parentIds) && a.parentIds.every((x) => typeof x === 'string')).toBe(true);
    if ('parents' in a) {
      expect(isObj(a.parents)).toBe(true);
      // A page of results always says where the next one starts (null: the last).
      expect(a.next === null || typeof a.next === 'string', JSON.stringify(a)).toBe(true);
    }
  } else {
    expect(a.ok).toBe(false);
    expect(['fenced', 'invalid', 'unavailable']).toContain(a.code);
    expect(typeof a.error).toBe('string');
  }
}

describe('docs/worker-protocol.md', () => {
  const text = readFileSync(DOC, 'utf8');
  const examples = jsonExamples(text);

  it('has its version, and each request example passes parseRequest; every op has one', () => {
    expect(text).toMatch(new RegExp(`^# The worker protocol, version ${PROTOCOL_VERSION}$`, 'm'));
    const ops = new Set<string>();
    let requests = 0;
    for (const ex of examples) {
      expect(isObj(ex), JSON.stringify(ex)).toBe(true);
      const r = ex as Record<string, unknown>;
      if (!('op' in r)) continue;
      requests++;
      ops.add(String(r.op));
      const parsed = parseRequest(r);
      if (r.op === 'hello') expect(parsed).toBe('hello');
      else {
        expect(parsed).not.toBe('hello');
        expect(r).toMatchObject({ task: expect.any(String), run: expect.any(String), token: expect.any(String) });
      }
      // Every op documented under its own heading.
      expect(text).toContain(r.op === 'complete' || r.op === 'fail' || r.op === 'defer' ? '### complete, fail, defer' : `### ${String(r.op)}`);
    }
    expect(requests).toBeGreaterThanOrEqual(OPS.length);
    expect([...ops].sort()).toEqual([...OPS].sort());
  });

  it('each answer example has the shape the code sends, each code appears', () => {
    const codes = new Set<string>();
    let answers = 0;
    for (const ex of examples) {
      const a = ex as Record<string, unknown>;
      if (!('ok' in a)) continue;
      answers++;
      checkAnswer(a);
      if (a.ok === false) codes.add(String(a.code));
    }
    expect(answers).toBeGreaterThanOrEqual(8);
    expect([...codes].sort()).toEqual(['fenced', 'invalid', 'unavailable']);
    // The invalid example quotes the real message for a bad seq.
    const bad = examples.find((e) => isObj(e) && e.code === 'invalid') as { error: string };
    expect(() => parseRequest({ v: 1, id: 1, op: 'event', task: 't', run: 'r', token: 'k', kind: 'x', seq: '1x' })).toThrow(bad.error);
  });

  it('the spool example is an entry readSpool accepts', () => {
    const spool = examples.filter((e) => isObj(e) && 'version' in e);
    expect(spool).toHaveLength(1);
    const t = tempDir('ks-protodoc-');
    try {
      const dir = join(t.dir, 'spool');
      mkdirSync(dir, { mode: 0o700 });
      writeFileSync(join(dir, 'r_01.json'), JSON.stringify(spool[0]), { mode: 0o600 });
      const read = readSpool(join(t.dir, 'kanban.db'), dir);
      expect(read).toHaveLength(1);
      expect(read[0]).toMatchObject({ entry: spool[0] as object });
    } finally {
      t.cleanup();
    }
  });

  it('states the code’s numbers: frame, timeouts, env, exit statuses, heartbeat interval', () => {
    expect(text).toContain(`${MAX_FRAME_BYTES.toLocaleString('en-US')} bytes`);
    expect(text).toContain(`an answer at most ${MAX_ANSWER_BYTES / 1024 / 1024} MiB (${MAX_ANSWER_BYTES.toLocaleString('en-US')} bytes)`);
    expect(text.replace(/\s+/g, ' ')).toContain(`up to ${PARENTS_PAGE_BYTES / 1024 / 1024} MiB (${PARENTS_PAGE_BYTES.toLocaleString('en-US')} bytes) of stored JSON text`);
    expect(text).toContain(`${MAX_JSON_CHARS.toLocaleString('en-US')}) UTF-16 code units`);
    expect(text).toContain(`within **${CHANNEL_TIMEOUT_MS / 1000} s**`);
    expect(text).toContain(`alone for **${CHANNEL_RETRY_MS / 1000} s**`);
    expect(text.replace(/\s+/g, ' ')).toContain(`busy timeout of ${WORKER_BUSY_TIMEOUT_MS / 1000} s`);
    // The heartbeat slot: its size, its fields, how often the supervisor reads it.
    const flat = text.replace(/\s+/g, ' ');
    expect(flat).toContain(`makes a ${BEAT_SLOT.bytes}-byte file per run`);
    expect(flat).toContain(`bytes ${BEAT_SLOT.beat}-${BEAT_SLOT.ack - 1} are the worker's last beat`);
    expect(flat).toContain(`bytes ${BEAT_SLOT.ack}-${BEAT_SLOT.bytes - 1} are the supervisor's acknowledgement`);
    expect(flat).toContain(`reads every slot every ${SLOT_READ_MS} ms`);
    expect(flat).toContain(`does not hold its own value ${SLOT_ACK_WAIT_MS} ms after it`);
    expect(slotBeatValue(7, 3)).toBe(7n * 2n ** 32n + 3n); // "pid × 2^32 + count"
    for (const v of [...REQUIRED_VARS, 'KANBAN_SOCKET', 'KANBAN_HEARTBEAT_SLOT', 'KANBAN_RECLAIM_GRACE_SECONDS', 'KANBAN_HEARTBEAT_TIMEOUT_SECONDS', 'KANBAN_SPOOL_DIR']) {
      expect(text).toContain(`| \`${v}\` |`);
    }
    for (const code of [EXIT.ok, EXIT.failed, EXIT.usage, EXIT.notCurrent, EXIT.tempFail, EXIT.sigterm]) expect(text).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
    expect(text).toContain(`up to ${FENCED_SIGNAL_WAIT_MS / 1000} s`);
    // "timeout / 3 (at least 100 ms, at most 30 s; 30 s without a timeout)"
    expect(heartbeatIntervalMs(null)).toBe(30_000);
    expect(heartbeatIntervalMs(0.2)).toBe(100);
    expect(heartbeatIntervalMs(30)).toBe(10_000);
    expect(heartbeatIntervalMs(600)).toBe(30_000);
    // "the grace minus a margin of a quarter of it (at least 250 ms, at most 5 s)"
    expect(shutdownBudgetMs(4)).toBe(3000);
    expect(shutdownBudgetMs(0.5)).toBe(250);
    expect(shutdownBudgetMs(60)).toBe(55_000);
  });
});
