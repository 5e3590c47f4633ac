// What the page's modules share: building elements without innerHTML (every board text goes in
// as text, never as markup), durations, sizes and times for people; the JSON API (reads, actions
// with the Bearer token, the run log with Range requests, the token taken from the URL fragment);
// and the event stream reader.

// ------------------------------------------------------------------ elements and formats

/**
 * An element: `h('li', { class: 'card', dataset: { taskId: id }, 'aria-label': '…' }, child, 'text', …)`.
 * Strings become text nodes; null, undefined and false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else e.append(c instanceof Node ? c : String(c));
  }
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with its attributes. */
export function s(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** A duration for people: 850ms, 12.3s, 4m05s, 3h12m, 2d04h (the CLI's format). */
export function fmtAge(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  const a = Math.max(0, ms);
  if (a < 1000) return `${Math.round(a)}ms`;
  if (a < 60_000) return `${(a / 1000).toFixed(1)}s`;
  const sec = Math.floor(a / 1000);
  if (sec < 3600) return `${Math.floor(sec / 60)}m${String(sec % 60).padStart(2, '0')}s`;
  if (sec < 86_400) return `${Math.floor(sec / 3600)}h${String(Math.floor((sec % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(sec / 86_400)}d${String(Math.floor((sec % 86_400) / 3600)).padStart(2, '0')}h`;
}

/** A coarse age for a card: seconds are enough (4s, 3m, 2h, 5d). */
export function fmtAgeShort(ms) {
  if (!Number.isFinite(ms)) return '-';
  const sec = Math.max(0, Math.floor(ms / 1000));
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m`;
  if (sec < 86_400) return `${Math.floor(sec / 3600)}h`;
  return `${Math.floor(sec / 86_400)}d`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(n < 10 * 1024 ** 2 ? 1 : 0)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

export function fmtTime(ms) {
  if (!ms) return '-';
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '-' : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** A short one-line view of a JSON value (for event data and payloads in lists). */
export function jsonLine(v, max = 200) {
  if (v === null || v === undefined) return '';
  let t;
  try {
    t = JSON.stringify(v);
  } catch {
    t = String(v);
  }
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

// ------------------------------------------------------------------ the API and the token

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

// ------------------------------------------------------------------ the event stream

// The event stream (/api/events, Server-Sent Events) read with fetch rather than EventSource, so
// that it can carry the Bearer token (a server bound beyond loopback wants it for reads too) and
// resume exactly: each reconnect sends Last-Event-ID, the id of the last event received.
export class EventStream {
  /**
   * opts: { onEvent(type, data, id), onState('connecting' | 'live' | 'reconnecting'), onReset() }
   * onReset: the server refused our Last-Event-ID (another board?): we start over at its end, and
   * what happened meanwhile must be read again.
   */
  constructor(url, opts) {
    this.url = url;
    this.opts = opts;
    this.lastId = null;
    this.retryMs = 2000;
    this.abort = null;
    this.stopped = false;
    /** Resolves once the stream is open the first time (the server has its place in the feed). */
    this.opened = new Promise((r) => (this.markOpen = r));
  }

  start() {
    void this.loop();
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
  }

  async loop() {
    let first = true;
    while (!this.stopped) {
      this.opts.onState(first ? 'connecting' : 'reconnecting');
      first = false;
      try {
        await this.once();
      } catch {
        /* a dropped connection: try again */
      }
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, this.retryMs));
    }
  }

  async once() {
    this.abort = new AbortController();
    const headers = { accept: 'text/event-stream' };
    const t = token();
    if (t) headers.authorization = `Bearer ${t}`;
    if (this.lastId !== null) headers['last-event-id'] = this.lastId;
    const res = await fetch(this.url, { headers, cache: 'no-store', signal: this.abort.signal });
    if (res.status === 400 && this.lastId !== null) {
      this.lastId = null;
      this.opts.onReset();
      return;
    }
    if (!res.ok || !res.body) throw new Error(`event stream: ${res.status}`);
    this.opts.onState('live');
    if (!performance.getEntriesByName('stream-open').length) performance.mark('stream-open');
    this.markOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { type: '', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (ev.id !== null) this.lastId = ev.id;
          if (ev.data.length) this.opts.onEvent(ev.type || 'message', ev.data.join('\n'), ev.id ?? this.lastId);
          ev = { type: '', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') ev.type = val;
        else if (field === 'data') ev.data.push(val);
        else if (field === 'id' && !val.includes('\0')) ev.id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) this.retryMs = Math.max(500, Math.min(60_000, Number(val)));
      }
    }
  }
}
