/**
 * Errors as the API answers them: `{ error: { code, message } }` with the right status, never a
 * stack. Input the board refuses (BoardInputError) and configuration-style checks are 400 (409 for
 * an action the task's state refuses: the route says so), fastify's own refusals keep their status
 * (413 body too large, 415 media type, 400 bad JSON), anything else is 500 "internal error" (and
 * logged by the server, not told to the client).
 */
import { BoardInputError } from '@kanban-supervisor/board';
import { ConfigError } from '@kanban-supervisor/policies';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface ErrorReply {
  status: number;
  body: { error: { code: string; message: string } };
  /** Unexpected: the server logs it. */
  internal: boolean;
}

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_content_length',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'empty_body',
  FST_ERR_CTP_INVALID_JSON_BODY: 'bad_json',
};

export function errorReply(e: unknown): ErrorReply {
  const reply = (status: number, code: string, message: string, internal = false): ErrorReply => ({ status, body: { error: { code, message } }, internal });
  if (e instanceof HttpError) return reply(e.status, e.code, e.message);
  if (e instanceof BoardInputError || e instanceof ConfigError) return reply(400, 'bad_request', e.message);
  const f = e as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (typeof f.code === 'string' && f.code.startsWith('FST_') && typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    if (f.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply(413, 'body_too_large', 'the request body is larger than 1 MiB');
    if (f.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return reply(415, 'unsupported_media_type', 'the request body must be JSON (Content-Type: application/json)');
    // SyntaxError text of a bad JSON body names the position, nothing of the server.
    return reply(f.statusCode, FASTIFY_CODES[f.code] ?? 'bad_request', String(f.message ?? 'bad request'));
  }
  if (e instanceof SyntaxError) return reply(400, 'bad_json', `the request body is not valid JSON: ${e.message}`);
  return reply(500, 'internal', 'internal error (see the supervisor log)', true);
}
