// `logs -f` reading a log while the supervisor's bound (LOG_MAX_BYTES) cuts it, from another
// process: the reader never prints a state of the file halfway through a cut (the tail copied over
// the old middle before the truncation, stale bytes past it), nor maps its place in the output
// with the layout of one cut onto the file of the next: no line twice, no torn line, no gap without
// the marker line.
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LogFollower } from '../../supervisor/dist/logs.js';
import { Cleanups, FIXTURES, exited, startProcess } from '../src/common.js';

const RACE = join(FIXTURES, 'logs', 'cut-race.mjs');
const LINES = 20_000;
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const MARKER = /^\[kanban-supervisor: log truncated: (\d+) bytes dropped here to stay under LOG_MAX_BYTES=\d+\]$/;
const LINE = /^n (\d{9}) x{19}$/;

/** Output checked line by line: whole lines only, in order, never twice, every gap right after a marker line. */
function check(text: string): { last: number; markers: number } {
  expect(text.endsWith('\n'), `output ends inside a line: ${JSON.stringify(text.slice(-80))}`).toBe(true);
  const lines = text.slice(0, -1).split('\n');
  let last = 0;
  let markers = 0;
  let afterMarker = false;
  for (const [i, l] of lines.entries()) {
    const where = () => `line ${i + 1}, after n ${last}:\n${lines.slice(Math.max(0, i - 4), i + 3).join('\n')}`;
    if (MARKER.test(l)) {
      afterMarker = true;
      markers++;
      continue;
    }
    const m = LINE.exec(l);
    if (!m) throw new Error(`a torn line ${JSON.stringify(l)} at ${where()}`);
    const n = Number(m[1]);
    if (n <= last) throw new Error(`n ${n} printed again or out of order at ${where()}`);
    if (n !== last + 1 && !afterMarker) throw new Error(`gap ${last} → ${n} without a marker line at ${where()}`);
    last = n;
    afterMarker = false;
  }
  return { last, markers };
}

describe('logs -f while the bound cuts the log', () => {
  it('a follower reading a log that another process cuts hundreds of times a second never prints torn state', async () => {
    const dir = cleanups.tempDir('ks-logcut-');
    const log = join(dir, 'run.log');
    writeFileSync(log, '', { mode: 0o600 });
    const race = cleanups.killAtEnd(startProcess(process.execPath, [RACE, log, '1024', String(LINES)]));
    const out: Buffer[] = [];
    let err = '';
    const follower = new LogFollower(log, { out: (c) => out.push(Buffer.from(c)), err: (t) => (err += t) });
    let done = false;
    const ended = exited(race).then((r) => ((done = true), r));
    for (let polls = 1; !done; polls++) {
      follower.poll();
      // Read as fast as it can; let the child's exit through now and then.
      if (polls % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    expect((await ended).code, race.output()).toBe(0);
    expect(await follower.drain()).toBe(true);
    follower.close();
    // The file itself lost nothing: its marker counts exactly the lines missing between head and tail.
    const file = readFileSync(log, 'latin1').slice(0, -1).split('\n');
    const at = file.findIndex((l) => MARKER.test(l));
    const dropped = Number(MARKER.exec(file[at]!)![1]);
    expect(dropped).toBe((Number(file[at + 1]!.slice(2, 11)) - Number(file[at - 1]!.slice(2, 11)) - 1) * 32);
    const { last, markers } = check(Buffer.concat(out).toString('latin1'));
    expect(err).toBe('');
    expect(last).toBe(LINES);
    expect(markers).toBeGreaterThan(0);
    // A race indeed: the file was cut hundreds of times while the follower read it.
    expect(Number(race.output().trim())).toBeGreaterThan(200);
  });
});
