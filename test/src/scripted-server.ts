/**
 * A stand-in for the supervisor's report channel in tests: a Unix socket server that reads the
 * newline-delimited requests, records each, and answers each with what `answer` returns or resolves
 * to (null: ok; undefined: no answer at all, as a supervisor that is busy or stuck). `check` sees every request
 * first (e.g. the supervisor's own parseRequest). Closed by the given cleanups.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Cleanups } from './common.js';

export type ScriptedRequest = Record<string, unknown> & { id: number; op: string };
/** An answer's fields (null: ok; undefined: no answer). */
type Answer = Record<string, unknown> | null | undefined;

export async function scriptedServer(
  path: string,
  cleanups: Cleanups,
  answer: (r: ScriptedRequest) => Answer | Promise<Answer>,
  check?: (r: ScriptedRequest) => void,
): Promise<{ got: ScriptedRequest[]; server: Server }> {
  const got: ScriptedRequest[] = [];
  const server = createServer((s: Socket) => {
    let buf = '';
    s.on('error', () => undefined);
    s.on('data', (d) => {
      buf += String(d);
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const r = JSON.parse(buf.slice(0, i)) as ScriptedRequest;
        buf = buf.slice(i + 1);
        check?.(r);
        got.push(r);
        void Promise.resolve(answer(r)).then((a) => {
          if (a !== undefined) s.write(JSON.stringify({ id: r.id, ...(a ?? { ok: true }) }) + '\n');
        });
      }
    });
  });
  await new Promise<void>((res) => server.listen(path, () => res()));
  cleanups.push(() => new Promise<void>((res) => server.close(() => res())));
  return { got, server };
}
