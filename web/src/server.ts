/**
 * The HTTP server of the supervisor: fastify 5 (body limit → 413, JSON parsing, request hooks, a
 * well-kept project that supports Node 20), on the address it is given.
 *
 * Every request, in order (the onRequest hook, before any body is read):
 *   1. the security headers (CSP, nosniff, no framing) on every answer, an error's too;
 *   2. the Host check (DNS rebinding) → 421;
 *   3. the bearer token for every state-changing request, and for every request when the server
 *      listens beyond loopback → 401 (with WWW-Authenticate);
 * then, for a POST: a JSON body (Content-Type application/json) → 415 otherwise, at most 1 MiB → 413.
 * Errors are `{ error: { code, message } }`; a stack never reaches a client.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { logRoutes } from './api/logs.js';
import { readRoutes } from './api/read.js';
import { writeRoutes } from './api/write.js';
import { loadAssets } from './assets.js';
import { errorReply } from './errors.js';
import { absoluteTargetAllowed, allowedHosts, bearerMatches, hostAllowed, SECURITY_HEADERS, urlHost } from './security.js';
import { sseRoutes } from './sse.js';
import type { SupervisorView } from './view.js';

export const BODY_LIMIT = 1024 * 1024;
/** Open HTTP connections at most (more are closed at once by Node). */
export const MAX_CONNECTIONS = 256;

export interface HttpServerOptions {
  host: string;
  /** 0: any free port (the handle tells which). */
  port: number;
  view: SupervisorView;
  /** The bearer token (KANBAN_HTTP_TOKEN, or the generated one). */
  token: string;
  /** Every request needs the token (a non-loopback address), not only the state-changing ones. */
  readsNeedToken: boolean;
  /** Unexpected errors (a 500), for the supervisor's log. */
  onError?: (e: unknown, where: string) => void;
  /** The page's files (default: web/public). */
  publicDir?: string;
}

export interface HttpServerHandle {
  /** The URL the server answers at (without a token). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

const SAFE_METHODS = new Set(['GET', 'HEAD']);

export async function startHttpServer(o: HttpServerOptions): Promise<HttpServerHandle> {
  const onError = o.onError ?? (() => undefined);
  const assets = loadAssets(o.publicDir);
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    trustProxy: false,
    return503OnClosing: true,
    forceCloseConnections: true,
    // Slow clients are cut: a request's headers and body must arrive within 30 s.
    requestTimeout: 30_000,
    // Never parse prototypes out of JSON bodies.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  let allowed = new Set<string>();
  const assetRoutes = new Set(assets.map((a) => a.route));

  app.addHook('onRequest', async (req, reply) => {
    reply.headers(SECURITY_HEADERS);
    if (!req.url.startsWith('/app.js') && !req.url.startsWith('/style.css')) reply.header('cache-control', 'no-store');
    // An absolute-form request target (`GET http://host/path`) names the host the request is for
    // (RFC 9112 3.2.2: it overrides Host): it must be ours as well.
    const target = req.raw.url ?? '';
    if (!hostAllowed(req.headers.host, allowed) || (!target.startsWith('/') && !absoluteTargetAllowed(target, allowed))) {
      return reply.code(421).send({ error: { code: 'wrong_host', message: `this server answers only to ${[...allowed].filter((h) => h.startsWith('localhost') || h.startsWith(urlHost(o.host))).join(' or ')}` } });
    }
    // The page's own files hold no data: a browser loads them without a token, then the page sends it.
    const pageFile = SAFE_METHODS.has(req.method) && assetRoutes.has(req.url.split('?')[0]!);
    if (!pageFile && (o.readsNeedToken || !SAFE_METHODS.has(req.method)) && !bearerMatches(req.headers.authorization, o.token)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="kanban-supervisor"')
        .send({ error: { code: 'unauthorized', message: 'this request needs Authorization: Bearer <token> (KANBAN_HTTP_TOKEN, or the token file next to the board; `kanban-supervisor status` prints the page URL with it)' } });
    }
    if (req.method === 'POST') {
      const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json') {
        return reply.code(415).send({ error: { code: 'unsupported_media_type', message: 'the request body must be JSON (Content-Type: application/json)' } });
      }
    }
  });

  app.setErrorHandler((e, req, reply) => {
    const r = errorReply(e);
    if (r.internal) onError(e, `${req.method} ${req.routeOptions.url ?? req.url}`);
    return reply.code(r.status).send(r.body);
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: { code: 'not_found', message: `no such endpoint: ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}` } }));

  for (const a of assets) {
    app.get(a.route, async (req, reply) => {
      reply.header('etag', a.etag).header('cache-control', 'no-cache');
      if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
      return reply.type(a.contentType).send(a.body);
    });
  }
  readRoutes(app, o.view);
  logRoutes(app, o.view);
  writeRoutes(app, o.view);
  const streams = sseRoutes(app, o.view, { onError: (e) => onError(e, 'GET /api/events') });

  // A local client cannot use up the supervisor's file descriptors (which its workers' spawns need).
  app.server.maxConnections = MAX_CONNECTIONS;
  await app.listen({ host: o.host, port: o.port, listenTextResolver: () => '' });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  allowed = allowedHosts(o.host, port);
  const url = `http://${urlHost(o.host)}:${port}/`;
  return {
    url,
    host: o.host,
    port,
    app,
    async close() {
      streams.closeAll();
      await app.close();
    },
  };
}
