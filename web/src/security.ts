/**
 * The server's security rules, each small and testable on its own:
 * - Host check (DNS rebinding): a request whose Host header is not the bound address or localhost
 *   (with the bound port) is refused, 421. A wildcard bind (0.0.0.0, ::) accepts this host's own
 *   names and addresses.
 * - The bearer token, compared in constant time (crypto.timingSafeEqual over SHA-256 digests, so
 *   neither the length nor a prefix leaks).
 * - The response headers: a strict Content-Security-Policy (no inline script or style, nothing but
 *   this origin), nosniff, no framing, no referrer. No CORS header is ever sent.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { hostname, networkInterfaces } from 'node:os';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

/** A host as it appears in a Host header or a URL: an IPv6 literal in brackets. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

const isWildcard = (host: string) => host === '0.0.0.0' || host === '::' || host === '[::]';

/** The Host header values accepted for a server bound to `host`:`port` (lower case). */
export function allowedHosts(host: string, port: number): Set<string> {
  const names = new Set<string>(['localhost', urlHost(host.toLowerCase())]);
  if (host === 'localhost') for (const n of ['127.0.0.1', '[::1]']) names.add(n);
  if (isWildcard(host)) {
    names.add(hostname().toLowerCase());
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(urlHost(a.address.toLowerCase()));
  }
  const out = new Set<string>();
  for (const n of names) {
    out.add(`${n}:${port}`);
    if (port === 80) out.add(n);
  }
  return out;
}

/** Whether a request's Host header is one of `allowed`. */
export function hostAllowed(header: string | undefined, allowed: Set<string>): boolean {
  if (!header) return false;
  return allowed.has(header.trim().toLowerCase());
}

/** Whether an absolute-form request target (`http://host:port/path`) names one of `allowed` (anything else, `*` too: no). */
export function absoluteTargetAllowed(target: string, allowed: Set<string>): boolean {
  let u: URL;
  try {
    u = new URL(target);
  } catch {
    return false;
  }
  return u.protocol === 'http:' && u.username === '' && u.password === '' && allowed.has(u.host.toLowerCase());
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Whether an Authorization header carries `Bearer <token>`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (typeof header !== 'string') return false;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  // Compare something either way: a missing token costs the same as a wrong one.
  return timingSafeEqual(digest(m ? m[1]! : ''), digest(token)) && m !== null;
}
