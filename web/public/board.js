// The kanban columns: one per task status, each with its count and its cards, newest first
// (created_at DESC, id DESC, the API's keyset order), a page at a time ("Load more" follows the
// cursor). Cards move when a transition arrives (upsert), never by reloading.
import { fmtAge, fmtAgeShort, fmtBytes, getJson, h, s } from './lib.js';

export const STATUSES = ['ready', 'running', 'blocked', 'done', 'cancelled'];
const ORDER = ['waiting', ...STATUSES];
const LABEL = { waiting: 'Waiting', ready: 'Ready', running: 'Running', blocked: 'Blocked', done: 'Done', cancelled: 'Cancelled' };

/** A task as the API gives it (the CLI's snake_case JSON; camelCase accepted too), with the fields the page uses. */
export function normTask(t) {
  if (!t || typeof t !== 'object' || t.id === undefined) return null;
  const g = (snake, camel) => (t[snake] !== undefined ? t[snake] : t[camel]);
  const created = Number(g('created_at', 'createdAt') ?? 0);
  return {
    id: String(t.id),
    title: String(t.title ?? ''),
    skill: String(t.skill ?? ''),
    status: String(t.status ?? ''),
    priority: Number(t.priority ?? 0),
    created_at: created,
    updated_at: Number(g('updated_at', 'updatedAt') ?? created),
    consecutive_failures: Number(g('consecutive_failures', 'consecutiveFailures') ?? 0),
    max_attempts: g('max_attempts', 'maxAttempts') ?? g('max_retries', 'maxRetries') ?? null,
    last_error: g('last_error', 'lastError') ?? null,
    not_before: Number(g('not_before', 'notBefore') ?? 0),
  };
}

