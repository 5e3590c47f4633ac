/**
 * The report channel's server: a Unix socket next to the board (boardFiles: `sockets/` in the
 * board's folder, or in a PostgreSQL board's state folder), through which workers send their
 * reports (worker-runtime's protocol.ts) instead of writing the board themselves. Reports go to the
 * batch (batch.ts), which answers each once it is committed.
 *
 * Security: the socket is 0600 in a folder of ours that is 0700, and each connection's peer must be
 * our own user (SO_PEERCRED through the reaper's addon; without the addon, the modes alone keep
 * other users out). A report's run must be current and, on a shared board, claimed by this
 * supervisor (the board's fence).
 *
 * Nothing a client does can block or crash the supervisor: a line longer than MAX_FRAME_BYTES, one
 * that is not a JSON request, or a client whose unread answers pass MAX_ANSWER_BYTES +
 * MAX_UNREAD_BYTES closes that connection, logged once; a client with too many reports waiting is
 * not read until they are answered. An answer is at most MAX_ANSWER_BYTES (the `parents` op pages).
 *
 * A socket file left by a dead supervisor is replaced; one a live process answers on is never
 * touched (the channel stays off, said in the log: workers then report to the board directly).
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { peerUidOf, peerUidSupported } from '@kanban-supervisor/reaper';
import { ensurePrivateDir } from '@kanban-supervisor/reaper/safe-fs';
import { MAX_ANSWER_BYTES, MAX_FRAME_BYTES, OPS, PROTOCOL_VERSIONS, ProtocolError, parseRequest, requestId } from '@kanban-supervisor/worker-runtime';
import type { ChannelDrop } from '../metrics/registry.js';
import type { TickContext } from '../state.js';
import type { AnswerBody, ReportBatch } from './batch.js';

/** The longest socket path a sockaddr_un holds (108 bytes with its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;
/**
 * Answers a client has not read, bytes, beyond one answer of the largest size (MAX_ANSWER_BYTES: a
 * client reading a large answer is not dropped for the small ones that follow it), before it is dropped.
 */
export const MAX_UNREAD_BYTES = 1024 * 1024;
/** Reports of one connection waiting for their answers before it is no longer read. */
const PAUSE_AT = 4096;
const RESUME_AT = 1024;

export class ChannelSetupError extends Error {
  override name = 'ChannelSetupError';
}

export class ReportServer {
  private server: Server | null = null;
  private readonly conns = new Set<Connection>();
  /** The socket file we bound (its inode): removed at stop only if it is still ours. */
  private bound: { path: string; ino: number } | null = null;
  readonly uid = process.getuid?.() ?? -1;

  constructor(
    readonly ctx: TickContext,
    readonly batch: ReportBatch,
  ) {}

  /**
   * Listen on the board's socket. Returns its path, or null when the channel cannot be set up
   * (logged with why: workers then write the board directly). Never throws.
   */
  async start(): Promise<string | null> {
    const { socketDir, socketPath } = this.ctx.files;
    try {
      if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
        throw new ChannelSetupError(`its path ${socketPath} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a Unix socket path may have (move the board, or the state folder, to a shorter path)`);
      }
      ownSocketDir(socketDir);
      await clearStale(socketPath);
      const server = createServer((s) => this.accept(s));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path: socketPath, readableAll: false, writableAll: false }, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      server.on('error', (e) => this.ctx.log.error({ event: 'channel_error', err: e }, 'report channel error'));
      chmodSync(socketPath, 0o600);
      this.bound = { path: socketPath, ino: lstatSync(socketPath).ino };
      this.server = server;
      this.ctx.log.info({ event: 'channel_listening', socket: socketPath, peerCheck: peerUidSupported() }, 'report channel listening');
      return socketPath;
    } catch (e) {
      this.ctx.log.warn(
        { event: 'channel_off', socket: socketPath, error: (e as Error).message },
        `report channel off: ${(e as Error).message}; workers report to the board directly`,
      );
      return null;
    }
  }

  /** Stop listening, close every connection (reports not answered yet: unavailable), remove the socket. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.batch.failAll('the supervisor is stopping');
    for (const c of [...this.conns]) {
      c.socket.destroy();
      this.forget(c);
    }
    if (server) await new Promise<void>((r) => server.close(() => r()));
    const b = this.bound;
    this.bound = null;
    if (b) {
      try {
        if (lstatSync(b.path).ino === b.ino) unlinkSync(b.path);
      } catch {
        /* gone already */
      }
    }
  }

  private accept(socket: Socket): void {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const peer = peerUidOf(fd);
    if (peer !== null && peer !== this.uid) {
      this.ctx.metrics.channelDrop('peer');
      this.ctx.log.warn({ event: 'channel_peer_refused', uid: peer }, `report channel: a connection from uid ${peer} (not ours) refused`);
      socket.destroy();
      return;
    }
    const c = new Connection(socket, this);
    this.conns.add(c);
    this.ctx.metrics.channelConnection(1);
    socket.on('close', () => this.forget(c));
  }

  /** A connection is gone (closed, or closed by stop()): counted once. */
  private forget(c: Connection): void {
    if (this.conns.delete(c)) this.ctx.metrics.channelConnection(-1);
  }

  /** A connection misbehaved: logged once and counted (it is closed). */
  refuse(reason: ChannelDrop, what: string): void {
    this.ctx.metrics.channelDrop(reason);
    this.ctx.log.warn({ event: 'channel_client_dropped', reason: what, kind: reason }, `report channel: a client was disconnected: ${what}`);
  }
}

