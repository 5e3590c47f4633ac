// The web board: wires the columns, the drawer, the forms and the plots to the API, the event
// stream (cards move as transitions commit, without a reload) and the status poll (counts, live
// workers). Plain ES modules, no build step; every asset comes from this server.
import { Board, Plots } from './board.js';
import { AddTaskForm, Drawer, TokenForm } from './drawer.js';
import { EventStream, fmtAge, getJson, postJson, takeTokenFromFragment, token } from './lib.js';

takeTokenFromFragment();

const $ = (id) => document.getElementById(id);

/** The server's clock minus ours (ages are measured against the server's times). */
let skew = 0;
const now = () => Date.now() + skew;

const board = new Board($('board'), { onOpen: (id) => void drawer.open(id), now, onError: (e) => banner(`Could not load tasks: ${e.message}`) });
const drawer = new Drawer($('drawer'), { act, now });
const plots = new Plots($('plots'));
const addForm = new AddTaskForm($('add-dialog'), (t) => {
  if (t && (t.status || t.task)) board.upsert(t.task ?? t, 'created');
  toast(`Task ${t?.id ?? t?.task?.id ?? ''} added.`);
});
// A new token: the columns are read again (a server beyond loopback refuses reads without it).
const tokenForm = new TokenForm($('token-dialog'), () => {
  renderToken();
  void board.loadAll().then(() => {
    if (document.documentElement.dataset.ready !== 'true') document.documentElement.dataset.ready = 'true';
    banner(null);
  }, (e) => banner(`Could not load tasks: ${e.message}`));
});

async function act(kind, id, body) {
  const t = await postJson(`/api/tasks/${encodeURIComponent(id)}/${kind}`, body);
  if (t && typeof t === 'object') board.upsert(t.task ?? t, kind);
  return t;
}

// ------------------------------------------------------------------ header, messages

function banner(text) {
  const b = $('banner');
  b.textContent = text ?? '';
  b.hidden = !text;
}

let toastTimer = null;
function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('shown');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('shown'), 4000);
}

function renderToken() {
  const b = $('token-btn');
  const has = token() !== null;
  b.textContent = has ? 'Token set' : 'Set token';
  b.dataset.hasToken = String(has);
  b.setAttribute('aria-label', has ? 'Token set for actions in this tab: change or forget it' : 'Set the token that actions need');
}

function renderStatus(st) {
  $('board-label').textContent = String(st.board ?? '');
  const o = st.owner;
  const pool = st.pool ?? {};
  const parts = [
    o ? `owner pid ${o.pid} on ${o.host}: ${o.state}` : 'no owner',
    `workers ${pool.live ?? 0}${pool.max !== null && pool.max !== undefined ? `/${pool.max}` : ''}`,
  ];
  $('summary').textContent = parts.join(' · ');
  const warn = [];
  if (st.quarantine) warn.push(`Board quarantined: ${typeof st.quarantine === 'object' && st.quarantine.reason ? st.quarantine.reason : JSON.stringify(st.quarantine)}`);
  if (st.storm) warn.push(`Dispatch paused by the storm breaker for ${fmtAge(st.storm.pausedUntil - (st.at ?? now()))}: ${st.storm.reason}`);
  if (st.boardAccess && st.boardAccess.ok === false) warn.push(`Workers cannot reach the board: ${st.boardAccess.error ?? ''}`);
  if (o && o.live === false) warn.push('The supervisor is not running: nothing is dispatched.');
  banner(warn.join(' — ') || null);
  const limit = st.failureLimit ?? st.config?.failureLimit;
  if (typeof limit === 'number') board.failureLimit = limit;
}

// ------------------------------------------------------------------ status poll, history

let statusTimer = null;
let statusBusy = false;
async function pollStatus() {
  clearTimeout(statusTimer);
  if (statusBusy) return;
  statusBusy = true;
  try {
    const st = await getJson('/api/status');
    const t1 = Date.now();
    if (typeof st.at === 'number') skew = st.at - t1;
    if (st.counts && !board.filter.q && !board.filter.skill) board.setCounts(st.counts);
    board.setWorkers(st.workers ?? [], t1);
    renderStatus(st);
  } catch (e) {
    $('summary').textContent = `status unavailable: ${e.message}`;
  } finally {
    statusBusy = false;
    statusTimer = setTimeout(pollStatus, document.hidden ? 10_000 : 2000);
  }
}

/** Soon after a transition (a running card wants its worker row), at most every 500 ms. */
let soonTimer = null;
function statusSoon() {
  if (soonTimer) return;
  soonTimer = setTimeout(() => {
    soonTimer = null;
    void pollStatus();
  }, 500);
}

async function pollHistory() {
  try {
    const r = await getJson('/api/history');
    plots.render(Array.isArray(r) ? r : r.points ?? r.history ?? []);
  } catch {
    plots.render([]);
  }
  setTimeout(pollHistory, document.hidden ? 60_000 : 20_000);
}

// ------------------------------------------------------------------ event stream

function setConn(state, text) {
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = text;
}

const stream = new EventStream('/api/events', {
  onState: (st) => setConn(st, st === 'live' ? 'live' : st === 'connecting' ? 'connecting…' : 'reconnecting…'),
  onReset: () => void board.loadAll().catch(() => {}),
  onEvent: (type, data) => {
    if (type !== 'transition') return;
    let d;
    try {
      d = JSON.parse(data);
    } catch {
      return;
    }
    const task = d.task ?? null;
    const taskId = String(d.task_id ?? d.taskId ?? task?.id ?? '');
    if (task) board.upsert(task, d.kind);
    else if (taskId && d.task === null) board.remove(taskId);
    if (taskId) drawer.onEvent(taskId);
    statusSoon();
  },
});

// ------------------------------------------------------------------ controls

$('add-btn').addEventListener('click', () => void addForm.open());
$('token-btn').addEventListener('click', () => tokenForm.open());
let filterTimer = null;
function applyFilter() {
  clearTimeout(filterTimer);
  const q = $('filter-q').value.trim();
  const skill = $('filter-skill').value.trim();
  if (q === board.filter.q && skill === board.filter.skill) return;
  board.filter = { q, skill };
  void board.loadAll().catch((e) => banner(`Could not load tasks: ${e.message}`));
}
$('filter').addEventListener('submit', (e) => {
  e.preventDefault();
  applyFilter();
});
for (const id of ['filter-q', 'filter-skill']) {
  $(id).addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilter, 350);
  });
}
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void pollStatus();
});

// ------------------------------------------------------------------ start

renderToken();
// The stream first, so that a transition committed while the pages load is not missed. Its
// opening is waited for at most 150 ms (the columns come without it); when it opened later, the
// first pages are read again once it is open and merged (a card moves, nothing is cleared).
performance.mark('app-start');
stream.start();
let streamOpen = false;
stream.opened.then(() => (streamOpen = true));
const startup = Promise.race([stream.opened, new Promise((r) => setTimeout(r, 150))]).then(() => {
  const late = !streamOpen;
  return board.loadAll().then(() => late);
});
startup.then(
  (late) => {
    performance.mark('board-ready');
    document.documentElement.dataset.ready = 'true';
    if (late) void stream.opened.then(() => board.refreshFirstPages()).catch(() => {});
  },
  (e) => {
    document.documentElement.dataset.ready = 'error';
    banner(`Could not load tasks: ${e.message}`);
  },
);
// What is not needed for the first render comes after it (or after 2 s at the latest).
Promise.race([startup.catch(() => {}), new Promise((r) => setTimeout(r, 2000))]).then(() => {
  void pollStatus();
  void pollHistory();
});
setInterval(() => board.tick(), 1000);