/** Newest first: created_at DESC, id DESC. Negative when a comes first. */
function cmp(a, b) {
  return b.created_at - a.created_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

export class Board {
  /**
   * root: the element holding the columns. opts: { onOpen(taskId), now() (the server's clock),
   * pageSize }.
   */
  constructor(root, opts) {
    this.root = root;
    this.opts = { pageSize: 50, ...opts };
    this.columns = new Map();
    /** Task id → { task, col, el } for every card shown. */
    this.cards = new Map();
    /** Task id → the live worker row of /api/status, and when it was received. */
    this.workers = new Map();
    this.filter = { skill: '', q: '' };
    this.failureLimit = null;
    this.serverCounts = {};
    for (const st of STATUSES) this.column(st);
  }

  /** The column of a status, made on first use (e.g. `waiting` when the server has that status). */
  column(status) {
    let col = this.columns.get(status);
    if (col) return col;
    const hid = `col-${status}-h`;
    const count = h('span', { class: 'count', text: '…' });
    const list = h('ol', { class: 'cards', 'aria-label': `${LABEL[status] ?? status} tasks, newest first` });
    const more = h('button', { type: 'button', class: 'more', hidden: true, 'aria-label': `Load more ${LABEL[status] ?? status} tasks` }, 'Load more');
    const empty = h('p', { class: 'empty', text: 'No tasks' });
    const el = h('section', { class: 'column', dataset: { status }, 'aria-labelledby': hid },
      h('h2', { id: hid }, h('span', { class: 'name', text: LABEL[status] ?? status }), ' ', count),
      list, empty, more);
    col = { status, el, list, count, more, empty, items: [], cursor: null, gen: 0, loading: null };
    more.addEventListener('click', () => void this.loadPage(col, false).catch((e) => this.opts.onError?.(e)));
    this.columns.set(status, col);
    // Keep the columns in their order whatever the order they were made in.
    const after = ORDER.slice(ORDER.indexOf(status) + 1).map((s2) => this.columns.get(s2)).find(Boolean);
    this.root.insertBefore(el, after ? after.el : null);
    return col;
  }

  matches(t) {
    const { skill, q } = this.filter;
    if (skill && t.skill !== skill) return false;
    if (q && !t.title.toLowerCase().includes(q.toLowerCase()) && t.id !== q) return false;
    return true;
  }

  /** Every column's first page, at once; resolves when all are rendered. */
  async loadAll() {
    for (const [id, c] of this.cards) {
      c.el.remove();
      this.cards.delete(id);
    }
    const cols = [...this.columns.values()];
    for (const col of cols) {
      col.items = [];
      col.cursor = null;
      this.renderColumnState(col);
    }
    await Promise.all(cols.map((col) => this.loadPage(col, true)));
  }

  async loadPage(col, first) {
    const gen = first ? ++col.gen : col.gen;
    if (!first && col.loading) return col.loading;
    const p = new URLSearchParams({ status: col.status, limit: String(this.opts.pageSize) });
    if (!first && col.cursor) p.set('cursor', col.cursor);
    if (this.filter.skill) p.set('skill', this.filter.skill);
    if (this.filter.q) p.set('q', this.filter.q);
    col.more.disabled = true;
    const run = (async () => {
      const page = await getJson(`/api/tasks?${p}`);
      if (gen !== col.gen) return; // a newer first page replaced this one
      const frag = document.createDocumentFragment();
      for (const raw of page.tasks ?? []) {
        const t = normTask(raw);
        if (!t) continue;
        const have = this.cards.get(t.id);
        if (have && have.task.updated_at > t.updated_at) continue; // a transition already brought a newer state
        if (have) this.removeCard(t.id);
        if (t.status !== col.status) continue;
        const el = this.card(t);
        // Pages come in order: appended after what is loaded (insertSorted handles the rest).
        if (!col.items.length || cmp(col.items.at(-1), t) < 0) {
          col.items.push(t);
          frag.append(el);
          this.cards.set(t.id, { task: t, col, el });
        } else {
          this.insertSorted(col, t, el);
        }
      }
      col.list.append(frag);
      col.cursor = page.nextCursor ?? null;
      if (page.counts && typeof page.counts === 'object' && !this.filter.skill && !this.filter.q) this.setCounts(page.counts);
    })();
    col.loading = run;
    try {
      await run;
    } finally {
      if (col.loading === run) col.loading = null;
      this.renderColumnState(col);
    }
  }

  /** Read every column's first page again and merge it (after a gap in the event stream): cards move, none is cleared. */
  async refreshFirstPages() {
    await Promise.all([...this.columns.values()].map(async (col) => {
      const p = new URLSearchParams({ status: col.status, limit: String(this.opts.pageSize) });
      if (this.filter.skill) p.set('skill', this.filter.skill);
      if (this.filter.q) p.set('q', this.filter.q);
      const page = await getJson(`/api/tasks?${p}`);
      for (const raw of page.tasks ?? []) this.upsert(raw, null);
    }));
  }

  insertSorted(col, t, el) {
    let lo = 0;
    let hi = col.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(col.items[mid], t) < 0) lo = mid + 1;
      else hi = mid;
    }
    const before = col.items[lo];
    col.items.splice(lo, 0, t);
    col.list.insertBefore(el, before ? this.cards.get(before.id)?.el ?? null : null);
    this.cards.set(t.id, { task: t, col, el });
  }

  removeCard(id) {
    const c = this.cards.get(id);
    if (!c) return null;
    const i = c.col.items.findIndex((x) => x.id === id);
    if (i >= 0) c.col.items.splice(i, 1);
    c.el.remove();
    this.cards.delete(id);
    this.renderColumnState(c.col);
    return c;
  }

  /**
   * A task's new state (a transition from the event stream): its card moves to its status's
   * column, at its place by age; not shown when it belongs to a page not loaded yet. `kind` is the
   * event's kind (a `created` task adds one to its column's count).
   */
  upsert(raw, kind) {
    const t = normTask(raw);
    if (!t) return;
    const have = this.cards.get(t.id);
    if (have && have.task.updated_at > t.updated_at) return;
    if (have && have.task.status === t.status && this.matches(t)) {
      const i = have.col.items.findIndex((x) => x.id === t.id);
      if (i >= 0) have.col.items[i] = t;
      have.task = t;
      this.fill(have.el, t);
      return;
    }
    const from = have ? have.task.status : null;
    if (have) this.removeCard(t.id);
    if (from !== t.status) {
      if (from !== null) this.bump(from, -1);
      if (from !== null || kind === 'created') this.bump(t.status, +1);
    }
    if (!this.matches(t)) return;
    const col = this.column(t.status);
    const last = col.items.at(-1);
    if (col.cursor !== null && last && cmp(last, t) < 0) return; // older than the loaded pages: "Load more" brings it
    this.insertSorted(col, t, this.card(t));
    this.renderColumnState(col);
  }

  /** A task gone from the board (not expected: tasks are kept), or no longer matching. */
  remove(id) {
    const c = this.removeCard(id);
    if (c) this.bump(c.task.status, -1);
  }

  bump(status, d) {
    if (typeof this.serverCounts[status] !== 'number') return;
    this.serverCounts[status] = Math.max(0, this.serverCounts[status] + d);
    this.renderCount(this.column(status));
  }

  /** The board's counts by status (from /api/status). */
  setCounts(counts) {
    if (!counts || typeof counts !== 'object') return;
    this.serverCounts = { ...counts };
    for (const [st, n] of Object.entries(counts)) {
      if (typeof n !== 'number' || (n <= 0 && !this.columns.has(st))) continue;
      const fresh = !this.columns.has(st);
      const col = this.column(st);
      // A column the counts brought (waiting: the task graph) gets its first page like the others.
      if (fresh) void this.loadPage(col, true).catch((e) => this.opts.onError?.(e));
    }
    for (const col of this.columns.values()) this.renderCount(col);
  }

  renderCount(col) {
    const filtered = this.filter.skill || this.filter.q;
    const n = filtered ? null : this.serverCounts[col.status];
    const shown = col.items.length;
    const text = typeof n === 'number' ? String(n) : `${shown}${col.cursor ? '+' : ''}`;
    col.count.textContent = text;
    col.count.setAttribute('aria-label', `${text} task${text === '1' ? '' : 's'}${filtered ? ' matching the filter' : ''}`);
  }

  renderColumnState(col) {
    col.more.hidden = col.cursor === null;
    col.more.disabled = col.loading !== null && col.loading !== undefined;
    col.empty.hidden = col.items.length > 0;
    this.renderCount(col);
  }

  /** The live worker rows of /api/status: running cards show their heartbeat age, elapsed time, CPU and RSS. */
  setWorkers(rows, receivedAt) {
    this.workers.clear();
    for (const w of rows ?? []) if (w && w.task) this.workers.set(String(w.task), { ...w, receivedAt });
    const running = this.columns.get('running');
    for (const t of running ? running.items : []) {
      const c = this.cards.get(t.id);
      if (c) this.fillLive(c.el, t);
    }
  }

  /** Once a second: the ages on the cards. */
  tick() {
    const now = this.opts.now();
    for (const c of this.cards.values()) {
      const age = c.el.querySelector('.age');
      if (age) age.textContent = this.ageText(c.task, now);
      if (c.task.status === 'running') this.fillLive(c.el, c.task);
    }
  }

  ageText(t, now) {
    const base = `${fmtAgeShort(now - t.updated_at)} in ${t.status}`;
    if (t.status === 'ready' && t.not_before > now) return `${base}, retry in ${fmtAgeShort(t.not_before - now)}`;
    return base;
  }

  attemptText(t) {
    const limit = t.max_attempts ?? this.failureLimit;
    const l = limit !== null && limit !== undefined ? `/${limit}` : '';
    if (t.status === 'ready' || t.status === 'running') {
      const w = this.workers.get(t.id);
      const n = t.consecutive_failures + 1;
      return `attempt ${n}${l}${w && w.attempt > n ? ` (run ${w.attempt})` : ''}`;
    }
    return t.consecutive_failures > 0 ? `${t.consecutive_failures}${l} failures` : '';
  }

  card(t) {
    const el = h('li', { class: 'card-item', dataset: { taskId: t.id } });
    const btn = h('button', { type: 'button', class: 'card' });
    btn.addEventListener('click', () => this.opts.onOpen(t.id));
    el.append(btn);
    this.fill(el, t);
    return el;
  }

  fill(el, t) {
    const btn = el.firstElementChild;
    el.dataset.status = t.status;
    btn.setAttribute('aria-label', `${t.title || t.id}: ${t.status}, skill ${t.skill}${t.last_error ? `, last error: ${t.last_error}` : ''}. Open its details`);
    const now = this.opts.now();
    btn.replaceChildren(...[
      h('span', { class: 'title', text: t.title || t.id }),
      h('span', { class: 'meta' },
        h('span', { class: 'skill', text: t.skill }),
        h('span', { class: 'attempt', text: this.attemptText(t) }),
        h('span', { class: 'age', text: this.ageText(t, now) })),
      t.last_error ? h('span', { class: 'error', text: t.last_error, title: t.last_error }) : null,
      t.status === 'running' ? h('span', { class: 'live' }) : null,
    ].filter(Boolean));
    if (t.status === 'running') this.fillLive(el, t);
  }

  fillLive(el, t) {
    const live = el.querySelector('.live');
    if (!live) return;
    const attempt = el.querySelector('.attempt');
    if (attempt) attempt.textContent = this.attemptText(t);
    const w = this.workers.get(t.id);
    if (!w) {
      live.textContent = 'starting…';
      return;
    }
    const since = Date.now() - w.receivedAt;
    const hb = w.heartbeatAgeMs === null || w.heartbeatAgeMs === undefined ? 'no heartbeat' : `heartbeat ${fmtAge(w.heartbeatAgeMs + since)} ago`;
    const parts = [hb, `${fmtAge((w.ageMs ?? 0) + since)} elapsed`];
    parts.push(w.cpuPercent === null || w.cpuPercent === undefined ? 'CPU -' : `CPU ${w.cpuPercent}%`);
    parts.push(`RSS ${fmtBytes(w.rssBytes)}`);
    if (w.reclaim) parts.push(String(w.reclaim));
    live.textContent = parts.join(' · ');
  }
}

