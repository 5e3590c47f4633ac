// The add-task form (skill + JSON payload, checked before it is sent; the server's refusal shown
// as it says it) and the token form, each a modal <dialog> (Escape closes).
import { getJson, postJson, setToken, token } from './api.js';
import { h } from './fmt.js';

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
