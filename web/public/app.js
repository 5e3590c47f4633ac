// A minimal page: lists the board's tasks through the JSON API, newest first, and refreshes the
// list as transitions arrive on the event stream. (The full kanban page replaces it.)
const tbody = document.querySelector('#tasks tbody');
const more = document.getElementById('more');
const status = document.getElementById('status');
let cursor = null;

function row(t) {
  const tr = document.createElement('tr');
  for (const v of [t.id, t.title, t.skill, t.status, t.last_error ?? '']) {
    const td = document.createElement('td');
    td.textContent = String(v);
    tr.append(td);
  }
  return tr;
}

async function load(reset) {
  const q = new URLSearchParams({ limit: '50' });
  if (!reset && cursor) q.set('cursor', cursor);
  const r = await fetch(`/api/tasks?${q}`);
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const page = await r.json();
  if (reset) tbody.replaceChildren();
  for (const t of page.tasks) tbody.append(row(t));
  cursor = page.nextCursor;
  more.hidden = !cursor;
  if (page.counts) status.textContent = Object.entries(page.counts).map(([k, v]) => `${k} ${v}`).join(' · ');
}

more.addEventListener('click', () => load(false).catch((e) => (status.textContent = String(e))));
load(true).catch((e) => (status.textContent = String(e)));

let timer = null;
const events = new EventSource('/api/events');
events.addEventListener('transition', () => {
  clearTimeout(timer);
  timer = setTimeout(() => load(true).catch(() => undefined), 300);
});
