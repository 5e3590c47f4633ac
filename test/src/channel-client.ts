/**
 * A raw client of the supervisor's report channel for tests: newline-delimited JSON requests over
 * the Unix socket, answers collected by id (worker-runtime's protocol.ts).
 */
import { createConnection, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export interface RawAnswer {
  id: number;
  ok: boolean;
  code?: string;
  error?: string;
  duplicate?: boolean;
  [k: string]: unknown;
}

export class RawClient {
  readonly answers = new Map<number, RawAnswer>();
  private buf = '';
  closed = false;
  private readonly closedP: Promise<void>;

  private constructor(readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const a = JSON.parse(this.buf.slice(0, i)) as RawAnswer;
        this.buf = this.buf.slice(i + 1);
        this.answers.set(a.id, a);
      }
    });
    sock.on('error', () => undefined);
    this.closedP = new Promise((r) => sock.once('close', () => ((this.closed = true), r())));
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ path });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  send(obj: unknown): void {
    this.sock.write(JSON.stringify(obj) + '\n');
  }

  async answer(id: number, timeoutMs = 10_000): Promise<RawAnswer> {
    const until = Date.now() + timeoutMs;
    while (!this.answers.has(id)) {
      if (this.closed) throw new Error(`connection closed before answer ${id}`);
      if (Date.now() > until) throw new Error(`no answer ${id} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.answers.get(id)!;
  }

  /** Resolves when the server closed the connection (rejects after `timeoutMs`). */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    await Promise.race([this.closedP, new Promise((_, rej) => setTimeout(() => rej(new Error('not closed')), timeoutMs))]);
  }

  close(): void {
    this.sock.destroy();
  }
}

/** The report channel's socket of a SQLite board (boardFiles). */
export function socketOf(db: string): string {
  return join(db, '..', 'sockets', `${db.split('/').pop()}.sock`);
}

/** The credentials of a task's current run, read from the board file (the token is on the run row). */
export function runCred(db: string, taskId: string): { task: string; run: string; token: string } | null {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const r = d.prepare(`SELECT r.id, r.token FROM runs r JOIN tasks t ON t.current_run_id = r.id WHERE t.id = ? AND r.status != 'ended'`).get(taskId) as
      | { id: string; token: string }
      | undefined;
    return r ? { task: taskId, run: r.id, token: r.token } : null;
  } finally {
    d.close();
  }
}

/** The pid in a file, once it is there. */
export function pidIn(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}
