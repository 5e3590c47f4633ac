/**
 * GET /api/events: every event the board commits, as Server-Sent Events, in commit order.
 *
 * Each event: `id: <cursor>`, `event: transition`, `data: <event JSON with its task>`. A client
 * resumes after the last event it saw with `Last-Event-ID` (EventSource sends it by itself on a
 * reconnect; `?lastEventId=` for a first connection): nothing lost, nothing twice (the board's feed,
 * eventsAfter, is in commit order on every backend). A new client starts at the feed's end, told
 * as a first `event: hello` carrying the cursor (so even its first reconnect resumes from there).
 *
 * Cost and bounds: a client reads the feed when the view signals a commit (at most every
 * 100 ms) and every 2 s besides (a PostgreSQL board does not notify for every event), a batch of at
 * most 200 events at a time, on the view's read connection. A client whose socket does not drain
 * within 10 s, or whose unsent output passes 1 MiB, is dropped: nothing is buffered without bound,
 * and a stuck client never holds anything of the supervisor. A comment every 15 s keeps proxies
 * from closing an idle stream. At most 64 clients at once (503 beyond).
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { HttpError } from './errors.js';
import type { SupervisorView } from './view.js';
import { eventJson } from './api/shapes.js';

export const SSE_HEARTBEAT_MS = 15_000;
export const SSE_MAX_CLIENTS = 64;
const MIN_READ_GAP_MS = 100;
const FALLBACK_READ_MS = 2_000;
const BATCH = 200;
const DRAIN_TIMEOUT_MS = 10_000;
const MAX_UNSENT_BYTES = 1024 * 1024;
/** Events are written in chunks of about this many characters, each waiting for the socket. */
const CHUNK_CHARS = 64 * 1024;

export interface EventStreams {
  /** Clients connected now. */
  readonly size: number;
  /** End every stream (server shutdown). */
  closeAll(): void;
}

/** Whether cursor `a` is after cursor `b` (both dot-separated decimal numbers, as the backends make them; anything else: false, the board judges it). */
export function cursorAhead(a: string, b: string): boolean {
  const parse = (c: string) => (/^\d{1,20}(\.\d{1,20})*$/.test(c) ? c.split('.').map((x) => BigInt(x)) : null);
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return false;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0n) - (y[i] ?? 0n);
    if (d !== 0n) return d > 0n;
  }
  return false;
}

export function sseRoutes(app: FastifyInstance, view: SupervisorView, opts: { onError: (e: unknown) => void }): EventStreams {
  const clients = new Set<() => void>();

  /** Streams being opened (their cursor read, not in `clients` yet): they count against the cap too. */
  let opening = 0;

  app.get('/api/events', async (req, reply) => {
    if (clients.size + opening >= SSE_MAX_CLIENTS) throw new HttpError(503, 'busy', `at most ${SSE_MAX_CLIENTS} event streams at once`);
    opening++;
    let counted = true;
    const opened = () => {
      if (counted) opening--;
      counted = false;
    };
    let cursor: string;
    let first: Awaited<ReturnType<SupervisorView['reads']['eventsAfter']>> | null;
    try {
      const header = req.headers['last-event-id'];
      const q = (req.query as Record<string, unknown>).lastEventId;
      const given = typeof header === 'string' && header !== '' ? header : typeof q === 'string' && q !== '' ? q : null;
      // A cursor the board does not accept is the client's error (400), told before the stream starts;
      // so is one ahead of the feed's end (another board's, or this board's before it was restored
      // from a backup): resumed from, it would hide every event until the board's ids caught up.
      if (given !== null) {
        const end = (await view.reads.eventsAfter(null, 1)).cursor;
        if (cursorAhead(given, end)) throw new HttpError(400, 'bad_cursor', `Last-Event-ID ${JSON.stringify(given.slice(0, 60))} is ahead of this board's feed (${end}): not a cursor of this board`);
      }
      cursor = given === null ? (await view.reads.eventsAfter(null, 1)).cursor : given;
      first = given === null ? null : await view.reads.eventsAfter(given, BATCH).catch((e: unknown) => {
        throw new HttpError(400, 'bad_cursor', `Last-Event-ID is not a cursor of this board: ${(e as Error).message}`);
      });
    } catch (e) {
      opened();
      throw e;
    }

    reply.hijack();
    const res: ServerResponse = reply.raw;
    res.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    let closed = false;
    let reading = false;
    let again = false;
    let lastRead = 0;
    let timer: NodeJS.Timeout | null = null;

    const close = () => {
      if (closed) return;
      closed = true;
      clients.delete(close);
      unsubscribe();
      clearInterval(beat);
      clearInterval(fallback);
      if (timer) clearTimeout(timer);
      res.destroy();
    };
    /**
     * Write; wait for the socket to drain when it is full (dropped if it does not within 10 s). A
     * client that has not taken what it was sent before (more than 1 MiB waiting) is dropped:
     * nothing is buffered without bound. Callers write at most one chunk (64 KiB of events) at a
     * time and wait, so a reading client is never dropped however large a batch is.
     */
    const send = async (chunk: string): Promise<void> => {
      if (closed) return;
      if (res.writableLength > MAX_UNSENT_BYTES) return close();
      if (res.write(chunk)) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          close();
          resolve();
        }, DRAIN_TIMEOUT_MS);
        res.once('drain', () => {
          clearTimeout(t);
          resolve();
        });
        res.once('close', () => {
          clearTimeout(t);
          resolve();
        });
      });
    };
    const read = async (): Promise<void> => {
      if (closed) return;
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        do {
          again = false;
          lastRead = Date.now();
          for (;;) {
            const batch = first ?? (await view.reads.eventsAfter(cursor, BATCH));
            first = null;
            if (closed) return;
            let out = '';
            for (const e of batch.events) {
              out += `id: ${e.cursor}\nevent: transition\ndata: ${JSON.stringify(eventJson(e))}\n\n`;
              if (out.length >= CHUNK_CHARS) {
                await send(out);
                out = '';
                if (closed) return;
              }
            }
            if (out) await send(out);
            cursor = batch.cursor;
            if (batch.events.length < BATCH || closed) break;
          }
        } while (again && !closed);
      } catch (e) {
        opts.onError(e);
      } finally {
        reading = false;
      }
    };
    /** A commit: read now, or as soon as 100 ms passed since the last read. */
    const poke = () => {
      if (closed || timer) return;
      const wait = Math.max(0, lastRead + MIN_READ_GAP_MS - Date.now());
      timer = setTimeout(() => {
        timer = null;
        void read();
      }, wait);
    };
    const unsubscribe = view.onCommit(poke);
    const beat = setInterval(() => void send(': keep-alive\n\n'), SSE_HEARTBEAT_MS);
    const fallback = setInterval(() => {
      if (Date.now() - lastRead >= FALLBACK_READ_MS) void read();
    }, FALLBACK_READ_MS);
    beat.unref();
    fallback.unref();
    opened();
    clients.add(close);
    res.on('close', close);
    res.on('error', close);
    await send(`retry: 2000\nid: ${cursor}\nevent: hello\ndata: ${JSON.stringify({ cursor })}\n\n`);
    void read();
  });

  return {
    get size() {
      return clients.size;
    },
    closeAll() {
      for (const c of [...clients]) c();
    },
  };
}
