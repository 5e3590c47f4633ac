/**
 * GET /api/runs/:id/log: a run's log, its tail (?tail=BYTES, default 64 KiB, at most 1 MiB) or a byte
 * range (`Range: bytes=A-B`, `bytes=A-`, `bytes=-N`; one range; 206 with Content-Range, 416 when it
 * starts past the end). A range longer than 1 MiB is cut to 1 MiB (the Content-Range says so).
 * The file is opened as the supervisor opens a worker's files (reaper/safe-fs: no symlink followed,
 * a regular file of ours, never blocking on a FIFO). X-Log-Size tells the file's size: a client
 * follows a growing log with `Range: bytes=<size>-`.
 */
import { closeSync, constants, readSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { openSafe, UnsafeFileError } from '@kanban-supervisor/reaper/safe-fs';
import { HttpError } from '../errors.js';
import type { SupervisorView } from '../view.js';
import { param } from './read.js';

export const LOG_TAIL_DEFAULT = 64 * 1024;
export const LOG_READ_MAX = 1024 * 1024;

/** The byte span [start, end) a Range header asks of a file of `size` bytes; 'unsatisfiable' or null (no usable header). */
export function rangeOf(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, start + LOG_READ_MAX) };
}

export function logRoutes(app: FastifyInstance, view: SupervisorView): void {
  app.get('/api/runs/:id/log', async (req, reply) => {
    const id = (req.params as { id: string }).id;
    const tailText = param(req, 'tail');
    if (tailText !== undefined && (!/^\d{1,8}$/.test(tailText) || Number(tailText) > LOG_READ_MAX)) {
      throw new HttpError(400, 'bad_request', `tail must be a whole number of bytes from 0 to ${LOG_READ_MAX}`);
    }
    const path = await view.logPathOf(id);
    if (path === null) throw new HttpError(404, 'not_found', `no log for run ${JSON.stringify(id.slice(0, 100))}`);
    let fd: number;
    let size: number;
    try {
      const o = openSafe(path, constants.O_RDONLY, { owner: true });
      fd = o.fd;
      size = o.stat.size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new HttpError(404, 'not_found', `the log of run ${id} is gone`);
      if (e instanceof UnsafeFileError) throw new HttpError(403, 'refused', `the log of run ${id} is refused: ${e.reason.replace('_', ' ')}`);
      throw e;
    }
    try {
      const rangeHeader = req.headers.range;
      let span: { start: number; end: number };
      let partial = false;
      const r = typeof rangeHeader === 'string' ? rangeOf(rangeHeader, size) : null;
      if (r === 'unsatisfiable') {
        return reply.code(416).header('content-range', `bytes */${size}`).header('x-log-size', String(size)).send({ error: { code: 'range_not_satisfiable', message: `the log has ${size} bytes` } });
      }
      if (r) {
        span = r;
        partial = true;
      } else {
        const tail = tailText !== undefined ? Number(tailText) : LOG_TAIL_DEFAULT;
        span = { start: Math.max(0, size - tail), end: size };
      }
      const buf = Buffer.alloc(span.end - span.start);
      let n = 0;
      while (n < buf.length) {
        const got = readSync(fd, buf, n, buf.length - n, span.start + n);
        if (got === 0) break;
        n += got;
      }
      reply.header('x-log-size', String(size)).header('x-log-offset', String(span.start)).header('accept-ranges', 'bytes').type('text/plain; charset=utf-8');
      if (partial) reply.code(206).header('content-range', `bytes ${span.start}-${span.start + n - 1}/${size}`);
      return reply.send(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  });
}
