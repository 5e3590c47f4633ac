// The page's side of the JSON API: reads (no token), actions (Bearer token), the run log with
// Range requests, and the token, taken from the URL fragment once and kept for the tab only.

const TOKEN_KEY = 'kanban-supervisor.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * At load: a `#token=…` fragment goes to sessionStorage (this tab only) and leaves the address bar
 * and the history at once (history.replaceState), so it is neither bookmarked nor shown.
 */
export function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  let t = '';
  try {
    t = decodeURIComponent(m[1]);
  } catch {
    t = '';
  }
  if (t) setToken(t);
  history.replaceState(history.state, '', location.pathname + location.search);
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage off: actions will ask again */
  }
}

async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const e = body && typeof body === 'object' ? body.error : null;
  if (e && typeof e.message === 'string') return new ApiError(res.status, String(e.code ?? res.status), e.message);
  return new ApiError(res.status, `http_${res.status}`, `${res.status} ${res.statusText || 'error'}`);
}

/** Request headers: the token goes with reads too (a server bound beyond loopback wants it for every request). */
function auth(headers) {
  const t = token();
  return t ? { ...headers, authorization: `Bearer ${t}` } : headers;
}

export async function getJson(path, opts = {}) {
  const res = await fetch(path, { headers: auth({ accept: 'application/json' }), cache: 'no-store', signal: opts.signal });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** A state-changing request: JSON body, the Bearer token; the server's error message on failure. */
export async function postJson(path, body) {
  const t = token();
  if (!t) {
    throw new ApiError(401, 'no_token', 'No token in this tab: open the page with the URL `kanban-supervisor status` prints, or set the token.');
  }
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${t}` },
    body: JSON.stringify(body ?? {}),
    cache: 'no-store',
  });
  if (!res.ok) {
    const e = await errorOf(res);
    if (res.status === 401) e.message = `${e.message} (the token of this tab was refused: set it again)`;
    throw e;
  }
  return res.json();
}

const RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
const UNSATISFIED = /^bytes \*\/(\d+)$/;

/**
 * A piece of a run's log: its last `tail` bytes (offset null), or what follows `offset` (a Range
 * request). Returns the bytes, where they start, and the file's size when the server says it.
 */
export async function getLog(runId, offset, tail = 65_536, signal) {
  const base = `/api/runs/${encodeURIComponent(runId)}/log`;
  const res = offset === null
    ? await fetch(`${base}?tail=${tail}`, { headers: auth({}), cache: 'no-store', signal })
    : await fetch(base, { headers: auth({ range: `bytes=${offset}-` }), cache: 'no-store', signal });
  const cr = res.headers.get('content-range') ?? '';
  if (res.status === 416) {
    const m = UNSATISFIED.exec(cr);
    return { bytes: new Uint8Array(0), start: offset ?? 0, size: m ? Number(m[1]) : null };
  }
  if (!res.ok) throw await errorOf(res);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const m = RANGE.exec(cr);
  if (m) return { bytes, start: Number(m[1]), size: m[3] === '*' ? null : Number(m[3]) };
  const sizeHeader = Number(res.headers.get('x-log-size') ?? NaN);
  // Without a size from the server: a tail shorter than asked is the whole file.
  const size = Number.isFinite(sizeHeader) ? sizeHeader : offset !== null ? offset + bytes.length : bytes.length < tail ? bytes.length : null;
  return { bytes, start: size !== null ? size - bytes.length : offset ?? 0, size };
}
