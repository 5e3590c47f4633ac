// The task drawer: a modal <dialog> (focus kept inside, Escape closes) with the task, its actions,
// its runs, its events, and a live tail of its current run's log (Range requests from the last
// offset read, once a second, while the run is live).
import { normTask } from './board.js';
import { fmtAge, fmtTime, getJson, getLog, h, jsonLine, postJson, setToken, token } from './lib.js';

const LOG_KEEP = 256 * 1024;
const EVENTS_SHOWN = 300;

const pick = (o, snake, camel) => (o[snake] !== undefined ? o[snake] : o[camel]);

function normRun(r, i) {
  return {
    id: String(r.id),
    attempt: Number(r.attempt ?? i + 1),
    status: String(r.status ?? ''),
    outcome: r.outcome ?? null,
    pid: r.pid ?? null,
    exit_code: pick(r, 'exit_code', 'exitCode') ?? null,
    signal: r.signal ?? null,
    started_at: Number(pick(r, 'started_at', 'startedAt') ?? 0),
    ended_at: pick(r, 'ended_at', 'endedAt') ?? null,
    exited_at: pick(r, 'exited_at', 'exitedAt') ?? null,
    error: r.error ?? null,
    stop_reason: pick(r, 'stop_reason', 'stopReason') ?? null,
    heartbeat_at: pick(r, 'heartbeat_at', 'heartbeatAt') ?? null,
  };
}

export class Drawer {
  /** dialog: the <dialog> element; opts: { act(kind, taskId, body) → Promise<task>, now(), onClose() }. */
  constructor(dialog, opts) {
    this.dialog = dialog;
    this.opts = opts;
    this.taskId = null;
    this.detail = null;
    this.log = null;
    this.refreshTimer = null;
    this.seq = 0;
    this.title = h('h2', { id: 'drawer-title', text: 'Task' });
    this.closeBtn = h('button', { type: 'button', class: 'close', 'aria-label': 'Close details', text: '×' });
    this.closeBtn.addEventListener('click', () => this.dialog.close());
    this.body = h('div', { class: 'drawer-body' });
    this.message = h('p', { class: 'message', role: 'status', 'aria-live': 'polite' });
    dialog.replaceChildren(h('div', { class: 'drawer-head' }, this.title, this.closeBtn), this.message, this.body);
    dialog.addEventListener('close', () => this.closed());
    // A click on the backdrop (outside the panel) closes too.
    dialog.addEventListener('click', (e) => {
      if (e.target === dialog) dialog.close();
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  async open(taskId) {
    this.stopLog();
    this.taskId = taskId;
    this.detail = null;
    this.title.textContent = 'Loading…';
    this.message.textContent = '';
    this.body.replaceChildren();
    this.dialog.dataset.taskId = taskId;
    if (!this.dialog.open) this.dialog.showModal();
    this.closeBtn.focus();
    await this.refresh();
  }

  closed() {
    this.stopLog();
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.taskId = null;
    delete this.dialog.dataset.taskId;
    this.opts.onClose?.();
  }

  /** A transition of some task: ours is read again (coalesced). */
  onEvent(taskId) {
    if (!this.dialog.open || taskId !== this.taskId || this.refreshTimer) return;
    // At most one read every 500 ms, however many events a busy worker writes.
    const wait = Math.max(150, (this.lastRefresh ?? 0) + 500 - Date.now());
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh();
    }, wait);
  }

  async refresh() {
    this.lastRefresh = Date.now();
    const id = this.taskId;
    const seq = ++this.seq;
    let d;
    try {
      d = await getJson(`/api/tasks/${encodeURIComponent(id)}`);
    } catch (e) {
      if (seq === this.seq && this.taskId === id) this.say(`Could not read task ${id}: ${e.message}`, true);
      return;
    }
    if (seq !== this.seq || this.taskId !== id) return;
    const task = normTask(d.task ?? d);
    const runs = (d.runs ?? []).map(normRun);
    const events = d.events ?? [];
    this.detail = { task, runs, events, raw: d.task ?? d };
    this.render();
  }

  say(text, error = false) {
    this.message.textContent = text;
    this.message.classList.toggle('error', error);
    this.message.setAttribute('role', error ? 'alert' : 'status');
  }

  render() {
    const { task: t, runs, events, raw } = this.detail;
    this.title.textContent = t.title || t.id;
    this.dialog.dataset.status = t.status;
    const now = this.opts.now();
    const facts = h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', { class: 'status-badge', dataset: { status: t.status }, text: t.status }),
      h('dt', {}, 'Task'), h('dd', { class: 'mono', text: t.id }),
      h('dt', {}, 'Skill'), h('dd', { text: t.skill }),
      h('dt', {}, 'Priority'), h('dd', { text: String(t.priority) }),
      h('dt', {}, 'Failures in a row'), h('dd', { text: `${t.consecutive_failures}${t.max_attempts !== null ? ` (max attempts ${t.max_attempts})` : ''}` }),
      h('dt', {}, 'Created'), h('dd', { text: `${fmtTime(t.created_at)} (${fmtAge(now - t.created_at)} ago)` }),
      t.not_before > now ? [h('dt', {}, 'Not before'), h('dd', { text: `${fmtTime(t.not_before)} (in ${fmtAge(t.not_before - now)})` })] : null,
    );
    const blocks = [
      t.last_error ? h('div', { class: 'last-error' }, h('h3', {}, 'Last error'), h('pre', { text: t.last_error })) : null,
      h('details', {}, h('summary', {}, 'Payload'), h('pre', { text: JSON.stringify(raw.payload ?? null, null, 2) })),
      raw.result !== null && raw.result !== undefined ? h('details', {}, h('summary', {}, 'Result'), h('pre', { text: JSON.stringify(raw.result, null, 2) })) : null,
    ];
    this.body.replaceChildren(...[facts, this.actions(t), ...blocks, this.runsTable(runs, now), this.logSection(runs), this.timeline(events)].filter(Boolean));
    this.dialog.dataset.rendered = String(Date.now());
  }

