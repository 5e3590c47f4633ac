export { startHttpServer, BODY_LIMIT, type HttpServerHandle, type HttpServerOptions } from './server.js';
export type { HistoryPoint, Probe, SupervisorView } from './view.js';
export { loadOrCreateToken, readTokenFile, tokenFilePath, TokenFileError } from './token.js';
export { allowedHosts, bearerMatches, hostAllowed, CONTENT_SECURITY_POLICY, SECURITY_HEADERS, urlHost } from './security.js';
export { ASSETS, PAGE_WEIGHT_LIMIT, PUBLIC_DIR, loadAssets, type AssetSpec } from './assets.js';
export { SSE_HEARTBEAT_MS, SSE_MAX_CLIENTS } from './sse.js';
export { LOG_READ_MAX, LOG_TAIL_DEFAULT } from './api/logs.js';
export { HttpError, errorReply } from './errors.js';
