/**
 * HTTP helpers of the web tests: a supervisor started with its HTTP server on a free loopback port
 * (the URL read from its `http_started` log line), and a small request function on node:http (it
 * can send any Host header, which fetch cannot).
 */
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { CLI, exited, logEvents, startProcess, waitFor, type Cleanups } from './common.js';

export interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: any;
}

export function http(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown = undefined;
        try {
          json = JSON.parse(body);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export interface HttpSup {
  child: ChildProcess & { output: () => string };
  url: string;
  token: string;
  /** A JSON POST with the token. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<HttpReply>;
  get(path: string, headers?: Record<string, string>): Promise<HttpReply>;
}

/** `run` on `db` with `--http 127.0.0.1:0` (unless env sets KANBAN_HTTP); resolves once it listens and (unless `--standby`) owns the board. */
export async function startHttpSup(db: string, env: NodeJS.ProcessEnv = {}, args: string[] = [], tokenFile = `${db}.http-token`): Promise<HttpSup> {
  const child = startProcess(process.execPath, [CLI, '--db', db, 'run', ...args], { LOG_FORMAT: 'json', KANBAN_HTTP: '127.0.0.1:0', ...env });
  const started = await waitFor(() => logEvents(child.output(), 'http_started')[0] ?? (child.exitCode !== null ? { failed: child.output() } : null), 20_000);
  if ('failed' in started) throw new Error(`the supervisor exited: ${String(started.failed)}`);
  const url = String(started.url).replace(/\/$/, '');
  // HTTP listens before the board is owned (readyz says standby, writes are refused 503 meanwhile): a
  // supervisor that is to own the board is waited for (its `started` line), or a test's first write
  // can race its start-up on a slow machine.
  if (!args.includes('--standby')) {
    const owned = await waitFor(() => logEvents(child.output(), 'started')[0] ?? (child.exitCode !== null ? { failed: child.output() } : null), 30_000);
    if ('failed' in owned) throw new Error(`the supervisor exited: ${String(owned.failed)}`);
  }
  const token = env.KANBAN_HTTP_TOKEN ?? readFileSync(tokenFile, 'utf8').trim();
  const auth = { authorization: `Bearer ${token}` };
  return {
    child,
    url,
    token,
    post: (path, body, headers = {}) => http(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...auth, ...headers }, body: JSON.stringify(body) }),
    get: (path, headers = {}) => http(url + path, { headers }),
  };
}

/** An SSE client: the events it received, parsed (id, event, data). */
export function sseClient(url: string, headers: Record<string, string> = {}): { events: Array<{ id: string; event: string; data: any }>; close: () => void; status: Promise<number> } {
  const events: Array<{ id: string; event: string; data: any }> = [];
  let buf = '';
  let close = () => undefined as void;
  const status = new Promise<number>((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      resolve(res.statusCode ?? 0);
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e = { id: '', event: 'message', data: '' as any };
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) e.id = line.slice(4);
            else if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('data: ')) e.data = JSON.parse(line.slice(6));
          }
          if (e.event !== 'message' || e.data !== '') events.push(e);
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', (e) => (events.length ? undefined : reject(e)));
    req.end();
    close = () => void req.destroy();
  });
  return { events, close: () => close(), status };
}

/** startHttpSup with `env` over `base`, stopped when the test ends (SIGTERM, then SIGKILL after 15 s). */
export async function supervisedHttpSup(cleanups: Cleanups, db: string, base: NodeJS.ProcessEnv, env: NodeJS.ProcessEnv = {}, args: string[] = []): Promise<HttpSup> {
  const s = await startHttpSup(db, { ...base, ...env }, args);
  cleanups.push(async () => {
    if (s.child.exitCode === null) {
      s.child.kill('SIGTERM');
      const t = setTimeout(() => s.child.kill('SIGKILL'), 15_000);
      await exited(s.child);
      clearTimeout(t);
    }
  });
  return s;
}