  actions(t) {
    const box = h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
    const btn = (kind, label, enabled) =>
      h('button', { type: 'button', class: `act act-${kind}`, dataset: { action: kind }, disabled: !enabled, onclick: () => void this.act(kind) }, label);
    box.append(
      btn('cancel', 'Cancel', ['ready', 'running', 'blocked', 'waiting'].includes(t.status)),
      btn('retry', 'Retry', ['blocked', 'cancelled', 'done'].includes(t.status)),
      btn('unblock', 'Unblock', t.status === 'blocked'),
    );
    if (t.status === 'ready' || t.status === 'waiting') {
      const input = h('input', { id: 'block-reason', name: 'reason', required: true, maxlength: 1000, autocomplete: 'off' });
      const form = h('form', { class: 'block-form' },
        h('label', { for: 'block-reason' }, 'Reason'), input,
        h('button', { type: 'submit', class: 'act act-block', dataset: { action: 'block' } }, 'Block'));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        const reason = input.value.trim();
        if (!reason) {
          this.say('Give a reason to block the task.', true);
          input.focus();
          return;
        }
        void this.act('block', { reason });
      });
      box.append(form);
    }
    return box;
  }

  async act(kind, body = {}) {
    const id = this.taskId;
    this.say(`${kind}…`);
    for (const b of this.body.querySelectorAll('.act')) b.disabled = true;
    try {
      const t = await this.opts.act(kind, id, body);
      if (this.taskId !== id) return;
      this.say(`${kind}: the task is now ${normTask(t?.task ?? t)?.status ?? 'changed'}.`);
    } catch (e) {
      if (this.taskId === id) this.say(`${kind} refused: ${e.message}`, true);
    }
    if (this.taskId === id) await this.refresh();
  }

  runsTable(runs, now) {
    const sec = h('section', { class: 'runs', 'aria-labelledby': 'runs-h' }, h('h3', { id: 'runs-h' }, `Runs (${runs.length})`));
    if (!runs.length) {
      sec.append(h('p', { class: 'empty', text: 'No runs yet' }));
      return sec;
    }
    const rows = runs.slice().reverse().map((r) => {
      const end = r.exited_at ?? r.ended_at;
      const dur = end ? fmtAge(end - r.started_at) : `${fmtAge(now - r.started_at)} so far`;
      const exit = r.signal ? `signal ${r.signal}` : r.exit_code !== null ? `exit ${r.exit_code}` : '-';
      return h('tr', { dataset: { runId: r.id } },
        h('td', { text: String(r.attempt) }),
        h('td', { class: 'mono', text: r.id }),
        h('td', { class: `outcome outcome-${r.outcome ?? r.status}`, text: r.outcome ?? r.status }),
        h('td', { text: exit }),
        h('td', { text: dur }),
        h('td', { text: [r.stop_reason ? `reclaimed: ${r.stop_reason}` : '', r.error ?? ''].filter(Boolean).join(' · ') }));
    });
    sec.append(h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ...['#', 'Run', 'Outcome', 'Exit', 'Duration', 'Error'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, rows))));
    return sec;
  }

  timeline(events) {
    const sec = h('section', { class: 'events', 'aria-labelledby': 'events-h' }, h('h3', { id: 'events-h' }, `Events (${events.length})`));
    const shown = events.slice(-EVENTS_SHOWN).reverse();
    sec.append(h('ol', { class: 'timeline', reversed: true },
      shown.map((e) => h('li', {},
        h('time', { datetime: new Date(Number(e.at)).toISOString(), text: fmtTime(Number(e.at)) }), ' ',
        h('strong', { text: String(e.kind) }),
        e.data !== null && e.data !== undefined ? h('span', { class: 'data', text: ` ${jsonLine(e.data)}` }) : null))));
    if (events.length > EVENTS_SHOWN) sec.append(h('p', { class: 'note', text: `The newest ${EVENTS_SHOWN} of ${events.length} events.` }));
    return sec;
  }

  // ------------------------------------------------------------------ log tail

  logSection(runs) {
    const run = runs.find((r) => r.status !== 'ended') ?? runs.at(-1) ?? null;
    const sec = h('section', { class: 'log', 'aria-labelledby': 'log-h' });
    if (!run) {
      sec.append(h('h3', { id: 'log-h' }, 'Log'), h('p', { class: 'empty', text: 'No run, no log' }));
      this.stopLog();
      return sec;
    }
    const live = run.status !== 'ended';
    if (!this.log || this.log.runId !== run.id) {
      this.stopLog();
      this.log = { runId: run.id, offset: null, text: '', decoder: new TextDecoder(), timer: null, live, pre: null, state: null, busy: false, stop: false };
      this.log.pre = h('pre', { class: 'log-text', tabindex: '0', 'aria-label': `Log of attempt ${run.attempt}` });
      this.log.state = h('span', { class: 'log-state' });
      void this.pollLog();
    }
    this.log.live = live;
    this.log.state.textContent = live ? ' (live)' : ' (ended)';
    this.log.pre.dataset.live = String(live);
    sec.append(h('h3', { id: 'log-h' }, `Log of attempt ${run.attempt}`, this.log.state), this.log.pre);
    return sec;
  }

  stopLog() {
    if (this.log) {
      this.log.stop = true;
      clearTimeout(this.log.timer);
    }
    this.log = null;
  }

  async pollLog() {
    const L = this.log;
    if (!L || L.stop) return;
    let wasLive = L.live;
    try {
      const r = await getLog(L.runId, L.offset);
      if (L.stop) return;
      if (L.offset !== null && r.size !== null && r.size < L.offset) {
        // The log was cut (its bound): read its tail again.
        L.offset = null;
        L.text = '';
        L.decoder = new TextDecoder();
        return this.pollLog();
      }
      if (L.offset === null) {
        L.text = '';
        L.decoder = new TextDecoder();
      }
      if (r.bytes.length) this.appendLog(L, L.decoder.decode(r.bytes, { stream: true }), L.offset === null);
      else if (L.offset === null) this.appendLog(L, '', true);
      L.offset = r.size !== null ? r.size : null;
    } catch (e) {
      if (L.stop) return;
      if (e.status === 404) {
        L.pre.textContent = 'No log for this run.';
        wasLive = L.live;
      } else {
        L.state.textContent = ` (log unavailable: ${e.message})`;
      }
    }
    // A live run is read every second; an ended one once more (what it wrote last), then no more.
    if (!L.stop && (wasLive || L.live)) L.timer = setTimeout(() => void this.pollLog(), 1000);
  }

  appendLog(L, text, replace) {
    const pre = L.pre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    L.text = replace ? text : L.text + text;
    if (L.text.length > LOG_KEEP) L.text = L.text.slice(L.text.length - LOG_KEEP);
    pre.textContent = L.text;
    pre.dataset.bytes = String(L.text.length);
    if (atBottom || replace) pre.scrollTop = pre.scrollHeight;
  }
}