/** One worker's connection: frames in, answers out. */
class Connection {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private waiting = 0;
  private closed = false;

  constructor(
    readonly socket: Socket,
    private readonly server: ReportServer,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => this.close(null));
    socket.on('close', () => (this.closed = true));
  }

  private close(why: [ChannelDrop, string] | null): void {
    if (this.closed) return;
    this.closed = true;
    if (why) this.server.refuse(...why);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    while (!this.closed) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.partBytes = 0;
      if (line.length > MAX_FRAME_BYTES) return this.close(['oversized', `a frame longer than ${MAX_FRAME_BYTES} bytes`]);
      this.onLine(line);
    }
    if (this.closed || start >= chunk.length) return;
    const rest = chunk.subarray(start);
    this.parts.push(rest);
    this.partBytes += rest.length;
    if (this.partBytes > MAX_FRAME_BYTES) this.close(['oversized', `a frame longer than ${MAX_FRAME_BYTES} bytes`]);
  }

  private onLine(line: Buffer): void {
    if (line.length === 0 || (line.length === 1 && line[0] === 13)) return;
    let v: unknown;
    try {
      v = JSON.parse(line.toString('utf8'));
    } catch {
      return this.close(['malformed', `a frame that is not JSON (${line.length} bytes)`]);
    }
    const id = requestId(v);
    let req;
    try {
      req = parseRequest(v);
    } catch (e) {
      if (id === null || !(e instanceof ProtocolError)) return this.close(['malformed', `a frame that is not a request: ${(e as Error).message}`]);
      this.server.ctx.metrics.channelAnswered(opLabel(v), 'invalid');
      return this.answer(id, { ok: false, code: 'invalid', error: e.message });
    }
    if (req === 'hello') return this.answer(id!, { ok: true, versions: PROTOCOL_VERSIONS });
    this.waiting++;
    if (this.waiting >= PAUSE_AT) this.socket.pause();
    this.server.batch.push(req, (a) => {
      this.waiting--;
      if (this.waiting === RESUME_AT && !this.closed) this.socket.resume();
      this.answer(id!, a);
    });
  }

  private answer(id: number, a: AnswerBody): void {
    if (this.closed) return;
    let line = JSON.stringify({ id, ...a });
    const bytes = Buffer.byteLength(line);
    if (bytes > MAX_ANSWER_BYTES) {
      // Only a task whose title and payload together pass the bound (the payload alone cannot).
      line = JSON.stringify({ id, ok: false, code: 'invalid', error: `the answer would be ${bytes} bytes, more than the ${MAX_ANSWER_BYTES} an answer may have` });
    }
    this.socket.write(line + '\n');
    const limit = MAX_ANSWER_BYTES + MAX_UNREAD_BYTES;
    if (this.socket.writableLength > limit) this.close(['slow_reader', `a client that does not read its answers (over ${limit} bytes unread)`]);
  }
}

/** A request's op as a metrics label: a known op, else `unknown` (the label's values stay few). */
function opLabel(v: unknown): string {
  const op = (v as { op?: unknown } | null)?.op;
  return typeof op === 'string' && (OPS as readonly string[]).includes(op) ? op : 'unknown';
}

/**
 * The socket's folder: created 0700, or an existing real folder of ours (never a symlink), made
 * 0700 if it was not. Throws ChannelSetupError naming it.
 */
function ownSocketDir(dir: string): void {
  try {
    ensurePrivateDir(dir);
  } catch (e) {
    throw new ChannelSetupError(`its folder: ${(e as Error).message}`);
  }
}

/**
 * A socket file already at `path`: removed when it is a socket of ours nobody answers on (left by
 * a dead supervisor). Throws ChannelSetupError when something else is there, or a live process
 * answers on it (never touched).
 */
async function clearStale(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new ChannelSetupError(`${path} exists and is not a socket (left alone)`);
  if (process.getuid && st.uid !== process.getuid()) throw new ChannelSetupError(`${path} belongs to uid ${st.uid}, not to this user (left alone)`);
  const live = await new Promise<boolean>((resolve, reject) => {
    const s = createConnection({ path });
    const t = setTimeout(() => {
      s.destroy();
      resolve(true); // it accepted or hangs: something is there
    }, 1000);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') resolve(false);
      else reject(new ChannelSetupError(`cannot tell whether ${path} is in use: ${e.message}`));
    });
  });
  if (live) throw new ChannelSetupError(`another process listens on ${path} (a live supervisor of this board?): left alone`);
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