// ------------------------------------------------------------------ plots

// Three small plots of the supervisor's own recent history (/api/history, one point a minute over
// the last hour): tasks done and failed per minute, pool use, dispatch latency (p50, p99). Plain
// SVG; the figures' values are in their captions (text), the drawings are decoration with a summary.

const W = 300;
const H = 70;

function norm(p) {
  const g = (a, b) => (p[a] !== undefined ? p[a] : p[b]);
  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  return {
    at: num(p.at) ?? 0,
    done: num(p.done) ?? 0,
    failed: num(p.failed) ?? 0,
    poolUsed: num(g('poolUsed', 'pool_used')),
    poolSize: num(g('poolSize', 'pool_size')),
    p50: num(g('dispatchP50Ms', 'dispatch_p50_ms')),
    p99: num(g('dispatchP99Ms', 'dispatch_p99_ms')),
  };
}

export class Plots {
  constructor(root) {
    this.root = root;
    this.figs = {
      throughput: this.figure('throughput', 'Done and failed per minute'),
      pool: this.figure('pool', 'Pool use'),
      latency: this.figure('latency', 'Dispatch latency'),
    };
  }

  figure(key, title) {
    const value = h('span', { class: 'value', text: '…' });
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title, class: 'plot' });
    const fig = h('figure', { class: `fig fig-${key}` }, h('figcaption', {}, h('span', { class: 'fig-title', text: title }), ' ', value), svg);
    this.root.append(fig);
    return { fig, svg, value, title };
  }

  /** Draw the points (any order; the last hour is shown). */
  render(points) {
    const pts = (Array.isArray(points) ? points : []).map(norm).filter((p) => p.at > 0).sort((a, b) => a.at - b.at);
    const end = pts.length ? pts.at(-1).at : Date.now();
    const start = end - 59 * 60_000;
    const x = (at) => ((at - start) / (60 * 60_000)) * W;
    const bw = W / 60;
    const recent = pts.filter((p) => p.at >= start);
    const sum = (k) => recent.reduce((a, p) => a + p[k], 0);
    const last = recent.at(-1) ?? null;

    // Done (up) and failed (down, from the middle line), per minute.
    {
      const f = this.figs.throughput;
      const max = Math.max(1, ...recent.map((p) => Math.max(p.done, p.failed)));
      const mid = H * 0.62;
      const kids = [s('line', { x1: 0, x2: W, y1: mid, y2: mid, class: 'axis' })];
      for (const p of recent) {
        const dh = (p.done / max) * (mid - 2);
        const fh = (p.failed / max) * (H - mid - 2);
        if (dh > 0) kids.push(s('rect', { x: x(p.at), y: mid - dh, width: bw * 0.8, height: dh, class: 'bar-done' }));
        if (fh > 0) kids.push(s('rect', { x: x(p.at), y: mid, width: bw * 0.8, height: fh, class: 'bar-failed' }));
      }
      f.svg.replaceChildren(...kids);
      const text = `${sum('done')} done, ${sum('failed')} failed in the last hour${last ? ` (last minute ${last.done} / ${last.failed})` : ''}`;
      f.value.textContent = text;
      f.svg.setAttribute('aria-label', `${f.title}: ${text}`);
    }
    // Pool: used over size.
    {
      const f = this.figs.pool;
      const max = Math.max(1, ...recent.map((p) => Math.max(p.poolSize ?? 0, p.poolUsed ?? 0)));
      const y = (v) => H - 2 - (v / max) * (H - 4);
      const used = recent.filter((p) => p.poolUsed !== null);
      const size = recent.filter((p) => p.poolSize !== null);
      const kids = [];
      if (size.length) kids.push(s('polyline', { points: size.map((p) => `${x(p.at) + bw / 2},${y(p.poolSize)}`).join(' '), class: 'line-size' }));
      if (used.length) {
        const line = used.map((p) => `${x(p.at) + bw / 2},${y(p.poolUsed)}`).join(' ');
        kids.push(s('polygon', { points: `${x(used[0].at) + bw / 2},${H} ${line} ${x(used.at(-1).at) + bw / 2},${H}`, class: 'area-used' }));
        kids.push(s('polyline', { points: line, class: 'line-used' }));
      }
      f.svg.replaceChildren(...kids);
      const text = last && last.poolUsed !== null ? `${last.poolUsed} of ${last.poolSize ?? '?'} workers` : 'no data yet';
      f.value.textContent = text;
      f.svg.setAttribute('aria-label', `${f.title}: ${text}`);
    }
    // Dispatch latency, p50 and p99 (ms).
    {
      const f = this.figs.latency;
      const have = recent.filter((p) => p.p99 !== null || p.p50 !== null);
      const max = Math.max(1, ...have.map((p) => Math.max(p.p99 ?? 0, p.p50 ?? 0)));
      const y = (v) => H - 2 - (v / max) * (H - 4);
      const line = (k, cls) => {
        const ps = have.filter((p) => p[k] !== null);
        return ps.length ? s('polyline', { points: ps.map((p) => `${x(p.at) + bw / 2},${y(p[k])}`).join(' '), class: cls }) : null;
      };
      f.svg.replaceChildren(...[line('p99', 'line-p99'), line('p50', 'line-p50')].filter(Boolean));
      const l = have.at(-1);
      const text = l ? `p50 ${fmtAge(l.p50)}, p99 ${fmtAge(l.p99)} (last minute)` : 'no dispatches yet';
      f.value.textContent = text;
      f.svg.setAttribute('aria-label', `${f.title}: ${text}`);
    }
  }
}