// ------------------------------------------------------------------ forms

// The add-task form (skill + JSON payload, checked before it is sent; the server's refusal shown
// as it says it) and the token form, each a modal <dialog> (Escape closes).

/** The payload as the form holds it: null when empty, else JSON (throws a readable error). */
export function parsePayload(text) {
  const t = text.trim();
  if (t === '') return null;
  try {
    return JSON.parse(t);
  } catch (e) {
    throw new Error(`The payload is not valid JSON: ${e.message}`);
  }
}

function field(id, label, input, hint) {
  input.id = id;
  const hintEl = hint ? h('span', { class: 'hint', id: `${id}-hint`, text: hint }) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), input, hintEl);
}

export class AddTaskForm {
  /** dialog: a <dialog>; onAdded(task) after the server took it. */
  constructor(dialog, onAdded) {
    this.dialog = dialog;
    this.onAdded = onAdded;
    this.skill = h('input', { name: 'skill', required: true, autocomplete: 'off', list: 'skill-list', maxlength: 64 });
    this.skills = h('datalist', { id: 'skill-list' });
    this.title = h('input', { name: 'title', autocomplete: 'off', maxlength: 1000 });
    this.payload = h('textarea', { name: 'payload', rows: 6, spellcheck: 'false', placeholder: '{"key": "value"}' });
    this.priority = h('input', { name: 'priority', type: 'number', step: '1', inputmode: 'numeric' });
    this.error = h('p', { class: 'form-error', role: 'alert' });
    this.submit = h('button', { type: 'submit', class: 'primary' }, 'Add task');
    const cancel = h('button', { type: 'button', onclick: () => this.dialog.close() }, 'Close');
    this.form = h('form', { method: 'dialog', class: 'add-form', 'aria-labelledby': 'add-h' },
      h('h2', { id: 'add-h' }, 'Add a task'),
      field('add-skill', 'Skill', this.skill), this.skills,
      field('add-title', 'Title (optional)', this.title),
      field('add-payload', 'Payload (JSON, optional)', this.payload, 'Any JSON value; checked before it is sent.'),
      field('add-priority', 'Priority (optional, integer)', this.priority),
      this.error,
      h('div', { class: 'buttons' }, cancel, this.submit));
    dialog.replaceChildren(this.form);
    this.payload.addEventListener('input', () => this.checkPayload(false));
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.send();
    });
  }

  async open() {
    this.error.textContent = '';
    if (!this.dialog.open) this.dialog.showModal();
    this.skill.focus();
    try {
      const r = await getJson('/api/skills');
      const list = Array.isArray(r) ? r : Array.isArray(r?.skills) ? r.skills : [];
      this.skills.replaceChildren(...list.map((x) => h('option', { value: String(typeof x === 'string' ? x : x.name) })));
    } catch {
      /* no list: the skill is typed */
    }
  }

  checkPayload(report) {
    try {
      parsePayload(this.payload.value);
      this.payload.removeAttribute('aria-invalid');
      if (!report) this.error.textContent = '';
      return true;
    } catch (e) {
      this.payload.setAttribute('aria-invalid', 'true');
      if (report) this.error.textContent = e.message;
      return false;
    }
  }

  async send() {
    this.error.textContent = '';
    const skill = this.skill.value.trim();
    if (!skill) {
      this.error.textContent = 'Give the skill of the task.';
      this.skill.focus();
      return;
    }
    let payload;
    try {
      payload = parsePayload(this.payload.value);
    } catch (e) {
      this.payload.setAttribute('aria-invalid', 'true');
      this.error.textContent = e.message;
      this.payload.focus();
      return;
    }
    const body = { skill, payload };
    if (this.title.value.trim()) body.title = this.title.value.trim();
    if (this.priority.value.trim() !== '') {
      const n = Number(this.priority.value);
      if (!Number.isInteger(n)) {
        this.error.textContent = 'The priority must be an integer.';
        this.priority.focus();
        return;
      }
      body.priority = n;
    }
    this.submit.disabled = true;
    try {
      const t = await postJson('/api/tasks', body);
      this.dialog.close();
      this.form.reset();
      this.onAdded(t);
    } catch (e) {
      this.error.textContent = `Not added: ${e.message}`;
    } finally {
      this.submit.disabled = false;
    }
  }
}

export class TokenForm {
  constructor(dialog, onChange) {
    this.dialog = dialog;
    this.onChange = onChange;
    this.input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true });
    const form = h('form', { class: 'token-form', 'aria-labelledby': 'token-h' },
      h('h2', { id: 'token-h' }, 'Token for actions'),
      h('p', { class: 'hint', text: 'Actions (add, cancel, retry, block, unblock) need the token. `kanban-supervisor status` prints a URL that carries it; it is kept for this tab only.' }),
      field('token-input', 'Token', this.input),
      h('div', { class: 'buttons' },
        h('button', { type: 'button', onclick: () => { setToken(null); this.dialog.close(); this.onChange(); } }, 'Forget'),
        h('button', { type: 'button', onclick: () => this.dialog.close() }, 'Close'),
        h('button', { type: 'submit', class: 'primary' }, 'Save')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = this.input.value.trim();
      if (!v) return;
      setToken(v);
      this.input.value = '';
      this.dialog.close();
      this.onChange();
    });
    dialog.replaceChildren(form);
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
  }

  static has() {
    return token() !== null;
  }
}
