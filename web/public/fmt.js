// Small helpers of the page: building elements without innerHTML (every board text goes in as
// text, never as markup), and durations, sizes and times for people.

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
